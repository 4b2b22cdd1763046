"""examples/mnist/pipeline.yaml end to end, against a real control plane: from nothing to a served
version labelled production; new data → a second run publishes version 2 and releases it through
the Rollout's canary analysis while a load generator sees no failed request (that run is killed
half-way through its release and resumed with --from, which skips what was done); a worse model
stops at the gate, production untouched; and, with no gate, the canary analysis aborts it and the
release rolls back, saying why."""

from __future__ import annotations

import base64
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml

from modelport.delivery.runs import RunStore
from modelport.examples import write_mnist_repository
from modelport.examples.mnist_data import load_mnist_5k
from modelport.registry import Registry
from support import Load, Plane, poll

ROOT = Path(__file__).parents[2]
EPOCHS = 5  # the example's 10 halved: the MLP still reaches ~0.9 on the digits


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    plane = Plane(tmp_path_factory.mktemp("home"))
    plane.up()
    try:
        yield plane
    finally:
        plane.stop()


def _example(where: Path) -> Path:
    """The example as shipped, with this test's data, epochs and a free port for the Service."""
    for name in ("pipeline.yaml", "mlp.yaml", "serving.yaml"):
        shutil.copy(ROOT / "examples" / "mnist" / name, where / name)
    doc = yaml.safe_load((where / "pipeline.yaml").read_text())
    train = doc["spec"]["stages"][0]
    train["train"].update(data="npz:data/digits.npz", epochs=EPOCHS)
    doc["spec"]["stages"][2]["gate"]["metrics"] = {"accuracy": ">= 0.8"}
    (where / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    serving = list(yaml.safe_load_all((where / "serving.yaml").read_text()))
    next(d for d in serving if d["kind"] == "Service")["spec"]["ports"][0]["port"] = 0
    (where / "serving.yaml").write_text(yaml.safe_dump_all(serving, sort_keys=False))
    return where / "pipeline.yaml"


def _data(where: Path, images: np.ndarray, labels: np.ndarray) -> None:
    (where / "data").mkdir(exist_ok=True)
    np.savez(where / "data" / "digits.npz", images=images, labels=labels)


def _request(samples: Path, digit: int) -> dict[str, Any]:
    png = (samples / f"digit-{digit}.png").read_bytes()
    return {"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}]}


def _served_versions(url: str) -> set[int]:
    status = requests.get(f"{url}/v1/models/mnist", timeout=5).json()["model_version_status"]
    return {int(s["version"]) for s in status if s["state"] == "AVAILABLE"}


def _labelled(plane: Plane, label: str) -> list[int]:
    """As `registry list` says, read in-process (a CLI call costs seconds on a busy machine)."""
    return [v.version for v in Registry.open(plane.home).versions("mnist") if label in v.labels]


def _source(plane: Plane) -> str:
    return str(plane.get("Rollout", "mnist")["spec"]["template"]["spec"]["model"]["basePath"])


def _analyses(plane: Plane) -> list[str]:
    runs = [
        r for r in plane.items("AnalysisRun") if r["metadata"].get("labels", {}).get("rollout") == "mnist"
    ]
    return sorted(r["status"]["phase"] for r in runs)


# Five runs, three of them training, and two canaries: within the suite's 180 s per test on a quiet
# machine, not on a busy one.
@pytest.mark.timeout(600)
def test_data_to_production_then_new_data_then_a_worse_model(plane: Plane, tmp_path: Path) -> None:
    pipeline = _example(tmp_path)
    images, labels = load_mnist_5k()
    run = ["pipeline", "run", "-f", str(pipeline)]

    # 1. From nothing: trained, evaluated, gated, published, released (created), production.
    _data(tmp_path, images[::4], labels[::4])  # 1,250 digits, then 2,500: lean, and v2 is better
    started = time.monotonic()
    first = plane.cli(*run, timeout=300)
    first_seconds = time.monotonic() - started
    assert "run 1 succeeded" in first.stdout, first.stdout
    assert _labelled(plane, "production") == [1] and _labelled(plane, "candidate") == [1]
    url = plane.service_url("mnist")
    samples = write_mnist_repository(tmp_path / "samples").parent / "samples"
    answer = requests.post(f"{url}/v1/models/mnist:predict", json=_request(samples, 3), timeout=10)
    assert answer.status_code == 200 and _served_versions(url) == {1}

    store = RunStore.open(plane.home)
    with Load(f"{url}/v1/models/mnist:predict", _request(samples, 7), threads=1,
              read=lambda a: a["predictions"][0]["classes"]) as load:  # fmt: skip
        load.wait_for(20)
        # 2. New data: a second run, killed during its release (the canary's analysis), resumed
        # with --from release, which skips what was done.
        _data(tmp_path, images[::2], labels[::2])
        killed = subprocess.Popen([sys.executable, "-m", "modelport", *run], env=plane.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            waited = poll(lambda: store.runs("mnist", 1)[0].stage("release").status == "running", 120, 0.05)
            assert waited is None, f"run 2 never reached its release{waited}"
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.wait(10)
        assert store.run(2).status == "interrupted"
        resumed = plane.cli(*run, "--from", "release", timeout=300)
        assert "run 3 succeeded" in resumed.stdout, resumed.stdout
        assert [(s.name, s.status) for s in store.run(3).stages] == [
            ("train", "skipped"), ("evaluate", "skipped"), ("gate", "skipped"), ("publish", "skipped"),
            ("release", "succeeded"), ("promote", "succeeded"),
        ]  # fmt: skip
        assert _analyses(plane) == ["Successful"]  # through the canary analysis
        load.wait_for(len(load.outcomes) + 20)
        assert _served_versions(url) == {2} and _labelled(plane, "production") == [2]

        # 3. A worse model (labels shuffled): refused by the gate with its numbers; nothing changes.
        shuffled = np.random.default_rng(0).permutation(labels[::2])
        _data(tmp_path, images[::2], shuffled)
        worse = plane.cli(*run, check=False, timeout=300)
        assert worse.returncode == 1
        assert re.search(r"stage gate failed: refused by the gate: accuracy = 0\.\d+, the gate wants >= 0.8",
                         worse.stderr)  # fmt: skip
        assert re.search(r"production \(version 2\) has 0\.[89]\d+: 0\.\d+ worse, more than the 0.02",
                         worse.stderr)  # fmt: skip
        assert _labelled(plane, "candidate") == [2] and _source(plane) == "registry://mnist@2"

        # 4. The model the gate refused, released anyway by a pipeline without the gate (--from
        # publish: its training is reused): the canary analysis aborts it, and the release stage
        # rolls the Rollout back and says why.
        doc = yaml.safe_load(pipeline.read_text())
        doc["spec"]["stages"] = [s for s in doc["spec"]["stages"] if s["name"] != "gate"]
        doc["spec"]["stages"][2]["inputs"] = ["train.model", "evaluate.evaluation"]
        doc["spec"]["stages"].append({
            "name": "back", "when": "failure", "inputs": ["release.release"],
            "rollback": {"kind": "Rollout", "name": "mnist", "label": "production", "timeoutSeconds": 120},
        })  # fmt: skip
        (tmp_path / "no-gate.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        no_gate = ["pipeline", "run", "-f", str(tmp_path / "no-gate.yaml"), "--from", "publish"]
        aborted = plane.cli(*no_gate, check=False, timeout=300)
        assert aborted.returncode == 1
        assert re.search(
            r'stage release failed: release: rollout "mnist" aborted: .*class-distance', aborted.stderr
        ), aborted.stderr
        assert "rolled rollout/mnist back to registry://mnist@2" in aborted.stderr
        assert _analyses(plane) == ["Failed", "Successful"]
        after = {s.name: s.status for s in store.runs("mnist", 1)[0].stages}
        assert (after["release"], after["promote"], after["back"]) == ("failed", "not run", "succeeded")
        tail = len(load.outcomes)
        load.wait_for(tail + 20)
    assert load.failures(good=lambda v: isinstance(v, int)) == []
    assert set(load.values()[tail:]) == {7}  # the stable version's answers again
    assert _source(plane) == "registry://mnist@2" and _labelled(plane, "production") == [2]
    history = [r.status for r in store.runs()]
    assert history == ["failed", "failed", "succeeded", "interrupted", "succeeded"]
    print(f"example pipeline from nothing to production: {first_seconds:.1f} s; all four: "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip
