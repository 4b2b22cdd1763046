"""When is a version folder complete? Marks, manifests and plain copies."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from modelport.repository import layout


def _write(path: Path, name: str, data: bytes, age: float = 60.0) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_bytes(data)
    old = time.time() - age
    os.utime(path / name, (old, old))


def _one(base: Path) -> layout.VersionDir:
    (found,) = layout.scan(base)
    return found


def test_only_positive_integer_folders_are_versions(tmp_path: Path) -> None:
    for name in ["1", "42", "01", "0", "-3", "7.partial", ".8.partial-x", "samples"]:
        (tmp_path / name).mkdir()
    (tmp_path / "9").write_text("a file, not a folder")
    assert [v.version for v in layout.scan(tmp_path)] == [1, 42]


def test_plain_copy_waits_until_unchanged_between_polls(tmp_path: Path) -> None:
    now = time.time_ns()
    _write(tmp_path / "1", "model.onnx", b"x" * 10)
    first = _one(tmp_path)
    assert not layout.is_complete(first, None, now, 1.0)  # first sight: not yet
    assert layout.is_complete(_one(tmp_path), first.fingerprint, now, 1.0)
    _write(tmp_path / "1", "model.onnx", b"x" * 20)  # the copy goes on: size changes
    assert not layout.is_complete(_one(tmp_path), first.fingerprint, now, 1.0)


def test_fresh_files_wait_for_the_settle_time(tmp_path: Path) -> None:
    _write(tmp_path / "1", "model.onnx", b"x", age=0.0)
    found = _one(tmp_path)
    assert not layout.is_complete(found, found.fingerprint, time.time_ns(), 1.0)
    assert layout.is_complete(found, found.fingerprint, time.time_ns() + 2_000_000_000, 1.0)


def test_mark_loads_at_once(tmp_path: Path) -> None:
    _write(tmp_path / "1", "model.onnx", b"x", age=0.0)
    _write(tmp_path / "1", layout.COMPLETE_MARK, b"", age=0.0)
    assert layout.is_complete(_one(tmp_path), None, time.time_ns(), 1.0)


def test_mark_with_manifest_waits_for_listed_sizes(tmp_path: Path) -> None:
    manifest = {"files": {"model.onnx": {"size": 100}}}
    _write(tmp_path / "1", layout.COMPLETE_MARK, json.dumps(manifest).encode(), age=0.0)
    _write(tmp_path / "1", "model.onnx", b"x" * 40, age=0.0)  # mark copied first, model half-way
    found = _one(tmp_path)
    assert found.mark_problem == "model.onnx is 40 bytes, _COMPLETE says 100"
    assert not layout.is_complete(found, found.fingerprint, time.time_ns() + 10**10, 1.0)
    _write(tmp_path / "1", "model.onnx", b"x" * 100, age=0.0)
    assert layout.is_complete(_one(tmp_path), None, time.time_ns(), 1.0)


def test_mark_with_missing_file(tmp_path: Path) -> None:
    manifest = {"files": {"model.onnx": {"size": 1}}}
    _write(tmp_path / "1", layout.COMPLETE_MARK, json.dumps(manifest).encode())
    assert _one(tmp_path).mark_problem == "model.onnx listed in _COMPLETE is missing"


def test_garbage_mark_is_reported(tmp_path: Path) -> None:
    _write(tmp_path / "1", layout.COMPLETE_MARK, b"{not json")
    problem = _one(tmp_path).mark_problem
    assert problem is not None and problem.startswith("_COMPLETE is not valid JSON")
