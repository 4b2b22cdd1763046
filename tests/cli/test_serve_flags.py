"""`modelport serve`'s flags as the README documents them: TF Serving's ports (gRPC 8500 on
`--port`, alias `--grpc_port`; REST 8501), polls and settle time of 1 s by default, and the
version transition policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from claims_support import serve_config


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
