"""`pipeline run --watch DIR`: new data is picked up once it is whole (the model repository's
rules: a _COMPLETE mark whose files are all there, or no change for settle_seconds), once per
content, never half-copied."""

from __future__ import annotations

import json
import os
from pathlib import Path

from modelport.delivery.watch import DataWatch
from modelport.testing.clock import FakeClock


def _write(path: Path, data: bytes, mtime: float) -> None:
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


def test_a_copy_in_progress_waits_until_it_has_settled(tmp_path: Path) -> None:
    clock = FakeClock()
    watch = DataWatch(tmp_path, settle_seconds=2, clock=clock)
    assert watch.step() is None  # empty
    _write(tmp_path / "digits.npz", b"x" * 100, clock.now())
    assert watch.step() is None  # first look: nothing to compare with
    clock.advance(1)
    _write(tmp_path / "digits.npz", b"x" * 200, clock.now())  # still growing
    assert watch.step() is None
    clock.advance(1)
    assert watch.step() is None  # unchanged, but its newest file is only 1 s old
    clock.advance(1.5)
    first = watch.step()
    assert first is not None  # unchanged and 2.5 s old: landed
    clock.advance(5)
    assert watch.step() is None  # the same data is not a new landing
    os.utime(tmp_path / "digits.npz", (clock.now(), clock.now()))  # touched, same bytes
    clock.advance(3)
    watch.step()
    assert watch.step() is None
    _write(tmp_path / "digits.npz", b"y" * 200, clock.now() - 10)  # new content, old mtime
    watch.step()
    second = watch.step()
    assert second is not None and second != first


def test_a_complete_mark_counts_only_when_its_files_are_all_there(tmp_path: Path) -> None:
    clock = FakeClock()
    watch = DataWatch(tmp_path, settle_seconds=60, clock=clock)
    _write(tmp_path / "a.npz", b"a" * 10, clock.now())
    mark = {"files": {"a.npz": {"size": 10}, "b.npz": {"size": 20}}}
    (tmp_path / "_COMPLETE").write_text(json.dumps(mark))  # the mark came first: b is missing
    assert watch.step() is None
    _write(tmp_path / "b.npz", b"b" * 5, clock.now())  # b half-copied
    assert watch.step() is None
    _write(tmp_path / "b.npz", b"b" * 20, clock.now())
    assert watch.step() is not None  # at once: no settling wait with a mark that matches
