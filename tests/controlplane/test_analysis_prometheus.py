"""The AnalysisRun controller's Prometheus provider against a real Prometheus: a value is judged
by the conditions, an empty answer and NaN are no data (Inconclusive, never 0), a Prometheus that
does not answer is an Error measurement; the run's arguments are filled into the query."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelport.clock import SystemClock
from modelport.controlplane.analysis import AnalysisController
from modelport.controlplane.meta import Recorder
from modelport.controlplane.store import ObjectStore, iso
from support import listening_port, poll


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("prometheus")
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 1s}\n")  # nothing to scrape
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    with open(tmp / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             "--web.listen-address=127.0.0.1:0"], stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{listening_port(tmp / 'prometheus.log')}"
    finally:
        proc.terminate()
        proc.wait(10)


def _run(name: str, query: str, address: str) -> dict[str, Any]:
    provider = {"prometheus": {"query": query, "address": address}}
    metric = {"name": "m", "successCondition": "result < 0.01", "failureLimit": 0, "inconclusiveLimit": 0,
              "consecutiveErrorLimit": 0, "provider": provider}  # fmt: skip
    meta = {"name": name, "namespace": "default"}
    return {
        "apiVersion": "modelport/v1", "kind": "AnalysisRun", "metadata": meta,
        "spec": {"metrics": [metric], "args": {"canaryHash": "abc", "stableHash": "def"}},
        "status": {"phase": "Running", "startedAt": iso(SystemClock().now()), "metricResults": []},
    }  # fmt: skip


def test_values_no_data_and_errors_from_a_real_prometheus(prometheus: str, tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "state.db")
    controller = AnalysisController(store, SystemClock(), Recorder(store, SystemClock(), "test"))
    runs = {
        "good": _run("good", "vector(0.004)", prometheus),
        "bad": _run("bad", "vector(0.2)", prometheus),
        "empty": _run("empty", "sum(no_such_metric)", prometheus),
        "nan": _run("nan", "vector(0) / vector(0)", prometheus),
        # The hash filled in: a label_replace that only matches when it is.
        "args": _run(
            "args",
            'vector(0.001) and on() (label_replace(vector(1), "h", "{{args.canaryHash}}", "", "") '
            '== on(h) label_replace(vector(1), "h", "abc", "", ""))',
            prometheus,
        ),
        "down": _run("down", "vector(0)", "http://127.0.0.1:9"),
    }
    for run in runs.values():
        store.create(run)

    def finished() -> bool:
        controller.sync_all()
        return all(store.get("AnalysisRun", "default", n)["status"]["phase"] != "Running" for n in runs)  # type: ignore[index]

    assert poll(finished, 30, 0.1) is None
    found = {n: store.get("AnalysisRun", "default", n)["status"] for n in runs}  # type: ignore[index]
    phases = {n: s["phase"] for n, s in found.items()}
    assert phases == {"good": "Successful", "bad": "Failed", "empty": "Inconclusive", "nan": "Inconclusive",
                      "args": "Successful", "down": "Error"}  # fmt: skip
    values = {n: s["metricResults"][0]["measurements"][0]["value"] for n, s in found.items()}
    assert values["good"] == 0.004 and values["empty"] is None and values["nan"] is None  # never 0
    assert 'Metric "m" assessed Failed' in found["bad"]["message"] and "0.2" in found["bad"]["message"]
    assert "Connection refused" in found["down"]["metricResults"][0]["measurements"][0]["message"]
