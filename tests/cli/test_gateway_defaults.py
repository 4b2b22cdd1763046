"""`modelport gateway`'s documented defaults (README, "The gateway"): port 5000, model `mnist`,
10 MiB per request, 25 M pixels per image and 100 M per request, 10 s for the model, plain HTTP; exactly one
of `--service` and `--model-url`."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from modelport.cli import cli
from modelport.gateway import app
from modelport.gateway.app import GatewayConfig


def test_the_gateways_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[GatewayConfig, str, int, Any]] = []

    async def serve(
        config: GatewayConfig, host: str, port: int, on_bound: Any = None, tls: Any = None
    ) -> None:
        started.append((config, host, port, tls))

    # the command imports the server where it runs it (so `--help` stays light): replace it there
    monkeypatch.setattr(app, "serve", serve)
    result = CliRunner().invoke(
        cli, ["gateway", "--model-url", "http://127.0.0.1:8501"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    ((config, host, port, tls),) = started
    assert (host, port, tls) == ("127.0.0.1", 5000, None)  # plain HTTP unless --ssl-cert-file
    assert config == GatewayConfig(
        model_url="http://127.0.0.1:8501", model="mnist", timeout_seconds=10.0, max_bytes=10 * 2**20,
        max_pixels=25_000_000, max_request_pixels=100_000_000,
    )  # fmt: skip


def test_exactly_one_of_service_and_model_url() -> None:
    neither = CliRunner().invoke(cli, ["gateway"])
    both = CliRunner().invoke(cli, ["gateway", "--service", "mnist", "--model-url", "http://127.0.0.1:1"])
    for result in (neither, both):
        assert result.exit_code == 2
        assert "error: give exactly one of --service NAME and --model-url URL" in result.stderr
