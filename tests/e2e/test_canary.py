"""Progressive delivery as a team uses it: a Rollout of the MNIST model on a real control plane,
real replicas and a real HAProxy, with load running throughout. A good new version goes
20% -> analysis -> 50% -> analysis -> 100% and is promoted; a bad one (its labels shuffled:
healthy, fast, wrong) is aborted by the prediction-distribution analysis; one that never gets
ready never gets a request and is aborted at its progress deadline; a canary nobody calls ends
Inconclusive, never Successful. Clients see no failed request in any of them."""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import psutil
import pytest
import requests
import yaml
from onnx import numpy_helper

from support import PATIENCE, Load, Plane

# The slow version is a pickled estimator, served with --allow_pickle, which the control plane
# takes only when told to.
UNSAFE = ("--allow-unsafe-args",)
STABLE, CANARY = "1", "2"  # the model versions: their answers' X-Model-Version
# Each analysis measurement's window: long enough for 20 canary answers at 20% even when the
# machine is busy (the load's threads then answer fewer than 50 a second); one window short of
# them is let go (inconclusiveLimit 1), two are Inconclusive.
INTERVAL, INTERVAL_SECONDS = "3s", 3
# The load's digits, skewed as real traffic is (a uniform mix hides a permutation of the classes).
MIX = [0] * 5 + [1] * 3 + [2] * 2


def _mnist_version(root: Path, change: Any) -> Path:
    """The MNIST example as version 2 of a repository of its own, its last layer changed by `change`."""
    from importlib.resources import files

    from modelport.repository.layout import write_version

    source = files("modelport.examples") / "mnist"
    model = onnx.load_from_string((source / "model.onnx").read_bytes())
    for tensor in model.graph.initializer:
        if tensor.name in ("W2", "B2"):
            changed = change(numpy_helper.to_array(tensor)).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(changed, tensor.name))

    def fill(folder: Path) -> None:
        (folder / "model.yaml").write_bytes((source / "model.yaml").read_bytes())
        (folder / "model.onnx").write_bytes(model.SerializeToString())

    write_version(root / "2", fill)
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from modelport.examples import write_mnist_repository

    root = tmp_path_factory.mktemp("models")
    write_mnist_repository(root / "v1")
    rng = np.random.default_rng(7)
    return {
        "v1": root / "v1",
        # A little further trained, as it were: the same weights moved slightly.
        "good": _mnist_version(root / "good", lambda w: w + rng.normal(0, 0.002, w.shape)),
        # Labels shuffled: every class answered as another one (healthy, fast, wrong).
        "bad": _mnist_version(root / "bad", lambda w: np.roll(w, 5, axis=-1)),
        "missing": root / "does-not-exist",
    }


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    plane = Plane(tmp_path_factory.mktemp("home"))
    plane.up(*UNSAFE)
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def digits() -> list[dict[str, Any]]:
    from importlib.resources import files

    samples = files("modelport.examples") / "mnist" / "samples"
    pngs = {d: (samples / f"digit-{d}.png").read_bytes() for d in set(MIX)}
    return [{"instances": [{"image_bytes": {"b64": base64.b64encode(pngs[d]).decode()}}]} for d in MIX]


def traffic(url: str, bodies: list[dict[str, Any]], model: str = "mnist") -> Load:
    """Requests from three threads through the Service, each outcome kept: the answering model
    version (its X-Model-Version), or what went wrong."""
    return Load(f"{url}/v1/models/{model}:predict", threads=3, bodies=bodies, header="X-Model-Version")


def served(outcome: str) -> bool:
    return outcome in (STABLE, CANARY)


def rollout_yaml(
    name: str,
    base: Path,
    steps: list[Any],
    deadline: int = int(20 * PATIENCE),  # a busy machine starts a replica slowly
    model: str = "mnist",
    args: tuple[str, ...] = (),
    replicas: int = 2,
    services: dict[str, str] | None = None,  # canaryService / stableService: their names
) -> str:
    docs = [
        {"apiVersion": "modelport/v1", "kind": "Rollout", "metadata": {"name": name},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "progressDeadlineSeconds": deadline,
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"model": {"name": model, "basePath": str(base)}, "args": list(args)}},
                  "strategy": {"canary": {"steps": steps, "abortScaleDownDelaySeconds": 2,
                                          **(services or {})}}}},
        {"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": {"app": name}, "ports": [{"port": 0}]}},
        {"apiVersion": "modelport/v1", "kind": "AnalysisTemplate", "metadata": {"name": f"{name}-health"},
         "spec": {"metrics": [
             {"name": "class-distance", "interval": INTERVAL, "count": 2, "failureLimit": 0,
              "inconclusiveLimit": 1, "successCondition": "result < 0.35",
              "provider": {"modelport": {"metric": "classDistance", "minSamples": 20}}},
             {"name": "error-rate", "interval": INTERVAL, "count": 2, "inconclusiveLimit": 1,
              "successCondition": "result <= 0.01",
              "provider": {"modelport": {"metric": "errorRate", "minSamples": 10}}},
         ]}},
        *({"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": other},
           "spec": {"selector": {"app": name}, "ports": [{"port": 0}]}}
          for other in (services or {}).values()),
    ]  # fmt: skip
    return yaml.safe_dump_all(docs, sort_keys=False)


def apply(plane: Plane, tmp: Path, text: str) -> None:
    path = tmp / f"objects-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    plane.cli("apply", "-f", str(path))


def status(plane: Plane, name: str) -> dict[str, Any]:
    return dict(plane.get("Rollout", name).get("status", {}))


def deployed(plane: Plane, tmp: Path, models: dict[str, Path], name: str, steps: list[Any]) -> str:
    """A Rollout of v1 and its Service, rolled out: the URL."""
    apply(plane, tmp, rollout_yaml(name, models["v1"], steps))
    plane.cli("rollout", "status", f"rollout/{name}", "--timeout", "120", timeout=150)
    return plane.service_url(name)


def moved(
    plane: Plane, tmp: Path, name: str, base: Path, steps: list[Any], deadline: int = int(20 * PATIENCE)
) -> None:
    """The Rollout's template moved to another model: a canary starts."""
    apply(plane, tmp, rollout_yaml(name, base, steps, deadline))


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


def blue_green_yaml(base: Path, name: str = "bg", **strategy: Any) -> str:
    docs = [
        {"apiVersion": "modelport/v1", "kind": "Rollout", "metadata": {"name": name},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                  "progressDeadlineSeconds": int(20 * PATIENCE),
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"model": {"name": "mnist", "basePath": str(base)}}},
                  "strategy": {"blueGreen": {"activeService": name, "previewService": f"{name}-preview",
                                             "autoPromotionEnabled": False, "scaleDownDelaySeconds": 2,
                                             **strategy}}}},
        *({"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": service},
           "spec": {"selector": {"app": name}, "ports": [{"port": 0}]}}
          for service in (name, f"{name}-preview")),
    ]  # fmt: skip
    return yaml.safe_dump_all(docs, sort_keys=False)


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
    assert set(answered[:switched]) == {STABLE} and set(answered[switched + 10 :]) == {CANARY}

    def old_scaled_down() -> bool:
        pods = [p for p in plane.items("Pod") if p["metadata"]["labels"].get("app") == "bg"]
        return [p["metadata"]["labels"]["pod-template-hash"] for p in pods] == [
            status(plane, "bg")["stableHash"]
        ]

    plane.wait(old_scaled_down, 30, "the old revision scaled down after scaleDownDelaySeconds")


def test_a_bad_version_under_mirror_is_aborted_by_agreement_while_every_answer_comes_from_stable(
    plane: Plane, models: dict[str, Path], digits: list[dict[str, Any]], tmp_path: Path
) -> None:
    steps = [{"setMirror": {"percent": 50}}, {"analysis": {"templates": [{"templateName": "shadow-agree"}]}}]
    agreement = {"name": "agreement", "interval": INTERVAL, "count": 2, "inconclusiveLimit": 1,
                 "successCondition": "result >= 0.95",
                 "provider": {"modelport": {"metric": "agreement", "minSamples": 20}}}  # fmt: skip
    template = {"apiVersion": "modelport/v1", "kind": "AnalysisTemplate",
                "metadata": {"name": "shadow-agree"}, "spec": {"metrics": [agreement]}}  # fmt: skip
    extra = "---\n" + yaml.safe_dump(template)
    apply(plane, tmp_path, rollout_yaml("shadow", models["v1"], steps, replicas=1) + extra)
    plane.cli("rollout", "status", "rollout/shadow", "--timeout", "120", timeout=150)
    with traffic(plane.service_url("shadow"), digits) as load:
        apply(plane, tmp_path, rollout_yaml("shadow", models["bad"], steps, replicas=1) + extra)
        plane.wait(lambda: status(plane, "shadow").get("mirrorPercent") == 50, 60, "the mirror at 50%")
        mirrored = time.monotonic()
        plane.wait(lambda: status(plane, "shadow")["phase"] == "Degraded", 30, "the bad canary aborted")
        took = time.monotonic() - mirrored
        aborted = len(load.outcomes)
        plane.wait(lambda: len(load.outcomes) >= aborted + 100, 30, "100 answers after the abort")
    st = status(plane, "shadow")
    assert 'Metric "agreement" assessed Failed' in st["message"], st["message"]
    assert "mirrorPercent" not in st and st["canaryWeight"] == 0
    run = next(
        r for r in plane.items("AnalysisRun") if r["metadata"]["labels"]["canary-hash"] == st["canaryHash"]
    )
    measured = [m for r in run["status"]["metricResults"] for m in r["measurements"]]
    values = [m["value"] for m in measured]
    print(
        f"bad canary under setMirror 50: agreement {values}, aborted {took:.1f} s after the mirror began; "
        f"{measured[-1]['message']}; "
        f"{len(load.outcomes)} client answers"
    )
    assert values and values[-1] < 0.5, values
    said = measured[-1]["message"]  # "N mirrored requests (D disagreed, E failed)": wrong, not down
    assert int(said.split()[0]) >= 20 and int(said.split("(")[1].split()[0]) >= 15, said
    # Every client answer came from stable, none failed: the canary's answers went nowhere.
    assert load.failures(served) == [], load.failures(served)[:5]
    assert set(load.since(0)) == {STABLE}, set(load.since(0))
    assert took < 2 * INTERVAL_SECONDS + 5


def test_requests_with_the_header_of_a_header_route_all_reach_the_canary_and_no_other_does(
    plane: Plane, models: dict[str, Path], digits: list[dict[str, Any]], tmp_path: Path
) -> None:
    tester = [{"headerName": "X-Tester", "headerValue": {"exact": "qa 1"}}]
    steps = [{"setWeight": 0}, {"setHeaderRoute": {"name": "testers", "match": tester}}, {"pause": {}}]
    services = {"canaryService": "routed-canary", "stableService": "routed-stable"}
    apply(plane, tmp_path, rollout_yaml("routed", models["v1"], steps, replicas=1, services=services))
    plane.cli("rollout", "status", "rollout/routed", "--timeout", "120", timeout=150)
    url = f"{plane.service_url('routed')}/v1/models/mnist:predict"
    apply(plane, tmp_path, rollout_yaml("routed", models["good"], steps, replicas=1, services=services))
    plane.wait(lambda: status(plane, "routed")["phase"] == "Paused", 60, "the header route set")

    def routed() -> bool:  # the canary's server is up in HAProxy's canary backend
        answer = requests.post(url, json=digits[0], headers={"X-Tester": "qa 1"}, timeout=10)
        return answer.headers.get("X-Model-Version") == CANARY

    plane.wait(routed, 30, "a request with the header to reach the canary")
    flagged = Load(url, threads=2, bodies=digits, header="X-Model-Version", send={"x-tester": "qa 1"})
    others = Load(url, threads=2, bodies=digits, header="X-Model-Version", send={"X-Tester": "qa 12"})
    with flagged, others:
        plane.wait(lambda: min(len(flagged.outcomes), len(others.outcomes)) >= 200, 60, "200 answers each")
    print(
        f"header route at setWeight 0: {flagged.values().count(CANARY)}/{len(flagged.outcomes)} with the "
        f"header from the canary, {others.values().count(STABLE)}/{len(others.outcomes)} without from stable"
    )
    assert set(flagged.values()) == {CANARY} and set(others.values()) == {STABLE}

    # canaryService and stableService each see one revision, whatever the weights.
    def versions(service: str) -> set[str | None]:
        direct = f"{plane.service_url(service)}/v1/models/mnist:predict"
        return {
            requests.post(direct, json=digits[0], timeout=10).headers.get("X-Model-Version")
            for _ in range(10)
        }

    assert (versions("routed-canary"), versions("routed-stable")) == ({CANARY}, {STABLE})
    plane.cli("rollout", "abort", "rollout/routed")
    plane.wait(lambda: not routed(), 30, "the header route gone with the abort")
    plane.wait(lambda: versions("routed-canary") == {STABLE}, 30, "canaryService on stable after the abort")
    assert "headerRoutes" not in status(plane, "routed")


def test_a_bad_preview_fails_its_pre_promotion_analysis_and_the_active_service_never_switches(
    plane: Plane, models: dict[str, Path], digits: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Blue-green's prePromotionAnalysis judges the preview (on its own Service's traffic) against
    the active revision before any switch; auto-promotion would switch at once if it passed."""
    distance = {"name": "class-distance", "interval": INTERVAL, "count": 2, "inconclusiveLimit": 1,
                "successCondition": "result < 0.35",
                "provider": {"modelport": {"metric": "classDistance", "minSamples": 20}}}  # fmt: skip
    template = {"apiVersion": "modelport/v1", "kind": "AnalysisTemplate",
                "metadata": {"name": "bgpre-health"}, "spec": {"metrics": [distance]}}  # fmt: skip
    gate = {"prePromotionAnalysis": {"templates": [{"templateName": "bgpre-health"}]},
            "autoPromotionEnabled": True}  # fmt: skip
    extra = "---\n" + yaml.safe_dump(template)
    apply(plane, tmp_path, blue_green_yaml(models["v1"], "bgpre", **gate) + extra)
    plane.cli("rollout", "status", "rollout/bgpre", "--timeout", "120", timeout=150)
    with (
        traffic(plane.service_url("bgpre"), digits) as active,
        traffic(plane.service_url("bgpre-preview"), digits),
    ):
        apply(plane, tmp_path, blue_green_yaml(models["bad"], "bgpre", **gate) + extra)
        plane.wait(
            lambda: status(plane, "bgpre")["phase"] == "Degraded", 90, "the preview's analysis to fail"
        )
        aborted = len(active.outcomes)
        plane.wait(lambda: len(active.outcomes) >= aborted + 50, 30, "50 answers after the abort")
    message = status(plane, "bgpre")["message"]
    assert "RolloutAborted" in message and 'Metric "class-distance" assessed Failed' in message, message
    assert active.failures(served) == [] and set(active.values()) == {STABLE}, active.failures(served)[:5]
