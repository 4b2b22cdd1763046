"""kubectl's printers, pure: objects (as the API answers them) and `now` in, text out.

`get` prints one table per kind from `COLUMNS`, a list of columns per kind (the extra ones of
`-o wide` last); `describe_*` print one object with what the command fetched beside it
(`Related`). Nothing here calls the API or reads the clock, so every line is testable as text.

Fields the spec defaults (a Service's `type`, an HPA's `minReplicas`, ...) are read as they are:
the API stores every object validated, with the spec's defaults filled in. Status fields are
Kubernetes' `omitempty` counts: absent means 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelport.controlplane.meta import parse_iso, revision, workload

Obj = dict[str, Any]
Cell = Callable[[Obj], str]


# -- pieces --


def age(timestamp: str | None, now: float) -> str:
    """kubectl's AGE: 45s, 3m, 2h, 5d; two units' worth before moving up (90 s is 90s, 150 s 2m)."""
    if not timestamp:
        return "<unknown>"
    seconds = max(0, int(now - parse_iso(timestamp)))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(headers: list[str], rows: list[list[str]], show_headers: bool = True) -> str:
    """kubectl's plain columns: left aligned, three spaces apart."""
    lines = ([headers] if show_headers else []) + rows
    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>"


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def indented(title: str, text: str) -> str:
    return f"{title}:\n" + "\n".join("  " + line for line in text.splitlines())


def dump(data: Any, output: str) -> str:
    """`-o json` or `-o yaml`."""
    if output == "json":
        return json.dumps(data, indent=2)
    import yaml  # only for -o yaml

    return str(yaml.safe_dump(data, sort_keys=False)).rstrip()


def as_list(items: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


# -- get: one column list per kind --


@dataclass(frozen=True)
class Column:
    header: str
    cell: Cell
    wide: bool = False  # shown with -o wide only
    ages: bool = False  # the cell is a timestamp, shown as an age


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _created(obj: Obj) -> str:
    return str(obj["metadata"].get("creationTimestamp") or "")


def _spec(field_: str) -> Cell:
    return lambda obj: str(obj["spec"][field_])


def _count(field_: str) -> Cell:
    return lambda obj: str(_status(obj).get(field_, 0))


def _or_none(field_: str) -> Cell:
    return lambda obj: str(_status(obj).get(field_) or "<none>")


def pod_phase(pod: Obj) -> str:
    """STATUS: the replica's state (Running, CrashLoopBackOff, ...), or Terminating once deleted."""
    return "Terminating" if "deletionTimestamp" in pod["metadata"] else _status(pod).get("reason", "Pending")


def hpa_targets(hpa: Obj) -> str:
    """kubectl's TARGETS column: `cpu: 85%/50%, requests_per_second: 12/10`; <unknown> until measured."""
    currents = _status(hpa).get("currentMetrics", [])
    return ", ".join(_metric_target(metric, currents) for metric in hpa["spec"]["metrics"])


def _metric_target(metric: Obj, currents: list[Obj]) -> str:
    kind = metric["type"]
    source = metric[kind.lower()]
    name = source["name"] if kind == "Resource" else source["metric"]["name"]
    target = source["target"]
    wanted = {
        "Utilization": f"{target.get('averageUtilization')}%",
        "AverageValue": str(target.get("averageValue")),
        "Value": str(target.get("value")),
    }[target["type"]]
    found = "<unknown>"
    for current in currents:
        body = current.get(current["type"].lower(), {})
        if current["type"] == kind and (body.get("name") or body.get("metric", {}).get("name")) == name:
            value = body["current"]
            found = (f"{value['averageUtilization']}%" if target["type"] == "Utilization"
                     else str(value.get("averageValue", value.get("value"))))  # fmt: skip
    return f"{name}: {found}/{wanted}"


def analysis_counts(run: Obj) -> str:
    """`error-rate 3/1/0, distance 2/0/1`: each metric's successful/failed/inconclusive (and errors)."""
    parts = []
    for r in _status(run).get("metricResults", []):
        errors = f"/{r['error']}E" if r.get("error") else ""
        parts.append(f"{r['name']} {r.get('successful', 0)}/{r.get('failed', 0)}/{r.get('inconclusive', 0)}"
                     f"{errors}")  # fmt: skip
    return ", ".join(parts) or "<none>"


def rollout_analysis(rollout: Obj) -> str:
    """The last AnalysisRun the Rollout consulted and its phase: `web-7d9-1 Running`, or -."""
    found = _status(rollout).get("analysis") or {}
    return f"{found['run']} {found['phase']}" if found else "-"


COLUMNS: dict[str, tuple[Column, ...]] = {
    "Deployment": (
        Column("NAME", _name),
        Column("READY", lambda d: f"{_status(d).get('readyReplicas', 0)}/{d['spec']['replicas']}"),
        Column("UP-TO-DATE", _count("updatedReplicas")),
        Column("AVAILABLE", _count("availableReplicas")),
        Column("AGE", _created, ages=True),
        Column("MODEL", lambda d: workload(d["spec"]["template"]["spec"])[0], wide=True),
        Column("BASE-PATH", lambda d: workload(d["spec"]["template"]["spec"])[1], wide=True),
        Column("SELECTOR", lambda d: selector(d["spec"]["selector"]["matchLabels"]), wide=True),
    ),
    "Pod": (
        Column("NAME", _name),
        Column("READY", lambda p: f"{int(bool(_status(p).get('ready')))}/1"),
        Column("STATUS", pod_phase),
        Column("RESTARTS", _count("restartCount")),
        Column("AGE", _created, ages=True),
        Column("PID", _or_none("pid"), wide=True),
        Column("PORT", _or_none("port"), wide=True),
        Column("IP", _or_none("podIP"), wide=True),
    ),
    "Service": (
        Column("NAME", _name),
        Column("TYPE", _spec("type")),
        Column("CLUSTER-IP", _spec("clusterIP")),
        Column("PORT(S)", lambda s: ",".join(f"{p['port']}/TCP" for p in s["spec"]["ports"])),
        Column("ENDPOINTS", lambda s: str(len(_status(s).get("endpoints", [])))),
        Column("AGE", _created, ages=True),
        Column("SELECTOR", lambda s: selector(s["spec"]["selector"]), wide=True),
        Column("BALANCING", _spec("loadBalancing"), wide=True),
    ),
    "ReplicaSet": (
        Column("NAME", _name),
        Column("DESIRED", _spec("replicas")),
        Column("CURRENT", _count("replicas")),
        Column("READY", _count("readyReplicas")),
        Column("AGE", _created, ages=True),
        Column("REVISION", lambda r: str(revision(r)), wide=True),
    ),
    "Event": (
        Column("LAST SEEN", lambda e: str(e.get("lastTimestamp") or ""), ages=True),
        Column("TYPE", lambda e: str(e["type"])),
        Column("REASON", lambda e: str(e["reason"])),
        Column("OBJECT", lambda e: f"{e['involvedObject']['kind'].lower()}/{e['involvedObject']['name']}"),
        Column("MESSAGE", lambda e: str(e["message"])),
    ),
    "HorizontalPodAutoscaler": (
        Column("NAME", _name),
        Column("REFERENCE", lambda h: "{kind}/{name}".format(**h["spec"]["scaleTargetRef"])),
        Column("TARGETS", hpa_targets),
        Column("MINPODS", _spec("minReplicas")),
        Column("MAXPODS", _spec("maxReplicas")),
        Column("REPLICAS", _count("currentReplicas")),
        Column("AGE", _created, ages=True),
    ),
    "Rollout": (
        Column("NAME", _name),
        Column("STATUS", lambda r: str(_status(r).get("phase") or "Progressing")),
        Column("STEP", lambda r: f"{_status(r).get('currentStepIndex', 0)}/{_status(r).get('steps', 0)}"),
        Column("WEIGHT", lambda r: f"{_status(r).get('canaryWeight', 0)}%"),
        Column("READY", lambda r: f"{_status(r).get('readyReplicas', 0)}/{r['spec']['replicas']}"),
        Column("ANALYSIS", rollout_analysis),
        Column("AGE", _created, ages=True),
        Column("STABLE", _or_none("stableHash"), wide=True),
        Column("CANARY", _or_none("canaryHash"), wide=True),
        Column("MESSAGE", _or_none("message"), wide=True),
    ),
    "AnalysisTemplate": (
        Column("NAME", _name),
        Column("METRICS", lambda t: ",".join(m["name"] for m in t["spec"]["metrics"])),
        Column("AGE", _created, ages=True),
    ),
    "AnalysisRun": (
        Column("NAME", _name),
        Column("STATUS", lambda a: str(_status(a).get("phase", "Pending"))),
        Column("MEASUREMENTS", analysis_counts),
        Column("AGE", _created, ages=True),
        Column("MESSAGE", _or_none("message"), wide=True),
    ),
}


def columns(kind: str, wide: bool) -> tuple[Column, ...]:
    return tuple(c for c in COLUMNS[kind] if wide or not c.wide)


def headers(kind: str, wide: bool) -> list[str]:
    return [c.header for c in columns(kind, wide)]


def row(kind: str, obj: Obj, now: float, wide: bool) -> list[str]:
    return [age(c.cell(obj) or None, now) if c.ages else c.cell(obj) for c in columns(kind, wide)]


def get_table(
    kind: str, objects: list[Obj], now: float, wide: bool = False, show_headers: bool = True
) -> str:
    """`modelport get KIND` (`-o wide`: with the extra columns)."""
    return table(headers(kind, wide), [row(kind, o, now, wide) for o in objects], show_headers)


def name_list(kind: str, objects: list[Obj]) -> str:
    """`-o name`: deployment/mnist, one a line."""
    return "\n".join(f"{kind.lower()}/{o['metadata']['name']}" for o in objects)


def top_table(items: list[Obj]) -> str:
    """`modelport top pods`: each replica's usage, as the API's /api/top gives it."""
    rows = [
        [
            i["pod"], f"{i['cpu'] * 1000:.0f}m", f"{i['memory'] / 2**20:.0f}Mi",
            f"{i['requests_per_second']:.1f}", f"{i['requests_in_flight']:.0f}",
            f"{i['request_latency_p99_seconds'] * 1000:.1f}" if "request_latency_p99_seconds" in i else "-",
        ]
        for i in items
    ]  # fmt: skip
    return table(["NAME", "CPU(cores)", "MEMORY(bytes)", "REQ/S", "IN-FLIGHT", "P99(ms)"], rows)
