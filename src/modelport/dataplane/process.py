"""Processes this program did not start but must look after: replicas and load balancers left
running by a control plane that crashed, found again by the marker in their command line (the
path of their port file or config file, unique to each).

`AdoptedProcess` answers like `subprocess.Popen` (pid, poll, wait, terminate, kill), so the
supervisor treats an adopted replica like one it started. The exit code of a process one did not
start is unknowable; it reads as -1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import psutil


class AdoptedProcess:
    def __init__(self, proc: psutil.Process, group: bool = False) -> None:
        self._proc = proc
        self._group = group  # a session leader (a replica): signals go to its whole group
        self.pid = proc.pid
        self.returncode: int | None = None

    @classmethod
    def find(cls, pid: int | None, marker: str, group: bool = False) -> AdoptedProcess | None:
        """The process `pid` if it is alive and its command line holds `marker` (a pid alone can
        have been reused by another program since)."""
        if not pid:
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or marker not in " ".join(proc.cmdline()):
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return cls(proc, group)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                alive = self._proc.is_running() and self._proc.status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                alive = False
            if not alive:
                self.returncode = -1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Until it is gone or a zombie (whose parent, not us, must reap it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        return -1

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            if self._group:
                os.killpg(self.pid, signum)
            else:
                self._proc.send_signal(signum)


def processes_with(marker: str) -> list[psutil.Process]:
    """Every live process whose command line holds `marker` (to find orphans by their home)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("status") != psutil.STATUS_ZOMBIE and marker in " ".join(cmdline):
            found.append(proc)
    return found
