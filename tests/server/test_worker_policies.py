"""What `--workers` decides without starting a process: how many CPUs `auto` means, how long a
worker that exited waits to start again, and how several workers' metrics become one /metrics."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from modelport.cli import cli
from modelport.server.cpus import compute_usable_cpus
from modelport.server.metrics import ServerMetrics
from modelport.server.siblings import render_merged, snapshot
from modelport.server.workers import compute_restart_delay


@pytest.mark.parametrize(
    ("affinity", "cpu_max", "usable"),
    [
        (4, [], 4),  # no cgroup v2: the CPUs it may run on
        (4, ["max 100000\n"], 4),  # no quota
        (4, ["150000 100000\n"], 2),  # 1.5 CPUs: rounded up
        (4, ["50000 100000\n"], 1),  # half a CPU: still one worker
        (1, ["400000 100000\n"], 1),  # a quota above the affinity
        (8, ["max 100000", "300000 100000", "600000 100000"], 3),  # the tightest on the path
        (4, ["garbage"], 4),
    ],
)
def test_auto_is_the_cpus_the_process_may_use(affinity: int, cpu_max: list[str], usable: int) -> None:
    assert compute_usable_cpus(affinity, cpu_max) == usable


def test_a_worker_that_keeps_exiting_waits_longer_each_time() -> None:
    assert [compute_restart_delay(n) for n in (1, 2, 3, 4, 7, 8, 20)] == [0.5, 1, 2, 4, 30, 30, 30]


def _two_workers() -> bytes:
    parts = []
    for worker, (answered, state) in enumerate([(3, 30), (5, 20)]):
        metrics = ServerMetrics()
        for _ in range(answered):
            metrics.observe("mnist", "1", "predict", 200, 0.001)
        metrics.version_state("mnist", 1, state, None)
        parts.append((worker, snapshot(metrics.registry)))
    return render_merged(parts)


def test_one_metrics_page_labels_each_worker_and_sums_without_the_label() -> None:
    families = {f.name: f for f in text_string_to_metric_families(_two_workers().decode())}
    answered = {
        s.labels["worker"]: s.value
        for s in families["modelport_requests"].samples
        if s.name.endswith("_total")
    }
    assert answered == {"0": 3, "1": 5}  # sum without (worker): 8, each request once
    states = {s.labels["worker"]: s.value for s in families["modelport_model_state"].samples}
    assert states == {"0": 30, "1": 20}  # each worker's own state, never added up
    assert sorted(s.labels["worker"] for s in families["modelport_worker_info"].samples) == ["0", "1"]


def test_workers_must_be_a_count_or_auto() -> None:
    result = CliRunner().invoke(cli, ["serve", "--workers", "0", "--model_base_path", "/nowhere"])
    assert result.exit_code == 2
    assert "'0': give a number of workers (1 or more) or auto" in result.output
