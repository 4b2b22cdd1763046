"""`describe rollout` and `get rollout`: where a canary is (its steps, the current one marked, the
weight), each revision's replicas, why it was aborted, in words."""

from __future__ import annotations

import yaml

from modelport.cli.describers import Related, describe
from modelport.cli.printers import get_table
from modelport.spec import parse_object, to_dict

ROLLOUT = to_dict(
    parse_object(
        yaml.safe_load("""
apiVersion: modelport/v1
kind: Rollout
metadata: {name: web, uid: u1, creationTimestamp: "2026-12-07T10:00:00Z"}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {model: {name: mnist, basePath: /models/v2}}
  strategy:
    canary:
      steps: [{setWeight: 20}, {analysis: {templates: [{templateName: health}]}}, {pause: {}}]
""")
    )
)
ROLLOUT["status"] = {
    "phase": "Degraded", "currentStepIndex": 1, "steps": 3, "canaryWeight": 0, "readyReplicas": 3,
    "stableHash": "old", "canaryHash": "new", "analysis": {"run": "web-new-1", "phase": "Failed"},
    "message": 'RolloutAborted: Metric "class-distance" assessed Failed due to failed (1) > '
    "failureLimit (0); last values: 0.9",
}  # fmt: skip


def _rs(hash_: str, replicas: int, revision: int) -> dict[str, object]:
    return {
        "kind": "ReplicaSet", "spec": {"replicas": replicas}, "status": {"replicas": replicas},
        "metadata": {"name": f"web-{hash_}", "labels": {"pod-template-hash": hash_}, "uid": hash_,
                     "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                     "ownerReferences": [{"uid": "u1"}]},
    }  # fmt: skip


def test_describe_rollout_marks_the_step_and_says_why_it_was_aborted() -> None:
    related = Related(replica_sets=[_rs("old", 2, 1), _rs("new", 1, 2)])
    text = describe(ROLLOUT, related, 0.0)
    assert "Status:        Degraded" in text
    assert 'Metric "class-distance" assessed Failed' in text and "0.9" in text
    assert "Strategy:      Canary, weight 0%" in text
    assert "     0: setWeight 20\n  -> 1: analysis health\n     2: pause (until promoted)" in text
    assert "web-old (2/2 replicas created), revision 1, stable" in text
    assert "web-new (1/1 replicas created), revision 2, canary" in text
    assert "Analysis:      web-new-1 Failed" in text


def test_get_rollout_shows_status_step_weight_and_analysis() -> None:
    header, line = get_table("Rollout", [ROLLOUT], 0.0).splitlines()
    assert header.split() == ["NAME", "STATUS", "STEP", "WEIGHT", "READY", "ANALYSIS", "AGE"]
    assert line.split()[:7] == ["web", "Degraded", "1/3", "0%", "3/2", "web-new-1", "Failed"]


def test_describe_rollout_says_what_share_is_mirrored_and_which_routes_are_set() -> None:
    steps = [
        {"setMirror": {"percent": 50}},
        {"analysis": {"templates": [{"templateName": "agree"}]}},
        {"setHeaderRoute": {"name": "qa"}},
    ]
    mirroring = {
        **ROLLOUT,
        "spec": {**ROLLOUT["spec"], "strategy": {"canary": {"steps": steps}}},  # type: ignore[dict-item]
        "status": {
            **ROLLOUT["status"],
            "phase": "Progressing",
            "mirrorPercent": 50,  # type: ignore[dict-item]
            "headerRoutes": {"qa": [], "beta": []},
        },
    }
    text = describe(mirroring, Related(replica_sets=[_rs("old", 2, 1), _rs("new", 1, 2)]), 0.0)
    assert "Strategy:      Canary, weight 0%, 50% mirrored to it, header routes beta, qa" in text
    assert "     0: setMirror 50%\n  -> 1: analysis agree\n     2: setHeaderRoute qa (removed)" in text
