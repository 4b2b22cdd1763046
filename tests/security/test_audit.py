"""The audit log's file: JSON lines, mode 600, appended to whole by many writers, rotated by size
with a bounded number of parts, read back oldest first and by age."""

from __future__ import annotations

import datetime
import json
import threading
from pathlib import Path

from modelport.security.audit import AuditEvent, AuditLog, read_events


def _event(i: int) -> AuditEvent:
    return AuditEvent("controlplane", "token:admin", "127.0.0.1", "create", f"deployments/default/d{i}", 201)


def test_lines_are_json_the_file_is_private_and_nothing_is_torn(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    threads = [
        threading.Thread(target=lambda k=k: [log.record(_event(k * 100 + i)) for i in range(100)])
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert len(lines) == 400
    events = [json.loads(line) for line in lines]
    assert {e["object"] for e in events} == {f"deployments/default/d{i}" for i in range(400)}
    assert set(events[0]) == {"time", "source", "actor", "client", "action", "object", "result"}


def test_rotation_keeps_the_size_bounded_and_reading_follows_the_parts_in_order(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_bytes=2000, backups=3)
    for i in range(200):  # about 150 bytes each: 30 kB written, at most 4 x 2 kB kept
        log.record(_event(i))
    parts = sorted(p.name for p in tmp_path.iterdir())
    assert parts == ["audit.log", "audit.log.1", "audit.log.2", "audit.log.3"]
    assert all((tmp_path / p).stat().st_size <= 2000 for p in parts)
    kept = [
        int(str(e["object"]).removeprefix("deployments/default/d"))
        for e in read_events(tmp_path / "audit.log")
    ]
    assert kept == list(range(200 - len(kept), 200))  # the newest, oldest first, none missing between
    assert all((tmp_path / p).stat().st_mode & 0o777 == 0o600 for p in parts)


def test_since_leaves_out_older_events(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    old = {"time": "2020-01-01T00:00:00.000Z", "source": "cli", "actor": "user:x", "client": "local",
           "action": "create-token", "object": "tokens/x", "result": "ok"}  # fmt: skip
    path.write_text(json.dumps(old) + "\nnot json, a torn line\n")
    AuditLog(path).record(_event(1))
    hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    assert [e["object"] for e in read_events(path, hour_ago)] == ["deployments/default/d1"]
    assert len(list(read_events(path))) == 2


def _write_many(path: str, first: int) -> None:
    log = AuditLog(Path(path), max_bytes=5000, backups=50)
    for i in range(first, first + 200):
        log.record(_event(i))


def test_processes_appending_and_rotating_at_once_lose_and_tear_nothing(tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    writers = [
        context.Process(target=_write_many, args=(str(tmp_path / "audit.log"), k * 200)) for k in range(3)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    seen = [str(e["object"]) for e in read_events(tmp_path / "audit.log")]
    assert sorted(seen) == sorted(f"deployments/default/d{i}" for i in range(600))  # each once, whole
    assert len(list(tmp_path.iterdir())) > 10  # it did rotate, many times, under three writers
