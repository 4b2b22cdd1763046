"""Progressive delivery beyond weights, on a real control plane, real replicas and HAProxy, with
load running throughout: a shadow (setMirror) canary with shuffled labels is aborted by its
agreement with stable while every client answer comes from stable; requests carrying a header
route's headers all reach the canary and no other does (canaryService and stableService each see
one revision); a blue-green preview that fails its pre-promotion analysis is never switched to.
No client request fails in any of them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests
import yaml

from canary_support import (
    CANARY,
    INTERVAL,
    INTERVAL_SECONDS,
    STABLE,
    apply,
    blue_green_yaml,
    rollout_yaml,
    served,
    status,
    traffic,
)
from support import Load, Plane


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
