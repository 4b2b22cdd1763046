"""Shadow traffic (a Rollout's `setMirror: {percent: N}`): a stable replica copies N% of the
predictions it answers to the canary's replicas and counts whether the canary answered the same.

Why here and not in the load balancer: HAProxy cannot mirror a request (only an external SPOE
agent could, one more process and protocol per Service). The stable replica already holds both
halves of the comparison, the request and its own answer, so it sends the copy after its answer
has gone to the client and compares there:

    client ──▶ HAProxy ──▶ stable replica ──answer──▶ client          (never waits for the copy)
                                 │ N% of answers, after they are sent
                                 ▼ bounded queue (full: counted `dropped`)
                           WORKERS tasks ──POST, TIMEOUT s──▶ a canary replica (round robin,
                                 │                    one keep-alive connection per task)
                                 │ canary's answer: compared, then thrown away
                                 ▼
    modelport_mirror_requests_total{model, version, outcome="agree|disagree|error|dropped"}

So the canary's answers never reach a client and its failures (an error, a timeout, a refused
connection) are only counted. `version` is the stable version that answered.

Where the canary is comes from a file the control plane writes beside the replica's port file
(`--mirror_file`), polled every POLL_SECONDS: JSON `{"rules": [{"model", "percent", "targets"}]}`,
`targets` the canary replicas' base URLs. No file, or no rule for a model: nothing is copied.
A request that is itself a copy (header MIRRORED) is never copied again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from prometheus_client import CollectorRegistry, Counter

from modelport.clock import SystemClock

log = logging.getLogger("modelport.server")

MIRRORED = b"x-modelport-mirror"  # on a copy: the canary does not copy it on
QUEUE = 64  # copies waiting to be sent, at most; more are dropped (counted), never waited for
WORKERS = 4  # copies in flight at once
TIMEOUT = 2.0  # seconds a copy may take; longer is an `error`
POLL_SECONDS = 0.5
TOLERANCE = 1e-3  # relative and absolute, for numbers that are not a predicted class
IGNORED = frozenset({"model_name", "model_version", "id"})  # v2 answers name who answered
OUTCOMES = ("agree", "disagree", "error", "dropped")


@dataclass(frozen=True)
class MirrorRule:
    model: str
    percent: int  # 0-100: the share of this model's answered predictions copied
    targets: tuple[str, ...]  # the canary replicas' base URLs, http://127.0.0.1:PORT


def read_rules(path: Path) -> dict[str, MirrorRule]:
    """The rules by model; no file: none. Raises OSError or ValueError on a bad one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    rules = {}
    for raw in json.loads(text)["rules"]:
        rule = MirrorRule(str(raw["model"]), int(raw["percent"]), tuple(str(t) for t in raw["targets"]))
        if not 0 <= rule.percent <= 100:
            raise ValueError(f"percent {rule.percent} is not 0 to 100")
        rules[rule.model] = rule
    return rules


def write_rules(path: Path, rules: Iterable[MirrorRule]) -> None:
    """Atomically (a replica never reads half a file); no rule: the file is removed."""
    listed = [{"model": r.model, "percent": r.percent, "targets": list(r.targets)} for r in rules]
    if not listed:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"rules": listed}, sort_keys=True))
    os.replace(tmp, path)


def agrees(stable: Any, canary: Any) -> bool:
    """Whether two answers say the same: the same shape, the same strings and integers, the same
    predicted class where a row of scores is given (its argmax), other numbers within TOLERANCE.
    Worked example: scores [0.1, 0.7, 0.2] and [0.12, 0.66, 0.22] agree (class 1 both);
    [0.1, 0.7, 0.2] and [0.5, 0.3, 0.2] do not."""
    if isinstance(stable, dict) and isinstance(canary, dict):
        keys = set(stable) - IGNORED
        return keys == set(canary) - IGNORED and all(agrees(stable[k], canary[k]) for k in keys)
    if isinstance(stable, list) and isinstance(canary, list):
        if len(stable) != len(canary):
            return False
        if _scores(stable) and _scores(canary):
            return _argmax(stable) == _argmax(canary)
        return all(agrees(s, c) for s, c in zip(stable, canary, strict=True))
    if isinstance(stable, float) or isinstance(canary, float):
        if any(isinstance(x, bool) or not isinstance(x, int | float) for x in (stable, canary)):
            return False
        return math.isclose(stable, canary, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return type(stable) is type(canary) and bool(stable == canary)


def _scores(row: Sequence[Any]) -> bool:
    return len(row) >= 2 and all(isinstance(x, float) for x in row)


def _argmax(row: Sequence[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


@dataclass(frozen=True)
class Copy:
    model: str
    version: str  # the stable version that answered
    path: str  # the canary's route: no version or label in it (the canary has another version)
    body: bytes
    headers: tuple[tuple[str, str], ...]
    answer: bytes  # the stable answer, sent to the client already


class Mirror:
    """Owned by one server: `watch` runs on a thread of its own, `offer` on the event loop."""

    def __init__(self, path: Path, registry: CollectorRegistry) -> None:
        self.path = path
        self._rules: Mapping[str, MirrorRule] = {}
        self._owed: dict[str, int] = {}  # per model: percent points accumulated (see `offer`)
        self._turn = 0
        self._queue: asyncio.Queue[Copy] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._counter = Counter(
            "modelport_mirror_requests",
            "Answers copied to a canary (setMirror), by model, the stable version and outcome: "
            "agree, disagree (the canary answered otherwise), error (no answer, or not 200), "
            "dropped (the copy queue was full).",
            ["model", "version", "outcome"], registry=registry,
        )  # fmt: skip

    def watch(self, stop: threading.Event) -> None:
        """Reload the rules whenever the file changes; a bad file keeps the last good rules."""
        clock, seen = SystemClock(), None
        while True:
            try:
                stat = self.path.stat()
                mark: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_ino)
            except FileNotFoundError:
                mark = None
            if mark != seen:
                try:
                    self._rules = read_rules(self.path)
                    seen = mark
                    log.info("mirror rules: %s", list(self._rules.values()) or "none")
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.error("mirror file %s not read, keeping the last rules: %s", self.path, exc)
                    seen = mark
            if clock.wait(stop, POLL_SECONDS):
                return

    def wants(self, model: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """Whether this answer is one of the model's N%: exactly N of every 100 in turn, the way
        weighted round robin shares requests (50: every other one; 20: one in five)."""
        rule = self._rules.get(model)
        if rule is None or rule.percent <= 0 or not rule.targets:
            return False
        if any(k == MIRRORED for k, _ in headers):
            return False
        owed = self._owed.get(model, 0) + rule.percent
        self._owed[model] = owed % 100 if owed >= 100 else owed
        return owed >= 100

    def offer(self, copy: Copy) -> None:
        """Queue a copy for sending; a full queue drops it (counted). Never waits."""
        if self._queue is None:
            self._queue = asyncio.Queue(QUEUE)
            self._workers = [asyncio.get_running_loop().create_task(self._work()) for _ in range(WORKERS)]
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            self._counter.labels(copy.model, copy.version, "dropped").inc()

    async def _work(self) -> None:
        assert self._queue is not None
        link = _Link()
        while True:
            copy = await self._queue.get()
            outcome = await self._send(link, copy)
            self._counter.labels(copy.model, copy.version, outcome).inc()

    async def _send(self, link: _Link, copy: Copy) -> str:
        rule = self._rules.get(copy.model)
        if rule is None or not rule.targets:
            return "dropped"  # the mirror was switched off while it waited
        self._turn += 1
        target = rule.targets[self._turn % len(rule.targets)]
        headers = (*copy.headers, (MIRRORED.decode(), "1"), ("content-type", "application/json"))
        try:
            status, payload = await asyncio.wait_for(
                link.post(target, copy.path, headers, copy.body), TIMEOUT
            )
            if status != 200:
                return "error"
            return "agree" if agrees(orjson.loads(copy.answer), orjson.loads(payload)) else "disagree"
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            link.close()
            return "error"


class _Link:
    """One worker's keep-alive HTTP/1.1 connection to a canary replica: a few lines of protocol
    instead of a client library's (aiohttp's cost a copy 1 ms of the stable replica's CPU). The
    model server always answers with a content-length; anything else is an error. A kept
    connection the replica closed meanwhile (its keep-alive timeout) is opened again, once."""

    def __init__(self) -> None:
        self._target = ""
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(
        self, target: str, path: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        kept = self._streams is not None and self._target == target
        if not kept:
            await self._open(target)
        try:
            return await self._exchange(path, headers, body)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not kept:
                raise
            await self._open(target)  # closed while idle: once more on a new connection
            return await self._exchange(path, headers, body)

    async def _open(self, target: str) -> None:
        self.close()
        parts = urlsplit(target)
        self._streams = await asyncio.open_connection(parts.hostname, parts.port)
        self._target = target

    async def _exchange(
        self, path: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        assert self._streams is not None
        reader, writer = self._streams
        lines = [f"POST {path} HTTP/1.1", f"host: {urlsplit(self._target).netloc}",
                 f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in headers)]  # fmt: skip
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        block = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status, length, close = int(block[0].split()[1]), None, False
        for line in block[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
        if length is None:
            raise ValueError("an answer without a content-length")
        payload = await reader.readexactly(length)
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


__all__ = ["Copy", "Mirror", "MirrorRule", "agrees", "read_rules", "write_rules"]
