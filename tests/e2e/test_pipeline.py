"""examples/mnist/pipeline.yaml end to end, against a real control plane: from nothing to a served
version labelled production; new data → a second run publishes version 2 and releases it while a
load generator sees no failed request (that run is killed half-way through its release and resumed
with --from, which skips what was done); a worse model stops at the gate, production untouched."""

from __future__ import annotations

import base64
import json
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
    serving[1]["spec"]["ports"][0]["port"] = 0
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
    versions = json.loads(plane.cli("registry", "list", "mnist", "-o", "json").stdout)
    return [v["version"] for v in versions if label in v["labels"]]


def test_data_to_production_then_new_data_then_a_worse_model(plane: Plane, tmp_path: Path) -> None:
    pipeline = _example(tmp_path)
    images, labels = load_mnist_5k()
    run = ["pipeline", "run", "-f", str(pipeline)]

    # 1. From nothing: trained, evaluated, gated, published, released (created), production.
    _data(tmp_path, images[::4], labels[::4])  # 1,250 digits, then 2,500: lean, and v2 is better
    started = time.monotonic()
    first = plane.cli(*run, timeout=300)
    first_seconds = time.monotonic() - started
    print(f"first run {first_seconds:.1f} s")
    assert "run 1 succeeded" in first.stdout, first.stdout
    versions = json.loads(plane.cli("registry", "list", "mnist", "-o", "json").stdout)
    assert [(v["version"], v["labels"]) for v in versions] == [(1, ["candidate", "production"])]
    url = plane.service_url("mnist")
    samples = write_mnist_repository(tmp_path / "samples").parent / "samples"
    answer = requests.post(f"{url}/v1/models/mnist:predict", json=_request(samples, 3), timeout=10)
    assert answer.status_code == 200 and _served_versions(url) == {1}

    # 2. New data: a second run, killed during its release, resumed with --from release; under load.
    _data(tmp_path, images[::2], labels[::2])
    with Load(f"{url}/v1/models/mnist:predict", _request(samples, 7), threads=1,
              read=lambda a: a["predictions"][0]["classes"]) as load:  # fmt: skip
        load.wait_for(20)
        killed = subprocess.Popen([sys.executable, "-m", "modelport", *run], env=plane.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        store = RunStore.open(plane.home)
        try:
            waited = poll(lambda: store.runs("mnist", 1)[0].stage("release").status == "running", 120, 0.05)
            assert waited is None, f"run 2 never reached its release{waited}"
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.wait(10)
        assert store.run(2).status == "interrupted"
        print(f"second run killed at {time.monotonic() - started:.1f} s")
        resumed = plane.cli(*run, "--from", "release", timeout=300)
        print(f"resumed at {time.monotonic() - started:.1f} s")
        assert "run 3 succeeded" in resumed.stdout, resumed.stdout
        third = store.run(3)
        assert [(s.name, s.status) for s in third.stages] == [
            ("train", "skipped"), ("evaluate", "skipped"), ("gate", "skipped"), ("publish", "skipped"),
            ("release", "succeeded"), ("promote", "succeeded"),
        ]  # fmt: skip
        load.wait_for(len(load.outcomes) + 20)
    assert load.failures(good=lambda v: isinstance(v, int)) == []
    assert _served_versions(url) == {2}
    assert _labelled(plane, "production") == [2]

    # 3. A worse model (labels shuffled): refused by the gate with its numbers; production untouched.
    _data(tmp_path, images[::2], np.random.default_rng(0).permutation(labels[::2]))
    print(f"third run from {time.monotonic() - started:.1f} s")
    worse = plane.cli(*run, check=False, timeout=300)
    print(f"third run done at {time.monotonic() - started:.1f} s")
    assert worse.returncode == 1
    assert re.search(
        r"stage gate failed: refused by the gate: accuracy = 0\.\d+, the gate wants >= 0.8", worse.stderr
    )
    assert re.search(
        r"production \(version 2\) has 0\.[89]\d+: 0\.\d+ worse, more than the 0.02 allowed", worse.stderr
    )
    assert [
        v["version"] for v in json.loads(plane.cli("registry", "list", "mnist", "-o", "json").stdout)
    ] == [1, 2]
    assert (
        plane.get("Deployment", "mnist")["spec"]["template"]["spec"]["model"]["basePath"]
        == "registry://mnist@2"
    )
    assert _served_versions(url) == {2}
    history = json.loads(plane.cli("pipeline", "runs", "-o", "json").stdout)
    assert [r["status"] for r in history] == ["failed", "succeeded", "interrupted", "succeeded"]
    print(f"example pipeline from nothing to production: {first_seconds:.1f} s")
