"""Model monitoring in a process of its own (server/monitor_process.py): what crosses to it comes
back whole, its death costs no prediction, and it ends with the server however the server ends,
after the server's last answers."""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.examples import write_mnist_repository
from modelport.server.monitor import Observation, VersionInfo
from modelport.server.monitor_process import _observations, _pack
from support import Server, poll


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    base = tmp_path / "mnist"
    write_mnist_repository(base)
    return base


def _server(repo: Path, logs: Path) -> Server:
    args = ["--model_name", "mnist", "--model_base_path", str(repo), "--prediction_log_sample_rate", "1.0",
            "--prediction_log_dir", str(logs)]  # fmt: skip
    server = Server(args, repo.parent)
    server.wait_ready()
    return server


def _digit(repo: Path) -> dict[str, Any]:
    png = (repo / "samples" / "digit-7.png").read_bytes()
    return {"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}]}


def _predict(server: Server, repo: Path, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        answer = server.post("/v1/models/mnist:predict", _digit(repo))
        assert answer.status_code == 200, answer.text
        ids.append(answer.headers["x-request-id"])
    return ids


def _monitor_processes(parent: int) -> list[int]:
    """The monitor processes whose parent is `parent`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"modelport.server.monitor_process" in cmdline:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _logged_ids(logs: Path) -> list[str]:
    path = logs / "mnist" / "1.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["request_id"] for line in path.read_text().splitlines()]


def _one_monitor(server: Server) -> int:
    found: list[int] = []

    def started() -> bool:
        found[:] = _monitor_processes(server.proc.pid)
        return len(found) == 1

    server.wait_until(started, 10, "one monitor process")
    return found[0]


def test_a_killed_monitor_process_costs_no_prediction_and_a_new_one_takes_the_next_answers(
    repo: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    server = _server(repo, logs)
    try:
        before = _predict(server, repo, 3)
        first = _one_monitor(server)
        assert server.get("/v1/models/mnist/quality").json()["versions"][0]["answered_rows"] == 3
        os.kill(first, signal.SIGKILL)
        server.wait_until(lambda: "model monitoring's process ended" in server.log(), 10, "the death logged")
        after = _predict(server, repo, 5)  # every prediction answered meanwhile
        server.wait_until(
            lambda: _monitor_processes(server.proc.pid) not in ([], [first]), 15, "a new process"
        )
        # The new process takes the answers after the old one's death; what the old one
        # remembered for feedback is gone, and said so.
        server.wait_until(lambda: set(after) <= set(_logged_ids(logs)), 10, "the new answers logged")
        assert set(before) <= set(_logged_ids(logs))
        fed = server.post("/v1/models/mnist:feedback", {"feedback": [{"request_id": after[-1], "label": 7}]})
        assert fed.status_code == 200, fed.text
        assert fed.json()["versions"]["1"]["live_accuracy"] == 1.0
        lost = server.post("/v1/models/mnist:feedback", {"feedback": [{"request_id": before[0], "label": 7}]})
        assert lost.status_code == 404, lost.text
        assert 'modelport_live_accuracy{model="mnist",version="1"} 1.0' in server.get("/metrics").text
    finally:
        assert server.stop() == 0


def test_the_last_answers_reach_the_log_when_server_and_monitor_both_get_sigterm(
    repo: Path, tmp_path: Path
) -> None:
    """A stop signal to the whole process group (Ctrl-C, a group's SIGTERM) reaches the monitor's
    process too: it waits for the server's last answers (here fewer than a batch, still queued)."""
    logs = tmp_path / "logs"
    server = _server(repo, logs)
    _predict(server, repo, 1)
    monitor = _one_monitor(server)
    ids = _predict(server, repo, 20)
    os.kill(monitor, signal.SIGINT)
    os.kill(monitor, signal.SIGTERM)
    assert server.stop() == 0
    assert set(ids) <= set(_logged_ids(logs))
    assert poll(lambda: not _alive(monitor), 5, 0.05) is None, "the monitor process outlived its server"


def test_the_monitor_process_yields_a_core_to_its_server_and_a_killed_server_leaves_none(
    repo: Path, tmp_path: Path
) -> None:
    server = _server(repo, tmp_path / "logs")
    try:
        _predict(server, repo, 2)
        monitor = _one_monitor(server)
        niceness = min(19, os.getpriority(os.PRIO_PROCESS, server.proc.pid) + 10)
        server.wait_until(lambda: os.getpriority(os.PRIO_PROCESS, monitor) == niceness, 10, "niceness +10")
    finally:
        server.proc.kill()
    server.stop()
    assert poll(lambda: not _alive(monitor), 5, 0.05) is None, "the monitor process outlived its server"


def test_a_batch_crosses_to_the_monitors_process_whole() -> None:
    """Packed for the process and unpacked there: every observation's inputs, outputs, id, api,
    latency and time as they were, whether the batch's tensors stack (concatenated) or not (a
    ZipMap's dicts, ragged rows, a missing output: sent as they are)."""
    info = VersionInfo("m", "1", ("a", "b"), {}, None, None, None)

    def observation(i: int, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> Observation:
        o = Observation(info, f"id-{i}", "predict")  # type: ignore[arg-type]
        o.feeds, o.outputs, o.latency, o.time = feeds, outputs, i / 1000, 1e9 + i
        return o

    zipmap = np.empty(1, dtype=object)
    zipmap[0] = {"a": 0.25, "b": 0.75}
    stacking = [
        observation(0, {"x": np.arange(4, dtype=np.float32).reshape(1, 4)}, {"y": np.array([1])}),
        observation(1, {"x": np.ones((3, 4), dtype=np.float32)}, {"y": np.array([0, 1, 1])}),
    ]
    ragged = [
        observation(2, {"x": np.zeros((1, 4), dtype=np.float32)}, {"p": zipmap}),
        observation(3, {"x": np.zeros((1, 5), dtype=np.float32)}, {"p": zipmap}),
        observation(4, {"x": np.zeros((2, 4), dtype=np.float64)}, {}),
    ]
    sent = stacking + ragged
    packed = [_pack(1, stacking), _pack(1, ragged), _pack(2, stacking)]
    got = _observations(packed, {1: info})  # version 2 forgotten meanwhile: its answers dropped
    assert [o.request_id for o in got] == [o.request_id for o in sent]
    for mine, theirs in zip(sent, got, strict=True):
        assert theirs.servable is info  # type: ignore[comparison-overlap]
        assert (theirs.api, theirs.latency, theirs.time) == (mine.api, mine.latency, mine.time)
        assert mine.feeds is not None and theirs.feeds is not None
        assert mine.feeds.keys() == theirs.feeds.keys()
        for name, value in mine.feeds.items():
            assert theirs.feeds[name].dtype == value.dtype
            np.testing.assert_array_equal(theirs.feeds[name], value)
        assert mine.outputs.keys() == theirs.outputs.keys()
        for name, value in mine.outputs.items():
            assert list(theirs.outputs[name]) == list(value)


def test_a_reply_whose_caller_gave_up_leaves_the_reply_reader_running() -> None:
    """A feedback or report call that timed out cancels its future; the process's late reply to it
    must not end the thread that reads the process's messages (the metrics it sets come next)."""
    import socket
    import threading
    from concurrent.futures import Future
    from multiprocessing.connection import Connection

    from modelport.server.metrics import ServerMetrics
    from modelport.server.monitor import MonitorOptions
    from modelport.server.monitor_process import MonitorClient, _encoded, _send

    metrics = ServerMetrics()
    client = MonitorClient(metrics.quality, MonitorOptions(), dict)
    client._stopping = True  # no process behind it to wait for
    ours, theirs = socket.socketpair()
    reader, writer = Connection(ours.detach()), Connection(theirs.detach())
    gave_up: Future[object] = Future()
    gave_up.cancel()
    waiting: Future[object] = Future()
    client._calls.update({1: gave_up, 2: waiting})
    thread = threading.Thread(target=client._read, args=(reader, None), daemon=True)
    thread.start()
    _send(writer, _encoded(("reply", [], 1, None, "late")))
    _send(writer, _encoded(("reply", [("drift", ("m", "1", "input"), "set", 0.25)], 2, None, "on time")))
    assert waiting.result(5) == "on time"
    assert 'modelport_drift_score{kind="input",model="m",version="1"} 0.25' in metrics.render().decode()
    writer.close()
    thread.join(5)
    assert not thread.is_alive()
