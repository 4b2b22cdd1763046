"""What a script may rely on (README, "Deploy, scale, update, undo"): exit code 0 on success and 1
on any error with `Error from server (Reason): message` on stderr, two applies at once giving one
of them `Error from server (Conflict)` (the other's object whole), `-o json|yaml` in Kubernetes'
shapes, `get pods -o wide`'s columns; and a control plane killed and started again adopting the
replicas and load balancer that kept serving, saying so in its log; `apply -f DIR` applying a
folder as kubectl does."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml
from click.testing import CliRunner

from modelport.controlplane.client import Client
from support import Plane, deployment_yaml, half_plus_two, mark_complete


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    half_plus_two(root / "half" / "1")
    mark_complete(root / "half" / "1")
    return root / "half"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[Plane]:
    plane = Plane(tmp_path_factory.mktemp("home"))
    plane.up()
    path = tmp_path_factory.mktemp("objects") / "web.yaml"
    path.write_text(deployment_yaml("web", model, replicas=1))
    plane.cli("apply", "-f", str(path))
    plane.cli("rollout", "status", "deployment/web")
    yield plane
    plane.stop()


def test_an_error_exits_1_with_the_servers_reason_on_stderr(plane: Plane, tmp_path: Path) -> None:
    missing = plane.cli("get", "deployment", "nope", check=False)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == 'Error from server (NotFound): deployments "nope" not found\n'
    bad = tmp_path / "bad.yaml"
    bad.write_text(deployment_yaml("bad", "/nowhere", replicas=-1, service_port=None))
    invalid = plane.cli("apply", "-f", str(bad), check=False)
    assert invalid.returncode == 1 and invalid.stderr.startswith("Error from server (Invalid): ")
    assert "spec.replicas" in invalid.stderr
    assert plane.cli("get", "deployment", "web").returncode == 0


class _RacingClient(Client):
    """The API client `apply` uses, with another writer changing the object just after `apply`
    read it: the worst moment, every time."""

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any]:
        current = super().get(kind, name, namespace)
        other = super().get(kind, name, namespace)
        other["spec"]["replicas"] = 3
        Client.replace(self, other)
        return current


def _template(name: str, condition: str) -> str:
    metric = {"name": "m", "successCondition": condition, "provider": {"modelport": {"metric": "errorRate"}}}
    head = {"apiVersion": "modelport/v1", "kind": "AnalysisTemplate", "metadata": {"name": name}}
    return yaml.safe_dump({**head, "spec": {"metrics": [metric]}})


def test_a_folder_of_alternatives_applies_a_shared_object_once_and_refuses_a_differing_one(
    plane: Plane, tmp_path: Path
) -> None:
    """`apply -f DIR` as kubectl: every file of the folder, its other YAML (a training config)
    passed over; an object two files carry alike applied once; carried differently, nothing is
    applied and both files are named."""
    folder = tmp_path / "objects"
    folder.mkdir()
    (folder / "a.yaml").write_text(
        _template("shared", "result < 1") + "---\n" + _template("only-a", "result < 1")
    )
    (folder / "b.yaml").write_text(
        _template("shared", "result < 1") + "---\n" + _template("only-b", "result < 1")
    )
    (folder / "train.yaml").write_text("epochs: 3\nlearning_rate: 0.01\n")
    applied = plane.cli("apply", "-f", str(folder))
    created = ["shared", "only-a", "only-b"]
    assert applied.stdout.splitlines() == [f"analysistemplate/{name} created" for name in created]
    (folder / "b.yaml").write_text(
        _template("shared", "result < 0.5") + "---\n" + _template("new", "result < 1")
    )
    refused = plane.cli("apply", "-f", str(folder), check=False)
    assert refused.returncode == 1, refused
    assert (
        f"AnalysisTemplate/shared: given twice, differently, in {folder / 'a.yaml'} and {folder / 'b.yaml'}"
        in (refused.stderr)
    )
    assert plane.cli("get", "analysistemplate", "new", check=False).returncode == 1  # nothing applied


def test_two_applies_at_once_one_gets_a_conflict_and_exit_1(
    plane: Plane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelport.cli import cli

    (tmp_path / "race.yaml").write_text(deployment_yaml("race", "/nowhere", replicas=1, service_port=None))
    plane.cli("apply", "-f", str(tmp_path / "race.yaml"))
    (tmp_path / "race.yaml").write_text(deployment_yaml("race", "/nowhere", replicas=2, service_port=None))
    monkeypatch.setenv("MODELPORT_HOME", str(plane.home))
    monkeypatch.setattr("modelport.cli.objects.client", lambda: _RacingClient.from_home(plane.home))
    result = CliRunner().invoke(cli, ["apply", "-f", str(tmp_path / "race.yaml")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error from server (Conflict): ")
    assert "the object has been modified" in result.stderr
    assert plane.json("get", "deployment", "race")["spec"]["replicas"] == 3  # the other write, whole
    plane.cli("delete", "deployment", "race")


def test_outputs_in_kubernetes_shapes(plane: Plane) -> None:
    as_yaml = yaml.safe_load(plane.cli("get", "deployment", "web", "-o", "yaml").stdout)
    as_json = plane.json("get", "deployment", "web")
    assert as_yaml == as_json
    assert (as_yaml["apiVersion"], as_yaml["kind"], as_yaml["metadata"]["name"]) == (
        "modelport/v1",
        "Deployment",
        "web",
    )
    assert as_yaml["spec"]["replicas"] == 1 and as_yaml["status"]["readyReplicas"] == 1
    (pod,) = plane.json("get", "pods")["items"]
    assert psutil.Process(pod["status"]["pid"]).is_running()
    wide = plane.cli("get", "pods", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "PID", "PORT", "IP"]
    row = wide[1].split()
    assert (row[0], row[1], row[2], row[3]) == (pod["metadata"]["name"], "1/1", "Running", "0")
    assert (row[5], row[6], row[7]) == (str(pod["status"]["pid"]), str(pod["status"]["port"]), "127.0.0.1")


def test_a_killed_control_plane_adopts_what_kept_serving(plane: Plane) -> None:
    url = plane.service_url("web") + "/v1/models/half:predict"
    (before,) = plane.json("get", "pods")["items"]
    control = psutil.Process(plane.pid)
    os.kill(plane.pid, signal.SIGKILL)
    plane.wait(lambda: not control.is_running() or control.status() == psutil.STATUS_ZOMBIE, 20, "it to die")
    assert requests.post(url, json={"instances": [2.0]}, timeout=10).json() == {"predictions": [[3.0]]}
    plane.up()
    log = (plane.home / "controlplane" / "controlplane.log").read_text()
    assert "adopted 1 replicas and 1 load balancers" in log
    (after,) = plane.json("get", "pods")["items"]
    assert (after["status"]["pid"], after["status"]["port"]) == (
        before["status"]["pid"],
        before["status"]["port"],
    )
    assert requests.post(url, json={"instances": [2.0]}, timeout=10).json() == {"predictions": [[3.0]]}
    assert json.loads((plane.home / "controlplane" / "api.json").read_text())["pid"] != control.pid
