"""`modelport diagnose deployment/NAME`: status, conditions, events, the last log lines of
failing replicas, metrics and drift, and the likely cause in words with its evidence
(monitor/diagnosis.py decides; this prints)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from modelport.cli.api import client, namespace_option, reporting, split_ref
from modelport.cli.describers import events_table
from modelport.cli.printers import indented, table
from modelport.controlplane.home import default_home
from modelport.errors import Code, ModelportError
from modelport.monitor.diagnosis import SLO_P99_SECONDS, Facts, Finding, ReplicaFacts, compute_findings

Obj = dict[str, Any]
LOG_LINES_SHOWN = 5


@click.command()
@click.argument("target")
@namespace_option
@click.option("--output", "-o", type=click.Choice(["json"]), default=None)
@click.option(
    "--slo-p99", type=float, default=SLO_P99_SECONDS, show_default=True, help="Latency SLO, seconds."
)
def diagnose(target: str, namespace: str, output: str | None, slo_p99: float) -> None:
    """Why a Deployment is unwell (deployment/NAME, rollout/NAME): the likely cause, with the evidence."""
    from modelport.monitor.gather import gather  # here: `--help` and `get` stay light

    with reporting():
        kind, name = split_ref(target, None)
        if kind not in ("Deployment", "Rollout") or not name:
            raise ModelportError(
                Code.INVALID_ARGUMENT, f"diagnose takes deployment/NAME or rollout/NAME, not {target!r}"
            )
        facts = gather(client(), default_home(), namespace, name, kind)
        findings = compute_findings(facts, slo_p99)
        if output == "json":
            click.echo(json.dumps(report(facts, findings), indent=2))
        else:
            click.echo(render(facts, findings, time.time()))


def _failing(r: ReplicaFacts) -> bool:
    return not r.status.get("ready") or bool(r.status.get("restartCount"))


def report(facts: Facts, findings: list[Finding]) -> Obj:
    d = facts.deployment
    return {
        "deployment": {
            "namespace": d["metadata"]["namespace"], "name": d["metadata"]["name"],
            "replicas": d["spec"].get("replicas"),
            "readyReplicas": (d.get("status") or {}).get("readyReplicas", 0),
            "conditions": (d.get("status") or {}).get("conditions", []),
        },
        "findings": [f.to_dict() for f in findings],
        "replicas": [{
            "name": r.name, "ready": bool(r.status.get("ready")), "phase": r.status.get("phase"),
            "restarts": r.status.get("restartCount", 0), "message": r.status.get("message"), "usage": r.usage,
            "quality": [{"metric": n, "labels": labels, "value": v} for n, labels, v in r.samples
                        if n != "modelport_requests_total"],
        } for r in facts.replicas],
        "events": facts.events,
        "logs": {r.name: r.log_tail for r in facts.replicas if _failing(r)},
        "hpa": facts.hpa and {"name": facts.hpa["metadata"]["name"], "spec": facts.hpa["spec"],
                              "status": facts.hpa.get("status")},
        "alerts": facts.alerts,
    }  # fmt: skip


def render(facts: Facts, findings: list[Finding], now: float) -> str:
    d = facts.deployment
    st = d.get("status") or {}
    which = f"{d.get('kind', 'Deployment')} {d['metadata']['namespace']}/{d['metadata']['name']}"
    head = f"{which}: {st.get('readyReplicas', 0)}/{d['spec'].get('replicas')} replicas ready"
    out = [head, "", "Likely cause:" if findings[0].severity else "Diagnosis:"]
    for i, finding in enumerate(findings):
        if i == 1:
            out.append("Also:")
        out.append(f"  {finding.cause}" + (f"  (since {finding.since})" if finding.since else ""))
        out += [f"    - {line}" for line in finding.evidence]
    conditions = [[c["type"], c["status"], c["reason"], c["message"]] for c in st.get("conditions", [])]
    if conditions:
        out += ["", indented("Conditions", table(["TYPE", "STATUS", "REASON", "MESSAGE"], conditions))]
    rows = [_replica_row(r) for r in facts.replicas]
    if rows:
        headers = ["NAME", "READY", "STATUS", "RESTARTS", "CPU", "REQ/S", "P99(ms)"]
        out += ["", indented("Replicas", table(headers, rows))]
    out += ["", events_table(facts.events[-10:], now).replace("Events:", "Recent events:", 1)]
    failing = [r for r in facts.replicas if _failing(r) and r.log_tail]
    if failing:
        out += ["", "Last log lines of failing replicas:"]
        for r in failing:
            out += [f"  == {r.name} ==", *(f"  {line}" for line in r.log_tail[-LOG_LINES_SHOWN:])]
    return "\n".join(out)


def _replica_row(r: ReplicaFacts) -> list[str]:
    ready = "1/1" if r.status.get("ready") else "0/1"
    phase, restarts = str(r.status.get("phase", "Pending")), str(r.status.get("restartCount", 0))
    return [r.name, ready, phase, restarts, *_usage_cells(r.usage)]


def _usage_cells(usage: Obj | None) -> list[str]:
    if not usage:
        return ["-", "-", "-"]
    p99 = usage.get("request_latency_p99_seconds")
    return [f"{usage['cpu'] * 1000:.0f}m", f"{usage['requests_per_second']:.1f}",
            f"{p99 * 1000:.1f}" if p99 is not None else "-"]  # fmt: skip
