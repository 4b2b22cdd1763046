"""Autoscaling end to end: a real control plane, a real Service, real load. The HPA scales the
Deployment up from 1 while the load lasts and back down once the (shortened) window has passed
after it stops; `describe hpa` and `modelport plot` show what happened."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import yaml

from support import Load, Plane, deployment_yaml, half_plus_two, listening_port, mark_complete

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
            return int(plane.get("Deployment", "busy")["spec"]["replicas"])

        with Load(url, {"instances": [2.0]}, threads=3) as load:
            plane.wait(lambda: replicas() >= 2, 30, "a scale-up under load")
            plane.wait(lambda: plane.get("Deployment", "busy")["status"].get("readyReplicas", 0) >= 2,
                       30, "the new replicas to be ready")  # fmt: skip
        assert load.failures() == [] and set(load.values()) == {3.0}
        peak = replicas()
        assert 2 <= peak <= 3
        # Not before the stabilization window (4 s) has passed: the HPA first says it holds a
        # lower recommendation back, with the replicas still up, then scales down.
        plane.wait(lambda: _able_to_scale(plane) == "ScaleDownStabilized" and replicas() > 1, 30,
                   "the HPA to hold the scale-down for its window")  # fmt: skip
        plane.wait(lambda: replicas() == 1, 40, "the scale-down after the load")
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
    import requests

    half_plus_two(tmp_path / "half" / "1")
    mark_complete(tmp_path / "half" / "1")
    plane = Plane(tmp_path / "home")
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s}\n")  # nothing to scrape until the plane runs
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    with open(tmp_path / "prometheus.log", "wb") as log:  # port 0: Prometheus logs the one it got
        prometheus: subprocess.Popen[bytes] | None = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             "--web.listen-address=127.0.0.1:0"], stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        prometheus_port = listening_port(tmp_path / "prometheus.log")
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
        plane.cli("prometheus-config", "--scrape-interval", "1s", "--out", str(config))
        checked = subprocess.run([shutil.which("promtool") or "promtool", "check", "config", str(config)],
                                 capture_output=True, text=True)  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert prometheus is not None
        prometheus.send_signal(signal.SIGHUP)  # Prometheus re-reads its configuration file
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
            return int(plane.get("Deployment", "busy")["spec"]["replicas"])

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
            conditions = plane.get("HorizontalPodAutoscaler", "busy")["status"]["conditions"]
            return any(
                c["type"] == "ScalingActive" and c["reason"] == "FailedGetExternalMetric" for c in conditions
            )

        def failed_rounds() -> int:  # the HPA's Warning event, counted once a round
            events = plane.items("Event")
            return sum(e.get("count", 1) for e in events if e["reason"] == "FailedGetExternalMetric")

        plane.wait(reported, 20, "the HPA to report Prometheus missing")
        rounds = failed_rounds()
        plane.wait(lambda: failed_rounds() >= rounds + 2, 20, "two more HPA rounds without Prometheus")
        assert replicas() == held  # no data, no scaling
        assert "FailedGetExternalMetric" in plane.cli("describe", "hpa", "busy").stdout
    finally:
        if prometheus is not None:
            prometheus.kill()
            prometheus.wait(10)
        plane.stop()


def _able_to_scale(plane: Plane) -> str:
    conditions = plane.get("HorizontalPodAutoscaler", "busy")["status"].get("conditions", [])
    return str(next((c["reason"] for c in conditions if c["type"] == "AbleToScale"), ""))
