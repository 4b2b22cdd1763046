"""`modelport gateway`: the web front end, in front of a Service (by name) or any model URL."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
from pathlib import Path
from typing import Any

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
@click.option(
    "--token-file",
    type=click.Path(path_type=Path),
    default=None,
    help="A control-plane token (scope services:get suffices) to resolve --service with, instead "
    "of the admin token; a gateway replica is given one.",
)
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
@click.option("--ssl-cert-file", default=None, help="PEM certificate: serve the page and API over HTTPS.")
@click.option("--ssl-key-file", default=None, help="PEM private key of --ssl-cert-file.")
@click.option(
    "--model-ca-file",
    default=None,
    help="PEM CA that signed the model service's certificate (an https:// model URL or TLS Service).",
)
@click.option(
    "--port-file",
    type=click.Path(path_type=Path),
    default=None,
    help='Write {"port": N} here once listening.',
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The gateway's own API key to the model service, in a file (never on the command line). "
    "[default: $MODELPORT_HOME/gateway.key if it exists]",
)
@click.option(
    "--per-client",
    default="20/s",
    show_default=True,
    help="POSTs one client address may send (a rate: 20/s, 600/min), or 'off'.",
)
@click.option("--per-client-burst", type=click.IntRange(min=1), default=40, show_default=True)
@click.option(
    "--require-key", is_flag=True, help="Callers need an API key of their own (scope predict on --model)."
)
def gateway(
    port: int, host: str, service: str | None, namespace: str, token_file: Path | None, model_url: str | None,
    model: str,
    timeout: float, max_bytes: int, max_pixels: int, max_request_pixels: int, ssl_cert_file: str | None,
    ssl_key_file: str | None, model_ca_file: str | None, port_file: Path | None,
    api_key_file: Path | None, per_client: str, per_client_burst: int, require_key: bool,
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
            model_url = Client.from_home(token_file=token_file).resolve(service, namespace)
        except ModelportError as exc:
            click.echo(f"error: Service {service!r}: {exc.message}", err=True)
            sys.exit(1)
    assert model_url is not None
    try:
        serving, calling = _tls(ssl_cert_file, ssl_key_file, model_ca_file)
    except ModelportError as exc:
        raise click.UsageError(exc.message) from None
    config = GatewayConfig(
        model_url, model, timeout, max_bytes, max_pixels, max_request_pixels, model_tls=calling,
        api_key=_api_key(api_key_file), per_client=_per_client(per_client, per_client_burst),
        require_key=_authenticator() if require_key else None,
    )  # fmt: skip
    scheme = "https" if serving else "http"

    def bound(actual: int) -> None:
        log.info("gateway on %s://%s:%d in front of %s (model %s)", scheme, host, actual, model_url, model)
        if port_file is not None:
            tmp = port_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"port": actual, "rest_api_port": actual}))
            tmp.replace(port_file)

    try:
        import uvloop

        uvloop.run(serve(config, host, port, bound, serving))
    except ImportError:
        asyncio.run(serve(config, host, port, bound, serving))
    except KeyboardInterrupt:
        pass


def _tls(
    cert: str | None, key: str | None, model_ca: str | None
) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The context the gateway serves with (None: plain HTTP) and the one it calls the model
    service with (None: the defaults), each file checked now; errors name the flag and the file."""
    from modelport.security.tls import TlsIdentity, check_identity, client_context, read_pem

    if bool(cert) != bool(key):
        raise click.UsageError("--ssl-cert-file and --ssl-key-file go together")
    serving = None
    if cert and key:
        serving = check_identity(
            TlsIdentity(read_pem("--ssl-cert-file", cert), read_pem("--ssl-key-file", key))
        )
    calling = client_context(read_pem("--model-ca-file", model_ca)) if model_ca else None
    return serving, calling


def _api_key(path: Path | None) -> str | None:
    from modelport.security.keys import default_path

    default = default_path().parent / "gateway.key"
    if path is None and not default.exists():
        return None
    path = path or default
    try:
        return path.read_text().strip() or None
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror}", param_hint="--api-key-file") from exc


def _per_client(text: str, burst: int) -> Any:
    from modelport.security.keys import parse_rate
    from modelport.security.limits import Limits

    if text == "off":
        return None
    try:
        return Limits(rate=parse_rate(text), burst=burst)
    except ModelportError as exc:
        raise click.BadParameter(exc.message, param_hint="--per-client") from exc


def _authenticator() -> Any:
    from modelport.clock import SystemClock
    from modelport.security.auth import Authenticator
    from modelport.security.keys import SqliteKeyStore, default_path

    return Authenticator(SqliteKeyStore(default_path()), SystemClock())
