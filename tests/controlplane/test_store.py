"""The object store: resourceVersion conflicts instead of merges, generation counts spec changes,
and a watch sees every change in order, including those written by other processes."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from modelport.controlplane.store import ObjectStore
from modelport.errors import Code, ModelportError
from modelport.testing.clock import FakeClock


def _deployment(name: str = "mnist", replicas: int = 2) -> dict[str, Any]:
    return {"apiVersion": "modelport/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"replicas": replicas}}  # fmt: skip


def test_create_get_list_and_metadata(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "state.db")
    created = store.create(_deployment())
    meta = created["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert store.get("Deployment", "default", "mnist") == created
    store.create(_deployment("other"))
    objects, rv = store.list_kind("Deployment")
    assert [o["metadata"]["name"] for o in objects] == ["mnist", "other"]
    assert rv == int(objects[-1]["metadata"]["resourceVersion"])
    with pytest.raises(ModelportError, match='deployments "mnist" already exists') as caught:
        store.create(_deployment())
    assert caught.value.code == Code.ALREADY_EXISTS


def test_creation_timestamp_follows_the_injected_clock(tmp_path: Path) -> None:
    # 1_780_000_000 s after the epoch is 2026-05-28T20:26:40Z; 90 s later, 20:28:10.
    clock = FakeClock(start=1_780_000_000)
    store = ObjectStore(tmp_path / "state.db", clock)
    first = store.create(_deployment("first"))
    clock.advance(90)
    second = store.create(_deployment("second"))
    assert first["metadata"]["creationTimestamp"] == "2026-05-28T20:26:40Z"
    assert second["metadata"]["creationTimestamp"] == "2026-05-28T20:28:10Z"
    # An update keeps the time the object was made.
    later = store.update({**first, "spec": {"replicas": 5}})
    assert later["metadata"]["creationTimestamp"] == "2026-05-28T20:26:40Z"


def test_generation_counts_spec_changes_only(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "state.db")
    first = store.create(_deployment())
    scaled = store.update({**first, "spec": {"replicas": 3}})
    assert scaled["metadata"]["generation"] == 2
    with_status = store.update({**scaled, "status": {"readyReplicas": 3}}, status_only=True)
    assert with_status["metadata"]["generation"] == 2 and with_status["status"] == {"readyReplicas": 3}
    again = store.update({**with_status, "metadata": {**with_status["metadata"], "resourceVersion": None}})
    assert again == with_status  # the same spec: no new version, no event
    assert int(with_status["metadata"]["resourceVersion"]) > int(scaled["metadata"]["resourceVersion"])
    # A spec update keeps the status the controllers wrote.
    assert store.update({**again, "spec": {"replicas": 1}})["status"] == {"readyReplicas": 3}


def test_a_stale_write_is_a_conflict_not_a_merge(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "state.db")
    read = store.create(_deployment())
    store.update({**read, "spec": {"replicas": 5}})
    with pytest.raises(
        ModelportError, match='Operation cannot be fulfilled on deployments "mnist"'
    ) as caught:
        store.update({**read, "spec": {"replicas": 7}})
    assert caught.value.http_status == 409
    assert store.get("Deployment", "default", "mnist")["spec"] == {"replicas": 5}
    with pytest.raises(ModelportError, match="has been modified"):
        store.delete("Deployment", "default", "mnist", resource_version=read["metadata"]["resourceVersion"])


def _update_from(path: str, read: dict[str, Any], replicas: int, start: Any) -> str:
    store = ObjectStore(Path(path))
    start.wait(30)  # both processes open the store, then write together
    try:
        store.update({**read, "spec": {"replicas": replicas}})
        return "ok"
    except ModelportError as exc:
        return exc.code.name


def test_two_writers_at_once_one_wins(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "state.db")
    read = store.create(_deployment())
    with multiprocessing.Manager() as manager, ProcessPoolExecutor(2) as pool:
        start = manager.Barrier(2)
        results = sorted(
            pool.map(_update_from, [str(tmp_path / "state.db")] * 2, [read, read], [3, 4], [start, start])
        )
    assert results == ["ABORTED", "ok"]
    assert store.get("Deployment", "default", "mnist")["spec"]["replicas"] in (3, 4)


def test_watch_sees_every_change_in_order(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "state.db")
    _, start = store.list_kind("Deployment")
    seen: list[tuple[str, str, Any]] = []

    def watch() -> None:
        for change in ObjectStore(tmp_path / "state.db").watch(start, ("Deployment",), timeout=2):
            seen.append((change.type, change.object["metadata"]["name"], change.object["spec"]["replicas"]))
            if change.type == "DELETED":
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    created = store.create(_deployment())
    store.create({**_deployment("svc"), "kind": "Service"})  # another kind: not seen
    updated = store.update({**created, "spec": {"replicas": 4}})
    store.delete("Deployment", "default", "mnist")
    watcher.join(10)
    assert seen == [("ADDED", "mnist", 2), ("MODIFIED", "mnist", 4), ("DELETED", "mnist", 4)]
    later = store.changes(int(updated["metadata"]["resourceVersion"]))
    assert [c.type for c in later] == ["DELETED"]


def test_compaction_keeps_the_objects_and_the_last_changes(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "state.db")
    obj = store.create(_deployment())
    for replicas in range(3, 53):
        obj = store.update({**obj, "spec": {"replicas": replicas}, "metadata": {**obj["metadata"]}})
    assert len(store.changes(0)) == 51
    assert store.compact(keep=10) == 41
    kept = store.changes(0)
    assert [c.object["spec"]["replicas"] for c in kept] == list(range(43, 53))
    assert store.get("Deployment", "default", "mnist")["spec"]["replicas"] == 52  # type: ignore[index]
    store.update({**obj, "spec": {"replicas": 1}})
    assert store.changes(kept[-1].resource_version)[0].object["spec"]["replicas"] == 1


def test_a_shared_list_is_list_kinds_and_sees_every_writer(tmp_path: Path) -> None:
    """The controllers' read: the same objects as list_kind, in its order; an object unchanged since
    the last read is the same dict as then; another writer's create, update and delete (another
    process: another store on the same file) are all seen at the next read, also after the
    change log was compacted."""
    mine, theirs = ObjectStore(tmp_path / "state.db"), ObjectStore(tmp_path / "state.db")
    for name in ("b", "a", "c"):
        mine.create(_deployment(name))
    first = mine.list_shared("Deployment")
    assert first == mine.list_kind("Deployment")[0] and [o["metadata"]["name"] for o in first] == [
        "a",
        "b",
        "c",
    ]
    a, b, _ = first
    theirs.update({**b, "spec": {"replicas": 7}})
    theirs.delete("Deployment", "default", "c")
    theirs.create(_deployment("aa"))
    theirs.create({**_deployment("z"), "kind": "Service"})  # another kind: not in this list
    second = mine.list_shared("Deployment")
    assert second == mine.list_kind("Deployment")[0]
    assert [(o["metadata"]["name"], o["spec"]["replicas"]) for o in second] == [("a", 2), ("aa", 2), ("b", 7)]
    assert second[0] is a and second[2] is not b  # decoded again only when written
    assert mine.list_shared("Deployment")[0] is a  # nothing written at all: the same answer
    theirs.update({**a, "spec": {"replicas": 4}})
    theirs.create(_deployment("ab"))
    theirs.compact(keep=1)  # the log no longer says what changed: everything is read again
    third = mine.list_shared("Deployment")
    assert third == mine.list_kind("Deployment")[0]
    assert [(o["metadata"]["name"], o["spec"]["replicas"]) for o in third] == [
        ("a", 4),
        ("aa", 2),
        ("ab", 2),
        ("b", 7),
    ]
