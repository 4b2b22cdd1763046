"""The REST API's request timeout and CORS, in-process on the real ASGI app: a request that runs
longer than `--rest_api_timeout_in_ms` gets TF Serving's 504 while the server keeps answering;
`--enable_cors_support` answers preflight and adds the headers, and nothing of it without the
flag. The flags' way into the server's options is checked on the `serve` command itself."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from claims_support import GatedRuntime, call, serve_config, spinning_onnx
from modelport.repository.config import single_model_config
from modelport.repository.manager import ModelManager
from modelport.runtimes import default_runtimes
from modelport.server.app import RestApp, ServerOptions
from modelport.server.metrics import ServerMetrics
from modelport.testing.clock import FakeClock
from support import half_plus_two, mark_complete, running

PREDICT = "/v1/models/m:predict"


def _app(
    base: Path, options: ServerOptions, pool: ThreadPoolExecutor, gated: GatedRuntime | None = None
) -> RestApp:
    version = base / "1"
    if gated is not None:
        version.mkdir(parents=True)
        (version / "model.gated").write_bytes(b"")
    else:
        half_plus_two(version)
    mark_complete(version)
    runtimes = {**default_runtimes(), **({"gated": gated} if gated else {})}
    manager = ModelManager(single_model_config("m", str(base)), runtimes, FakeClock())
    manager.poll()
    assert manager.is_ready()
    return RestApp(manager, ServerMetrics(), options, pool)


def test_a_request_over_the_timeout_gets_504_and_the_server_keeps_answering(
    tmp_path: Path, pool: ThreadPoolExecutor, gated: GatedRuntime
) -> None:
    app = _app(tmp_path / "m", ServerOptions(request_timeout_seconds=0.25), pool, gated)
    answer = call(app, "POST", PREDICT, b'{"instances": [[1.0]]}')
    assert gated.models[0].started.is_set() and not gated.gate.is_set()  # it ran, and was still running
    assert answer.status == 504
    assert json.loads(answer.body) == {
        "error": "request to model 'm' version 1 took longer than the 0.25 s timeout"
    }
    assert call(app, "GET", "/v1/models/m").status == 200  # while the model call still hangs


def test_a_request_within_the_timeout_is_answered(
    tmp_path: Path, pool: ThreadPoolExecutor, gated: GatedRuntime
) -> None:
    gated.gate.set()
    app = _app(tmp_path / "m", ServerOptions(request_timeout_seconds=30), pool, gated)
    answer = call(app, "POST", PREDICT, b'{"instances": [[1.0]]}')
    assert (answer.status, json.loads(answer.body)) == (200, {"predictions": [[1.0]]})


CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "POST, GET",
    "access-control-allow-headers": "Content-Type",
}


def test_cors_support_answers_preflight_and_marks_every_answer(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    app = _app(tmp_path / "m", ServerOptions(enable_cors=True), pool)
    preflight = call(app, "OPTIONS", PREDICT, headers={"origin": "http://page.example",
                                                       "access-control-request-method": "POST"})  # fmt: skip
    assert preflight.status == 200 and CORS.items() <= preflight.headers.items()
    answer = call(app, "POST", PREDICT, b'{"instances": [2.0]}', {"origin": "http://page.example"})
    assert (answer.status, json.loads(answer.body)) == (200, {"predictions": [[3.0]]})
    assert CORS.items() <= answer.headers.items()
    refused = call(app, "POST", "/v1/models/nope:predict", b"{}")
    assert refused.status == 404 and CORS.items() <= refused.headers.items()  # errors are readable too


def test_without_cors_support_there_is_no_preflight_and_no_cors_header(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    app = _app(tmp_path / "m", ServerOptions(), pool)
    preflight = call(app, "OPTIONS", PREDICT, headers={"origin": "http://page.example"})
    assert preflight.status == 404
    assert json.loads(preflight.body) == {"error": f"Malformed request: OPTIONS {PREDICT} (use POST)"}
    answer = call(app, "POST", PREDICT, b'{"instances": [2.0]}')
    assert answer.status == 200
    assert not [h for h in answer.headers if h.startswith("access-control-")]


def test_the_serve_flags_reach_the_servers_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    base = ["--model_name", "m", "--model_base_path", str(tmp_path)]
    default = serve_config(monkeypatch, *base).options
    assert (default.request_timeout_seconds, default.enable_cors) == (30.0, False)
    config = serve_config(monkeypatch, *base, "--rest_api_timeout_in_ms", "250", "--enable_cors_support",
                          "--rest_api_num_threads", "3")  # fmt: skip
    assert (config.options.request_timeout_seconds, config.options.enable_cors) == (0.25, True)
    assert config.inference_threads == 3  # the pool that runs models, bounded by the timeout


def test_a_real_server_answers_504_at_its_timeout(tmp_path: Path) -> None:
    """`modelport serve --rest_api_timeout_in_ms 500` and a request that would run for days: 504
    with TF Serving's message, and the server keeps answering. (First request to the model: the
    server has no cost estimate yet, so the model runs in its thread pool; see CLAIMS.md for a
    model it has measured as fast.)"""
    spinning_onnx(tmp_path / "spin" / "1" / "model.onnx")
    mark_complete(tmp_path / "spin" / "1")
    args = [
        "--model_name",
        "spin",
        "--model_base_path",
        str(tmp_path / "spin"),
        "--rest_api_timeout_in_ms",
        "500",
    ]
    with running(args, tmp_path) as server:
        server.wait_ready()
        answer = server.post("/v1/models/spin:predict", {"instances": [[1e12]]})
        assert answer.status_code == 504
        assert answer.json() == {
            "error": "request to model 'spin' version 1 took longer than the 0.5 s timeout"
        }
        assert server.get("/healthz").status_code == 200
        # The model call was stopped at the deadline: no pool thread spins on to hold the
        # process's exit (Server.stop would wait 10 s for it, then kill).
        stopping = time.monotonic()
        server.stop()
        assert time.monotonic() - stopping < 5
