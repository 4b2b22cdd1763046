"""The canary's arithmetic and analysis judgement, pure: HAProxy weights that give the canary
exactly its share whatever the replica counts, canary replica counts, Argo's verdicts, no data
never read as a number, and counters read across replica restarts."""

from __future__ import annotations

import pytest

from modelport.controlplane.analysis import (
    Figures,
    assess,
    metric_phase,
    modelport_value,
    parse_figures,
    window,
)
from modelport.controlplane.rollouts import canary_replicas
from modelport.controlplane.services import canary_weights, pinned_revision
from modelport.spec import Service


def _pods(stable: int, canary: int, old: int = 0) -> tuple[dict[str, int], list[dict[str, object]]]:
    names = [("s", "stable")] * stable + [("c", "canary")] * canary + [("o", "old")] * old
    pods = [
        {"metadata": {"name": f"{n}{i}", "labels": {"pod-template-hash": h}}}
        for i, (n, h) in enumerate(names)
    ]
    return {p["metadata"]["name"]: 1000 + i for i, p in enumerate(pods)}, pods  # type: ignore[index]


@pytest.mark.parametrize(
    ("stable", "canary", "weight"), [(2, 1, 20), (4, 1, 5), (3, 2, 50), (10, 3, 33), (1, 1, 99)]
)
def test_weights_give_the_canary_exactly_its_share(stable: int, canary: int, weight: int) -> None:
    endpoints, pods = _pods(stable, canary, old=1)
    weights = canary_weights(endpoints, pods, "stable", "canary", weight)
    to_canary = sum(w for n, w in weights.items() if n.startswith("c"))
    assert to_canary / sum(weights.values()) == pytest.approx(weight / 100, abs=0.005)
    assert all(0 <= w <= 256 for w in weights.values())
    assert all(w == 0 for n, w in weights.items() if n.startswith("o"))  # an old revision: none


def test_weights_at_the_ends_and_with_no_canary_ready() -> None:
    endpoints, pods = _pods(2, 1)
    assert canary_weights(endpoints, pods, "stable", "canary", 0) == {"s0": 1, "s1": 1, "c2": 0}
    assert canary_weights(endpoints, pods, "stable", "canary", 100) == {"s0": 0, "s1": 0, "c2": 1}
    endpoints, pods = _pods(2, 0)
    assert canary_weights(endpoints, pods, "stable", "canary", 50) == {"s0": 1, "s1": 1}


def test_canary_replicas_round_up_and_never_pass_the_count() -> None:
    assert [canary_replicas(10, w) for w in (0, 1, 15, 50, 100)] == [0, 1, 2, 5, 10]
    assert canary_replicas(2, 20) == 1


def test_verdicts_as_argo_gives_them_and_no_data_is_never_a_number() -> None:
    assert assess(0.1, "result < 0.2", None) == "Successful"
    assert assess(0.3, "result < 0.2", None) == "Failed"
    assert assess(0.3, "result < 0.2", "result > 0.5") == "Inconclusive"  # neither met
    assert assess(0.6, None, "result > 0.5") == "Failed"
    assert assess(None, "result < 0.2", None) == "Inconclusive"
    assert assess(float("nan"), None, "result > 0.5") == "Inconclusive"  # NaN is not 0


def test_a_metric_fails_past_its_limit_and_is_never_successful_without_a_success() -> None:
    metric = {"name": "d", "count": 3, "failureLimit": 1, "inconclusiveLimit": 5, "consecutiveErrorLimit": 4}
    failed = {"count": 2, "failed": 2, "measurements": [{"value": 0.61}, {"value": 0.58}]}
    phase, why = metric_phase(metric, failed)
    assert phase == "Failed" and why.startswith(
        'Metric "d" assessed Failed due to failed (2) > failureLimit (1)'
    )
    assert "0.61, 0.58" in why
    assert metric_phase(metric, {"count": 3, "inconclusive": 3, "measurements": []})[0] == "Inconclusive"
    assert metric_phase(metric, {"count": 3, "successful": 2, "failed": 1})[0] == "Successful"
    assert metric_phase(metric, {"count": 2, "successful": 2})[0] is None  # still measuring


def test_windows_count_a_restarted_replica_from_zero_and_values_want_enough_samples() -> None:
    before = {
        "c1": ("canary", Figures(100, 0, classes={"1": 100})),
        "s1": ("stable", Figures(400, 0, classes={"1": 400})),
    }
    after = {
        "c1": ("canary", Figures(30, 3, classes={"7": 30})),  # restarted: counting from 0 again
        "s1": ("stable", Figures(500, 0, classes={"1": 500})),
    }
    canary, stable = window(before, after, "canary"), window(before, after, "stable")
    assert (canary.requests, canary.errors, stable.requests) == (30, 3, 100)
    assert modelport_value("errorRate", canary, stable, 10) == (0.1, "30 canary requests")
    assert modelport_value("classDistance", canary, stable, 10)[0] == 1.0
    value, why = modelport_value("errorRate", canary, stable, 50)
    assert value is None and "fewer than minSamples 50" in why


def test_live_accuracy_is_the_canarys_labelled_answers_right_in_the_window() -> None:
    """From the replicas' own /metrics: feedback rows and the right ones, over the interval."""
    text = (
        'modelport_feedback_total{model="m",version="2"} 130.0\n'
        'modelport_feedback_correct_total{model="m",version="2"} 117.0\n'
    )
    before = {"c1": ("canary", Figures(0, 0, labelled=100.0, correct=95.0))}
    canary = window(before, {"c1": ("canary", parse_figures(text))}, "canary")
    assert modelport_value("liveAccuracy", canary, Figures(), 20) == (
        pytest.approx(22 / 30),
        "30 canary answers labelled by feedback",
    )
    value, why = modelport_value("liveAccuracy", canary, Figures(), 31)
    assert value is None and "fewer than minSamples 31" in why


def test_agreement_is_the_share_of_copies_answered_alike_and_wants_enough_of_them() -> None:
    """Stable's replicas count the copies they sent (setMirror); dropped ones were never sent."""
    before = {"s1": ("stable", Figures(100, 0, mirrored={"agree": 10.0}))}
    after = {"s1": ("stable", Figures(200, 0, mirrored={"agree": 55.0, "disagree": 4.0, "error": 1.0,
                                                       "dropped": 30.0}))}  # fmt: skip
    stable = window(before, after, "stable")
    assert modelport_value("agreement", Figures(), stable, 20) == (
        0.9,
        "50 mirrored requests (4 disagreed, 1 failed)",
    )
    value, why = modelport_value("agreement", Figures(), stable, 51)
    assert value is None and "fewer than minSamples 51" in why


def test_a_blue_green_rollout_pins_its_active_and_preview_services_to_one_revision_each() -> None:
    def service(name: str) -> Service:
        spec = {"selector": {"app": "m"}, "ports": [{"port": 0}]}
        return Service.model_validate(
            {"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}
        )

    rollout = {
        "metadata": {"namespace": "default"},
        "spec": {"strategy": {"blueGreen": {"activeService": "m", "previewService": "m-preview"}}},
        "status": {"stableHash": "old", "canaryHash": "new"},
    }
    assert pinned_revision(service("m"), [rollout]) == "old"
    assert pinned_revision(service("m-preview"), [rollout]) == "new"
    assert pinned_revision(service("other"), [rollout]) is None
    rollout["status"] = {}  # no stable revision yet: the Services select as usual
    assert pinned_revision(service("m"), [rollout]) is None


def test_a_canarys_stable_and_canary_services_each_see_one_revision() -> None:
    def service(name: str) -> Service:
        spec = {"selector": {"app": "m"}, "ports": [{"port": 0}]}
        return Service.model_validate(
            {"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}
        )

    canary = {"steps": [], "stableService": "m-stable", "canaryService": "m-canary"}
    rollout = {
        "metadata": {"namespace": "default"},
        "spec": {"strategy": {"canary": canary}},
        "status": {"stableHash": "old", "canaryHash": "new"},
    }
    seen = {n: pinned_revision(service(n), [rollout]) for n in ("m", "m-stable", "m-canary")}
    assert seen == {"m": None, "m-stable": "old", "m-canary": "new"}  # m: shared by the weights
    rollout["status"] = {"stableHash": "old", "canaryHash": "new", "abort": True}
    assert pinned_revision(service("m-canary"), [rollout]) == "old"  # aborted: never empty
