"""The control plane as people and scripts use it: `modelport up --detach`, `apply`, `get`,
`rollout`, `scale`, `describe`, `down`, with real replicas, a real HAProxy and real clients on
loopback, and the faults a production team meets: a replica killed under load, a rolling
update under load, a model that does not load, a control plane killed mid-rollout, two applies
at once, an invalid file."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from support import PATIENCE, Load, Plane, WritesAfterReads, deployment_yaml, half_plus_two, mark_complete

V1, V2 = 3.0, 4.0  # what half_plus_two answers for x=2 in the two model versions


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    for name, offset in (("v1", 2.0), ("v2", 3.0)):
        half_plus_two(root / name / "1", offset=offset)
        mark_complete(root / name / "1")
    return {"v1": root / "v1", "v2": root / "v2", "missing": root / "does-not-exist"}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    plane = Plane(tmp_path_factory.mktemp("home"))
    plane.up()
    yield plane
    plane.stop()


def apply(plane: Plane, tmp: Path, text: str) -> str:
    path = tmp / f"objects-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    return plane.cli("apply", "-f", str(path)).stdout


def deployed(plane: Plane, tmp: Path, name: str, base: Path, **spec: Any) -> str:
    """Apply a Deployment and Service `name`, wait for the rollout; the Service's URL."""
    apply(plane, tmp, deployment_yaml(name, base, **spec))
    plane.cli("rollout", "status", f"deployment/{name}")
    return plane.service_url(name)


def pods_of(plane: Plane, app: str) -> list[dict[str, Any]]:
    """The app's replicas, those being stopped left out."""
    pods = plane.items("Pod")
    return [
        p
        for p in pods
        if p["metadata"]["labels"].get("app") == app and "deletionTimestamp" not in p["metadata"]
    ]


def predict(url: str) -> float:
    answer = requests.post(url + "/v1/models/half:predict", json={"instances": [2.0]}, timeout=10)
    assert answer.status_code == 200, answer.text
    return float(answer.json()["predictions"][0][0])


def test_deploy_then_call_through_the_service(plane: Plane, models: dict[str, Path], tmp_path: Path) -> None:
    out = apply(plane, tmp_path, deployment_yaml("web", models["v1"]))
    assert out.splitlines() == ["deployment/web created", "service/web created"]
    assert (
        'deployment "web" successfully rolled out' in plane.cli("rollout", "status", "deployment/web").stdout
    )
    url = plane.service_url("web")
    assert predict(url) == V1
    # Kubernetes' shapes for scripts: the Service's port, each replica's pid.
    service = plane.json("get", "service", "web")
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "127.0.0.1"
    assert plane.client().resolve("web") == url
    pods = pods_of(plane, "web")
    assert len(pods) == 2 and all(p["status"]["ready"] for p in pods)
    assert {p["status"]["pid"] for p in pods} <= plane.replica_pids()
    assert plane.json("get", "pods")["kind"] == "List"
    table = plane.cli("get", "deployments").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert next(line for line in table if line.startswith("web ")).split()[1:4] == ["2/2", "2", "2"]
    assert "127.0.0.1" in plane.cli("get", "svc", "web", "-o", "wide").stdout
    both = plane.cli("get", "deploy,svc").stdout.split("\n\n")
    assert "UP-TO-DATE" in both[0] and "CLUSTER-IP" in both[1] and all("web" in part for part in both)
    described = plane.cli("describe", "deployment", "web").stdout
    conditions = {
        line.split()[0]: line.split()[1:3] for line in described.splitlines() if line.startswith("  A")
    }
    assert conditions["Available"] == ["True", "MinimumReplicasAvailable"]
    assert "NewReplicaSetAvailable" in described and "Scaled up replica set web-" in described
    # Each replica's log, and its CPU / memory / request rate.
    assert "model half version 1 AVAILABLE" in plane.cli("logs", f"pod/{pods[0]['metadata']['name']}").stdout
    for _ in range(20):
        predict(url)

    def sampled() -> list[dict[str, Any]]:  # what `top` prints, read from the same API
        items = plane.client().request("GET", "/api/top")["items"]
        return [i for i in items if i["pod"].startswith("web-")]

    plane.wait(lambda: len(sampled()) == 2 and sum(i["requests_per_second"] for i in sampled()) > 0, 20,
               "top to list both replicas and the requests just made")  # fmt: skip
    table = plane.cli("top", "pods").stdout.splitlines()
    assert table[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)", "REQ/S", "IN-FLIGHT", "P99(ms)"]
    rows = [line.split() for line in table if line.startswith("web-")]
    assert sorted(row[0] for row in rows) == sorted(p["metadata"]["name"] for p in pods)
    for _, cpu, memory, _rate, in_flight, _p99 in rows:
        assert cpu.endswith("m") and int(cpu[:-1]) >= 0, rows
        assert memory.endswith("Mi") and int(memory[:-2]) > 10, rows  # a Python process with a model
        assert int(in_flight) >= 0, rows
    assert sum(float(row[3]) for row in rows) > 0, rows  # the 20 predictions show as a request rate
    assert any(row[5] != "-" and float(row[5]) > 0 for row in rows), rows  # and as a latency


def test_scale_up_and_down(plane: Plane, models: dict[str, Path], tmp_path: Path) -> None:
    apply(plane, tmp_path, deployment_yaml("scaled", models["v1"], replicas=1))
    plane.cli("rollout", "status", "deploy/scaled")
    assert (
        plane.cli("scale", "deployment/scaled", "--replicas", "3").stdout.strip()
        == "deployment/scaled scaled"
    )
    plane.cli("rollout", "status", "deploy/scaled")
    plane.wait(lambda: len(plane.get("Service", "scaled")["status"]["endpoints"]) == 3, what="3 endpoints")
    revisions = plane.items("ReplicaSet")
    assert len([r for r in revisions if r["metadata"]["name"].startswith("scaled-")]) == 1  # no new revision
    pids = {p["status"]["pid"] for p in pods_of(plane, "scaled")}
    plane.cli("scale", "deployment", "scaled", "--replicas", "1")
    plane.wait(lambda: len(pods_of(plane, "scaled")) == 1, what="1 replica left")
    kept = pods_of(plane, "scaled")[0]["status"]["pid"]
    plane.wait(lambda: not (pids - {kept}) & plane.replica_pids(), what="the other two processes to stop")
    assert predict(plane.service_url("scaled")) == V1
    plane.cli("delete", "deployment", "scaled")


def _served(port: int) -> float:
    """Predictions a replica has answered (its own Prometheus counter)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "modelport_requests"
        for sample in family.samples
        if sample.name == "modelport_requests_total"
    )


@pytest.fixture(scope="module")
def balanced(
    plane: Plane, models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One Deployment (app "lb", 2 replicas) behind each balancing case's own Service."""
    apply(plane, tmp_path_factory.mktemp("lb"), deployment_yaml("lb", models["v1"], service_port=None))
    plane.cli("rollout", "status", "deployment/lb")
    yield "lb"
    plane.cli("delete", "deployment", "lb")


@pytest.mark.parametrize(
    ("balancing", "affinity"), [("random", "None"), ("leastConnection", "None"), ("roundRobin", "ClientIP")]
)
def test_balancing_and_client_affinity(
    plane: Plane, balanced: str, tmp_path: Path, balancing: str, affinity: str
) -> None:
    import yaml

    name = f"lb-{balancing.lower()}-{affinity.lower()}"
    service = {"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": balanced}, "ports": [{"port": 0}],
                        "loadBalancing": balancing, "sessionAffinity": affinity}}  # fmt: skip
    apply(plane, tmp_path, yaml.safe_dump(service))
    plane.wait(lambda: len(plane.get("Service", name)["status"]["endpoints"]) == 2, what="2 endpoints")
    url = plane.service_url(name)
    ports = [p["status"]["port"] for p in pods_of(plane, balanced)]
    before = [_served(port) for port in ports]
    with requests.Session() as session:  # one client (one address): sequential requests
        for _ in range(40):
            answer = session.post(url + "/v1/models/half:predict", json={"instances": [2.0]}, timeout=5)
            assert answer.json() == {"predictions": [[V1]]}, answer.text
    counts = sorted(_served(port) - b for port, b in zip(ports, before, strict=True))
    assert sum(counts) == 40
    if affinity == "ClientIP":
        assert counts == [0, 40]  # every request of this client on the same replica
    else:
        assert counts[0] >= 5, counts  # both replicas serve
    plane.cli("delete", "service", name)


def test_an_invalid_file_is_refused_whole(plane: Plane, models: dict[str, Path], tmp_path: Path) -> None:
    good = deployment_yaml("whole", models["v1"], service_port=None)
    bad = "apiVersion: modelport/v1\nkind: Service\nmetadata: {name: whole}\nspec: {selector: {app: whole}}\n"
    path = tmp_path / "mixed.yaml"
    path.write_text(good + "---\n" + bad)
    done = plane.cli("apply", "-f", str(path), check=False)
    assert done.returncode == 1
    assert "object 2, whole" in done.stderr and "spec.ports: Field required" in done.stderr
    missing = plane.cli("get", "deployment", "whole", check=False)
    assert missing.returncode == 1 and 'deployments "whole" not found' in missing.stderr
    frozen = deployment_yaml(
        "frozen", models["v1"], strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}
    )
    path.write_text(frozen)
    done = plane.cli("apply", "-f", str(path), check=False)
    assert done.returncode == 1
    assert "spec.strategy.rollingUpdate.maxUnavailable: must not be 0 when maxSurge is 0" in done.stderr


def test_a_replica_killed_under_load_is_restarted_and_costs_no_request(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    url = deployed(plane, tmp_path, "crash", models["v1"])
    victim = pods_of(plane, "crash")[0]
    with Load(url + "/v1/models/half:predict", {"instances": [2.0]}) as load:
        load.wait_for(100)
        os.killpg(victim["status"]["pid"], signal.SIGKILL)

        def restarted() -> bool:
            pod = next(
                p for p in pods_of(plane, "crash") if p["metadata"]["name"] == victim["metadata"]["name"]
            )
            return bool(pod["status"]["restartCount"] == 1 and pod["status"]["ready"])

        plane.wait(restarted, 30, "the killed replica to be restarted and ready")
        load.wait_for(len(load.outcomes) + 100)  # 100 more answered once it is back
    assert load.failures() == [], load.failures()[:5]
    assert set(load.values()) == {V1}
    described = plane.cli("describe", "pod", victim["metadata"]["name"]).stdout
    assert "Restart Count:  1" in described and "BackOff" in described and "exited with -9" in described


def test_a_rolling_update_under_load_fails_no_request(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    url = deployed(plane, tmp_path, "roll", models["v1"])
    with Load(url + "/v1/models/half:predict", {"instances": [2.0]}) as load:
        load.wait_for(100)
        apply(plane, tmp_path, deployment_yaml("roll", models["v2"]))
        plane.cli("rollout", "status", "deploy/roll")
        load.wait_for(len(load.outcomes) + 100)
    values = load.values()
    assert load.failures() == [], load.failures()[:5]
    assert set(values) == {V1, V2}  # every answer from v1 or v2 ...
    assert values[0] == V1 and values[-50:] == [V2] * 50  # ... switching from the one to the other
    history = plane.cli("rollout", "history", "deployment/roll").stdout
    assert [line.split()[0] for line in history.splitlines()[2:]] == ["1", "2"]


def test_a_model_that_does_not_load_stalls_the_rollout_and_the_old_revision_keeps_serving(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    # 4 s on an idle machine; a busy one (MODELPORT_TEST_PATIENCE) stretches the first rollout
    # and the undo past 4 s, which then failed on the deadline meant for the missing model alone.
    deadline = round(4 * PATIENCE)
    url = deployed(plane, tmp_path, "stall", models["v1"], progressDeadlineSeconds=deadline)
    with Load(url + "/v1/models/half:predict", {"instances": [2.0]}, threads=2) as load:
        apply(plane, tmp_path, deployment_yaml("stall", models["missing"], progressDeadlineSeconds=deadline))
        status = plane.cli("rollout", "status", "deploy/stall", check=False)
    assert status.returncode == 1
    assert 'deployment "stall" exceeded its progress deadline' in status.stderr
    assert load.failures() == [] and set(load.values()) == {V1}
    described = plane.cli("describe", "deployment", "stall").stdout
    assert "ProgressDeadlineExceeded" in described and "has timed out progressing" in described
    assert "Readiness probe failed" in described and "does-not-exist" in described
    events = plane.cli("events", "--for", "deployment/stall").stdout
    assert "ProgressDeadlineExceeded" in events
    assert plane.cli("rollout", "undo", "deployment/stall").stdout.strip() == "deployment/stall rolled back"
    plane.cli("rollout", "status", "deploy/stall")
    assert all(p["spec"]["model"]["basePath"] == str(models["v1"]) for p in pods_of(plane, "stall"))
    assert predict(url) == V1


def test_two_applies_of_the_same_object_one_wins_one_gets_a_conflict(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    """Two `modelport apply` processes, each reading the object before either writes (a relay
    holds the writes until both reads are answered): the README's row, output and exit code."""
    import subprocess
    import sys

    import yaml

    apply(plane, tmp_path, deployment_yaml("race", models["v1"], replicas=1, service_port=None))
    files = []
    for i in range(2):
        doc = yaml.safe_load(deployment_yaml("race", models["v1"], replicas=2 + i, service_port=None))
        doc["spec"]["template"]["spec"]["args"] = [f"--rest_api_timeout_in_ms={1000 + i}"]
        files.append(tmp_path / f"race-{i}.yaml")
        files[i].write_text(yaml.safe_dump(doc))
    relay = WritesAfterReads(plane.client().url, plane.home / "controlplane" / "token", tmp_path)
    try:
        env = {**plane.env, "MODELPORT_HOME": str(relay.home)}
        procs = [subprocess.Popen([sys.executable, "-m", "modelport", "apply", "-f", str(f)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for f in files]  # fmt: skip
        outcomes = [(*p.communicate(timeout=60), p.returncode) for p in procs]
    finally:
        relay.close()
    codes = sorted(code for _, _, code in outcomes)
    assert codes == [0, 1], outcomes
    winner = next(i for i, (_, _, code) in enumerate(outcomes) if code == 0)
    out, err, _ = outcomes[1 - winner]
    assert outcomes[winner][0].strip() == "deployment/race configured"
    assert out == "" and err.startswith(
        'Error from server (Conflict): Operation cannot be fulfilled on deployments "race"'
    )
    assert "the object has been modified" in err
    spec = plane.get("Deployment", "race")["spec"]  # the winner whole, never a merge
    assert spec["replicas"] == 2 + winner
    assert spec["template"]["spec"]["args"] == [f"--rest_api_timeout_in_ms={1000 + winner}"]
    plane.cli("delete", "deployment", "race")


def test_killing_the_control_plane_mid_rollout_loses_nothing(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    url = deployed(plane, tmp_path, "phoenix", models["v1"], minReadySeconds=2)
    with Load(url + "/v1/models/half:predict", {"instances": [2.0]}, threads=2) as load:
        apply(plane, tmp_path, deployment_yaml("phoenix", models["v2"], minReadySeconds=2))
        plane.wait(
            lambda: any(
                p["spec"]["model"]["basePath"] == str(models["v2"]) for p in pods_of(plane, "phoenix")
            ),
            what="the rollout to start",
        )
        pid = plane.pid
        os.kill(pid, signal.SIGKILL)
        plane.wait(lambda: not _alive(pid), 10, "the control plane to die")  # its lock goes with it
        plane.up()
        plane.cli("rollout", "status", "deploy/phoenix")
    assert load.failures() == []  # the load balancer kept serving while the control plane was down
    assert set(load.values()) <= {V1, V2} and load.values()[0] == V1
    pods = pods_of(plane, "phoenix")
    assert len(pods) == 2 and all(p["spec"]["model"]["basePath"] == str(models["v2"]) for p in pods)
    # No orphan, no duplicate: the replica processes alive are exactly those the pods name.
    plane.wait(
        lambda: plane.replica_pids() == {p["status"]["pid"] for p in plane.items("Pod")},
        what="replica processes to match the pods",
    )
    assert predict(url) == V2


def test_get_watch_prints_changes(plane: Plane, models: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    apply(plane, tmp_path, deployment_yaml("watched", models["v1"], replicas=1, service_port=None))
    plane.cli("rollout", "status", "deploy/watched")
    command = [
        sys.executable,
        "-m",
        "modelport",
        "get",
        "deployment",
        "watched",
        "-w",
        "--watch-timeout",
        "30",
    ]
    with subprocess.Popen(command, env=plane.env, stdout=subprocess.PIPE, text=True) as watch:
        deadline = threading.Timer(60, watch.kill)  # a line that never comes ends the readline
        deadline.start()
        try:
            assert watch.stdout is not None
            out = [watch.stdout.readline(), watch.stdout.readline()]  # listed: it watches from here on
            assert out[0].split()[:2] == ["NAME", "READY"] and out[1].split()[:2] == ["watched", "1/1"], out
            plane.cli("scale", "deploy/watched", "--replicas", "2")
            while not any(line.split()[1] == "2/2" for line in out[2:]):
                out.append(watch.stdout.readline())
                assert out[-1], f"the watch ended before the change to 2/2: {out}"
        finally:
            deadline.cancel()
            watch.kill()
    plane.cli("delete", "deployment", "watched")


def test_the_api_wants_the_token(plane: Plane) -> None:
    token = plane.home / "controlplane" / "token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    url = plane.client().url
    assert requests.get(url + "/apis/modelport/v1/deployments", timeout=5).status_code == 401
    wrong = requests.get(
        url + "/apis/modelport/v1/deployments", headers={"Authorization": "Bearer x"}, timeout=5
    )
    assert wrong.status_code == 401 and wrong.json()["reason"] == "Unauthorized"
    assert requests.get(url + "/healthz", timeout=5).status_code == 200


def test_delete_takes_the_processes_with_it(plane: Plane, models: dict[str, Path], tmp_path: Path) -> None:
    apply(plane, tmp_path, deployment_yaml("doomed", models["v1"]))
    plane.cli("rollout", "status", "deploy/doomed")
    pids = {p["status"]["pid"] for p in pods_of(plane, "doomed")}
    haproxy = plane.get("Service", "doomed")["status"]["haproxyPid"]
    assert plane.cli("delete", "deployment", "doomed").stdout.strip() == 'deployment "doomed" deleted'
    plane.cli("delete", "service", "doomed")
    plane.wait(
        lambda: not pids & plane.replica_pids() and pods_of(plane, "doomed") == [], what="replicas to stop"
    )
    plane.wait(lambda: not _alive(haproxy), what="the load balancer to stop")
    assert plane.cli("delete", "svc", "doomed", check=False).returncode == 1
    assert plane.cli("delete", "svc", "doomed", "--ignore-not-found").returncode == 0


def _paused_seen(plane: Plane, name: str) -> bool:
    deployment = plane.get("Deployment", name)
    return bool(deployment["status"].get("observedGeneration") == deployment["metadata"]["generation"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_down_stops_everything_unless_told_to_keep_the_replicas(
    models: dict[str, Path], tmp_path: Path
) -> None:
    plane = Plane(tmp_path / "home")
    try:
        plane.up(grace=1)
        again = plane.cli("up", "--detach", check=False)
        assert again.returncode == 1 and "already running" in again.stderr
        apply(plane, tmp_path, deployment_yaml("kept", models["v1"]))
        plane.cli("rollout", "status", "deploy/kept")
        url = plane.service_url("kept")
        pids = plane.replica_pids()
        assert (
            plane.cli("down", "--keep-replicas").stdout.strip()
            == "control plane stopped (replicas kept running)"
        )
        assert plane.replica_pids() == pids and predict(url) == V1
        plane.up(grace=1)  # adopts them: same processes, nothing restarted
        plane.cli("rollout", "status", "deploy/kept")
        assert plane.replica_pids() == pids
        assert plane.cli("down").stdout.strip() == "control plane stopped"
        assert plane.replica_pids() == set()
        assert plane.cli("get", "pods", check=False).returncode == 1
    finally:
        plane.stop()


def test_pause_resume_restart_and_a_folder_of_files(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    import yaml

    folder = tmp_path / "objects"
    folder.mkdir()
    deployment, service = yaml.safe_load_all(deployment_yaml("paced", models["v1"]))
    (folder / "deployment.yaml").write_text(yaml.safe_dump(deployment))
    (folder / "service.yml").write_text(yaml.safe_dump(service))
    (folder / "notes.txt").write_text("not an object: ignored")
    out = plane.cli("apply", "-f", str(folder)).stdout.splitlines()
    assert out == ["deployment/paced created", "service/paced created"]
    plane.cli("rollout", "status", "deployment/paced")
    assert plane.cli("rollout", "pause", "deployment/paced").stdout.strip() == "deployment/paced paused"
    plane.cli("set", "model", "deployment/paced", str(models["v2"]))
    # Paused: the controller has seen the new template (its status says so) and made no revision.
    plane.wait(lambda: _paused_seen(plane, "paced"), what="the controller to see the paused change")
    revisions = [r for r in plane.items("ReplicaSet") if r["metadata"]["name"].startswith("paced-")]
    assert len(revisions) == 1
    assert "Deployment is paused" in plane.cli("describe", "deploy", "paced").stdout
    plane.cli("rollout", "resume", "deployment/paced")
    plane.cli("rollout", "status", "deployment/paced")
    assert predict(plane.service_url("paced")) == V2
    pids = {p["status"]["pid"] for p in pods_of(plane, "paced")}
    assert plane.cli("rollout", "restart", "deployment/paced").stdout.strip() == "deployment/paced restarted"
    plane.cli("rollout", "status", "deployment/paced")
    plane.wait(lambda: len(pods_of(plane, "paced")) == 2, what="2 replicas after the restart")
    assert not pids & {p["status"]["pid"] for p in pods_of(plane, "paced")}  # every replica replaced
    history = plane.cli("rollout", "history", "deployment/paced").stdout.splitlines()[2:]
    assert [line.split()[0] for line in history] == ["1", "2", "3"]
    assert "modelport set model" in history[1]


def test_a_load_balancer_that_dies_is_replaced_on_the_same_port(
    plane: Plane, models: dict[str, Path], tmp_path: Path
) -> None:
    url = deployed(plane, tmp_path, "phoenix-lb", models["v1"])
    # A finished rollout says the replicas are ready, not that the Service's pass has run since.
    plane.wait(lambda: plane.get("Service", "phoenix-lb")["status"].get("haproxyPid"), what="its HAProxy")
    old = plane.get("Service", "phoenix-lb")["status"]["haproxyPid"]
    os.kill(old, signal.SIGKILL)
    plane.wait(lambda: plane.get("Service", "phoenix-lb")["status"].get("haproxyPid") not in (None, old),
               20, "a new HAProxy")  # fmt: skip
    plane.wait(
        lambda: len(plane.get("Service", "phoenix-lb")["status"]["endpoints"]) == 2, what="2 endpoints"
    )
    assert predict(url) == V1
    assert "LoadBalancerExited" in plane.cli("describe", "svc", "phoenix-lb").stdout


def test_logs_follow_a_replica(plane: Plane, models: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    deployed(plane, tmp_path, "chatty", models["v1"])
    victim = pods_of(plane, "chatty")[0]
    pod = victim["metadata"]["name"]
    assert "model half version 1 AVAILABLE" in plane.cli("logs", "deployment/chatty").stdout
    whole = plane.cli("logs", pod).stdout.splitlines()
    assert len(plane.cli("logs", pod, "--tail", "1").stdout.splitlines()) == 1
    assert plane.cli("logs", pod, "--tail", "0").stdout == ""  # kubectl's --tail=0: no line
    assert plane.cli("logs", pod, "--tail", "100000").stdout.splitlines()[: len(whole)] == whole
    command = [sys.executable, "-m", "modelport", "logs", "-f", "--tail", "1", f"pod/{pod}"]
    with subprocess.Popen(command, env=plane.env, stdout=subprocess.PIPE, text=True) as follow:
        deadline = threading.Timer(60, follow.kill)  # a line that never comes ends the readline
        deadline.start()
        try:
            assert follow.stdout is not None
            followed = [follow.stdout.readline()]  # the last line so far: it follows from here on
            assert "model half version 1 AVAILABLE" in followed[0], followed
            # The replica crashes: the supervisor writes it in the replica's log, -f shows it.
            os.killpg(victim["status"]["pid"], signal.SIGKILL)
            while not any("[supervisor] exited with -9" in line for line in followed):
                followed.append(follow.stdout.readline())
                assert followed[-1], f"logs -f ended: {followed}"
            # Restarted: the new run has a log of its own, and -f goes on in it.
            while "model half version 1 AVAILABLE" not in followed[-1]:
                followed.append(follow.stdout.readline())
                assert followed[-1], f"logs -f ended: {followed}"
        finally:
            deadline.cancel()
            follow.kill()
    current, previous = plane.cli("logs", pod).stdout, plane.cli("logs", pod, "--previous").stdout
    assert "model half version 1 AVAILABLE" in current and "exited with -9" not in current
    assert "model half version 1 AVAILABLE" in previous and "[supervisor] exited with -9" in previous
    plane.cli("delete", "deployment", "chatty")
    plane.cli("delete", "service", "chatty")
