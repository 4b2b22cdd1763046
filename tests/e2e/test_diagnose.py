"""`modelport diagnose` on real replicas: a model that fails to load and a healthy Deployment, each
named in words with its evidence (a crash loop, with the alert it fires: test_monitoring.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import requests
import yaml

from claims_support import spinning_onnx
from modelport.examples import write_mnist_repository
from support import Plane, deployment_yaml, fashion_instances, half_plus_two, mark_complete


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    root = tmp_path_factory.mktemp("diagnose")
    half_plus_two(root / "half" / "1")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not an ONNX model")
    for name in ("half", "broken"):
        mark_complete(root / name / "1")
    write_mnist_repository(root / "mnist")
    spinning_onnx(root / "spin" / "1" / "model.onnx")
    mark_complete(root / "spin" / "1")
    slow = yaml.safe_load(deployment_yaml("slow", root / "spin", replicas=1, model="spin", service_port=None))
    slow["spec"]["template"]["spec"]["resources"] = {"requests": {"cpu": "500m"}}
    docs = [
        deployment_yaml("fine", root / "half", replicas=1, service_port=None),
        deployment_yaml("broken", root / "broken", replicas=1, service_port=None),
        deployment_yaml("digits", root / "mnist", replicas=1, model="mnist"),
        yaml.safe_dump(slow),
    ]
    (root / "all.yaml").write_text("---\n".join(docs))
    plane = Plane(root / "home")
    try:
        plane.up()
        plane.cli("apply", "-f", str(root / "all.yaml"))
        plane.cli("rollout", "status", "deployment/fine")
        plane.cli("rollout", "status", "deployment/digits")
        plane.cli("rollout", "status", "deployment/slow")
        yield plane
    finally:
        plane.stop()


def _pod(plane: Plane, app: str) -> dict[str, object]:
    return next(p for p in plane.items("Pod") if p["metadata"]["labels"]["app"] == app)


def test_a_model_that_fails_to_load(plane: Plane) -> None:
    plane.wait(lambda: "Readiness probe failed" in str(_pod(plane, "broken")["status"]), 30, "a failed probe")
    said = plane.cli("diagnose", "deployment/broken").stdout
    cause = said.split("Likely cause:\n", 1)[1].splitlines()[0]
    assert cause.startswith("  model half version 1 fails to load: cannot load ONNX model"), said
    assert "Protobuf parsing failed" in cause
    assert "Deployment default/broken: 0/1 replicas ready" in said and "MinimumReplicasUnavailable" in said
    assert "Last log lines of failing replicas:" in said and "failed to load" in said


def test_a_healthy_deployment_and_bad_input(plane: Plane) -> None:
    said = plane.cli("diagnose", "deployment/fine").stdout
    assert "Diagnosis:\n  no problem found: 1/1 replicas ready" in said
    refused = plane.cli("diagnose", "pod/fine", check=False)
    assert refused.returncode == 1 and "diagnose takes deployment/NAME" in refused.stderr
    missing = plane.cli("diagnose", "deployment/nope", check=False)
    assert missing.returncode == 1 and 'deployments "nope" not found' in missing.stderr


def test_drift_from_clothes_sent_to_a_digit_model(plane: Plane) -> None:
    """500 Fashion-MNIST images to the MNIST model: the replica's drift goes over its threshold and
    diagnose names it with the figures."""
    url = plane.service_url("digits") + "/v1/models/mnist:predict"
    instances = fashion_instances(500)
    with requests.Session() as session:
        for start in range(0, len(instances), 50):
            assert session.post(url, json={"instances": instances[start : start + 50]}, timeout=30).ok

    def drifted() -> bool:
        findings = json.loads(plane.cli("diagnose", "deployment/digits", "-o", "json").stdout)["findings"]
        return any(" drift " in f["cause"] for f in findings)

    plane.wait(drifted, 30, "the drift to show")
    said = plane.cli("diagnose", "deployment/digits").stdout
    assert re.search(r"input drift 0\.\d\d > 0\.2 \(mnist v1\)", said), said
    assert "live traffic no longer looks like the data the version was evaluated on" in said


def test_p99_over_the_slo_with_the_cpu_and_no_autoscaler(plane: Plane) -> None:
    """A model that takes about a second an answer (a Loop of 300,000 steps): diagnose says the
    p99 is over the 0.25 s SLO, with the replica's CPU against its request and no HPA to add any."""
    pod = next(p for p in plane.items("Pod") if p["metadata"]["labels"]["app"] == "slow")
    url = f"http://127.0.0.1:{pod['status']['port']}/v1/models/spin:predict"

    def sampled() -> bool:
        items = plane.client().request("GET", "/api/top")["items"]
        return any(i["pod"] == pod["metadata"]["name"] for i in items)

    plane.wait(sampled, 30, "the control plane's first two samples")
    for _ in range(3):
        assert requests.post(url, json={"instances": [[300000.0]]}, timeout=60).ok

    def slow() -> bool:
        findings = json.loads(plane.cli("diagnose", "deployment/slow", "-o", "json").stdout)["findings"]
        return any("over the 0.25 s SLO" in f["cause"] for f in findings)

    plane.wait(slow, 30, "the p99 to show")
    said = plane.cli("diagnose", "deployment/slow").stdout
    assert re.search(
        r"p99 \d+\.\d\d s over the 0\.25 s SLO: CPU \d+% of its 500m request; no HPA: fixed at 1 replica",
        said,
    ), said
