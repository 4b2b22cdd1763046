"""`modelport render --target kubernetes` on the MNIST example: what it writes is valid Kubernetes
(the API's own schemas, 1.28 through the newest, strict), builds with kustomize, carries our fields
with their meaning, and is what examples/mnist/k8s/ holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from modelport.cli import cli
from modelport.errors import ModelportError
from modelport.kube.pods import PodOptions
from modelport.kube.render import (
    ADAPTER_VALUES,
    KUSTOMIZATION,
    Rendered,
    load_objects_from,
    render_kubernetes,
    write_output,
)
from modelport.spec import HorizontalPodAutoscaler, load_objects, to_dict

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mnist"
GOLDEN = EXAMPLE / "k8s"
# The Deployments' files: the folder also holds a Pipeline's and the Rollouts' (rendered to Argo's below).
SERVED = (EXAMPLE / "deploy.yaml", EXAMPLE / "hpa.yaml")
REGENERATE = (
    "modelport render -f examples/mnist/deploy.yaml -f examples/mnist/hpa.yaml --target kubernetes "
    "--image mnist:1 -o examples/mnist/k8s/"
)
# Every release from 1.28 (the oldest still widely run) to the newest the schemas know.
_NEWEST = int(kubernetes_validate.latest_version().split(".")[1])
VERSIONS = tuple(f"1.{minor}" for minor in range(28, _NEWEST + 1))


def documents(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """`Kind/name` -> document, for every file kustomize applies."""
    docs = {}
    for name, text in rendered.files.items():
        if name not in (KUSTOMIZATION, ADAPTER_VALUES):
            doc = yaml.safe_load(text)
            docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


@pytest.fixture(scope="module")
def example() -> Rendered:
    return render_kubernetes(load_objects_from(SERVED), PodOptions("mnist:1"))


@pytest.mark.parametrize("models", ["image", "volume"])
def test_every_document_validates_strictly_against_128_through_the_newest(models: str) -> None:
    rendered = render_kubernetes(load_objects_from(SERVED), PodOptions("mnist:1", models))  # type: ignore[arg-type]
    docs = documents(rendered)
    assert sorted(docs) == [
        "ConfigMap/mnist-model-config", "Deployment/gateway", "Deployment/mnist",
        "HorizontalPodAutoscaler/mnist", "PodDisruptionBudget/gateway", "PodDisruptionBudget/mnist",
        "Service/gateway", "Service/mnist",
    ]  # fmt: skip
    assert VERSIONS[0] == "1.28" and len(VERSIONS) >= 10  # the package ships 1.37 and newer
    for version in VERSIONS:
        for key, doc in docs.items():
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{key} is not valid Kubernetes {version}: {exc.message}")


def test_the_example_in_the_repository_is_what_render_writes_now(example: Rendered) -> None:
    held = {p.name: p.read_text() for p in GOLDEN.iterdir()}
    stale = sorted(set(held) ^ set(example.files) | {n for n in held if example.files.get(n) != held[n]})
    assert not stale, f"examples/mnist/k8s/ is stale ({', '.join(stale)}): regenerate with `{REGENERATE}`"


def test_deployment_fields_carry_their_meaning(example: Rendered) -> None:
    dep = documents(example)["Deployment/mnist"]
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    (serve,) = pod["containers"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert (spec["minReadySeconds"], spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (
        0,
        10,
        600,
    )
    assert spec["selector"] == {"matchLabels": {"app": "mnist"}}
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "mnist"}
    assert dep["metadata"]["annotations"] == {"kubernetes.io/change-cause": "MNIST MLP from the quickstart"}
    # Our probe defaults, not Kubernetes' (period 1 s where it has 10): readiness is /readyz,
    # which answers 200 only once the model is AVAILABLE.
    assert serve["readinessProbe"] == {
        "httpGet": {"path": "/readyz", "port": "http"}, "initialDelaySeconds": 0, "periodSeconds": 1,
        "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3,
    }  # fmt: skip
    assert serve["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert serve["livenessProbe"]["periodSeconds"] == 5
    assert serve["resources"] == {"limits": {"memory": "2Gi"}, "requests": {"cpu": "500m"}}
    assert serve["args"] == [
        "serve",
        "--host=0.0.0.0",
        "--auth=off",
        "--rest_api_port=8501",
        "--port=8500",
        "--model_config_file=/etc/modelport/models.yaml",
    ]
    assert {p["name"]: p["containerPort"] for p in serve["ports"]} == {"http": 8501, "grpc": 8500}


def test_pods_are_locked_down_and_stop_like_a_local_replica(example: Rendered) -> None:
    pod = documents(example)["Deployment/mnist"]["spec"]["template"]
    spec, (serve,) = pod["spec"], pod["spec"]["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert serve["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    # The read-only root file system's one writable path, and the model config, are volumes.
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in serve["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/etc/modelport"]]["configMap"] == {"name": "mnist-model-config"}
    # preStop 5 s (endpoints leave every node first), then SIGTERM: 10 s REST drain, 5 s gRPC,
    # 5 s threads; the grace period covers the sum.
    assert serve["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert spec["terminationGracePeriodSeconds"] == 25
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8501"
    assert spec["topologySpreadConstraints"][0]["labelSelector"] == {"matchLabels": {"app": "mnist"}}


def test_model_config_points_at_the_models_in_the_image(example: Rendered) -> None:
    config = documents(example)["ConfigMap/mnist-model-config"]
    assert yaml.safe_load(config["data"]["models.yaml"]) == {
        "model_config_list": {"config": [{"name": "mnist", "base_path": "/models/mnist"}]}
    }
    assert config["metadata"]["annotations"]["modelport.io/base-path"] == "/tmp/tfserving/saved_model"


def test_a_new_model_config_rolls_the_pods_and_default_namespace_objects_name_none(example: Rendered) -> None:
    text = (
        (EXAMPLE / "deploy.yaml")
        .read_text()
        .replace("name: mnist\n        basePath", "name: digits\n        basePath")
    )
    other = documents(render_kubernetes(load_objects(text), PodOptions("mnist:1")))
    key = "modelport.io/model-config-sha256"
    before = documents(example)["Deployment/mnist"]["spec"]["template"]["metadata"]["annotations"][key]
    after = other["Deployment/mnist"]["spec"]["template"]["metadata"]["annotations"][key]
    assert len(before) == len(after) == 64 and before != after  # a changed template: a rollout
    assert all("namespace" not in doc["metadata"] for doc in documents(example).values())


def test_volume_mode_mounts_the_claim_read_only() -> None:
    rendered = render_kubernetes(load_objects_from(SERVED), PodOptions("mnist:1", "volume", "mnist-models"))
    pod = documents(rendered)["Deployment/mnist"]["spec"]["template"]["spec"]
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "mnist-models", "readOnly": True}
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in pod["containers"][0][
        "volumeMounts"
    ]
    gateway = documents(rendered)["Deployment/gateway"]["spec"]["template"]["spec"]
    assert all(v["name"] != "models" for v in gateway["volumes"])


def test_gateway_calls_the_model_service_by_name_and_port(example: Rendered) -> None:
    docs = documents(example)
    (front,) = docs["Deployment/gateway"]["spec"]["template"]["spec"]["containers"]
    assert front["args"] == ["gateway", "--host=0.0.0.0", "--port=5000", "--model-url=http://mnist:8501",
                             "--model=mnist", "--timeout=10"]  # fmt: skip
    assert docs["Service/gateway"]["spec"]["ports"] == [
        {"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert docs["Service/mnist"]["spec"]["ports"] == [
        {"name": "http", "port": 8501, "targetPort": "http", "protocol": "TCP"}
    ]


def test_hpa_metrics_and_behavior_pass_unchanged(example: Rendered) -> None:
    (ours,) = [
        o for o in load_objects((EXAMPLE / "hpa.yaml").read_text()) if isinstance(o, HorizontalPodAutoscaler)
    ]
    hpa = documents(example)["HorizontalPodAutoscaler/mnist"]["spec"]
    mine = to_dict(ours)["spec"]
    assert hpa["metrics"] == mine["metrics"]
    assert hpa["behavior"] == mine["behavior"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mnist"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 4)


def test_the_pods_metric_is_warned_and_its_adapter_rule_written(example: Rendered) -> None:
    assert [(n.where, n.field) for n in example.notes] == [
        ("HorizontalPodAutoscaler/mnist", "spec.metrics[1]")
    ]
    assert "Prometheus Adapter" in example.notes[0].message
    (rule,) = yaml.safe_load(example.files[ADAPTER_VALUES])["rules"]["custom"]
    assert rule["name"]["as"] == "requests_per_second"
    assert rule["metricsQuery"].startswith("sum(rate(<<.Series>>")
    assert str(example.notes[0]) in example.files[KUSTOMIZATION]  # also where `kubectl apply -k` looks


LEAST = """\
apiVersion: modelport/v1
kind: Service
metadata: {name: mnist}
spec:
  selector: {app: mnist}
  ports: [{name: http, port: 8501}]
  loadBalancing: leastConnection
"""


def test_strict_refuses_least_connection_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(LEAST)
    out = tmp_path / "k8s"
    args = ["render", "-f", str(tmp_path / "svc.yaml"), "--image", "mnist:1", "-o", str(out)]
    refused = CliRunner().invoke(cli, [*args, "--strict"])
    assert refused.exit_code == 1
    assert (
        "error: Service/mnist: spec.loadBalancing: leastConnection: Kubernetes cannot express it"
        in refused.output
    )
    assert "--ipvs-scheduler=lc" in refused.output
    assert "--strict: 1 field(s) above cannot be carried as is; nothing written" in refused.output
    assert not out.exists()
    warned = CliRunner().invoke(cli, args)
    assert warned.exit_code == 0, warned.output
    assert "warning: Service/mnist: spec.loadBalancing: leastConnection" in warned.output
    assert "sessionAffinity: None" in (out / "service-mnist.yaml").read_text()


def test_a_second_render_replaces_the_folder_whole_but_never_a_foreign_one(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    write_output(render_kubernetes(load_objects_from(SERVED), PodOptions("mnist:1")), out)
    write_output(render_kubernetes(load_objects_from([EXAMPLE / "deploy.yaml"]), PodOptions("mnist:2")), out)
    assert not (out / "hpa-mnist.yaml").exists()  # the HPA is no longer rendered: its file is gone
    assert "image: mnist:2" in (out / "deployment-mnist.yaml").read_text()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ModelportError, match="was not written by modelport render"):
        write_output(render_kubernetes(load_objects_from(SERVED), PodOptions("mnist:1")), mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_args_that_would_fight_render_are_refused() -> None:
    text = (EXAMPLE / "deploy.yaml").read_text()
    text = text.replace("      readinessProbe:", "      args: [--rest_api_port=9000]\n      readinessProbe:")
    with pytest.raises(ModelportError, match=r"args: --rest_api_port is set by render"):
        render_kubernetes(load_objects(text), PodOptions("mnist:1"))


@pytest.mark.parametrize(
    ("cpu", "args", "workers"),
    [(None, None, None), ("500m", None, None), ("1500m", None, "2"), ("4", None, "4"),
     ("4", "--workers=1", "1")],
)  # fmt: skip
def test_a_pod_runs_as_many_workers_as_its_cpu_limit(
    cpu: str | None, args: str | None, workers: str | None
) -> None:
    from modelport.cli.serve import serve

    text = (EXAMPLE / "deploy.yaml").read_text()
    if cpu:
        text = text.replace("limits: {memory: 2Gi}", f"limits: {{memory: 2Gi, cpu: '{cpu}'}}")
    if args:
        text = text.replace("      readinessProbe:", f"      args: [{args}]\n      readinessProbe:")
    docs = documents(render_kubernetes(load_objects(text), PodOptions("mnist:1")))
    (container,) = docs["Deployment/mnist"]["spec"]["template"]["spec"]["containers"]
    assert [a for a in container["args"] if a.startswith("--workers")] == (
        [f"--workers={workers}"] if workers else []
    )
    context = serve.make_context("serve", container["args"][1:])  # click's parse only
    assert context.params["workers"] == int(workers or 1)


def test_a_gateway_without_its_service_is_refused() -> None:
    objects = [
        o
        for o in load_objects((EXAMPLE / "deploy.yaml").read_text())
        if o.metadata.name != "mnist" or o.kind != "Service"
    ]
    with pytest.raises(ModelportError, match="Service 'mnist' is not among the files rendered"):
        render_kubernetes(objects, PodOptions("mnist:1"))


def test_the_rendered_command_lines_are_ones_modelport_accepts(example: Rendered) -> None:
    from modelport.cli.gateway import gateway
    from modelport.cli.serve import serve

    docs = documents(example)
    for key, command in (("Deployment/mnist", serve), ("Deployment/gateway", gateway)):
        (container,) = docs[key]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["modelport"]
        context = command.make_context(container["args"][0], container["args"][1:])  # click's parse only
        assert context.params["host"] == "0.0.0.0" and context.params["port"] in (8500, 5000)


def test_a_bad_claim_or_image_is_refused_naming_the_flag(tmp_path: Path) -> None:
    base = ["render", "-f", str(EXAMPLE), "-o", str(tmp_path / "k8s")]
    bad_claim = CliRunner().invoke(
        cli, [*base, "--image", "mnist:1", "--models", "volume", "--models-claim", "My_Claim"]
    )
    assert bad_claim.exit_code == 1 and "--models-claim: a claim name is lowercase" in bad_claim.output
    bad_image = CliRunner().invoke(cli, [*base, "--image", "mnist 1"])
    assert bad_image.exit_code == 1 and "--image: an image reference, got 'mnist 1'" in bad_image.output
    assert not (tmp_path / "k8s").exists()


SERVICE = """apiVersion: modelport/v1
kind: Service
metadata:
  name: mnist
spec:
  selector: {app: mnist}
  ports:
    - name: http
      port: PORT
"""


def test_a_folder_of_alternatives_renders_an_object_they_share_once(tmp_path: Path) -> None:
    """kubectl applies every file of a folder: an object two files carry alike is the same object
    (applied twice, to one effect); the folder's other YAML (a training config) is passed over."""
    folder = tmp_path / "objects"
    folder.mkdir()
    for source in (*SERVED, EXAMPLE / "mlp.yaml"):
        (folder / source.name).write_text(source.read_text())
    (folder / "zz-service.yaml").write_text(SERVICE.replace("PORT", "8501"))
    out = tmp_path / "k8s"
    rendered = CliRunner().invoke(cli, ["render", "-f", str(folder), "--image", "mnist:1", "-o", str(out)])
    assert rendered.exit_code == 0, rendered.output
    written = {p.name: p.read_text() for p in out.iterdir()}
    assert written == render_kubernetes(load_objects_from(SERVED), PodOptions("mnist:1")).files


def test_an_object_given_twice_differently_is_refused_naming_both_files(tmp_path: Path) -> None:
    folder = tmp_path / "objects"
    folder.mkdir()
    (folder / "deploy.yaml").write_text((EXAMPLE / "deploy.yaml").read_text())
    (folder / "zz-service.yaml").write_text(SERVICE.replace("PORT", "9000"))
    out = tmp_path / "k8s"
    refused = CliRunner().invoke(cli, ["render", "-f", str(folder), "--image", "mnist:1", "-o", str(out)])
    assert refused.exit_code == 1
    assert f"Service/mnist: given twice, differently, in {folder / 'deploy.yaml'} and " in refused.output
    assert str(folder / "zz-service.yaml") in refused.output and not out.exists()


def test_the_whole_example_folder_names_the_alternatives_that_cannot_render_together(tmp_path: Path) -> None:
    """examples/mnist/ holds a Deployment of the model (deploy.yaml) and the Rollout a pipeline
    releases into (serving.yaml): each its model's ConfigMap, pointing at other models."""
    out = tmp_path / "k8s"
    refused = CliRunner().invoke(cli, ["render", "-f", str(EXAMPLE), "--image", "mnist:1", "-o", str(out)])
    assert refused.exit_code == 1 and not out.exists()
    assert (
        f"ConfigMap/mnist-model-config: rendered differently from Deployment/mnist in "
        f"{EXAMPLE / 'deploy.yaml'} and from Rollout/mnist in {EXAMPLE / 'serving.yaml'}; render one of them"
    ) in refused.output
