"""`modelport serve`'s flags as the README documents them: TF Serving's ports (gRPC 8500 on
`--port`, alias `--grpc_port`; REST 8501), polls and settle time of 1 s by default, and the
version transition policy, and the connection limits."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from claims_support import serve_config
from modelport.server.main import default_max_connections


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = serve_config(monkeypatch, "--model_name", "m", "--model_base_path", str(tmp_path))
    assert (config.grpc_port, config.rest_api_port) == (8500, 8501)
    assert (config.file_system_poll_wait_seconds, config.version_settle_seconds) == (1.0, 1.0)
    assert config.model_config_file_poll_wait_seconds == 0.0  # the config file is read once unless asked
    assert config.batching is None and config.allow_pickle is False
    (model,) = config.models.models
    assert (model.name, model.base_path, model.transition) == ("m", str(tmp_path), "availability_preserving")


def test_grpc_port_is_an_alias_of_port_and_the_policy_flag_applies_to_every_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = ["--model_name", "m", "--model_base_path", str(tmp_path)]
    assert serve_config(monkeypatch, *model, "--grpc_port", "7000").grpc_port == 7000
    assert serve_config(monkeypatch, *model, "--port", "7001").grpc_port == 7001
    config = serve_config(monkeypatch, *model, "--version_transition_policy", "resource_preserving")
    assert [m.transition for m in config.models.models] == ["resource_preserving"]


def test_connection_limits_and_their_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = ["--model_name", "m", "--model_base_path", str(tmp_path)]
    default = serve_config(monkeypatch, *model)
    limits = default.connections
    assert (limits.header_timeout, limits.body_timeout, default.keep_alive_timeout_seconds) == (10.0, 30.0, 5)
    assert limits.max_connections == default_max_connections()
    flags = ["--header_timeout_seconds", "2.5", "--body_timeout_seconds", "7",
             "--keep_alive_timeout_seconds", "9", "--max_connections", "50"]  # fmt: skip
    config = serve_config(monkeypatch, *model, *flags)
    limits = config.connections
    assert (limits.header_timeout, limits.body_timeout, config.keep_alive_timeout_seconds) == (2.5, 7.0, 9)
    assert limits.max_connections == 50


@pytest.mark.parametrize(
    ("soft_limit", "expected"),
    [(1_048_576, 1024), (20_000, 1024), (1024, 448), (256, 64), (100, 16)],
)
def test_the_default_connection_cap_fits_the_open_file_limit(
    monkeypatch: pytest.MonkeyPatch, soft_limit: int, expected: int
) -> None:
    """1024, or fewer when the process may not open 1024 and as many refused ones again (each
    open connection is a file descriptor) beside 128 kept for everything else."""
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft_limit, soft_limit))
    assert default_max_connections() == expected
