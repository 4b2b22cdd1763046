"""`GET /metrics` (README, "The REST API"): requests and latency by model, version, API and status,
counted exactly; requests in flight; each version's state and load time; the process's CPU and
memory. In-process on the real ASGI app and metrics registry, wired as `modelport serve` wires them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from claims_support import GatedRuntime, call
from modelport.repository.config import parse_yaml_config
from modelport.repository.manager import ModelManager
from modelport.runtimes import default_runtimes
from modelport.server.app import RestApp, ServerOptions
from modelport.server.metrics import ServerMetrics
from modelport.testing.clock import FakeClock
from support import half_plus_two, mark_complete


def _app(tmp_path: Path, pool: ThreadPoolExecutor, gated: GatedRuntime) -> RestApp:
    half_plus_two(tmp_path / "half" / "1")
    (tmp_path / "slow" / "1").mkdir(parents=True)
    (tmp_path / "slow" / "1" / "model.gated").write_bytes(b"")
    for name in ("half", "slow"):
        mark_complete(tmp_path / name / "1")
    config = parse_yaml_config(
        "model_config_list:\n  config:\n"
        f"    - {{name: half, base_path: {tmp_path / 'half'}}}\n"
        f"    - {{name: slow, base_path: {tmp_path / 'slow'}}}\n"
    )
    metrics = ServerMetrics()
    manager = ModelManager(config, {**default_runtimes(), "gated": gated}, FakeClock(),
                           listener=lambda m, v, s, t: metrics.version_state(m, v, int(s), t))  # fmt: skip
    manager.poll()
    return RestApp(manager, metrics, ServerOptions(), pool)


def _value(metrics: str, name: str, **labels: str) -> float:
    """The one sample `name` with exactly these labels."""
    found = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


def test_metrics_count_what_happened(tmp_path: Path, pool: ThreadPoolExecutor, gated: GatedRuntime) -> None:
    app = _app(tmp_path, pool, gated)
    for x in (1.0, 2.0, 3.0):
        assert call(app, "POST", "/v1/models/half:predict", f'{{"instances": [{x}]}}'.encode()).status == 200
    assert call(app, "POST", "/v1/models/half:predict", b'{"instances": ["x"]}').status == 400
    assert call(app, "GET", "/v1/models/half").status == 200
    stuck = threading.Thread(
        target=call, args=(app, "POST", "/v1/models/slow:predict", b'{"instances": [[1.0]]}')
    )
    stuck.start()
    assert gated.models[0].started.wait(30)  # one request in flight on `slow`
    text = call(app, "GET", "/metrics").body.decode()
    predict = {"model": "half", "version": "1", "api": "predict"}
    assert _value(text, "modelport_requests_total", **predict, status="200") == 3
    assert _value(text, "modelport_requests_total", **predict, status="400") == 1
    assert _value(text, "modelport_requests_total", model="half", version="", api="status", status="200") == 1
    assert _value(text, "modelport_request_duration_seconds_count", **predict, status="200") == 3
    assert _value(text, "modelport_requests_in_flight", model="slow") == 1
    assert _value(text, "modelport_requests_in_flight", model="half") == 0
    assert _value(text, "modelport_model_state", model="half", version="1") == 30  # AVAILABLE
    # the load time, on the manager's clock (a fake one here, not moved while loading)
    assert _value(text, "modelport_model_load_seconds", model="half", version="1") == 0.0
    assert _value(text, "process_resident_memory_bytes") > 0 and _value(text, "process_cpu_seconds_total") > 0
    gated.gate.set()
    stuck.join(30)
    after = call(app, "GET", "/metrics").body.decode()
    assert _value(after, "modelport_requests_in_flight", model="slow") == 0
    slow = {"model": "slow", "version": "1", "api": "predict", "status": "200"}
    assert _value(after, "modelport_requests_total", **slow) == 1
