"""`modelport up --prometheus` and `modelport monitoring up`: a real Prometheus, configured by the
control plane's service discovery, scrapes a real replica, the Service's HAProxy and the control
plane; its recording rules answer once predictions flow, its alerts fire; `down` stops it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml

from support import Load, Plane, deployment_yaml, half_plus_two, mark_complete, poll


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5).json()
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def wait(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        def answered() -> bool:
            found[:] = self.query(promql)
            return bool(found)

        waited = poll(answered, timeout, 0.25)
        assert waited is None, f"no answer to {promql} in {timeout:g} s{waited}"
        return found


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Plane, Prometheus]]:
    root = tmp_path_factory.mktemp("monitoring")
    half_plus_two(root / "half" / "1")
    mark_complete(root / "half" / "1")
    plane = Plane(root / "home")
    try:
        plane.up("--prometheus")  # `up --prometheus`: the control plane, then Prometheus beside it
        started = json.loads((plane.home / "monitoring" / "prometheus.json").read_text())
        (root / "busy.yaml").write_text(deployment_yaml("busy", root / "half", replicas=1))
        plane.cli("apply", "-f", str(root / "busy.yaml"))
        plane.cli("rollout", "status", "deployment/busy")
        # `monitoring up` on a running one rewrites the configuration (scraping every second, for
        # the test's pace) and makes it re-read it: the same process, at the same address.
        said = plane.cli("monitoring", "up", "--scrape-interval", "1s").stdout
        url = re.search(r"prometheus: (http://127\.0\.0\.1:\d+) \(pid (\d+)\)", said)
        assert url is not None and (url[1], int(url[2])) == (started["url"], started["pid"]), said
        yield plane, Prometheus(url[1])
    finally:
        plane.cli("monitoring", "down", check=False)
        plane.stop()


Monitored = tuple[Plane, Prometheus]


def test_prometheus_finds_replica_load_balancer_and_control_plane(monitored: Monitored) -> None:
    plane, prometheus = monitored
    config = plane.home / "monitoring" / "prometheus.yml"
    assert "http_sd_configs" in config.read_text()
    up = prometheus.wait('up{component="replica",deployment="busy"} == 1')
    pod = plane.items("Pod")[0]["metadata"]["name"]
    assert up[0]["metric"]["pod"] == pod and up[0]["metric"]["app"] == "busy"
    prometheus.wait('up{component="loadbalancer",service="busy"} == 1')
    prometheus.wait('up{job="modelport-controlplane"} == 1')
    spec = prometheus.wait('modelport_deployment_spec_replicas{deployment="busy"}')
    assert spec[0]["value"][1] == "1"
    restarts = prometheus.wait(f'modelport_pod_restarts_total{{pod="{pod}"}}')
    assert restarts[0]["metric"]["deployment"] == "busy" and restarts[0]["value"][1] == "0"


def test_recording_rules_answer_from_live_predictions(monitored: Monitored) -> None:
    plane, prometheus = monitored
    url = plane.service_url("busy") + "/v1/models/half:predict"
    with Load(url, {"instances": [2.0]}, threads=1):
        rate = prometheus.wait('deployment:modelport_requests:rate1m{deployment="busy"} > 0')
        p99 = prometheus.wait('deployment:modelport_request_duration_seconds:p99_1m{deployment="busy"} > 0')
        frontend = prometheus.wait('rate(haproxy_frontend_http_requests_total{service="busy"}[5s]) > 0')
    assert float(rate[0]["value"][1]) > 0 and float(p99[0]["value"][1]) < 10 and frontend
    rules = requests.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    alerts = [r for g in rules for r in g["rules"] if r["type"] == "alerting"]
    assert len(alerts) >= 7 and all(r["health"] == "ok" for g in rules for r in g["rules"])


def test_a_crash_loop_fires_its_alert_and_diagnose_names_it(monitored: Monitored) -> None:
    """A replica over its memory limit restarts; Prometheus fires ModelportReplicaRestarting from
    the control plane's metrics, and `diagnose` shows the firing alert beside the cause."""
    plane, prometheus = monitored
    half = plane.home.parent / "half"
    tight, _ = yaml.safe_load_all(deployment_yaml("tight", half, replicas=1))
    tight["spec"]["template"]["spec"]["resources"] = {"limits": {"memory": "64Mi"}}  # cannot even start
    (plane.home.parent / "tight.yaml").write_text(yaml.safe_dump(tight))
    plane.cli("apply", "-f", str(plane.home.parent / "tight.yaml"))
    try:
        firing = prometheus.wait(
            'ALERTS{alertname="ModelportReplicaRestarting",alertstate="firing",deployment="tight"}', 60
        )
        assert firing[0]["metric"]["severity"] == "page"
        said = plane.cli("diagnose", "deployment/tight").stdout
        assert "alert ModelportReplicaRestarting firing" in said, said
        report = json.loads(plane.cli("diagnose", "deployment/tight", "-o", "json").stdout)
        first = report["findings"][0]
        assert first["severity"] == 3 and "restarts (" in first["cause"], first
        assert "at its 64Mi memory limit; last log line: " in first["cause"], first
        assert first["cause"].split("; last log line: ")[1].strip(), first  # its own words, whichever
        name = report["replicas"][0]["name"]
        assert report["logs"][name] and report["replicas"][0]["restarts"] >= 1
        assert any(e["reason"] == "BackOff" for e in report["events"])
        assert any(a["labels"]["alertname"] == "ModelportReplicaRestarting" for a in report["alerts"])
    finally:
        plane.cli("delete", "deployment", "tight")


def test_monitoring_up_again_reloads_the_running_prometheus(monitored: Monitored) -> None:
    plane, prometheus = monitored
    before = json.loads((plane.home / "monitoring" / "prometheus.json").read_text())
    again = plane.cli("monitoring", "up", "--scrape-interval", "1s").stdout
    assert f"pid {before['pid']}" in again and prometheus.url in again


DASHBOARD = Path(__file__).parents[2] / "examples" / "monitoring" / "grafana-dashboard.json"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}  # fmt: skip
# Prometheus' own series, present only while an alert is pending or firing.
PROMETHEUS_SERIES = {"ALERTS", "ALERTS_FOR_STATE"}


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside strings, label matchers,
    grouping clauses and ranges, and not function names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", promql)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", text)
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def test_the_grafana_dashboards_queries_parse_and_read_metrics_that_exist(monitored: Monitored) -> None:
    """Every panel's query is valid PromQL to a real Prometheus, and reads only metrics that are
    scraped now, made by the recording rules, or read by the unit-tested alert rules (the model
    quality ones: drift, live accuracy)."""
    _, prometheus = monitored
    from modelport.monitor.prometheus import rules_text

    rules = yaml.safe_load(rules_text())["groups"]
    known = set(requests.get(f"{prometheus.url}/api/v1/label/__name__/values", timeout=5).json()["data"])
    known |= {r["record"] for g in rules for r in g["rules"] if "record" in r}
    known |= {n for g in rules for r in g["rules"] if "alert" in r for n in metric_names(r["expr"])}
    queries = dashboard_queries()
    assert len(queries) >= 15
    for title, expr in queries:
        promql = expr.replace("$deployment", ".+").replace("$__rate_interval", "1m")
        answer = requests.get(f"{prometheus.url}/api/v1/query", params={"query": promql}, timeout=5)
        assert answer.status_code == 200, f"{title}: {expr}: {answer.text}"
        unknown = metric_names(promql) - known - PROMETHEUS_SERIES
        assert not unknown, f"{title}: {expr} reads {unknown}, which nothing exports"
    # And the ones that always have data here answer with it.
    for title in (
        "Replicas and autoscaler",
        "CPU (cores)",
        "Load balancer (HAProxy): replicas up, requests queued",
    ):
        exprs = [e.replace("$deployment", ".+") for t, e in queries if t == title]
        prometheus.wait(exprs[0])


def test_metric_names_reads_names_not_functions_labels_or_clauses() -> None:
    assert metric_names('sum by (le, model) (rate(a_b_total{x="y{z}"}[5m])) / on(pod) b:c:d > 0.5') == {
        "a_b_total",
        "b:c:d",
    }


def test_down_stops_prometheus_too(monitored: Monitored) -> None:
    """The last test of the module: `modelport down` stops the control plane and its Prometheus."""
    plane, _ = monitored
    pid = json.loads((plane.home / "monitoring" / "prometheus.json").read_text())["pid"]
    said = plane.cli("down").stdout
    assert f"prometheus (pid {pid}) stopped" in said and "control plane stopped" in said
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "prometheus was not running" in plane.cli("monitoring", "down").stdout
