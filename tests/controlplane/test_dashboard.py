"""The dashboard's memory and pages on made-up objects and figures: bounded, forgetting deleted
Deployments, marking the HPA's decisions; quality charts only when the replicas export them."""

from __future__ import annotations

from typing import Any

from modelport.controlplane.dashboard import History
from modelport.controlplane.dashboard_page import Dashboard
from modelport.controlplane.metrics import Figures

Obj = dict[str, Any]
DEPLOYMENT = {"kind": "Deployment", "metadata": {"name": "mnist", "namespace": "default", "uid": "d"},
              "spec": {"replicas": 1, "template": {"spec": {"model": {"name": "mnist", "basePath": "/m"}}}},
              "status": {"readyReplicas": 1}}  # fmt: skip


class Figured:
    """A stand-in for the metrics collector: the same figures for any group of replicas."""

    def __init__(self, quality: dict[tuple[str, str, str, str], float] | None = None) -> None:
        self.quality = quality or {}

    def figures(self, names: list[str]) -> Figures:
        return Figures(10.0, 0.5, 0.004, 0.02, 0.3, {"mnist v1": 10.0}, self.quality)


def _hpa(desired: int) -> Obj:
    return {"metadata": {"name": "mnist", "namespace": "default"},
            "spec": {"scaleTargetRef": {"name": "mnist"}, "minReplicas": 1, "maxReplicas": 3},
            "status": {"desiredReplicas": desired}}  # fmt: skip


def test_history_is_bounded_and_forgets_deleted_deployments() -> None:
    history = History(points=5)
    for at in range(12):
        history.record(float(at), {"Deployment": [DEPLOYMENT]}, Figured())  # type: ignore[arg-type]
    points = history.points("default/mnist")
    assert len(points) == 5 and points[0].at == 7.0 and points[-1].figures is not None
    history.record(12.0, {"Deployment": []}, Figured())  # type: ignore[arg-type]
    assert history.points("default/mnist") == [] and history.keys() == []


def test_an_hpa_decision_is_marked_with_its_reason() -> None:
    history = History()
    event = {"involvedObject": {"name": "mnist"}, "reason": "SuccessfulRescale", "lastTimestamp": "t",
             "message": "New size: 3; reason: cpu resource utilization above target"}  # fmt: skip
    for at, desired in ((0, 0), (1, 1), (2, 1), (3, 3)):  # 0: the HPA has not decided yet
        objects = {"Deployment": [DEPLOYMENT], "HorizontalPodAutoscaler": [_hpa(desired)]}
        history.record(float(at), objects, Figured(), lambda: [event])  # type: ignore[arg-type]
    marks = history.marks("default/mnist")
    assert [(m.at, m.words) for m in marks] == [
        (3.0, "HPA mnist: 1 -> 3 (New size: 3; reason: cpu resource utilization above target)")
    ]
    page = Dashboard(lambda kind: {"Deployment": [DEPLOYMENT]}.get(kind, []), history, clock=lambda: 4.0)
    assert page.deployment("default", "mnist").count('class="mark"') == 1


def test_drift_and_accuracy_charts_appear_only_with_quality_metrics() -> None:
    quality = {("modelport_drift_score", "mnist", "1", "input"): 0.41,
               ("modelport_drift_threshold", "mnist", "1", "input"): 0.2,
               ("modelport_live_accuracy", "mnist", "1", ""): 0.9}  # fmt: skip
    for figures, charts in ((Figured(), set()), (Figured(quality), {"Drift", "Live accuracy"})):
        history = History()
        for at in range(3):
            history.record(float(at), {"Deployment": [DEPLOYMENT]}, figures)  # type: ignore[arg-type]
        page = Dashboard(lambda kind: {"Deployment": [DEPLOYMENT]}.get(kind, []), history, clock=lambda: 3.0)
        html = page.deployment("default", "mnist")
        assert {c for c in ("Drift", "Live accuracy") if f'aria-label="{c}"' in html} == charts
        version = page.version("default", "mnist", "1")
        assert (">mnist v1 input<" in version and ">mnist v1 live<" in version) == bool(charts)
        assert "No evaluation.json beside the version folder." in version


def test_a_rollout_has_its_page_with_its_canary_in_words() -> None:
    status = {"readyReplicas": 1, "stableHash": "aaa", "canaryHash": "bbb", "canaryWeight": 20}
    rollout = {**DEPLOYMENT, "kind": "Rollout", "status": status}
    objects = {"Rollout": [rollout]}
    history = History()
    history.record(0.0, objects, Figured())  # type: ignore[arg-type]
    page = Dashboard(lambda kind: objects.get(kind, []), history, clock=lambda: 1.0)
    assert "mnist</a> (Rollout)" in page.index()
    html = page.deployment("default", "mnist")
    assert "<h1>Rollout default/mnist</h1>" in html and "canary bbb at 20% of the requests" in html
