"""The monitor's bounds: the prediction log's files on disk, and a full queue that drops (and
counts) instead of making a request wait."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

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
