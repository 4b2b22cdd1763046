"""The control plane's /metrics on made-up objects: what the alert rules read (restarts, HPA
limits) labelled with the Deployment or Rollout that owns each replica."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelport.controlplane.state_metrics import render_state, state_registry

Obj = dict[str, Any]


class Objects:
    """The store's `list_kind`, over a dict of lists."""

    def __init__(self, **kinds: list[Obj]) -> None:
        self.kinds = kinds

    def list_kind(self, kind: str, namespace: str | None = None) -> tuple[list[Obj], int]:
        return self.kinds.get(kind, []), 1


def _meta(name: str, owner: tuple[str, str] | None = None) -> Obj:
    refs = [{"kind": owner[0], "name": owner[1]}] if owner else []
    return {"name": name, "namespace": "default", "ownerReferences": refs}


def _samples(store: Objects) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = render_state(state_registry(store)).decode()  # type: ignore[arg-type]
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((dict(s.labels), s.value))
    return found


def test_replicas_are_labelled_with_their_deployment_or_rollout() -> None:
    store = Objects(
        Deployment=[{"metadata": _meta("web"), "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}],
        Rollout=[{"metadata": _meta("mnist"), "spec": {"replicas": 3},
                  "status": {"readyReplicas": 3, "canaryWeight": 20}}],
        ReplicaSet=[{"metadata": _meta("web-1", ("Deployment", "web"))},
                    {"metadata": _meta("mnist-2", ("Rollout", "mnist"))}],
        Pod=[{"metadata": _meta("web-1-a", ("ReplicaSet", "web-1")), "status": {"restartCount": 4}},
             {"metadata": _meta("mnist-2-b", ("ReplicaSet", "mnist-2")), "status": {"ready": True}}],
        HorizontalPodAutoscaler=[{"metadata": _meta("web"), "spec": {"scaleTargetRef": {"name": "web"},
                                  "maxReplicas": 4}, "status": {"desiredReplicas": 4}}],
    )  # fmt: skip
    found = _samples(store)
    assert ({"namespace": "default", "pod": "web-1-a", "deployment": "web"}, 4.0) in found[
        "modelport_pod_restarts_total"
    ]
    assert ({"namespace": "default", "pod": "mnist-2-b", "deployment": "mnist"}, 1.0) in found[
        "modelport_pod_ready"
    ]
    assert sorted(v for _, v in found["modelport_deployment_spec_replicas"]) == [2.0, 3.0]
    assert found["modelport_rollout_canary_weight"] == [
        ({"namespace": "default", "deployment": "mnist"}, 20.0)
    ]
    labels = {"namespace": "default", "hpa": "web", "deployment": "web"}
    assert found["modelport_hpa_spec_max_replicas"] == [(labels, 4.0)]
    assert found["modelport_hpa_spec_min_replicas"] == [(labels, 1.0)]
    assert found["modelport_hpa_status_desired_replicas"] == [(labels, 4.0)]
