"""What `rollout status` says of a Deployment or a Rollout as the API answers it: a message and a
verdict. Pure, and light (plain dicts, nothing imported): the CLI's everyday commands load it."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def rollout_state(d: Obj) -> tuple[str, bool | None]:
    """kubectl's `rollout status` message and verdict for a Deployment as the API answers it: True
    done, False failed (past its progress deadline), None not yet."""
    name, spec, st = d["metadata"]["name"], d["spec"], d.get("status", {})
    if st.get("observedGeneration", 0) < d["metadata"]["generation"]:
        return "Waiting for deployment spec update to be observed...", None
    progressing = next((c for c in st.get("conditions", []) if c["type"] == "Progressing"), None)
    if progressing is not None and progressing["reason"] == "ProgressDeadlineExceeded":
        return f'deployment "{name}" exceeded its progress deadline', False
    desired, updated = spec["replicas"], st.get("updatedReplicas", 0)
    if updated < desired:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of {desired} new replicas '
            "have been updated..."
        ), None
    if st.get("replicas", 0) > updated:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {st["replicas"] - updated} old replicas '
            "are pending termination..."
        ), None
    if st.get("availableReplicas", 0) < updated:
        return (
            f'Waiting for deployment "{name}" rollout to finish: '
            f"{st.get('availableReplicas', 0)} of {updated} "
            "updated replicas are available..."
        ), None
    return f'deployment "{name}" successfully rolled out', True


def canary_state(r: Obj) -> tuple[str, bool | None]:
    """A Rollout's status message and verdict: True promoted and healthy, False aborted, None not yet."""
    name, st = r["metadata"]["name"], r.get("status", {})
    if st.get("observedGeneration", 0) < r["metadata"]["generation"]:
        return "Waiting for rollout spec update to be observed...", None
    phase, message = st.get("phase", "Progressing"), st.get("message", "")
    step, weight = f"step {st.get('currentStepIndex', 0)}/{st.get('steps', 0)}", st.get("canaryWeight", 0)
    if phase == "Degraded":
        return f'rollout "{name}" aborted: {message}', False
    if phase == "Healthy" and st.get("stableHash") == st.get("currentPodHash"):
        return f'rollout "{name}" successfully rolled out', True
    return f'Waiting for rollout "{name}": {phase}, {step}, canary weight {weight}%: {message}', None
