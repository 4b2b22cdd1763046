"""Helpers for the tests of README claims: an in-process ASGI call, a model whose run blocks until
released, and the ServeConfig that `modelport serve`'s flags produce."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from modelport.runtimes.base import TensorSpec


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def _call(app: Any, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": method, "path": path, "query_string": b"", "http_version": "1.1",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    await app(scope, receive, send)
    (start,) = [m for m in sent if m["type"] == "http.response.start"]
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, payload)


def call(
    app: Any, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> Answer:
    """One HTTP request to an ASGI app, in this thread, as uvicorn would pass it."""
    return asyncio.run(_call(app, method, path, body, headers or {}))


class GatedModel:
    """y = x, but `run` waits until the gate opens: a model exactly as slow as the test says.
    Its input has no fixed size, so the server's warm-up run (zeros of a known shape) skips it."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.started = threading.Event()

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("x", "float32", (-1, -1))]

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("y", "float32", (-1, -1))]

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        self.started.set()
        if not self.gate.wait(60):
            raise AssertionError("the test never opened the gate")
        return {"y": np.asarray(feeds["x"])}


class GatedRuntime:
    """Loads `model.gated` files as a GatedModel sharing one gate."""

    platform = "gated"
    file_suffixes = (".gated",)

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.models: list[GatedModel] = []

    def load(self, path: Path, options: Mapping[str, Any]) -> GatedModel:
        model = GatedModel(self.gate)
        self.models.append(model)
        return model


def serve_config(monkeypatch: pytest.MonkeyPatch, *flags: str) -> Any:
    """The ServeConfig `modelport serve FLAGS` would run, captured instead of served."""
    from modelport.cli import cli

    captured: list[Any] = []
    monkeypatch.setattr("modelport.server.main.serve", captured.append)
    result = CliRunner().invoke(cli, ["serve", *flags], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (config,) = captured
    return config


def spinning_onnx(path: Path) -> Path:
    """y = x + max(x), computed by a Loop of max(x) steps: a request takes as long as it asks.

    x = [[3.0]] answers [[6.0]] at once; x = [[1e12]] spins one core for days (a request that is
    still in flight whenever the test looks). Zeros (the server's warm-up) run no step."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
        ],
        "step",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, []),
        ],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
            helper.make_node("Cast", ["top"], ["steps"], to=TensorProto.INT64),
            helper.make_node("Loop", ["steps", "true", "zero"], ["count"], body=body),
            helper.make_node("Add", ["x", "count"], ["y"]),
        ],
        "spinning",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(np.array(True), "true"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
