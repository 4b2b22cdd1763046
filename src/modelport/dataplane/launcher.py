"""Starting a process: the supervisor's one seam to the OS (a fake one ships in
`modelport.testing`).

A `Launcher` starts an argv with its output appended to a log file, under `Limits`, in a session
of its own; the `Process` it returns answers like `subprocess.Popen` (pid, poll, wait, terminate,
kill). `terminate` and `kill` signal the process's whole group, so nothing it started outlives it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = None  # the address-space cap (RLIMIT_AS): what Linux offers


class Process(Protocol):
    """A started (or adopted) process. `wait` raises `subprocess.TimeoutExpired` at its timeout;
    the exit code is negative for a signal (-9: SIGKILL), -1 when unknowable (adopted)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class Launcher(Protocol):
    def start(self, argv: Sequence[str], log_path: Path, limits: Limits) -> Process: ...


class GroupProcess:
    """A `subprocess.Popen` started as a session leader; its signals go to its process group."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._popen.wait(timeout)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)


class SubprocessLauncher:
    def start(self, argv: Sequence[str], log_path: Path, limits: Limits) -> GroupProcess:
        memory = limits.memory_bytes

        def cap() -> None:  # in the child, before exec
            assert memory is not None
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=cap if memory is not None else None,
            )  # fmt: skip
        return GroupProcess(popen)


__all__ = ["GroupProcess", "Launcher", "Limits", "Process", "SubprocessLauncher"]
