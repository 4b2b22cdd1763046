"""Our Rollout and AnalysisTemplate as Argo Rollouts' (`argoproj.io/v1alpha1`), the modelport
provider turned into Prometheus queries on the metrics the replicas export. Pure: objects in,
dicts and notes out.

Each analysis a Rollout runs is passed the pod-template hashes (`canary-hash`, `stable-hash`) and
the Rollout's name (`rollout`); Argo names a revision's Pods `<rollout>-<hash>-<suffix>`, so a
query selects a revision by `pod=~` (Prometheus' Kubernetes discovery labels targets with `pod`
when relabelled as usual).
"""

from __future__ import annotations

from typing import Any

from modelport.errors import Code, ModelportError
from modelport.kube.mapping import render_deployment, render_metadata
from modelport.kube.notes import Note
from modelport.kube.pods import PodOptions
from modelport.spec import AnalysisMetric, AnalysisTemplate, Deployment, Rollout, seconds, to_dict

API = "argoproj.io/v1alpha1"
ARGS = [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
        {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}}]  # fmt: skip
ARG_NAMES = ("canary-hash", "stable-hash", "rollout")
# Our {{args.x}} in a Prometheus query, as Argo names the same argument.
_ARG_NAMES = {"canaryHash": "canary-hash", "stableHash": "stable-hash", "rollout": "rollout"}


def as_deployment(rollout: Rollout) -> Deployment:
    """The Deployment a Rollout would be without its strategy: what the Pod template renders from."""
    raw = to_dict(rollout)
    spec = {k: v for k, v in raw["spec"].items() if k != "strategy"}
    return Deployment.model_validate({**raw, "kind": "Deployment", "spec": spec, "status": {}})


def _analysis(refs: Any, rollout: str) -> dict[str, Any]:
    templates = [{"templateName": t.template_name} for t in refs.templates]
    return {"templates": templates, "args": [*ARGS, {"name": "rollout", "value": rollout}]}


def render_rollout(
    rollout: Rollout, options: PodOptions, upstream: str | None, config_sha: str | None, notes: list[Note]
) -> dict[str, Any]:
    name = rollout.metadata.name
    where = f"Rollout/{name}"
    spec = render_deployment(as_deployment(rollout), options, upstream, config_sha, notes)["spec"]
    del spec["strategy"]
    strategy: dict[str, Any] = {}
    canary, bg = rollout.spec.strategy.canary, rollout.spec.strategy.blue_green
    if canary is not None:
        steps: list[dict[str, Any]] = []
        for i, step in enumerate(canary.steps):
            if step.set_mirror is not None:
                # Argo mirrors only through a traffic router (setMirrorRoute needs Istio and
                # trafficRouting.managedRoutes), and compares nothing: no faithful rendering.
                raise ModelportError(Code.INVALID_ARGUMENT, (
                    f"{where}: spec.strategy.canary.steps[{i}].setMirror cannot be rendered: Argo "
                    "Rollouts mirrors only through a traffic router (setMirrorRoute with Istio and "
                    "trafficRouting.managedRoutes) and does not compare the answers; remove the step "
                    "to render, or mirror on modelport"
                ))  # fmt: skip
            if step.set_header_route is not None:
                # Argo's setHeaderRoute needs a traffic router (Istio, or a plugin) and the route
                # listed in trafficRouting.managedRoutes; render writes no traffic router.
                raise ModelportError(Code.INVALID_ARGUMENT, (
                    f"{where}: spec.strategy.canary.steps[{i}].setHeaderRoute cannot be rendered: "
                    "Argo Rollouts routes by header only through a traffic router (Istio or a "
                    "plugin, with the route in trafficRouting.managedRoutes), which render does not "
                    "write; remove the step to render"
                ))  # fmt: skip
            if step.set_weight is not None:
                steps.append({"setWeight": step.set_weight})
            elif step.pause is not None:
                steps.append(
                    {"pause": {} if step.pause.duration is None else {"duration": str(step.pause.duration)}}
                )
            elif step.analysis is not None:
                steps.append({"analysis": _analysis(step.analysis, name)})
        strategy["canary"] = {
            "steps": steps,
            "abortScaleDownDelaySeconds": canary.abort_scale_down_delay_seconds,
        }
        if canary.analysis is not None:
            strategy["canary"]["analysis"] = _analysis(canary.analysis, name)
        for field, service in (
            ("canaryService", canary.canary_service),
            ("stableService", canary.stable_service),
        ):
            if service is not None:  # Argo sets these Services' selectors to one revision, as here
                strategy["canary"][field] = service
        for field, limit in (("maxSurge", canary.max_surge), ("maxUnavailable", canary.max_unavailable)):
            if limit is not None:
                strategy["canary"][field] = limit
                why = ("Argo without a traffic router applies it at every step (stable scaled down as "
                       "the canary's replicas come up); modelport only at promotion")  # fmt: skip
                notes.append(Note(where, f"spec.strategy.canary.{field}", why))
        why = (
            "Argo without a traffic router approximates a weight by replica counts (10 replicas at 15%: "
            "2 canary); for exact weights add spec.strategy.canary.trafficRouting (nginx, istio, ...) "
            "with canaryService and stableService"
        )
        notes.append(Note(where, "spec.strategy.canary.steps[].setWeight", why))
    elif bg is not None:
        green: dict[str, Any] = {
            "activeService": bg.active_service, "autoPromotionEnabled": bg.auto_promotion_enabled,
            "scaleDownDelaySeconds": bg.scale_down_delay_seconds,
        }  # fmt: skip
        if bg.preview_service is not None:
            green["previewService"] = bg.preview_service
        if bg.auto_promotion_seconds is not None:
            green["autoPromotionSeconds"] = bg.auto_promotion_seconds
        if bg.pre_promotion_analysis is not None:
            green["prePromotionAnalysis"] = _analysis(bg.pre_promotion_analysis, name)
        if bg.post_promotion_analysis is not None:
            green["postPromotionAnalysis"] = _analysis(bg.post_promotion_analysis, name)
        strategy["blueGreen"] = green
    spec["strategy"] = strategy
    meta = render_metadata(rollout.metadata, "Rollout", notes)
    return {"apiVersion": API, "kind": "Rollout", "metadata": meta, "spec": spec}


def _window(metric: AnalysisMetric) -> str:
    """The range of a rate: the metric's interval, at least a minute (two scrapes at Prometheus'
    default 30 s)."""
    interval = seconds(metric.interval) if metric.interval is not None else 60.0
    return f"{max(60, int(interval))}s"


def modelport_query(name: str, window: str) -> str:
    """The PromQL of one of modelport's own figures, canary against stable, over `window`."""
    canary = 'pod=~"{{args.rollout}}-{{args.canary-hash}}-.*"'
    stable = 'pod=~"{{args.rollout}}-{{args.stable-hash}}-.*"'
    if name == "errorRate":
        return (f'scalar(sum(rate(modelport_requests_total{{{canary},status=~"5.."}}[{window}])) '
                f"/ sum(rate(modelport_requests_total{{{canary}}}[{window}])))")  # fmt: skip
    if name in ("latencyP50", "latencyP99"):
        q = 0.5 if name == "latencyP50" else 0.99
        return (f"scalar(histogram_quantile({q}, sum by (le) "
                f"(rate(modelport_request_duration_seconds_bucket{{{canary}}}[{window}]))))")  # fmt: skip
    if name == "liveAccuracy":
        return (f"scalar(sum(increase(modelport_feedback_correct_total{{{canary}}}[{window}])) "
                f"/ sum(increase(modelport_feedback_total{{{canary}}}[{window}])))")  # fmt: skip
    if name == "agreement":  # stable's replicas count the copies they sent the canary
        mirrored = f"modelport_mirror_requests_total{{{stable}"
        return (f'scalar(sum(increase({mirrored},outcome="agree"}}[{window}])) '
                f'/ sum(increase({mirrored},outcome=~"agree|disagree|error"}}[{window}])))')  # fmt: skip
    shares = {
        side: f"(sum by (class) (increase(modelport_predictions_total{{{sel}}}[{window}])) "
        f"/ scalar(sum(increase(modelport_predictions_total{{{sel}}}[{window}]))))"
        for side, sel in (("c", canary), ("s", stable))
    }
    return f"scalar(0.5 * sum(abs(({shares['c']} - {shares['s']}) or {shares['c']} or (-1 * {shares['s']}))))"


def render_analysis_template(template: AnalysisTemplate, notes: list[Note]) -> dict[str, Any]:
    where = f"AnalysisTemplate/{template.metadata.name}"
    metrics = []
    for i, metric in enumerate(template.spec.metrics):
        out: dict[str, Any] = {"name": metric.name}
        for field, value in (("interval", metric.interval), ("initialDelay", metric.initial_delay)):
            if value is not None:
                out[field] = value if isinstance(value, str) else f"{value:g}s"
        if metric.count is not None:
            out["count"] = metric.count
        # No value is never a pass here either: Argo reads an empty answer as NaN.
        for field, text in (("successCondition", metric.success_condition),
                            ("failureCondition", metric.failure_condition)):  # fmt: skip
            if text is not None:
                out[field] = f"!isNaN(result) && ({text})" if field == "successCondition" else text
        out.update(failureLimit=metric.failure_limit, inconclusiveLimit=metric.inconclusive_limit,
                   consecutiveErrorLimit=metric.consecutive_error_limit)  # fmt: skip
        prom = metric.provider.prometheus
        if prom is not None:
            query = prom.query
            for ours, theirs in _ARG_NAMES.items():
                query = query.replace(f"{{{{args.{ours}}}}}", f"{{{{args.{theirs}}}}}")
            address = prom.address or "http://prometheus:9090"
        else:
            assert metric.provider.modelport is not None  # validation: one provider
            own = metric.provider.modelport
            query = modelport_query(own.metric, _window(metric))
            address = "http://prometheus:9090"
            why = (
                "not carried: Argo has no sample count; a window with no request is NaN "
                "(never a pass: the successCondition checks isNaN)"
            )
            notes.append(Note(where, f"spec.metrics[{i}].provider.modelport.minSamples", why))
        out["provider"] = {"prometheus": {"address": address, "query": query}}
        metrics.append(out)
    return {
        "apiVersion": API, "kind": "AnalysisTemplate",
        "metadata": render_metadata(template.metadata, "AnalysisTemplate", notes),
        "spec": {"args": [{"name": a} for a in ARG_NAMES], "metrics": metrics},
    }  # fmt: skip
