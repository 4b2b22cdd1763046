"""A replica's log is rotated while the replica runs (README, "Logs"): a replica that writes a
lot keeps at most `containerLogMaxFiles` files of about `containerLogMaxSize` each, the live file
always ends with its latest lines, and a restart keeps the run before's log for
`logs --previous`. Real processes under a Supervisor (the replica's program replaced by one that
prints numbered lines as fast as a chatty server would), on a fake clock."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from modelport.dataplane.logs import LogPolicy, rotated
from modelport.dataplane.supervisor import Replica, Supervisor
from modelport.testing import FakeClock

# 150 bursts of 100 numbered lines of 100 bytes, 20 ms apart: 1.5 MB in about 3 s; then "done".
CHATTY = r"""
import sys, time
n = 0
for burst in range(150):
    for _ in range(100):
        n += 1
        sys.stdout.write(f"line {n:07d} " + "x" * 86 + "\n")
    sys.stdout.flush()
    time.sleep(0.02)
print("done", flush=True)
time.sleep(3600)
"""
CAP = 64 * 2**10
SLACK = 256 * 2**10  # what the replica may write between two rounds on a busy machine


def _sizes(log: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in log.parent.glob(f"{log.name}*") if p.is_file()}


def _until(
    sup: Supervisor, check: Callable[[], bool], what: str, each: Callable[[], None] = lambda: None
) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        sup.tick()
        each()
        time.sleep(0.01)


def _numbers(path: Path) -> list[int]:
    return [int(line.split()[1]) for line in path.read_text().splitlines() if line.startswith("line ")]


def test_a_replica_writing_a_lot_keeps_its_log_within_its_files_and_size(tmp_path: Path) -> None:
    supervisor = Supervisor(FakeClock(), command=[sys.executable, "-c", CHATTY], log_policy=LogPolicy(CAP, 3))
    replica = supervisor.add(Replica("chatty-0", [], tmp_path))
    seen: list[dict[str, int]] = []
    try:
        _until(supervisor, lambda: "done" in replica.log_path.read_text(), "the replica's last line",
               lambda: seen.append(_sizes(replica.log_path)))  # fmt: skip
        supervisor.tick()
        final = _sizes(replica.log_path)
        assert set(final) == {"chatty-0.log", "chatty-0.log.1", "chatty-0.log.2"}  # 3 files, no more
        assert all(set(sizes) <= set(final) for sizes in seen)
        assert max(max(sizes.values()) for sizes in seen) <= CAP + SLACK
        assert max(sum(sizes.values()) for sizes in seen) <= 3 * CAP + SLACK  # of 1.5 MB written
        # the live file ends with the latest lines; the rotated ones hold the lines just before
        live, first, second = (
            _numbers(replica.log_path),
            _numbers(rotated(replica.log_path, 1)),
            _numbers(rotated(replica.log_path, 2)),
        )
        assert live[-1] == 15000 and replica.log_path.read_text().endswith("done\n")
        assert second[-1] < first[0] <= first[-1] < live[0]
        assert live == list(range(live[0], 15001)) and first == list(range(first[0], first[-1] + 1))
    finally:
        supervisor.stop_all(grace_seconds=5)


QUIET = r"""
import os, sys, time
print(f"run of pid {os.getpid()}", flush=True)
time.sleep(3600)
"""


def test_a_restart_keeps_the_run_befores_log_apart(tmp_path: Path) -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock, command=[sys.executable, "-c", QUIET], log_policy=LogPolicy(CAP, 3))
    replica = supervisor.add(Replica("quiet-0", [], tmp_path))
    try:
        _until(supervisor, lambda: "run of pid" in replica.log_path.read_text(), "the first run's line")
        first = replica.pid
        assert first is not None
        rotated(replica.log_path, 1).write_text("an earlier part of the first run\n")
        os.killpg(first, signal.SIGKILL)
        _until(supervisor, lambda: replica.proc is None, "the supervisor to see the kill")
        clock.advance(replica.next_start_at - clock.monotonic())
        _until(
            supervisor, lambda: _has(replica.log_path, f"run of pid {replica.pid}"), "the second run's line"
        )
        previous = replica.previous_log_path.read_text()
        assert (
            f"run of pid {first}\n" in previous
            and "[supervisor] exited with -9; restart 1 in 10.0 s" in previous
        )
        assert replica.log_path.read_text() == f"run of pid {replica.pid}\n"
        assert not rotated(replica.log_path, 1).exists()  # the first run's parts went with it
    finally:
        supervisor.stop_all(grace_seconds=5)


def _has(path: Path, text: str) -> bool:
    return path.is_file() and text in path.read_text()
