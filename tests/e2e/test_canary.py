"""Progressive delivery as a team uses it: a Rollout of the MNIST model on a real control plane,
real replicas and a real HAProxy, with load running throughout. A good new version goes
20% -> analysis -> 50% -> analysis -> 100% and is promoted; a bad one (its labels shuffled:
healthy, fast, wrong) is aborted by the prediction-distribution analysis; one that never gets
ready never gets a request and is aborted at its progress deadline; a canary nobody calls ends
Inconclusive, never Successful. Clients see no failed request in any of them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import requests
import yaml

from canary_support import (
    CANARY,
    INTERVAL,
    INTERVAL_SECONDS,
    STABLE,
    UNSAFE,
    apply,
    blue_green_yaml,
    deployed,
    moved,
    rollout_yaml,
    served,
    status,
    traffic,
)
from support import Plane


def test_a_good_version_goes_20_50_100_with_exact_weights_and_no_failed_request(
    plane: Plane, models: dict[str, Path], digits: list[dict[str, Any]], tmp_path: Path
) -> None:
    analysis = {"analysis": {"templates": [{"templateName": "good-health"}]}}
    steps = [{"setWeight": 20}, {"pause": {}}, analysis, {"setWeight": 50}, analysis]
    url = deployed(plane, tmp_path, models, "good", steps)
    with traffic(url, digits) as load:
        moved(plane, tmp_path, "good", models["good"], steps)
        plane.wait(lambda: status(plane, "good")["phase"] == "Paused", 60, "the canary at 20%, paused")
        # The weights are set before the pause is reached; the next 2,000 answers show them.
        first = len(load.outcomes)
        plane.wait(lambda: len(load.outcomes) >= first + 2000, 120, "2,000 answers at 20%")
        answered = load.since(first)[:2000]
        share = answered.count(CANARY) / len(answered)
        print(f"canary share at setWeight 20 over {len(answered)} requests: {share:.3%}")
        assert abs(share - 0.20) <= 0.03, share
        got = plane.cli("get", "rollout", "good").stdout
        assert "Paused" in got and "20%" in got and "1/5" in got, got
        # The control plane dies mid-step: the step and the weights are in the store and HAProxy.
        pid = plane.pid
        os.kill(pid, signal.SIGKILL)
        plane.wait(
            lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", 10, "it to die"
        )
        plane.up(*UNSAFE)
        again = len(load.outcomes)
        plane.wait(lambda: len(load.outcomes) >= again + 250, 60, "250 answers after the restart")
        share = load.since(again)[:250].count(CANARY) / 250
        assert abs(share - 0.20) <= 0.03, share
        st = status(plane, "good")
        assert (st["phase"], st["currentStepIndex"], st["canaryWeight"]) == ("Paused", 1, 20)
        plane.cli("rollout", "promote", "rollout/good")
        began = time.monotonic()
        plane.cli("rollout", "status", "rollout/good", "--timeout", "120", timeout=150)
        print(f"20% -> analysis -> 50% -> analysis -> 100%: {time.monotonic() - began:.1f} s")
        tail = len(load.outcomes)
        plane.wait(lambda: len(load.outcomes) >= tail + 100, 30, "100 answers after promotion")
    assert load.failures(served) == [], load.failures(served)[:5]
    assert set(load.since(tail + 20)) == {CANARY}  # promoted: every answer from the new version
    runs = [r for r in plane.items("AnalysisRun") if r["metadata"]["labels"]["rollout"] == "good"]
    assert sorted(r["status"]["phase"] for r in runs) == ["Successful", "Successful"]
    described = plane.cli("describe", "analysisrun", runs[0]["metadata"]["name"]).stdout
    assert "class-distance: Successful" in described and "canary and" in described, described


# One Rollout of v1 for the next three tests, each moving its template to another model: the
# stable revision stays v1 throughout (a canary that is aborted is never promoted).
SHARED_STEPS = [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "shared-health"}]}}]


@pytest.fixture(scope="module")
def shared(plane: Plane, models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    return deployed(plane, tmp_path_factory.mktemp("shared"), models, "shared", SHARED_STEPS)


def test_a_bad_version_is_aborted_by_the_distribution_analysis_and_no_request_fails(
    plane: Plane, models: dict[str, Path], digits: list[dict[str, Any]], tmp_path: Path, shared: str
) -> None:
    with traffic(shared, digits) as load:
        moved(plane, tmp_path, "shared", models["bad"], SHARED_STEPS)
        plane.wait(lambda: status(plane, "shared").get("canaryWeight") == 20, 60, "the canary at 20%")
        weighted = time.monotonic()
        plane.wait(lambda: status(plane, "shared")["phase"] == "Degraded", 30, "the bad canary aborted")
        took = time.monotonic() - weighted
        print(f"bad canary aborted {took:.1f} s after its weight was set (analysis interval {INTERVAL})")
        aborted = len(load.outcomes)
        plane.wait(lambda: len(load.outcomes) >= aborted + 200, 30, "200 answers after the abort")
    st = status(plane, "shared")
    assert st["canaryWeight"] == 0 and st["stableHash"] != st["currentPodHash"]
    assert 'Metric "class-distance" assessed Failed' in st["message"], st["message"]
    assert took < 2 * INTERVAL_SECONDS + 3  # two analysis intervals, and a margin for the controllers' rounds
    assert load.failures(served) == [], load.failures(served)[:5]
    assert CANARY in load.since(0) and set(load.since(aborted + 20)) == {STABLE}
    done = plane.cli("rollout", "status", "rollout/shared", check=False)
    assert done.returncode == 1 and "aborted" in done.stderr, done
    watched = plane.cli("get", "rollout", "shared", "-w", "--watch-timeout", "0.5").stdout
    assert "Degraded" in watched and "0%" in watched, watched
    events = [e for e in plane.items("Event") if e["reason"] == "RolloutAborted"]
    assert any("class-distance" in e["message"] for e in events)

    def scaled_down() -> bool:
        pods = [p for p in plane.items("Pod") if p["metadata"]["labels"].get("app") == "shared"]
        hashes = [p["metadata"]["labels"]["pod-template-hash"] for p in pods]
        return hashes == [st["stableHash"]] * 2

    plane.wait(scaled_down, 30, "the aborted canary scaled down")


def test_a_canary_that_never_gets_ready_never_gets_a_request(
    plane: Plane, models: dict[str, Path], digits: list[dict[str, Any]], tmp_path: Path, shared: str
) -> None:
    with traffic(shared, digits) as load:
        moved(plane, tmp_path, "shared", models["missing"], SHARED_STEPS, deadline=6)
        plane.wait(
            lambda: "ProgressDeadlineExceeded" in status(plane, "shared")["message"], 60, "the deadline"
        )
    assert status(plane, "shared")["phase"] == "Degraded"
    assert load.failures(served) == [] and set(load.since(0)) == {STABLE}, load.failures(served)[:5]


def test_a_canary_with_no_traffic_is_inconclusive_never_successful(
    plane: Plane, models: dict[str, Path], tmp_path: Path, shared: str
) -> None:
    moved(plane, tmp_path, "shared", models["good"], SHARED_STEPS)

    def ended() -> bool:
        st = status(plane, "shared")
        return bool(st["phase"] == "Paused" and "inconclusive" in st["message"])

    plane.wait(ended, 60, "the analysis to end")
    canary = status(plane, "shared")["canaryHash"]
    run = next(r for r in plane.items("AnalysisRun") if r["metadata"]["labels"]["canary-hash"] == canary)
    assert run["status"]["phase"] == "Inconclusive"
    measured = [m for r in run["status"]["metricResults"] for m in r["measurements"]]
    assert measured and all(m["phase"] == "Inconclusive" and m["value"] is None for m in measured)
    assert "fewer than minSamples" in measured[0]["message"]
    # A person decides: abort takes the weight back and says why.
    plane.cli("rollout", "abort", "rollout/shared")
    plane.wait(lambda: "modelport rollout abort" in status(plane, "shared")["message"], 30, "the abort")
    assert status(plane, "shared")["phase"] == "Degraded"


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small scikit-learn classifier (pickled: the replicas run with --allow_pickle) as version 1,
    and the same one answering 80 ms late as version 2 of another repository."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    from modelport.testing.slow import Slowed

    root = tmp_path_factory.mktemp("iris")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(90, 4))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int))
    for folder, estimator in (("fast/1", model), ("slow/2", Slowed(model, 0.08))):
        (root / folder).mkdir(parents=True)
        joblib.dump(estimator, root / folder / "model.joblib")
    return {"fast": root / "fast", "slow": root / "slow"}


def test_a_slow_version_is_aborted_by_the_p99_analysis(
    plane: Plane, iris: dict[str, Path], tmp_path: Path
) -> None:
    steps = [{"setWeight": 25}, {"analysis": {"templates": [{"templateName": "slow-latency"}]}}]
    p99 = {"name": "p99", "interval": "2s", "count": 2, "successCondition": "result < 0.05",
           "provider": {"modelport": {"metric": "latencyP99", "minSamples": 5}}}  # fmt: skip
    latency = {"apiVersion": "modelport/v1", "kind": "AnalysisTemplate", "metadata": {"name": "slow-latency"},
               "spec": {"metrics": [p99]}}  # fmt: skip
    extra = "---\n" + yaml.safe_dump(latency)
    args = ("--allow_pickle",)
    apply(
        plane,
        tmp_path,
        rollout_yaml("slow", iris["fast"], steps, model="iris", args=args, replicas=1) + extra,
    )
    plane.cli("rollout", "status", "rollout/slow", "--timeout", "120", timeout=150)
    body = [{"instances": [[0.5, -0.2, 0.1, 0.3]]}]
    with traffic(plane.service_url("slow"), body, model="iris") as load:
        apply(
            plane,
            tmp_path,
            rollout_yaml("slow", iris["slow"], steps, model="iris", args=args, replicas=1) + extra,
        )
        plane.wait(lambda: status(plane, "slow")["phase"] == "Degraded", 60, "the slow canary aborted")
    message = status(plane, "slow")["message"]
    assert 'Metric "p99" assessed Failed' in message, message
    assert load.failures(served) == [], load.failures(served)[:5]
    assert CANARY in load.since(0)  # it was called, and found slow


def test_blue_green_previews_on_its_own_service_and_promotion_switches_with_no_failed_request(
    plane: Plane, models: dict[str, Path], digits: list[dict[str, Any]], tmp_path: Path
) -> None:
    apply(plane, tmp_path, blue_green_yaml(models["v1"]))
    plane.cli("rollout", "status", "rollout/bg", "--timeout", "120", timeout=150)
    with traffic(plane.service_url("bg"), digits) as load:
        apply(plane, tmp_path, blue_green_yaml(models["good"]))
        plane.wait(lambda: status(plane, "bg")["phase"] == "Paused", 60, "the preview ready, waiting")
        preview = plane.service_url("bg-preview") + "/v1/models/mnist:predict"
        answers = [requests.post(preview, json=digits[0], timeout=10) for _ in range(5)]
        assert [a.headers["X-Model-Version"] for a in answers] == [CANARY] * 5  # the new one, on its own
        assert set(load.since(0)) == {STABLE}  # while the active Service serves only the old one
        plane.cli("rollout", "promote", "rollout/bg")
        plane.cli("rollout", "status", "rollout/bg", "--timeout", "60")
        plane.wait(lambda: CANARY in load.since(0), 30, "the active Service to switch")
        switched = load.since(0).index(CANARY)
        plane.wait(lambda: len(load.outcomes) >= switched + 200, 30, "200 answers after the switch")
    answered = load.since(0)
    assert load.failures(served) == [], load.failures(served)[:5]
    late = [i - switched for i, version in enumerate(answered) if i > switched and version == STABLE]
    assert set(answered[:switched]) == {STABLE} and set(answered[switched + 10 :]) == {CANARY}, (
        f"the old version answered {len(late)} times after the new one's first, at {late[:20]}"
    )

    def old_scaled_down() -> bool:
        pods = [p for p in plane.items("Pod") if p["metadata"]["labels"].get("app") == "bg"]
        return [p["metadata"]["labels"]["pod-template-hash"] for p in pods] == [
            status(plane, "bg")["stableHash"]
        ]

    plane.wait(old_scaled_down, 30, "the old revision scaled down after scaleDownDelaySeconds")
