"""The mirror controller: while a canary Rollout is at or past a `setMirror: {percent: N}` step
(its status' `mirrorPercent`), each of its stable replicas is told which canary replicas to copy
N% of its answered predictions to; when the mirror ends (a later `setMirror: {percent: 0}`,
promotion, abort) it is told to stop.

The telling is a file per replica beside its port file (dataplane.supervisor.mirror_path), which
the replica polls (server/mirror.py): the replicas have no control endpoint to call, and a file
survives a control-plane restart as the replicas do. Only ready canary replicas are named, so a
copy never goes to one that cannot answer; a file is rewritten only when what it says changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modelport.controlplane.meta import HASH_LABEL, terminating
from modelport.controlplane.store import ObjectStore
from modelport.dataplane.supervisor import mirror_path
from modelport.server.mirror import MirrorRule, write_rules

Obj = dict[str, Any]
Rules = tuple[MirrorRule, ...]
log = logging.getLogger("modelport.controlplane")


def _key(pod: Obj) -> str:
    return f"{pod['metadata']['namespace']}.{pod['metadata']['name']}"


def compute_mirrors(rollouts: Iterable[Obj], pods: list[Obj]) -> dict[str, Rules]:
    """Pure: each model replica's rules (pod key -> rules; none: an empty tuple). A stable replica
    of a Rollout with `mirrorPercent` > 0 and at least one ready canary replica copies to those."""
    wanted: dict[str, Rules] = {_key(p): () for p in pods if p["spec"].get("model")}
    for rollout in rollouts:
        st = rollout.get("status", {})
        percent = int(st.get("mirrorPercent", 0))
        stable, canary = st.get("stableHash"), st.get("canaryHash")
        if percent <= 0 or st.get("abort") or not stable or not canary or stable == canary:
            continue
        namespace = rollout["metadata"]["namespace"]
        selector = rollout["spec"]["selector"].get("matchLabels", {})
        mine = [
            p for p in pods
            if p["metadata"]["namespace"] == namespace and not terminating(p) and p["spec"].get("model")
            and all(p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]  # fmt: skip
        targets = tuple(
            sorted(
                f"http://127.0.0.1:{p['status']['port']}"
                for p in mine
                if p["metadata"]["labels"].get(HASH_LABEL) == canary
                and p.get("status", {}).get("ready")
                and p["status"].get("port")
            )
        )
        if not targets:
            continue
        for pod in mine:
            if pod["metadata"]["labels"].get(HASH_LABEL) == stable:
                wanted[_key(pod)] = (MirrorRule(pod["spec"]["model"]["name"], percent, targets),)
    return wanted


class MirrorController:
    def __init__(self, store: ObjectStore, workdir: Path) -> None:
        self._store = store
        self.workdir = workdir  # the kubelet's: where the replicas' port files are
        self._written: dict[str, Rules] | None = None  # None: nothing known yet (a start): write all

    def sync_all(self) -> None:
        wanted = compute_mirrors(self._store.list_shared("Rollout"), self._store.list_shared("Pod"))
        written = self._written
        for key, rules in wanted.items():
            if written is None or written.get(key) != rules:
                self._write(key, rules)
        for key in set(written or {}) - set(wanted):  # its Pod is gone
            self._write(key, ())
        self._written = wanted

    def _write(self, key: str, rules: Rules) -> None:
        if not rules and not mirror_path(self.workdir, key).exists():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_rules(mirror_path(self.workdir, key), rules)
        log.info("replica %s mirrors: %s", key, rules or "nothing")


__all__ = ["MirrorController", "compute_mirrors"]
