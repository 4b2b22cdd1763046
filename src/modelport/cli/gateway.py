"""`modelport gateway`: the web front end, in front of a Service (by name) or any model URL."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import click

from modelport.errors import ModelportError

log = logging.getLogger("modelport.gateway")


@click.command()
@click.option(
    "--port", type=int, default=5000, show_default=True, help="0: pick a free one (see --port-file)."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--service", default=None, help="A Service of the local control plane, resolved through its API."
)
@click.option("--namespace", "-n", default="default", show_default=True)
@click.option("--model-url", default=None, help="The base URL of any TF-Serving-compatible server.")
@click.option("--model", default="mnist", show_default=True, help="The model's name on that server.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the model.")
@click.option("--max-bytes", type=int, default=10 * 2**20, show_default=True, help="Largest request body.")
@click.option("--max-pixels", type=int, default=25_000_000, show_default=True, help="Largest image (w x h).")
@click.option(
    "--max-request-pixels",
    type=int,
    default=100_000_000,
    show_default=True,
    help="Most pixels of all a request's images together.",
)
@click.option(
    "--port-file",
    type=click.Path(path_type=Path),
    default=None,
    help='Write {"port": N} here once listening.',
)
def gateway(
    port: int, host: str, service: str | None, namespace: str, model_url: str | None, model: str,
    timeout: float, max_bytes: int, max_pixels: int, max_request_pixels: int, port_file: Path | None,
) -> None:  # fmt: skip
    """Serve the page and the image API (POST / with a file field `img`) in front of a model."""
    from modelport.gateway.app import GatewayConfig, serve  # aiohttp, PIL: only when serving

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (service is None) == (model_url is None):
        click.echo("error: give exactly one of --service NAME and --model-url URL", err=True)
        sys.exit(2)
    if service is not None:
        from modelport.controlplane.client import Client

        try:
            model_url = Client.from_home().resolve(service, namespace)
        except ModelportError as exc:
            click.echo(f"error: Service {service!r}: {exc.message}", err=True)
            sys.exit(1)
    assert model_url is not None
    config = GatewayConfig(model_url, model, timeout, max_bytes, max_pixels, max_request_pixels)

    def bound(actual: int) -> None:
        log.info("gateway on http://%s:%d in front of %s (model %s)", host, actual, model_url, model)
        if port_file is not None:
            tmp = port_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"port": actual, "rest_api_port": actual}))
            tmp.replace(port_file)

    try:
        import uvloop

        uvloop.run(serve(config, host, port, bound))
    except ImportError:
        asyncio.run(serve(config, host, port, bound))
    except KeyboardInterrupt:
        pass
