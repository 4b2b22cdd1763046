"""The audit log: one JSON line per write to the control plane or the registry and per refused
credential (a bad token or key, 401; a token or key without the right, 403), in
`$MODELPORT_HOME/audit.log`, mode 600, appended to by every process of that home (the control
plane, `modelport registry ...`, each model server) and rotated by size.

    {"time": "2026-12-07T16:20:01.250Z", "source": "controlplane", "actor": "token:admin",
     "client": "127.0.0.1", "action": "create", "object": "deployments/default/mnist", "result": 201}

`actor` is a token's or key's public id (`token:3f9a01bc`, `key:1c2d3e4f`), or the OS user for a
local CLI write (`user:alice`); never a secret. A rate-limited call (429) is not written: it is
counted in /metrics, and one log line per refused request would let a client fill the disk.

Appends are serialised across processes with an exclusive lock on the file, and so is rotation:
past `max_bytes` the file becomes audit.log.1 (.1 becomes .2, ...; `backups` kept), so the log
holds at most (backups + 1) x max_bytes however many writes or failures come.
"""

from __future__ import annotations

import datetime
import fcntl
import getpass
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("modelport.audit")

MAX_BYTES = 10 * 2**20
BACKUPS = 5


@dataclass(frozen=True)
class AuditEvent:
    source: str  # controlplane | registry | model-server | cli
    actor: str  # token:<id> | key:<id> | user:<name> | anonymous
    client: str  # the address the request came from, or "local"
    action: str  # create | replace | delete | rollback | shutdown | publish | ... | authenticate
    object: str  # deployments/default/mnist, models/mnist/versions/3, ...
    result: int | str  # the HTTP status, or "ok" / an error's reason for a local write


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups

    def record(self, event: AuditEvent) -> None:
        """Append `event`. An audit log that cannot be written is logged, never fatal to the
        request or command that caused it."""
        line = json.dumps({"time": now_iso(), **asdict(event)}, separators=(",", ":")) + "\n"
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = self._locked()
            try:
                if os.fstat(fd).st_size + len(line) > self.max_bytes:
                    self._rotate()
                    os.close(fd)
                    fd = self._locked()
                os.write(fd, line.encode())
            finally:
                os.close(fd)  # and with it the lock
        except OSError as exc:
            log.error("audit log %s not written (%s): %s", self.path, exc.strerror, line.strip())

    def _locked(self) -> int:
        """The live file, open for appending and locked; reopened when another process rotated it
        while this one waited for the lock (the path then names a new file)."""
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def _rotate(self) -> None:
        """Shift audit.log.N up by one and move the full file to .1 (under the caller's lock)."""
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))


def audit_path(home: Path) -> Path:
    return home / "audit.log"


def record_local(home: Path, action: str, obj: str, result: str = "ok") -> None:
    """A write made by a local command (`modelport tokens`, `modelport keys`), by the OS user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    AuditLog(audit_path(home)).record(AuditEvent("cli", f"user:{user}", "local", action, obj, result))


def read_events(path: Path, since: datetime.datetime | None = None) -> Iterator[dict[str, object]]:
    """Every event in the log and its rotated parts, oldest first; those before `since` skipped.
    A line that is not JSON (a torn write after a crash) is skipped."""
    parts = sorted(path.parent.glob(f"{path.name}.*"), key=lambda p: -int(p.suffix[1:] or 0))
    parts = [p for p in parts if p.suffix[1:].isdigit()]
    for part in [*parts, path]:
        try:
            lines = part.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if since is not None and _time(event) < since:
                continue
            yield event


def _time(event: dict[str, object]) -> datetime.datetime:
    text = str(event.get("time", "")).replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)
