"""A launcher that starts nothing: each "process" is an object the test makes exit, with the
port file a real `modelport serve` would write already written."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelport.dataplane.launcher import Limits


@dataclass
class FakeProcess:
    pid: int
    argv: list[str]
    limits: Limits
    returncode: int | None = None
    ignores_sigterm: bool = False  # then only kill() ends it (the grace period runs out)
    signals: list[str] = field(default_factory=list)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:  # nothing will change while the caller waits
            raise subprocess.TimeoutExpired(self.argv, timeout or 0)
        return self.returncode

    def terminate(self) -> None:
        self.signals.append("SIGTERM")
        if not self.ignores_sigterm and self.returncode is None:
            self.returncode = -15

    def kill(self) -> None:
        self.signals.append("SIGKILL")
        if self.returncode is None:
            self.returncode = -9

    def exit(self, code: int) -> None:
        """The process ends by itself (a crash: code != 0)."""
        self.returncode = code


class FakeLauncher:
    """`start` records the argv and limits, writes the port file named by `--port_file` (or the
    gateway's `--port-file`) with the next free fake port, and returns a running FakeProcess;
    or raises `fail_with` if set (what a failed fork or exec raises)."""

    def __init__(self, first_pid: int = 900000, first_port: int = 41000) -> None:
        self.started: list[FakeProcess] = []
        self.fail_with: OSError | None = None
        self._pid = first_pid
        self._port = first_port

    def start(self, argv: Sequence[str], log_path: Path, limits: Limits) -> FakeProcess:
        if self.fail_with is not None:
            raise self.fail_with
        args = list(argv)
        self._pid += 1
        self._port += 2
        for flag in ("--port_file", "--port-file"):
            if flag in args:
                ports = {"rest_api_port": self._port, "grpc_port": self._port + 1, "pid": self._pid}
                Path(args[args.index(flag) + 1]).write_text(json.dumps(ports))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            log.write(f"started {' '.join(args)}\n")
        process = FakeProcess(self._pid, args, limits)
        self.started.append(process)
        return process

    def running(self) -> list[FakeProcess]:
        return [p for p in self.started if p.returncode is None]


__all__ = ["FakeLauncher", "FakeProcess"]
