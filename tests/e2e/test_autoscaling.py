"""Autoscaling end to end: a real control plane, a real Service, real load. The HPA scales the
Deployment up from 1 while the load lasts and back down once the (shortened) window has passed
after it stops; `describe hpa` and `modelport plot` show what happened."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from support import Load, Plane, deployment_yaml, half_plus_two, mark_complete

HPA = """apiVersion: modelport/v1
kind: HorizontalPodAutoscaler
metadata: {name: busy}
spec:
  scaleTargetRef: {kind: Deployment, name: busy}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 4}
"""


def test_scales_up_under_load_and_down_after_it(tmp_path: Path) -> None:
    half_plus_two(tmp_path / "half" / "1")
    mark_complete(tmp_path / "half" / "1")
    plane = Plane(tmp_path / "home")
    try:
        plane.up("--metrics-window", "2", "--hpa-sync-seconds", "1")
        deployment, service = yaml.safe_load_all(deployment_yaml("busy", tmp_path / "half", replicas=1))
        deployment["spec"]["template"]["spec"]["resources"] = {"requests": {"cpu": "100m"}}
        (tmp_path / "busy.yaml").write_text(yaml.safe_dump_all([deployment, service]) + "---\n" + HPA)
        plane.cli("apply", "-f", str(tmp_path / "busy.yaml"))
        plane.cli("rollout", "status", "deployment/busy")
        url = plane.service_url("busy") + "/v1/models/half:predict"

        def replicas() -> int:
            return int(plane.json("get", "deployment", "busy")["spec"]["replicas"])

        with Load(url, {"instances": [2.0]}, threads=3) as load:
            plane.wait(lambda: replicas() >= 2, 30, "a scale-up under load")
            plane.wait(lambda: plane.json("get", "deployment", "busy")["status"].get("readyReplicas", 0) >= 2,
                       30, "the new replicas to be ready")  # fmt: skip
        assert load.failures() == []
        peak = replicas()
        assert 2 <= peak <= 3
        gone = time.monotonic()
        plane.wait(lambda: replicas() == 1, 40, "the scale-down after the load")
        assert time.monotonic() - gone >= 3  # not before the stabilization window (4 s) has passed
        described = plane.cli("describe", "hpa", "busy").stdout
        assert (
            f"New size: {peak}; reason: cpu resource utilization (percentage of request) above target"
            in described
        )
        assert "New size: 1; reason: All metrics below target" in described
        assert "ScalingActive" in described and "ValidMetricFound" in described
        table = plane.cli("get", "hpa").stdout.splitlines()
        assert table[0].split()[:3] == ["NAME", "REFERENCE", "TARGETS"] and "Deployment/busy" in table[1]
        chart = tmp_path / "busy.html"
        assert "wrote" in plane.cli("plot", "hpa/busy", "--out", str(chart)).stdout
        html = chart.read_text()
        assert html.count("<svg") == 2 and "current replicas" in html and "cpu resource utilization" in html
    finally:
        plane.stop()


def test_an_external_metric_from_a_real_prometheus(tmp_path: Path) -> None:
    """Prometheus scrapes the replicas (found through the control plane's API), the HPA scales on
    a PromQL query; with Prometheus gone, the HPA says so and holds the replica count."""
    import shutil
    import subprocess

    import requests

    from modelport.dataplane.haproxy import free_port

    half_plus_two(tmp_path / "half" / "1")
    mark_complete(tmp_path / "half" / "1")
    prometheus_port = free_port()
    plane = Plane(tmp_path / "home")
    prometheus = None
    try:
        plane.up("--hpa-sync-seconds", "1",
                 "--prometheus-url", f"http://127.0.0.1:{prometheus_port}")  # fmt: skip
        hpa = HPA.replace(
            """  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}""",
            """  - type: External
    external:
      metric: {name: requests_per_second, query: 'sum(rate(modelport_requests_total{app="busy"}[4s]))'}
      target: {type: AverageValue, averageValue: "20"}""",
        )
        (tmp_path / "busy.yaml").write_text(
            deployment_yaml("busy", tmp_path / "half", replicas=1) + "---\n" + hpa
        )
        plane.cli("apply", "-f", str(tmp_path / "busy.yaml"))
        plane.cli("rollout", "status", "deployment/busy")
        config = tmp_path / "prometheus.yml"
        plane.cli("prometheus-config", "--scrape-interval", "1s", "--out", str(config))
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        checked = subprocess.run([shutil.which("promtool") or "promtool", "check", "config", str(config)],
                                 capture_output=True, text=True)  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with open(tmp_path / "prometheus.log", "wb") as log:
            prometheus = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prometheus_port}"], stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        api = f"http://127.0.0.1:{prometheus_port}/api/v1/query"

        def scraping() -> bool:
            try:
                result = requests.get(api, params={"query": 'up{app="busy"}'}, timeout=2).json()["data"][
                    "result"
                ]
            except (requests.RequestException, ValueError, KeyError):
                return False
            return bool(result) and result[0]["value"][1] == "1"

        plane.wait(scraping, 30, "Prometheus to scrape the replica it found through the API")

        def replicas() -> int:
            return int(plane.json("get", "deployment", "busy")["spec"]["replicas"])

        url = plane.service_url("busy") + "/v1/models/half:predict"
        with Load(url, {"instances": [2.0]}, threads=2):
            plane.wait(lambda: replicas() >= 2, 30, "a scale-up on the Prometheus metric")
        described = plane.cli("describe", "hpa", "busy").stdout
        assert "reason: external metric requests_per_second above target" in described
        held = replicas()
        prometheus.terminate()
        prometheus.wait(10)
        prometheus = None

        def reported() -> bool:
            conditions = plane.json("get", "hpa", "busy")["status"]["conditions"]
            return any(
                c["type"] == "ScalingActive" and c["reason"] == "FailedGetExternalMetric" for c in conditions
            )

        plane.wait(reported, 20, "the HPA to report Prometheus missing")
        time.sleep(2)
        assert replicas() == held  # no data, no scaling
        assert "FailedGetExternalMetric" in plane.cli("describe", "hpa", "busy").stdout
    finally:
        if prometheus is not None:
            prometheus.kill()
        plane.stop()
