"""`modelport monitoring up`: a real Prometheus, configured by the control plane's service
discovery, scrapes a real replica, the Service's HAProxy and the control plane; its recording
rules answer once predictions flow; `monitoring down` stops it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

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
        plane.up()
        (root / "busy.yaml").write_text(deployment_yaml("busy", root / "half", replicas=1))
        plane.cli("apply", "-f", str(root / "busy.yaml"))
        plane.cli("rollout", "status", "deployment/busy")
        said = plane.cli("monitoring", "up", "--scrape-interval", "1s").stdout
        url = re.search(r"prometheus: (http://127\.0\.0\.1:\d+)", said)
        assert url is not None, said
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


def test_monitoring_up_again_reloads_the_running_prometheus(monitored: Monitored) -> None:
    plane, prometheus = monitored
    before = json.loads((plane.home / "monitoring" / "prometheus.json").read_text())
    again = plane.cli("monitoring", "up", "--scrape-interval", "1s").stdout
    assert f"pid {before['pid']}" in again and prometheus.url in again
