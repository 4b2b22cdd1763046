"""`modelport serve --workers 2` as a user runs it: two whole servers on one REST port and one gRPC
port (port 0 picked once, for both), one /metrics that holds every worker's series, a new version
reaching both, a killed worker started again, and a stop that leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from support import PATIENCE, Server, half_plus_two, poll, publish

_ARGS = ["--workers", "2", "--model_name", "half", "--file_system_poll_wait_seconds", "0.2"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("workers")
    base = root / "half"
    publish(base, 1, half_plus_two)
    logs = ["--prediction_log_sample_rate", "1.0", "--prediction_log_dir", str(root / "logs")]
    server = Server([*_ARGS, "--model_base_path", str(base), *logs], root)
    try:
        server.wait_until(lambda: _states(server, "1") == {"0": 30.0, "1": 30.0}, what="both workers loaded")
        yield server, base
    finally:
        server.stop()


def _scrape(server: Server) -> str:
    """/metrics, once it holds both workers (a sibling slower than the scrape's timeout on a busy
    machine is left out of that one scrape)."""
    texts: list[str] = []

    def both() -> bool:
        texts.append(requests.get(server.url + "/metrics", timeout=10).text)
        return texts[-1].count("modelport_worker_info{") == 2

    server.wait_until(both, what="a scrape with both workers")
    return texts[-1]


def _samples(server: Server, name: str, **match: str) -> dict[str, float]:
    """`name`'s samples whose labels include `match`, summed by worker."""
    text = _scrape(server)
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and match.items() <= sample.labels.items():
                worker = sample.labels["worker"]
                found[worker] = found.get(worker, 0.0) + sample.value
    return found


def _states(server: Server, version: str) -> dict[str, float]:
    return _samples(server, "modelport_model_state", model="half", version=version)


def _worker_pids(server: Server) -> set[int]:
    text = requests.get(server.url + "/metrics", timeout=10).text
    return {
        int(sample.labels["pid"])
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelport_worker_info"
    }


def _children(server: Server) -> set[int]:
    return {p.pid for p in psutil.Process(server.proc.pid).children()}


def _predict(server: Server) -> float:
    """One :predict on a connection of its own (the kernel picks the worker per connection)."""
    reply = requests.post(server.url + "/v1/models/half:predict", json={"instances": [1.0]}, timeout=10)
    assert reply.status_code == 200, reply.text
    value: float = reply.json()["predictions"][0][0]
    return value


def _answered(server: Server) -> dict[str, float]:
    return _samples(server, "modelport_requests_total", model="half", api="predict", status="200")


def test_two_workers_answer_on_one_port_and_metrics_sum_over_them(served: tuple[Server, Path]) -> None:
    server, _ = served
    before = _answered(server)
    for _ in range(40):
        assert _predict(server) == 2.5
    after = _answered(server)
    by_worker = {w: after[w] - before.get(w, 0.0) for w in after}
    assert sorted(by_worker) == ["0", "1"]
    assert all(n > 0 for n in by_worker.values()), by_worker  # both answered (40 connections)
    assert sum(by_worker.values()) == 40  # every request counted once, by the worker that answered
    # both workers, each the supervisor's child
    server.wait_until(lambda: _worker_pids(server) == _children(server), what="both workers' pids")


def test_the_supervisor_holds_no_server_code(served: tuple[Server, Path]) -> None:
    """It only binds, starts workers and reads their pipes: the server's modules stay in the
    workers (60 MiB RSS in the supervisor when it imported them all, 16 without)."""
    server, _ = served
    supervisor = psutil.Process(server.proc.pid)
    assert supervisor.memory_info().rss < 25 * 2**20
    mapped = " ".join(m.path for m in supervisor.memory_maps())
    assert "site-packages/numpy" not in mapped and "site-packages/onnxruntime" not in mapped


def test_each_worker_writes_a_prediction_log_of_its_own(served: tuple[Server, Path]) -> None:
    server, _ = served
    logs = server.workdir / "logs" / "half"

    def lines(name: str) -> int:
        path = logs / name
        return len(path.read_bytes().splitlines()) if path.exists() else 0

    before = lines("1.worker0.jsonl") + lines("1.worker1.jsonl")
    for _ in range(40):  # 40 connections: the kernel gives both workers some
        _predict(server)
    server.wait_until(lambda: lines("1.worker0.jsonl") > 0 and lines("1.worker1.jsonl") > 0, what="two logs")
    assert not (logs / "1.jsonl").exists()  # no file two processes append to and rotate
    server.wait_until(
        lambda: lines("1.worker0.jsonl") + lines("1.worker1.jsonl") >= before + 40, what="every answer"
    )


def test_grpc_is_served_on_one_port_by_every_worker(served: tuple[Server, Path]) -> None:
    server, _ = served
    before = _samples(server, "modelport_requests_total", model="half", api="grpc_infer", status="200")
    # A channel each, and a connection each: gRPC shares a process's connections between channels
    # to the same address unless each keeps a subchannel pool of its own.
    for _ in range(16):
        client = grpcclient.InferenceServerClient(
            f"127.0.0.1:{server.grpc_port}", channel_args=[("grpc.use_local_subchannel_pool", 1)]
        )
        x = grpcclient.InferInput("x", [1, 1], "FP32")
        x.set_data_from_numpy(np.array([[1.0]], dtype=np.float32))
        answer = client.infer("half", [x]).as_numpy("y")
        client.close()
        assert answer is not None and answer.tolist() == [[2.5]]
    after = _samples(server, "modelport_requests_total", model="half", api="grpc_infer", status="200")
    assert sum(after.values()) - sum(before.values()) == 16
    assert all(after.get(w, 0.0) > before.get(w, 0.0) for w in ("0", "1")), (before, after)


def test_a_new_version_reaches_both_workers(served: tuple[Server, Path]) -> None:
    server, base = served
    publish(base, 2, lambda d: half_plus_two(d, slope=1.0))
    server.wait_until(lambda: _states(server, "2") == {"0": 30.0, "1": 30.0}, what="version 2 in both")
    assert {_predict(server) for _ in range(20)} == {3.0}


def _ready(server: Server) -> tuple[bool, bool, bool]:
    """/readyz, /v2/health/ready and gRPC ServerReady: each on a connection of its own."""
    readyz = server.get("/readyz").status_code == 200
    v2 = server.get("/v2/health/ready").status_code == 200
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        return readyz, v2, bool(client.is_server_ready())
    finally:
        client.close()


def _served_versions(server: Server) -> list[int]:
    """The versions of `half` every worker serves, as /readyz says."""
    versions: list[int] = server.get("/readyz").json()["models"]["half"]["available_versions"]
    return versions


def test_a_new_version_is_ready_once_every_worker_serves_it(served: tuple[Server, Path]) -> None:
    server, base = served
    server.wait_until(lambda: _ready(server) == (True, True, True), what="ready")
    new = max(_served_versions(server)) + 1
    stalled = max(_children(server))  # a worker that cannot load it yet: stopped
    os.kill(stalled, signal.SIGSTOP)
    try:
        publish(base, new, lambda d: half_plus_two(d, slope=2.0))
        loaded = f"model half version {new} AVAILABLE"
        server.wait_until(lambda: loaded in server.log(), what=f"version {new} in the running worker")
        answers: list[tuple[int, int, int]] = []

        def answered() -> bool:
            # One connection for the three: the kernel gives it to either worker (the stopped
            # one's time out: another connection, then).
            with requests.Session() as session, contextlib.suppress(requests.Timeout):
                answers.append(
                    (session.get(f"{server.url}/v2/models/half/versions/{new}/ready", timeout=1).status_code,
                     session.get(f"{server.url}/v2/models/half/ready", timeout=1).status_code,
                     session.get(f"{server.url}/readyz", timeout=1).status_code)
                )  # fmt: skip
            return len(answers) >= 3

        server.wait_until(answered, what="answers from the running worker")
        # The running worker serves `new` (and no longer the old one: one version at a time),
        # the stopped one the old: the model is served everywhere, the new version not yet.
        assert set(answers) == {(400, 200, 200)}, answers
        assert server.log().count(loaded) == 1  # by one worker only
    finally:
        os.kill(stalled, signal.SIGCONT)
    everywhere = f"/v2/models/half/versions/{new}/ready"
    server.wait_until(lambda: server.get(everywhere).status_code == 200, what="ready everywhere")
    assert _states(server, str(new)) == {"0": 30.0, "1": 30.0}


def test_a_killed_worker_is_started_again(served: tuple[Server, Path]) -> None:
    server, _ = served
    first = _children(server)
    answer = _predict(server)  # the version an earlier test published, if one did
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    # The other worker is ready itself, but the server is not until the new one has its models.
    server.wait_until(lambda: _ready(server) == (False, False, False), what="not ready")
    server.wait_until(lambda: _ready(server) == (True, True, True), what="ready again")
    assert len(_children(server)) == 2 and victim not in _children(server)
    assert server.get("/readyz").json()["workers_ready"] == 2
    server.wait_until(lambda: _worker_pids(server) == _children(server), what="the new worker's metrics")
    assert f"(pid {victim}) exited with code -9; starting it again" in server.log()
    assert {_predict(server) for _ in range(10)} == {answer}


def test_sigterm_stops_every_worker_and_exits_0(served: tuple[Server, Path]) -> None:
    server, _ = served
    workers = [psutil.Process(pid) for pid in _children(server)]
    assert server.stop() == 0
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == []
    log = server.log()
    for index in (0, 1):  # each drained and stopped its gRPC, monitor and threads before exiting
        assert f"[worker {index}]: server stopped" in log
    assert log.rstrip().endswith("modelport.server: server stopped")  # the supervisor, last


def test_a_killed_supervisor_leaves_no_worker(tmp_path: Path) -> None:
    base = tmp_path / "half"
    publish(base, 1, half_plus_two)
    server = Server([*_ARGS, "--model_base_path", str(base)], tmp_path)
    try:
        workers = [psutil.Process(pid) for pid in _children(server)]
        assert len(workers) == 2
        sockets = [c.laddr for c in workers[0].net_connections(kind="unix") if "metrics-" in c.laddr]
        run_dir = Path(sockets[0]).parent  # the run's private folder: the workers' metrics sockets
        server.proc.kill()  # SIGKILL: the supervisor stops nothing itself
        waited = poll(lambda: not any(w.is_running() and w.status() != "zombie" for w in workers), 20, 0.1)
        assert waited is None, "a worker outlived its supervisor"
        assert not run_dir.exists()  # the workers removed what the supervisor could not
    finally:
        server.stop()


def test_a_worker_that_cannot_start_stops_the_server_with_exit_1(tmp_path: Path) -> None:
    keys = tmp_path / "keys.db"
    keys.write_bytes(b"not a database" * 300)  # the CLI takes the file; each worker fails to read it
    base = tmp_path / "half"
    publish(base, 1, half_plus_two)
    done = subprocess.run(
        [sys.executable, "-m", "modelport", "serve", "--rest_api_port", "0", "--port", "0", *_ARGS,
         "--model_base_path", str(base), "--auth", "on", "--api_key_store", str(keys)],
        capture_output=True, text=True, timeout=60 * PATIENCE,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "exited with code 1 before it listened" in done.stderr
