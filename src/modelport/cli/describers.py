"""kubectl describe's text, pure: an object and what the command fetched beside it (`Related`:
the namespace's ReplicaSets, Pods and Events) in, text out. Which of those belong to the object
(owner references, the Service's selector, the events about it) is decided here.

    Name:                   mnist
    Namespace:              default
    ...
    Events:
      TYPE     REASON              AGE   OBJECT             MESSAGE
      Normal   ScalingReplicaSet   2m    deployment/mnist   Scaled up replica set mnist-7c9f to 2
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from modelport.cli.printers import Obj, age, dump, headers, hpa_targets, indented, row, selector, table
from modelport.controlplane.meta import owned_by, revision, workload

EVENTS_SHOWN = 25  # the latest ones only, so a long-lived object's description stays about a screen


@dataclass(frozen=True)
class Related:
    """What a describe shows beside the object: its namespace's objects of these kinds."""

    replica_sets: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)
    events: list[Obj] = field(default_factory=list)


# The kinds each describer needs in `Related` (Events always), so the command fetches only those.
NEEDS = {"Deployment": ("ReplicaSet", "Pod"), "Rollout": ("ReplicaSet", "Pod"), "Service": ("Pod",)}


def events_of(events: list[Obj], objects: list[Obj]) -> list[Obj]:
    """The events about these objects, oldest first."""
    keys = {(o["kind"], o["metadata"]["name"]) for o in objects}
    about = [e for e in events if (e["involvedObject"]["kind"], e["involvedObject"]["name"]) in keys]
    return sorted(about, key=lambda e: e["lastTimestamp"])


def events_table(events: list[Obj], now: float) -> str:
    if not events:
        return "Events:  <none>"
    rows = [
        [
            e["type"],
            e["reason"],
            age(e["lastTimestamp"], now) + (f" (x{e['count']})" if e.get("count", 1) > 1 else ""),
            f"{e['involvedObject']['kind'].lower()}/{e['involvedObject']['name']}",
            e["message"],
        ]
        for e in events[-EVENTS_SHOWN:]
    ]
    return indented("Events", table(["TYPE", "REASON", "AGE", "OBJECT", "MESSAGE"], rows))


def _section(title: str, lines: list[str]) -> str:
    return f"{title}:\n" + ("\n".join(f"  {line}" for line in lines) if lines else "  <none>")


def _pod_lines(pods: list[Obj], now: float) -> list[str]:
    """The replicas, as `get pods -o wide` with each one's message last."""
    if not pods:
        return []
    rows = [[*row("Pod", p, now, wide=True), p.get("status", {}).get("message", "")] for p in pods]
    return table([*headers("Pod", wide=True), "MESSAGE"], rows).splitlines()


def _conditions(status: Obj) -> str:
    rows = [[c["type"], c["status"], c["reason"], c["message"]] for c in status.get("conditions", [])]
    if not rows:
        return "Conditions:  <none>"
    return indented("Conditions", table(["Type", "Status", "Reason", "Message"], rows))


def describe_deployment(d: Obj, related: Related, now: float) -> str:
    spec, st, meta = d["spec"], d.get("status", {}), d["metadata"]
    replica_sets = sorted((rs for rs in related.replica_sets if owned_by(rs, d)), key=revision)
    pods = [p for rs in replica_sets for p in related.pods if owned_by(p, rs)]
    rolling = spec["strategy"]["rollingUpdate"]
    current = st.get("currentRevision")
    new = replica_sets[-1] if replica_sets and revision(replica_sets[-1]) == current else None
    olds = [rs for rs in replica_sets if rs is not new and rs["spec"]["replicas"] > 0]
    out = [
        f"Name:                   {meta['name']}",
        f"Namespace:              {meta['namespace']}",
        f"CreationTimestamp:      {meta.get('creationTimestamp')}",
        f"Labels:                 {selector(meta['labels'])}",
        f"Selector:               {selector(spec['selector']['matchLabels'])}",
        f"Replicas:               {spec['replicas']} desired | {st.get('updatedReplicas', 0)} updated | "
        f"{st.get('replicas', 0)} total | {st.get('availableReplicas', 0)} available | "
        f"{st.get('unavailableReplicas', 0)} unavailable",
        f"StrategyType:           {spec['strategy']['type']}",
        f"MinReadySeconds:        {spec['minReadySeconds']}",
        f"RollingUpdateStrategy:  {rolling['maxUnavailable']} max unavailable, "
        f"{rolling['maxSurge']} max surge",
        "Model:                  {} from {}".format(*workload(spec["template"]["spec"])),
        f"Paused:                 {'yes' if spec['paused'] else 'no'}",
        _conditions(st),
        f"OldReplicaSets:         {', '.join(_replica_set_line(rs) for rs in olds) or '<none>'}",
        f"NewReplicaSet:          {_replica_set_line(new) if new else '<none>'}",
        _section("Replicas", _pod_lines(pods, now)),
        events_table(events_of(related.events, [d, *replica_sets, *pods]), now),
    ]
    return "\n".join(out)


def _step_text(step: Obj) -> str:
    if "setWeight" in step:
        return f"setWeight {step['setWeight']}"
    if "setMirror" in step:
        return f"setMirror {step['setMirror']['percent']}%"
    if "setHeaderRoute" in step:
        route = step["setHeaderRoute"]
        return f"setHeaderRoute {route['name']}" + ("" if route.get("match") else " (removed)")
    if "pause" in step:
        duration = step["pause"].get("duration")
        return f"pause {duration}" if duration is not None else "pause (until promoted)"
    return "analysis " + ", ".join(t["templateName"] for t in step["analysis"]["templates"])


def describe_rollout(r: Obj, related: Related, now: float) -> str:
    """Where the canary is: its steps (the current one marked), the weight, each revision's
    replicas, the analysis, the message (an abort names the metric and its values), events."""
    spec, st, meta = r["spec"], r.get("status", {}), r["metadata"]
    replica_sets = sorted((rs for rs in related.replica_sets if owned_by(rs, r)), key=revision)
    pods = [p for rs in replica_sets for p in related.pods if owned_by(p, rs)]
    hashes = {st.get("stableHash"): "stable", st.get("canaryHash"): "canary"}
    strategy = spec["strategy"]
    out = [
        f"Name:          {meta['name']}",
        f"Namespace:     {meta['namespace']}",
        f"Status:        {st.get('phase', 'Progressing')}",
        f"Message:       {st.get('message', '')}",
        "Model:         {} from {}".format(*workload(spec["template"]["spec"])),
        f"Replicas:      {spec['replicas']} desired | {st.get('readyReplicas', 0)} ready | "
        f"{st.get('availableReplicas', 0)} available",
    ]
    if "canary" in strategy:
        at = st.get("currentStepIndex", 0)
        steps = [
            f"{'->' if i == at else '  '} {i}: {_step_text(step)}"
            for i, step in enumerate(strategy["canary"]["steps"])
        ]
        weight = st.get("canaryWeight", 0)
        mirror = f", {st['mirrorPercent']}% mirrored to it" if st.get("mirrorPercent") else ""
        routes = st.get("headerRoutes") or {}
        routed = f", header routes {', '.join(sorted(routes))}" if routes else ""
        out += [f"Strategy:      Canary, weight {weight}%{mirror}{routed}", _section("Steps", steps)]
    else:
        bg = strategy["blueGreen"]
        preview = bg.get("previewService", "<none>")
        out.append(f"Strategy:      BlueGreen, active {bg['activeService']}, preview {preview}")
    if st.get("analysis"):
        out.append(f"Analysis:      {st['analysis']['run']} {st['analysis']['phase']}")
    roles = [(rs, hashes.get(rs["metadata"]["labels"].get("pod-template-hash"))) for rs in replica_sets]
    lines = [
        f"{_replica_set_line(rs)}, {role or 'old'}" for rs, role in roles if role or rs["spec"]["replicas"]
    ]
    out += [
        _section("ReplicaSets", lines),
        _section("Replicas", _pod_lines(pods, now)),
        events_table(events_of(related.events, [r, *replica_sets]), now),
    ]
    return "\n".join(out)


def _replica_set_line(rs: Obj) -> str:
    """`mnist-7c9f (2/2 replicas created), revision 3`"""
    created, wanted = rs.get("status", {}).get("replicas", 0), rs["spec"]["replicas"]
    return f"{rs['metadata']['name']} ({created}/{wanted} replicas created), revision {revision(rs)}"


def describe_pod(p: Obj, related: Related, now: float) -> str:
    st, meta = p.get("status", {}), p["metadata"]
    owner = (meta.get("ownerReferences") or [{}])[0]
    phase = "Terminating" if "deletionTimestamp" in meta else st.get("phase", "Pending")
    out = [
        f"Name:           {meta['name']}",
        f"Namespace:      {meta['namespace']}",
        f"Labels:         {selector(meta.get('labels', {}))}",
        f"Controlled By:  {owner.get('kind', '')}/{owner.get('name', '')}",
        f"Status:         {phase} ({st.get('reason', '')})",
        f"Ready:          {bool(st.get('ready'))}"
        + (f" since {st['readySince']}" if st.get("readySince") else ""),
        f"PID:            {st.get('pid') or '<none>'}",
        f"Address:        {st.get('podIP', '127.0.0.1')}:{st.get('port') or '<none>'}"
        + (f" (gRPC {st['grpcPort']})" if st.get("grpcPort") else ""),
        f"Restart Count:  {st.get('restartCount', 0)}"
        + (f" (last exit code {st['lastExitCode']})" if "lastExitCode" in st else ""),
        f"Message:        {st.get('message') or '<none>'}",
        f"Log:            {st.get('logPath', '<none>')}",
        f"API Keys:       {'required' if st.get('apiKeys') else 'not required'}",
        "Model:          {} from {}".format(*workload(p["spec"])),
        events_table(events_of(related.events, [p]), now),
    ]
    return "\n".join(out)


def describe_hpa(h: Obj, related: Related, now: float) -> str:
    spec, st, meta = h["spec"], h.get("status", {}), h["metadata"]
    ref = spec["scaleTargetRef"]
    behavior = spec.get("behavior") or {}
    out = [
        f"Name:                   {meta['name']}",
        f"Namespace:              {meta['namespace']}",
        f"CreationTimestamp:      {meta.get('creationTimestamp')}",
        f"Reference:              {ref['kind']}/{ref['name']}",
        "Metrics:                ( current / target )\n  " + "\n  ".join(hpa_targets(h).split(", ")),
        f"Min replicas:           {spec['minReplicas']}",
        f"Max replicas:           {spec['maxReplicas']}",
        f"Behavior:               scaleUp {json.dumps(behavior.get('scaleUp') or 'default')}; "
        f"scaleDown {json.dumps(behavior.get('scaleDown') or 'default')}",
        f"{ref['kind']} pods:        {st.get('currentReplicas', 0)} current / "
        f"{st.get('desiredReplicas', 0)} desired",
        f"Last scale:             {st.get('lastScaleTime') or '<never>'}",
        _conditions(st),
        events_table(events_of(related.events, [h]), now),
    ]  # fmt: skip
    return "\n".join(out)


def describe_service(s: Obj, related: Related, now: float) -> str:
    spec, st, meta = s["spec"], s.get("status", {}), s["metadata"]
    endpoints = ", ".join(f"127.0.0.1:{e['port']} ({e['pod']})" for e in st.get("endpoints", [])) or "<none>"
    selected = [
        p
        for p in related.pods
        if all(p["metadata"].get("labels", {}).get(k) == v for k, v in spec["selector"].items())
    ]
    not_ready = [p for p in selected if not p.get("status", {}).get("ready")]
    port = spec["ports"][0]
    out = [
        f"Name:              {meta['name']}",
        f"Namespace:         {meta['namespace']}",
        f"Selector:          {selector(spec['selector'])}",
        f"Type:              {spec['type']}",
        f"IP:                {spec['clusterIP']}",
        f"Port:              {port.get('name') or '<unset>'}  {port['port']}/TCP",
        f"URL:               {'https' if spec.get('tls') else 'http'}://{spec['clusterIP']}:{port['port']}",
        f"Endpoints:         {endpoints}",
        f"Session Affinity:  {spec['sessionAffinity']}",
        f"Load Balancing:    {spec['loadBalancing']}",
        f"Load Balancer:     {_load_balancer(st)}",
    ]
    if selected and not st.get("endpoints"):
        out.append("Warning:           no selected replica is ready, so requests to this Service fail")
    if not selected:
        out.append(f"Warning:           no replica has the labels {selector(spec['selector'])}")
    if not_ready:
        out.append(_section("Not ready", _pod_lines(not_ready, now)))
    out.append(events_table(events_of(related.events, [s]), now))
    return "\n".join(out)


def _load_balancer(status: Obj) -> str:
    """`Running: HAProxy programmed with 2 endpoints (HAProxy pid 4242)`, or <pending>."""
    conditions = status.get("conditions", [])
    text = f"{conditions[0]['reason']}: {conditions[0]['message']}" if conditions else "<pending>"
    return text + (f" (HAProxy pid {status['haproxyPid']})" if status.get("haproxyPid") else "")


def describe_other(obj: Obj, related: Related, now: float) -> str:
    """A kind with no describer of its own (ReplicaSet, Event): its YAML and its events."""
    return dump(obj, "yaml") + "\n" + events_table(events_of(related.events, [obj]), now)


def describe_analysis_run(run: Obj, related: Related, now: float) -> str:
    """Each metric's verdict and every measurement kept: when, value, verdict, why."""
    status = run.get("status", {})
    lines = [
        f"Name:         {run['metadata']['name']}",
        f"Namespace:    {run['metadata']['namespace']}",
        f"Rollout:      {run['metadata'].get('labels', {}).get('rollout', '<none>')}",
        f"Status:       {status.get('phase', 'Pending')}",
        f"Message:      {status.get('message', '')}",
        f"Started:      {status.get('startedAt', '<none>')}",
        "Metrics:",
    ]
    for result in status.get("metricResults", []):
        counts = ", ".join(
            f"{c} {result.get(c, 0)}" for c in ("successful", "failed", "inconclusive", "error")
        )
        lines.append(f"  {result['name']}: {result.get('phase', 'Running')} ({counts})")
        for m in result.get("measurements", []):
            value = "no data" if m.get("value") is None else f"{m['value']:.4g}"
            lines.append(
                f"    {m.get('finishedAt', '')}  {m['phase']:<12} {value:<10} {m.get('message', '')}"
            )
    return "\n".join(lines) + "\n" + events_table(events_of(related.events, [run]), now)


DESCRIBERS: dict[str, Callable[[Obj, Related, float], str]] = {
    "AnalysisRun": describe_analysis_run,
    "Rollout": describe_rollout,
    "Deployment": describe_deployment,
    "Pod": describe_pod,
    "Service": describe_service,
    "HorizontalPodAutoscaler": describe_hpa,
}


def describe(obj: Obj, related: Related, now: float) -> str:
    return DESCRIBERS.get(obj["kind"], describe_other)(obj, related, now)
