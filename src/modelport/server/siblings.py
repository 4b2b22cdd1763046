"""One server process of several (`modelport serve --workers N`): its seat, one /metrics for
them all, and what it serves published for the others' readiness (server/readiness.py:
`<run_dir>/ready-<i>.json`, rewritten whenever its models change).

Each worker counts in its own registry, as a single server does: nothing on the request path
knows there are others. /metrics is answered by whichever worker the scrape's connection
reached, with every worker's series, each labelled `worker="0".."N-1"`: its own, and each
sibling's, read from the sibling's Unix socket in the run's private directory
(`<run_dir>/metrics-<i>.sock`, a thread that answers one JSON document per connection).

    modelport_requests_total{model="mnist",...,worker="0"} 51234
    modelport_requests_total{model="mnist",...,worker="1"} 50877     sum without (worker): all
    modelport_model_state{model="mnist",version="2",worker="0"} 30   each worker's own state
    modelport_worker_info{worker="1",pid="4242"} 1                    who answered this scrape

Why a `worker` label, not prometheus_client's multiprocess mode (one directory of mmap files):
- Counters and histograms sum with `sum without (worker)`; gauges are each worker's own and
  never added up: during a reload one worker may serve version 2 while another still loads it,
  and a summed (or max) model state or drift score would say neither.
- The request path is unchanged: multiprocess mode writes every increment into a shared file
  under a lock, and it cannot remove a series (an unloaded version's quality gauges), compute a
  gauge when scraped (the batch queue's rows), or give each worker's process_* figures.
A sibling that does not answer within 3 s is left out of that scrape (and logged); its
counters come back with it (a restarted worker starts from zero, which Prometheus' rate()
reads as a counter reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from modelport.server.seat import Seat

if TYPE_CHECKING:
    from modelport.repository.manager import ModelView

log = logging.getLogger("modelport.server")

_TIMEOUT = 3.0  # seconds a sibling has to answer a scrape (Prometheus waits 10 s by default)
_MAX_BYTES = 64 * 1024 * 1024  # one sibling's metrics at most (a single server's are ~25 KB)
_MAX_READY_BYTES = 1024 * 1024  # one sibling's published models (~30 bytes a model)


def snapshot(registry: CollectorRegistry) -> dict[str, Any]:
    """A registry's families as JSON-able data (NaN and infinities survive json's round trip)."""
    families = [
        {
            "name": m.name, "help": m.documentation, "type": m.type, "unit": m.unit,
            "samples": [[s.name, s.labels, s.value] for s in m.samples],
        }
        for m in registry.collect()
    ]  # fmt: skip
    return {"pid": os.getpid(), "families": families}


def render_merged(parts: Iterable[tuple[int, dict[str, Any]]]) -> bytes:
    """The text exposition of several workers' snapshots, each sample labelled with its worker;
    a family's samples stay together (the format wants one HELP/TYPE block per family)."""
    info = Metric("modelport_worker", "The workers whose series this scrape holds.", "info")
    merged: dict[str, Metric] = {}
    for worker, part in sorted(parts, key=lambda p: p[0]):
        info.add_sample("modelport_worker_info", {"worker": str(worker), "pid": str(part["pid"])}, 1)
        for family in part["families"]:
            metric = merged.get(family["name"])
            if metric is None:
                metric = Metric(family["name"], family["help"], family["type"], family["unit"])
                merged[family["name"]] = metric
            for name, labels, value in family["samples"]:
                metric.add_sample(name, {**labels, "worker": str(worker)}, value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([info, *merged.values()]))
    return generate_latest(registry)


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class Siblings:
    """This worker's side of the metrics exchange: its socket, and the merged /metrics."""

    def __init__(self, seat: Seat, registry: CollectorRegistry) -> None:
        self._seat = seat
        self._registry = registry
        self._published: dict[str, list[int]] | None = None
        self._paths = [str(seat.ready_path(i)) for i in range(seat.count)]
        seat.ready_path(seat.index).unlink(missing_ok=True)  # a dead predecessor's
        path = seat.socket_path(seat.index)
        path.unlink(missing_ok=True)  # a dead predecessor's
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(16)
        self._listener.settimeout(0.5)  # how soon the thread sees `stop`

    def run(self, stop: threading.Event) -> None:
        """Answer each connection with this worker's snapshot, until `stop`."""
        while not stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with conn:
                conn.settimeout(_TIMEOUT)
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(snapshot(self._registry)).encode())
        self._listener.close()

    def publish(self, views: Mapping[str, ModelView]) -> None:
        """Tell the other workers which versions of which models this one serves now (called
        each time its models change; written whole, then renamed into place)."""
        served = {name: sorted(view.versions) for name, view in views.items()}
        if served == self._published:
            return
        path = self._seat.ready_path(self._seat.index)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(json.dumps({"pid": os.getpid(), "models": served}))
            os.replace(tmp, path)
        except OSError as exc:  # the other workers keep the last published: not ready, or stale
            log.error("cannot publish this worker's models to the others in %s: %s", path, exc)
            return
        self._published = served

    def withdraw(self) -> None:
        """This worker stops serving: the others no longer count it ready."""
        self._seat.ready_path(self._seat.index).unlink(missing_ok=True)

    def others_published(self) -> list[Mapping[str, Sequence[int]] | None]:
        """What each other worker last published (None: nothing, or not readable: not running)."""
        found: list[Mapping[str, Sequence[int]] | None] = []
        for index in range(self._seat.count):
            if index == self._seat.index:
                continue
            try:  # os.open, not Path.read_bytes: a third of the time (~10 us a worker)
                fd = os.open(self._paths[index], os.O_RDONLY)
                try:
                    data = os.read(fd, _MAX_READY_BYTES)
                finally:
                    os.close(fd)
                models: dict[str, list[int]] = json.loads(data)["models"]
            except (OSError, ValueError, KeyError, TypeError):
                found.append(None)
            else:
                found.append(models)
        return found

    async def render(self) -> bytes:
        """Every worker's metrics, read now; a sibling that does not answer is left out."""
        others = [i for i in range(self._seat.count) if i != self._seat.index]
        fetched = await asyncio.gather(*(self._fetch(i) for i in others))
        parts = [(self._seat.index, snapshot(self._registry))]
        parts += [(i, part) for i, part in zip(others, fetched, strict=True) if part is not None]
        return render_merged(parts)

    async def _fetch(self, index: int) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(str(self._seat.socket_path(index)))
                chunks, size = [], 0
                try:
                    while chunk := await reader.read(65536):
                        size += len(chunk)
                        if size > _MAX_BYTES:
                            raise ValueError(f"more than {_MAX_BYTES} bytes")
                        chunks.append(chunk)
                finally:
                    writer.close()
            part: dict[str, Any] = json.loads(b"".join(chunks))
            return part
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning("worker %d's metrics left out of this scrape: %s", index, exc or type(exc).__name__)
            return None
