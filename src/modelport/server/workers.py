"""`modelport serve --workers N`: N whole servers on the same ports, under a small supervisor.

    supervisor (this module and seat.py: loads no model, answers no request, imports no server)
      ├── worker 0: `modelport serve` complete (models, hot reload, batching, monitor, REST, gRPC)
      ├── worker 1
      └── ...

Start: the CLI checks the flags and builds the config (importing the server's modules), then
execs `python -m modelport.server.workers --supervise FD` (supervise()): the same process, now an
interpreter with the standard library and this module only (16 MiB RSS where it held 60).

Ports: the supervisor binds the REST and gRPC ports first (port 0 picks one, as it does for one
server) and each worker listens on the same ones with SO_REUSEPORT: the kernel spreads new
connections over the workers listening. The supervisor's own sockets only hold the ports; they
never accept. Chosen by measurement over the other way (the supervisor's one listening socket
shared by every worker, uvicorn's): 1.33-1.45x its req/s and 0.72-0.86x its CPU per request at
64 connections, two runs (bench/RESULTS.md, "--workers").

Start: each worker tells the supervisor on a pipe when it listens; once all have, the ports are
logged and written to --port_file (with the supervisor's pid: the process to signal) as one
server's are. Readiness is every worker's (server/readiness.py): each publishes what it serves in
the run's folder, and the supervisor removes a dead worker's publication when it reaps it.

Failures: a worker that exits after it listened is started again, 0.5 s later, doubling for
one that keeps exiting (compute_restart_delay), back to 0.5 s after a minute up. One that exits
before it ever listened stops the server with exit code 1: the next would fail the same way (a
bad model config, a port taken).

Stop: SIGTERM or SIGINT sends every worker SIGTERM; each drains (uvicorn's graceful shutdown, up
to 10 s, gRPC's 5 s); one still running after _GRACE seconds is killed; the exit code is 0.
Workers share the supervisor's process group (a terminal's Ctrl-C reaches them all; the
supervisor's SIGTERM after it does not hurry their drain: uvicorn forces an exit only on a second
SIGINT). Each worker holds the read end of a pipe whose write end only the supervisor has (its
lifeline): when the supervisor process is gone, even after a SIGKILL, the kernel closes that end,
the worker reads end-of-file, stops itself with SIGTERM and removes the run's folder, which the
supervisor can no longer do. No orphans. (Not PR_SET_PDEATHSIG: that fires when the thread that
started the worker ends, while the supervisor's other threads may still run, so a worker could
not tell a dying supervisor from a live one.)
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import io
import json
import logging
import os
import pickle
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

# The standard library and seat.py only: this module is the supervisor's whole code.
from modelport.server.seat import LOG_FORMAT, Announcement, Seat, bind, read_only, ready_path

if TYPE_CHECKING:
    from modelport.server.main import ServeConfig

log = logging.getLogger("modelport.server")

_GRACE = 20.0  # seconds a worker has to drain after SIGTERM before it is killed
_STEADY = 60.0  # seconds up after which a worker's earlier exits are forgiven


def compute_restart_delay(exits: int) -> float:
    """Seconds before a worker that exited is started again: 0.5 s, doubling with each exit in a
    row (exits=1 -> 0.5, 2 -> 1, 3 -> 2, ...), at most 30 s."""
    return min(30.0, 0.5 * 2.0 ** max(0, exits - 1))


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    pipe: int | None  # read end of its notify pipe, until end-of-file (the worker is gone)
    started: float
    report: dict[str, Any] | None = None
    exits: int = 0  # exits in a row


class _Supervisor:
    def __init__(self, config: bytes, count: int, ports: tuple[int, int], run_dir: str) -> None:
        """`config`: the workers' ServeConfig, pickled (never read here); `ports`: REST's and
        gRPC's, bound."""
        self._config = config
        self._count = count
        self._ports = ports
        self._run_dir = run_dir
        self.workers: dict[int, _Worker] = {}
        self.due: dict[int, tuple[float, int]] = {}  # index -> (restart at, exits in a row)
        # The workers' lifeline: they read end-of-file once this process is gone.
        self._lifeline, self._held = os.pipe()

    def start(self, index: int, exits: int = 0) -> None:
        read, write = os.pipe()
        seat = Seat(index, self._count, self._run_dir, write)
        level = logging.getLogger().getEffectiveLevel()
        given = pickle.dumps((self._config, self._ports, seat, level, self._lifeline))
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelport.server.workers"],
            stdin=subprocess.PIPE, pass_fds=(write, self._lifeline),
        )  # fmt: skip
        os.close(write)
        assert proc.stdin is not None
        with proc.stdin:
            proc.stdin.write(given)
        self.workers[index] = _Worker(index, proc, read, time.monotonic(), exits=exits)

    def read_reports(self, timeout: float) -> None:
        """Wait up to `timeout` for workers to say they listen, or to be gone (end-of-file on
        their pipe: its readiness is withdrawn at once, before the process is reaped)."""
        waiting = {w.pipe: w for w in self.workers.values() if w.pipe is not None}
        if not waiting:
            time.sleep(timeout)
            return
        readable, _, _ = select.select(list(waiting), [], [], timeout)
        for fd in readable:
            worker = waiting[fd]
            line = os.read(fd, 4096)
            if line:
                worker.report = json.loads(line)
                continue
            os.close(fd)
            worker.pipe = None
            ready_path(self._run_dir, worker.index).unlink(missing_ok=True)

    def all_up(self) -> bool:
        return len(self.workers) == self._count and all(w.report for w in self.workers.values())

    def reap(self, now: float) -> int | None:
        """Schedule a restart for each worker that exited after it listened; the index of one
        that exited before it ever did (the server must stop), else None."""
        for index, worker in list(self.workers.items()):
            code = worker.proc.poll()
            if code is None:
                continue
            del self.workers[index]
            ready_path(self._run_dir, index).unlink(missing_ok=True)  # not ready until it is back
            if worker.pipe is not None:
                os.close(worker.pipe)
            if worker.report is None:
                log.error(
                    "worker %d (pid %d) exited with code %d before it listened", index, worker.proc.pid, code
                )
                return index
            exits = 1 if now - worker.started >= _STEADY else worker.exits + 1
            delay = compute_restart_delay(exits)
            log.error(
                "worker %d (pid %d) exited with code %d; starting it again in %.1f s",
                index, worker.proc.pid, code, delay,
            )  # fmt: skip
            self.due[index] = (now + delay, exits)
        return None

    def restart_due(self, now: float) -> None:
        for index, (at, exits) in list(self.due.items()):
            if at <= now:
                del self.due[index]
                self.start(index, exits)

    def stop(self) -> None:
        """SIGTERM to every worker, then wait; kill what is left after _GRACE seconds."""
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                worker.proc.terminate()
        deadline = time.monotonic() + _GRACE
        for worker in self.workers.values():
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(
                    "worker %d (pid %d) did not stop in %.0f s: killed", worker.index, worker.proc.pid, _GRACE
                )
                worker.proc.kill()
                worker.proc.wait()
            if worker.pipe is not None:
                os.close(worker.pipe)
        self.workers.clear()
        os.close(self._lifeline)
        os.close(self._held)


def _pickled(value: Any) -> bytes:
    """`value` pickled, read-only mappings (the config's) as plain dicts' copies."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out)
    pickler.dispatch_table = copyreg.dispatch_table | {MappingProxyType: _proxy}
    pickler.dump(value)
    return out.getvalue()


def _proxy(mapping: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return read_only, (dict(mapping),)


def supervise(config: ServeConfig, said: Announcement) -> NoReturn:
    """Run config.workers workers until SIGTERM or SIGINT (exit 0), or until one fails to start
    (exit 1). This process (the CLI's, which imported the server to check the flags) is replaced
    by the supervisor, `python -m modelport.server.workers --supervise FD`: the same pid, a new
    interpreter that imports this module and seat.py only (60 MiB RSS with the server's modules
    imported, 13 without: bench/RESULTS.md). It reads what it needs from FD (a memfd): one JSON
    line, then the workers' config pickled, which it hands each worker unread."""
    plan = {
        "host": config.host, "rest_api_port": config.rest_api_port, "grpc_port": config.grpc_port,
        "workers": config.workers, "level": logging.getLogger().getEffectiveLevel(),
        "announcement": dataclasses.asdict(said),
    }  # fmt: skip
    fd = os.memfd_create("modelport-serve", 0)  # memory, not a file: the TLS key is in the config
    with os.fdopen(fd, "wb", closefd=False) as given:
        given.write(json.dumps(plan).encode() + b"\n" + _pickled(config))
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    # The CLI's arguments after "--" are not read: `ps` shows what was started.
    argv = [sys.executable, "-m", "modelport.server.workers", "--supervise", str(fd), "--", *sys.argv[1:]]
    os.execv(sys.executable, argv)


def _supervise(fd: int) -> None:
    with os.fdopen(fd, "rb") as given:
        plan = json.loads(given.readline())
        config = given.read()
    logging.basicConfig(level=plan["level"], format=LOG_FORMAT)
    said = Announcement(**plan["announcement"])
    host, count = plan["host"], plan["workers"]
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    run_dir = tempfile.mkdtemp(prefix="modelport-workers-")  # 0700: the metrics sockets
    holders: list[socket.socket] = []
    supervisor, failed = None, None
    try:
        rest = bind(host, plan["rest_api_port"], reuse_port=True, listen=False)
        holders.append(rest)
        rest_port, grpc_port = rest.getsockname()[1], rest.getsockname()[1]
        if plan["grpc_port"] != plan["rest_api_port"] or plan["grpc_port"] == 0:
            holders.append(bind(host, plan["grpc_port"], reuse_port=True, listen=False))
            grpc_port = holders[-1].getsockname()[1]
        supervisor = _Supervisor(config, count, (rest_port, grpc_port), run_dir)
        log.info("starting %d workers", count)
        for index in range(count):
            supervisor.start(index)
        announced = False
        while not stop.is_set() and failed is None:
            supervisor.read_reports(0.2)
            if not announced and supervisor.all_up():
                report = supervisor.workers[0].report or {}
                said.say(rest_port, report.get("grpc_port"))
                announced = True
            now = time.monotonic()
            failed = supervisor.reap(now)
            supervisor.restart_due(now)
    finally:
        if supervisor is not None:  # also when starting one failed: none is left running
            log.info("stopping %d workers", len(supervisor.workers))
            supervisor.stop()
        for sock in holders:
            sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        raise SystemExit(1)
    log.info("server stopped")


def _watch_lifeline(lifeline: int, orphaned: threading.Event) -> None:
    """Block until the supervisor is gone (end-of-file: it never writes), then stop this worker."""
    while os.read(lifeline, 1):
        pass
    orphaned.set()
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    """`python -m modelport.server.workers --supervise FD`: the supervisor (supervise()). Without
    arguments, a worker: its config, ports and seat on stdin, pickled by the supervisor."""
    if sys.argv[1:2] == ["--supervise"]:
        _supervise(int(sys.argv[2]))
        return
    from modelport.server.main import serve

    given, (rest_port, grpc_port), seat, level, lifeline = pickle.load(sys.stdin.buffer)
    config = dataclasses.replace(
        pickle.loads(given), rest_api_port=rest_port, grpc_port=grpc_port, port_file=None
    )
    # SIGTERM before uvicorn takes it over (while the worker starts) is an exit all the same.
    signal.signal(signal.SIGTERM, _exit)
    orphaned = threading.Event()
    watch = threading.Thread(target=_watch_lifeline, args=(lifeline, orphaned), name="lifeline", daemon=True)
    watch.start()
    try:
        fmt = LOG_FORMAT.replace("%(name)s", f"%(name)s[worker {seat.index}]")
        logging.basicConfig(level=level, format=fmt)
        serve(config, seat)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut this short
        if orphaned.is_set():  # the supervisor died: nobody else removes the run's folder
            shutil.rmtree(seat.run_dir, ignore_errors=True)


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
