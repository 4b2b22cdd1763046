"""modelport installs beside the protobuf its users' other packages pin: its gRPC messages build on
every protobuf from 5.26 (the oldest supported) through 7.x, so `pip install modelport` followed by
a package pinning protobuf 5.x or 6.x (tritonclient[grpc] asks for >=6.30,<7) still serves REST
and gRPC; and when gRPC cannot load at all, REST serves anyway.

`scripts/test.sh` installs protobuf 5.26.1 and 6.33.6 (no dependencies) into
build/test-cache/protobuf-VERSION; a replica started with that folder first on PYTHONPATH imports
that protobuf instead of the environment's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from support import Server, half_plus_two, mark_complete

CACHE = Path(__file__).resolve().parents[2] / "build" / "test-cache"


def _first_on_path(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Child processes (the replica) see `folder` before everything else."""
    rest = [p for p in [os.environ.get("PYTHONPATH")] if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), *rest]))


def _model(tmp_path: Path) -> Path:
    base = tmp_path / "half"
    half_plus_two(base / "1")
    mark_complete(base / "1")
    return base


@pytest.mark.parametrize("version", ["5.26.1", "6.33.6"])
def test_rest_and_grpc_serve_on_an_older_protobuf(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = CACHE / f"protobuf-{version}"
    assert (site / "google" / "protobuf").is_dir(), f"scripts/test.sh installs protobuf {version} into {site}"
    _first_on_path(monkeypatch, site)
    seen = subprocess.run(
        [sys.executable, "-c", "import google.protobuf as p; print(p.__version__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert seen.stdout.strip() == version  # what the replica below imports
    server = Server(["--model_name", "half", "--model_base_path", str(_model(tmp_path))], tmp_path)
    try:
        server.wait_ready()
        assert server.post("/v1/models/half:predict", {"instances": [[1.0]]}).json() == {
            "predictions": [[2.5]]
        }
        assert server.grpc_port is not None, server.log()
        with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
            x = np.array([[1.0], [4.0]], dtype=np.float32)
            tensor = grpcclient.InferInput("x", [2, 1], "FP32")
            tensor.set_data_from_numpy(x)
            result = client.infer("half", [tensor])
            np.testing.assert_allclose(result.as_numpy("y"), 0.5 * x + 2.0)
    finally:
        server.stop()


def test_rest_serves_when_grpc_cannot_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "site"
    (broken / "grpc").mkdir(parents=True)
    (broken / "grpc" / "__init__.py").write_text(
        'raise ImportError("grpcio is broken in this environment")\n'
    )
    _first_on_path(monkeypatch, broken)
    server = Server(["--model_name", "half", "--model_base_path", str(_model(tmp_path))], tmp_path)
    try:
        server.wait_ready()
        assert server.post("/v1/models/half:predict", {"instances": [[2.0]]}).json() == {
            "predictions": [[3.0]]
        }
        assert server.grpc_port is None
        assert (
            "gRPC API not started (ImportError: grpcio is broken in this environment); REST serves"
            in server.log()
        )
    finally:
        server.stop()
