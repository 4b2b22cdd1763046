"""`modelport render` of a Rollout and its AnalysisTemplates: Argo Rollouts' objects
(argoproj.io/v1alpha1) beside the core ones, the modelport provider as Prometheus queries that
promtool parses and that compute what the local analysis computes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelport.errors import ModelportError
from modelport.kube.argo import modelport_query
from modelport.kube.pods import PodOptions
from modelport.kube.render import KUSTOMIZATION, Rendered, load_objects_from, render_kubernetes
from modelport.spec import load_objects

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"


def _rendered() -> Rendered:
    return render_kubernetes(
        load_objects_from([EXAMPLE / "analysis.yaml", EXAMPLE / "rollout.yaml"]), PodOptions("mnist:1")
    )


def _docs(rendered: Rendered) -> dict[str, dict[str, Any]]:
    docs = [yaml.safe_load(t) for n, t in rendered.files.items() if n != KUSTOMIZATION]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_a_rollout_renders_as_argos_with_its_template_and_the_core_objects_beside_it() -> None:
    rendered = _rendered()
    docs = _docs(rendered)
    assert sorted(docs) == [
        "AnalysisTemplate/mnist-health", "ConfigMap/mnist-canary-model-config",
        "PodDisruptionBudget/mnist-canary", "Rollout/mnist-canary", "Service/mnist-canary",
    ]  # fmt: skip
    rollout = docs["Rollout/mnist-canary"]
    assert rollout["apiVersion"] == "argoproj.io/v1alpha1"
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    assert steps[0] == {"setWeight": 20} and steps[-1] == {"pause": {"duration": "30s"}}
    analysis = steps[1]["analysis"]
    assert analysis["templates"] == [{"templateName": "mnist-health"}]
    assert {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}} in analysis["args"]
    assert {"name": "rollout", "value": "mnist-canary"} in analysis["args"]
    container = rollout["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "mnist:1" and "readinessProbe" in container  # the Deployment's Pods
    for key in (
        "ConfigMap/mnist-canary-model-config",
        "PodDisruptionBudget/mnist-canary",
        "Service/mnist-canary",
    ):
        kubernetes_validate.validate(docs[key], "1.28", strict=True)
    metric = docs["AnalysisTemplate/mnist-health"]["spec"]["metrics"][0]
    assert metric["successCondition"] == "!isNaN(result) && (result < 0.15)"  # no data never passes
    assert "modelport_predictions_total" in metric["provider"]["prometheus"]["query"]
    said = " ".join(str(n) for n in rendered.notes)
    assert "trafficRouting" in said and "minSamples" in said


def _promtool(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("promtool") or "promtool", *args], cwd=tmp, capture_output=True, text=True
    )


def test_the_queries_parse_and_compute_what_the_local_analysis_does(tmp_path: Path) -> None:
    """Canary: classes 0 and 1 at 10 a minute each; stable: class 0 at 20 a minute; the canary's
    5xx one in ten of its answers; of stable's copies to it (setMirror), 9 agree and 1 does not in
    ten; of the canary's answers labelled by feedback, 3 in 4 right. Class distance 0.5, error rate
    0.1, agreement 0.9, live accuracy 0.75, as modelport_value says."""
    names = ("errorRate", "latencyP99", "classDistance", "agreement", "liveAccuracy")
    rules = [
        {"record": f"analysis:{name}",
         "expr": "vector(" + modelport_query(name, "60s").replace("{{args.rollout}}", "web")
         .replace("{{args.canary-hash}}", "new").replace("{{args.stable-hash}}", "old") + ")"}
        for name in names
    ]  # fmt: skip
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "analysis", "rules": rules}]}))
    series = [
        ('modelport_predictions_total{pod="web-new-a",class="0"}', "0+10x10"),
        ('modelport_predictions_total{pod="web-new-a",class="1"}', "0+10x10"),
        ('modelport_predictions_total{pod="web-old-b",class="0"}', "0+20x10"),
        ('modelport_requests_total{pod="web-new-a",status="200"}', "0+18x10"),
        ('modelport_requests_total{pod="web-new-a",status="503"}', "0+2x10"),
        ('modelport_mirror_requests_total{pod="web-old-b",outcome="agree"}', "0+9x10"),
        ('modelport_mirror_requests_total{pod="web-old-b",outcome="disagree"}', "0+1x10"),
        ('modelport_mirror_requests_total{pod="web-old-b",outcome="dropped"}', "0+5x10"),
        ('modelport_feedback_total{pod="web-new-a"}', "0+4x10"),
        ('modelport_feedback_correct_total{pod="web-new-a"}', "0+3x10"),
        ('modelport_feedback_total{pod="web-old-b"}', "0+8x10"),
    ]
    test = {
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [
                {"expr": f"analysis:{name}", "eval_time": "5m",
                 "exp_samples": [{"labels": f"analysis:{name}", "value": value}]}
                for name, value in (("classDistance", 0.5), ("errorRate", 0.1), ("agreement", 0.9),
                                    ("liveAccuracy", 0.75))
            ],
        }],
    }  # fmt: skip
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    checked = _promtool(tmp_path, "check", "rules", "rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    done = _promtool(tmp_path, "test", "rules", "test.yml")
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_a_mirror_step_is_refused_by_name_not_dropped() -> None:
    rollout = (
        (EXAMPLE / "rollout.yaml").read_text().replace("- setWeight: 20", "- setMirror: {percent: 20}", 1)
    )
    assert "setMirror" in rollout
    objects = load_objects_from([EXAMPLE / "analysis.yaml"]) + load_objects(rollout)
    with pytest.raises(ModelportError) as caught:
        render_kubernetes(objects, PodOptions("mnist:1"))
    said = caught.value.message
    assert "spec.strategy.canary.steps[0].setMirror cannot be rendered" in said and "setMirrorRoute" in said


def test_a_header_route_step_is_refused_by_name_not_dropped() -> None:
    route = "- setHeaderRoute: {name: testers, match: [{headerName: x-tester, headerValue: {exact: on1}}]}"
    rollout = (EXAMPLE / "rollout.yaml").read_text().replace("- setWeight: 20", route, 1)
    objects = load_objects_from([EXAMPLE / "analysis.yaml"]) + load_objects(rollout)
    with pytest.raises(ModelportError) as caught:
        render_kubernetes(objects, PodOptions("mnist:1"))
    said = caught.value.message
    assert "spec.strategy.canary.steps[0].setHeaderRoute cannot be rendered" in said, said
    assert "managedRoutes" in said


def test_canary_and_stable_services_render_as_argos() -> None:
    text = (EXAMPLE / "rollout.yaml").read_text()
    pinned = "    canary:\n      canaryService: mnist-c\n      stableService: mnist-s\n"
    rollout = text.replace("    canary:\n", pinned, 1)
    rendered = render_kubernetes(
        load_objects_from([EXAMPLE / "analysis.yaml"]) + load_objects(rollout), PodOptions("mnist:1")
    )
    canary = _docs(rendered)["Rollout/mnist-canary"]["spec"]["strategy"]["canary"]
    assert (canary["canaryService"], canary["stableService"]) == ("mnist-c", "mnist-s")


def test_a_canarys_max_surge_renders_with_a_note_on_when_argo_applies_it() -> None:
    text = (EXAMPLE / "rollout.yaml").read_text()
    rollout = text.replace("    canary:\n", "    canary:\n      maxSurge: 1\n      maxUnavailable: 0\n", 1)
    rendered = render_kubernetes(
        load_objects_from([EXAMPLE / "analysis.yaml"]) + load_objects(rollout), PodOptions("mnist:1")
    )
    canary = _docs(rendered)["Rollout/mnist-canary"]["spec"]["strategy"]["canary"]
    assert (canary["maxSurge"], canary["maxUnavailable"]) == (1, 0)
    assert any("at every step" in str(n) and "maxSurge" in str(n) for n in rendered.notes)
