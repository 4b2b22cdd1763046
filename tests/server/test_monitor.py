"""The monitor's bounds: the prediction log's files on disk, and a full queue that drops (and
counts) instead of making a request wait."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson

from modelport.server.metrics import ServerMetrics
from modelport.server.monitor import Monitor, MonitorOptions, Observation, _LogFile


def test_the_log_rotates_and_stays_within_max_bytes(tmp_path: Path) -> None:
    log = _LogFile(tmp_path / "m" / "1.jsonl", max_bytes=4096)
    line = b"x" * 99 + b"\n"
    for _ in range(200):  # 20,000 bytes written
        log.write(line)
    log.close()
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["1.jsonl", "1.jsonl.1", "1.jsonl.2", "1.jsonl.3"]
    sizes = [p.stat().st_size for p in (tmp_path / "m").iterdir()]
    assert max(sizes) <= 1024 and sum(sizes) <= 4096
    assert all(
        len(text) == 100 for p in (tmp_path / "m").iterdir() for text in p.read_bytes().splitlines(True)
    )


def test_a_full_queue_drops_and_counts_and_never_waits() -> None:
    metrics = ServerMetrics()
    monitor = Monitor(metrics.quality, MonitorOptions(queue_size=2), dict)
    servable: Any = SimpleNamespace(model_name="m", version=1)
    for i in range(5):
        observation = monitor.observe(servable, f"r{i}", "predict")
        assert isinstance(observation, Observation)
        observation(SimpleNamespace(feeds={"x": np.zeros(4)}, wanted=[]), {})  # type: ignore[arg-type]
        monitor.done(observation, 0.001)
    assert b'modelport_prediction_log_dropped_total{model="m"} 3.0' in metrics.render()
    heavy = Monitor(metrics.quality, MonitorOptions(queue_bytes=100), dict)  # bytes bound too: 3 x 32
    for i in range(5):
        observation = heavy.observe(servable, f"h{i}", "predict")
        assert observation is not None
        observation(SimpleNamespace(feeds={"x": np.zeros(4)}, wanted=[]), {})  # type: ignore[arg-type]
        heavy.done(observation, 0.001)
    assert b'modelport_prediction_log_dropped_total{model="m"} 5.0' in metrics.render()
    unanswered = monitor.observe(servable, "never", "predict")
    monitor.done(unanswered, 0.001)  # the model never answered: nothing queued, nothing dropped
    assert b'modelport_prediction_log_dropped_total{model="m"} 5.0' in metrics.render()


class _Servable:
    """A version as the monitor's batches read it: no signature, no profile, its own log."""

    signatures = None
    profile = None

    def __init__(self, max_bytes: int) -> None:
        self.model_name = "m"
        self.version = 1
        self.logging = SimpleNamespace(sample_rate=1.0, max_bytes=max_bytes)


def _answer(monitor: Monitor, servable: Any, request_id: str, feeds: dict[str, Any], outputs: Any) -> None:
    observation = monitor.observe(servable, request_id, "predict")
    assert observation is not None
    observation(SimpleNamespace(feeds=feeds, wanted=[]), outputs)  # type: ignore[arg-type]
    monitor.done(observation, 0.0123456)


def test_log_lines_waiting_for_their_file_stay_under_16_mib(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    monitor = Monitor(metrics.quality, MonitorOptions(log_dir=tmp_path), dict)
    servable: Any = _Servable(max_bytes=1 << 30)
    answers = 5120  # lines of ~4 KB each (1,000 output values): ~20 MiB, the monitor's thread not running
    for i in range(answers):
        _answer(
            monitor, servable, f"r{i}", {"x": np.zeros((1, 8), np.float32)}, {"y": np.zeros(1000, np.float32)}
        )
    assert 0 < monitor._unwritten_bytes <= 16 * 1024 * 1024
    text = metrics.render().decode()
    dropped = int(float(text.split('modelport_prediction_log_dropped_total{model="m"} ')[1].split()[0]))
    assert 0 < dropped < answers
    monitor.step()  # the thread's round: what waited is written, nothing more is dropped
    assert monitor._unwritten_bytes == 0
    written = sum(len(p.read_bytes().splitlines()) for p in (tmp_path / "m").iterdir())
    assert written == answers - dropped


def test_a_log_line_is_its_record_as_compact_json(tmp_path: Path) -> None:
    monitor = Monitor(ServerMetrics().quality, MonitorOptions(log_dir=tmp_path), dict)
    servable: Any = _Servable(max_bytes=1 << 20)
    two_rows = np.asarray([[0.0, 1.0, np.nan], [0.5, 0.25, 0.125]])
    outputs = {"y": np.asarray([[1.5, -2.0], [1e-30, 3.0]], np.float32), "big": np.zeros((2, 600))}
    _answer(
        monitor, servable, 'a "quoted", ünïcode id', {"x": two_rows, "words": np.asarray(["a", "b"])}, outputs
    )
    _answer(
        monitor, servable, "plain", {"x": two_rows[1:], "words": np.asarray(["c"])}, {"y": np.ones((1, 2))}
    )
    monitor.step()
    lines = (tmp_path / "m" / "1.jsonl").read_bytes().splitlines(True)
    assert len(lines) == 2
    records = [orjson.loads(line) for line in lines]
    for line, record in zip(lines, records, strict=True):  # orjson's own compact form, key order kept
        assert orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) == line
        assert list(record) == [
            "time",
            "request_id",
            "model",
            "version",
            "api",
            "latency_ms",
            "inputs",
            "outputs",
        ]
        assert record["time"].endswith("Z") and len(record["time"]) == 27
        assert (record["model"], record["version"], record["api"], record["latency_ms"]) == (
            "m",
            "1",
            "predict",
            12.346,
        )
    first, second = records
    assert first["request_id"] == 'a "quoted", ünïcode id' and second["request_id"] == "plain"
    x = first["inputs"]["x"]
    assert x["shape"] == [2, 3] and x["intensity"] == [None, 0.29167] and len(x["hash"]) == 2
    assert second["inputs"]["x"]["intensity"] == [0.29167] and second["inputs"]["x"]["hash"] == x["hash"][1:]
    assert first["inputs"]["words"] == {"shape": [2]} and second["inputs"]["words"] == {"shape": [1]}
    assert first["outputs"] == {
        "y": [[1.5, -2.0], [1e-30, 3.0]],
        "big": {"shape": [2, 600], "dtype": "float64"},
    }
    assert second["outputs"] == {"y": [[1.0, 1.0]]}
