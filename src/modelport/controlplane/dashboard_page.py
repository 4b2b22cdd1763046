"""The control plane's dashboard pages (GET /dashboard...): plain HTML with inline SVG charts
(charts.py), no script, nothing fetched from anywhere, refreshed by the browser every 5 s.

    /dashboard                                  every Deployment and Rollout: replicas, req/s, p99,
                                                errors; events
    /dashboard/{ns}/{name}                      one Deployment over the last hour: req/s and errors,
                                                p50/p99, replicas with the HPA's decisions marked,
                                                traffic by version, live accuracy and drift
                                                (when the replicas export them), recent events
    /dashboard/{ns}/{name}/versions/{version}   a model version: its evaluation report (the
                                                registry's record; evaluation.json beside the
                                                version folder) beside its live figures
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from modelport.charts import line_chart
from modelport.controlplane.dashboard import History, Mark, Point
from modelport.controlplane.meta import owned_by
from modelport.errors import Code, ModelportError

Obj = dict[str, Any]
EVENTS_SHOWN = 15
LEGEND = {"modelport_live_accuracy": "live", "modelport_published_accuracy": "published",
          "modelport_drift_score": "", "modelport_drift_threshold": "threshold"}  # fmt: skip
INDEX_HEAD = (
    "<tr><th>Deployment</th><th>Namespace</th><th>Ready</th><th>req/s</th><th>p99</th><th>errors/s</th></tr>"
)
CLASS_HEAD = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
STYLE = """body{font-family:sans-serif;margin:1.2em;color:#222}h1{font-size:1.4em}
h2{font-size:1.1em;margin-top:1.4em}table{border-collapse:collapse;font-size:.9em}
td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:.6em}.side{display:flex;flex-wrap:wrap;gap:2em}.warn{color:#b00}
.muted{color:#777}a{color:#1f5fa8}"""


class Dashboard:
    """The pages, from the store's objects (`objects(kind)`), the in-memory history and the
    registry's records (`record(model, version)`, None when it has none)."""

    def __init__(
        self,
        objects: Callable[[str], list[Obj]],
        history: History,
        record: Callable[[str, int], Obj | None] = lambda model, version: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._objects = objects
        self._history = history
        self._record = record
        self._now = clock

    def index(self) -> str:
        rows = []
        for d in self._workloads():
            ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
            points = self._history.points(f"{ns}/{name}")
            last = points[-1].figures if points else None
            st = d.get("status") or {}
            rows.append(
                f'<tr><td><a href="/dashboard/{escape(ns)}/{escape(name)}">{escape(name)}</a>'
                f"{_kind_note(d)}</td>"
                f"<td>{escape(ns)}</td><td>{st.get('readyReplicas', 0)}/{d['spec'].get('replicas', 1)}</td>"
                f"<td>{_num(last.requests_per_second if last else None)}</td>"
                f"<td>{_ms(last.p99 if last else None)}</td>"
                f"<td>{_num(last.errors_per_second if last else None)}</td></tr>"
            )
        table = f"<table>{INDEX_HEAD}{''.join(rows)}</table>" if rows else "<p>No Deployments yet.</p>"
        events = sorted(self._objects("Event"), key=lambda e: e["lastTimestamp"])
        return _page("modelport", f"<h1>modelport</h1>{table}<h2>Recent events</h2>{_events(events)}")

    def deployment(self, namespace: str, name: str) -> str:
        d = self._deployment(namespace, name)
        key = f"{namespace}/{name}"
        points, marks = self._history.points(key), self._history.marks(key)
        now = self._now()
        st = d.get("status") or {}
        charts = [
            _chart("Requests per second", now, points, {
                "req/s": lambda f: f.requests_per_second, "5xx/s": lambda f: f.errors_per_second}),
            _chart("Latency (ms)", now, points, {
                "p50": lambda f: None if f.p50 is None else f.p50 * 1000,
                "p99": lambda f: None if f.p99 is None else f.p99 * 1000}),
            _replicas_chart(now, points, marks),
            _by_key_chart("Traffic by version (req/s)", now, points, lambda f: f.versions),
            *_quality_charts(now, points),
        ]  # fmt: skip
        versions = sorted({v for p in points if p.figures for v in p.figures.versions})
        here = f"/dashboard/{escape(namespace)}/{escape(name)}"
        numbers = [(v, v.rsplit(" v", 1)[-1]) for v in versions]
        links = " ".join(
            f'<a href="{here}/versions/{escape(n)}">{escape(v)}</a>'
            for v, n in numbers
            if n.isascii() and n.isdigit()
        )
        decisions = "".join(f"<li>{_clock(m.at)} {escape(m.words)}</li>" for m in marks[-10:])
        body = (
            '<p><a href="/dashboard">all Deployments</a></p>'
            f"<h1>{d['kind']} {escape(namespace)}/{escape(name)}</h1>"
            f"<p>{st.get('readyReplicas', 0)}/{d['spec'].get('replicas', 1)} replicas ready; {_canary(d)}"
            f"model {escape(_model(d)[0])} from {escape(_model(d)[1])}</p>"
            f'<div class="charts">{"".join(charts)}</div>'
            f"<h2>Versions</h2><p>{links or 'no traffic recorded yet'}</p>"
            f"<h2>Autoscaler decisions</h2>{f'<ul>{decisions}</ul>' if decisions else '<p>none recorded</p>'}"
            f"<h2>Recent events</h2>{_events(self._events_about(d))}"
        )  # fmt: skip
        return _page(f"{name} - modelport", body)

    def version(self, namespace: str, name: str, version: str) -> str:
        if not (version.isascii() and version.isdigit()):
            raise ModelportError(Code.INVALID_ARGUMENT, f"version: {version!r} is not a version number")
        d = self._deployment(namespace, name)
        model, base = _model(d)
        points = self._history.points(f"{namespace}/{name}")
        now = self._now()
        label = f"{model} v{version}"
        live = [
            _chart(f"{label}: requests per second", now, points, {"req/s": lambda f: f.versions.get(label)}),
            *_quality_charts(now, points, (model, version)),
        ]
        record = self._record(model, int(version))
        evaluation = find_evaluation(base, version)
        body = (
            f'<p><a href="/dashboard/{escape(namespace)}/{escape(name)}">{d["kind"]} {escape(name)}</a></p>'
            f"<h1>{escape(label)}</h1><div class=\"side\"><section><h2>Evaluation report</h2>"
            f"{_record_html(record)}{_evaluation_html(evaluation)}</section>"
            f'<section><h2>Live</h2><div class="charts">{"".join(live)}</div></section></div>'
        )  # fmt: skip
        return _page(f"{label} - modelport", body)

    def _workloads(self) -> list[Obj]:
        """Deployments and Rollouts (Deployments whose new revisions go out as canaries)."""
        return [*self._objects("Deployment"), *self._objects("Rollout")]

    def _deployment(self, namespace: str, name: str) -> Obj:
        for d in self._workloads():
            if d["metadata"]["namespace"] == namespace and d["metadata"]["name"] == name:
                return d
        raise ModelportError(Code.NOT_FOUND, f'deployments "{name}" not found')

    def _events_about(self, d: Obj) -> list[Obj]:
        replica_sets = [rs for rs in self._objects("ReplicaSet") if owned_by(rs, d)]
        pods = [p for p in self._objects("Pod") if any(owned_by(p, rs) for rs in replica_sets)]
        name = d["metadata"]["name"]
        hpas = [h["metadata"]["name"] for h in self._objects("HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"].get("name") == name]  # fmt: skip
        about = {(d["kind"], name), ("Service", name), *(("HorizontalPodAutoscaler", h) for h in hpas)}
        about |= {(o["kind"], o["metadata"]["name"]) for o in (*replica_sets, *pods)}
        events = [e for e in self._objects("Event")
                  if (e["involvedObject"]["kind"], e["involvedObject"]["name"]) in about
                  and e["metadata"]["namespace"] == d["metadata"]["namespace"]]  # fmt: skip
        return sorted(events, key=lambda e: e["lastTimestamp"])


def find_evaluation(base_path: str, version: str) -> Obj | None:
    """evaluation.json in the version folder, or in `<version>-evaluation/` beside it (where
    `modelport evaluate <base>/<version>` writes it)."""
    base = Path(base_path)
    for path in (base / version / "evaluation.json", base / f"{version}-evaluation" / "evaluation.json"):
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(found, dict):
            return found
    return None


def _kind_note(d: Obj) -> str:
    return " (Rollout)" if d["kind"] == "Rollout" else ""


def _canary(d: Obj) -> str:
    """A Rollout's canary and its share of the requests, in words; "" for a Deployment."""
    st = d.get("status") or {}
    if d["kind"] != "Rollout" or not st.get("canaryHash") or st.get("canaryHash") == st.get("stableHash"):
        return ""
    return f"canary {escape(str(st['canaryHash']))} at {st.get('canaryWeight', 0)}% of the requests; "


def _model(d: Obj) -> tuple[str, str]:
    model = (d["spec"]["template"]["spec"].get("model")) or {}
    return str(model.get("name", "")), str(model.get("basePath", ""))


def _page(title: str, body: str) -> str:
    head = '<meta charset="utf-8"><meta http-equiv="refresh" content="5">'
    return (f'<!doctype html><html lang="en"><head>{head}<title>{escape(title)}</title><style>{STYLE}</style>'
            f"</head><body>{body}</body></html>")  # fmt: skip


def _ago(at: float, now: float) -> float:
    """x on the charts: seconds before now (negative)."""
    return round(at - now, 1)


def _chart(
    title: str, now: float, points: list[Point], series: dict[str, Callable[[Any], float | None]]
) -> str:
    drawn: dict[str, list[tuple[float, float]]] = {}
    for label, value in series.items():
        line = [
            (_ago(p.at, now), v) for p in points if p.figures for v in [value(p.figures)] if v is not None
        ]
        if line:
            drawn[label] = line
    return line_chart(drawn, title, "seconds", floor=0)


def _by_key_chart(
    title: str, now: float, points: list[Point], values: Callable[[Any], dict[str, float]]
) -> str:
    drawn: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        if p.figures:
            for key, value in values(p.figures).items():
                drawn.setdefault(key, []).append((_ago(p.at, now), value))
    return line_chart(drawn, title, "seconds", floor=0)


def _replicas_chart(now: float, points: list[Point], marks: list[Mark]) -> str:
    drawn = {
        "wanted": [(_ago(p.at, now), float(p.replicas)) for p in points],
        "ready": [(_ago(p.at, now), float(p.ready)) for p in points],
        "HPA desired": [(_ago(p.at, now), float(p.hpa_desired)) for p in points if p.hpa_desired is not None],
    }
    drawn = {k: v for k, v in drawn.items() if v}
    return line_chart(drawn, "Replicas (dashed: HPA decisions)", "seconds", step=True, floor=0,
                      marks=[(_ago(m.at, now), m.words) for m in marks])  # fmt: skip


def _quality_charts(now: float, points: list[Point], only: tuple[str, str] | None = None) -> list[str]:
    """Live accuracy against the published figure, and drift against its threshold, when the
    replicas export them (the model-quality metrics); nothing otherwise."""
    charts = []
    for title, metrics in (("Live accuracy", ("modelport_live_accuracy", "modelport_published_accuracy")),
                           ("Drift", ("modelport_drift_score", "modelport_drift_threshold"))):  # fmt: skip

        def pick(f: Any, metrics: tuple[str, ...] = metrics) -> dict[str, float]:
            return {
                " ".join(w for w in (f"{model} v{version}", kind, LEGEND[metric]) if w): value
                for (metric, model, version, kind), value in f.quality.items()
                if metric in metrics and (only is None or (model, version) == only)
            }

        if any(p.figures and pick(p.figures) for p in points):
            charts.append(_by_key_chart(title, now, points, pick))
    return charts


def _events(events: list[Obj]) -> str:
    if not events:
        return "<p>none</p>"
    rows = "".join(
        f"<tr><td>{escape(str(e['lastTimestamp']))}</td>"
        f'<td class="{"warn" if e["type"] == "Warning" else ""}">{escape(e["type"])}</td>'
        f"<td>{escape(e['reason'])}</td>"
        f"<td>{escape(e['involvedObject']['kind'].lower())}/{escape(e['involvedObject']['name'])}</td>"
        f"<td>{escape(str(e['message'])[:300])}</td></tr>"
        for e in events[-EVENTS_SHOWN:][::-1]
    )
    head = "<tr><th>Last seen</th><th>Type</th><th>Reason</th><th>Object</th><th>Message</th></tr>"
    return f"<table>{head}{rows}</table>"


def _record_html(record: Obj | None) -> str:
    if record is None:
        return '<p class="muted">Not in the registry.</p>'
    metrics = "".join(
        f"<tr><td>{escape(k)}</td><td>{_num(v)}</td></tr>" for k, v in sorted(record["metrics"].items())
    )
    return (f"<p>Published {escape(record['created'])} by {escape(record['publisher'])}; "
            f"{escape(record.get('description') or '')}</p>"
            "<table><tr><th>Published metric</th><th>value</th></tr>"
            f"{metrics}</table>")  # fmt: skip


def _evaluation_html(evaluation: Obj | None) -> str:
    if evaluation is None:
        return '<p class="muted">No evaluation.json beside the version folder.</p>'
    metrics, data = evaluation.get("metrics") or {}, evaluation.get("data") or {}
    per_class = ((evaluation.get("details") or {}).get("per_class")) or {}
    rows = "".join(
        f"<tr><td>{escape(str(c))}</td><td>{_num(m.get('precision'))}</td><td>{_num(m.get('recall'))}</td>"
        f"<td>{_num(m.get('f1'))}</td><td>{m.get('support', '')}</td></tr>"
        for c, m in per_class.items()
    )
    verdict = (evaluation.get("diagnosis") or {}).get("verdict")
    return (f"<p>Accuracy <b>{_num(metrics.get('accuracy'))}</b> on {escape(str(data.get('name', '?')))} "
            f"({data.get('size', '?')} held-out rows); macro F1 {_num(metrics.get('macro_f1'))}"
            f"{f'; fit: {escape(str(verdict))}' if verdict else ''}</p>"
            f"<table>{CLASS_HEAD}{rows}</table>")  # fmt: skip


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))
