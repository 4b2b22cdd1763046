"""The on-disk model repository: `<base_path>/<version>/`, and when a version folder is complete.

A version folder is named by a positive integer (`1`, `42`; not `01`, `-1`, `1.tmp`); every
other name is ignored, so a publisher can write into `.3.partial` or `3.tmp` and rename.

A folder is loaded only when it is complete. Two ways to say so:

1. The publisher's mark (fast, exact): the file `_COMPLETE`, written last. If it holds JSON
   `{"files": {"model.onnx": {"size": 1234, "sha256": "..."}}}`, every listed file must be
   present at that size before the version counts as complete (so a plain `cp -r` that happens
   to copy the mark first still waits), and the sha256 is checked when the version loads.
   `modelport`'s own publishers write the folder under a dot-name, add `_COMPLETE`, fsync every
   file and folder, then rename (and fsync the parent), so a power cut leaves either no version
   or a whole one.
2. Plain copies (no mark): the folder's fingerprint (every file's path, size and mtime) must be
   unchanged between two polls at least `settle_seconds` apart, and its newest file at least
   `settle_seconds` old. A copy in progress keeps changing sizes or mtimes, so it waits.

A version that still fails to load (a truncated file the settle rule could not see) is reported
with its error and retried when its fingerprint changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPLETE_MARK = "_COMPLETE"
_VERSION_NAME = re.compile(r"[1-9][0-9]{0,17}")

# (relative path, size, mtime_ns) of every file, sorted
Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class VersionDir:
    version: int
    path: Path
    fingerprint: Fingerprint
    marked: bool  # has _COMPLETE
    mark_problem: str | None  # why the mark's manifest does not match yet (None = matches)

    @property
    def newest_mtime_ns(self) -> int:
        return max((m for _, _, m in self.fingerprint), default=0)


def parse_version(name: str) -> int | None:
    return int(name) if _VERSION_NAME.fullmatch(name) else None


def fingerprint(path: Path) -> Fingerprint:
    entries: list[tuple[str, int, int]] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except FileNotFoundError:  # deleted while we walked: the next poll sees the change
                continue
            entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(entries))


def read_manifest(path: Path) -> Mapping[str, Mapping[str, object]]:
    """The `files` map of a _COMPLETE mark; an empty mark means "complete, nothing to verify"."""
    text = (path / COMPLETE_MARK).read_text(encoding="utf-8").strip()
    if not text:
        return {}
    files = json.loads(text).get("files", {})
    if not isinstance(files, dict):
        raise ValueError("'files' must be an object")
    return files


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """What a _COMPLETE mark lists: every file under `folder` (the mark aside), size and sha256."""
    from modelport.errors import invalid

    if not folder.is_dir():
        raise invalid(f"{folder}: not a directory")
    files = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
        if path.relative_to(folder).as_posix() != COMPLETE_MARK
    }
    if not files:
        raise invalid(f"{folder}: no files to publish")
    return files


def write_version(
    target: Path, fill: Callable[[Path], None], expected: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Publish a version folder the safe way: `fill` writes into a dot-named folder beside
    `target`, its manifest goes into `_COMPLETE`, and one rename puts it in place. A server
    watching the repository never sees it half-written. With `expected`, the files written must
    be exactly those (a copy that changed under our feet is refused, nothing is left behind)."""
    from modelport.errors import Code, ModelportError

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        fill(partial)
        files = manifest(partial)
        if expected is not None and files != dict(expected):
            raise ModelportError(Code.DATA_LOSS, f"{target}: files changed while being copied")
        (partial / COMPLETE_MARK).write_text(json.dumps({"files": files}, indent=1) + "\n")
        sync_tree(partial)  # on disk before it is visible: a crash cannot leave a torn version
        os.rename(partial, target)
        _fsync(target.parent)  # and the rename itself survives a crash
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return files


def sync_tree(folder: Path) -> None:
    """fsync every file under `folder`, then every folder, deepest first (a folder's entries are
    durable only once the folder itself is synced)."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            _fsync(Path(root, name))
        _fsync(Path(root))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mark_problem(path: Path, fp: Fingerprint) -> str | None:
    try:
        manifest = read_manifest(path)
    except (ValueError, OSError) as exc:
        return f"{COMPLETE_MARK} is not valid JSON: {exc}"
    sizes = {rel: size for rel, size, _ in fp}
    for rel, entry in manifest.items():
        want = entry.get("size") if isinstance(entry, dict) else None
        if rel not in sizes:
            return f"{rel} listed in {COMPLETE_MARK} is missing"
        if want is not None and sizes[rel] != want:
            return f"{rel} is {sizes[rel]} bytes, {COMPLETE_MARK} says {want}"
    return None


def list_versions(base_path: Path) -> dict[int, Path]:
    """Integer-named folders under base_path: one directory read, nothing opened.

    Raises OSError if base_path is unreadable.
    """
    with os.scandir(base_path) as entries:
        return {
            version: Path(entry.path)
            for entry in entries
            if (version := parse_version(entry.name)) is not None and entry.is_dir()
        }


def inspect(version: int, path: Path) -> VersionDir:
    """Fingerprint one version folder and read its _COMPLETE mark, if any."""
    fp = fingerprint(path)
    marked = any(rel == COMPLETE_MARK for rel, _, _ in fp)
    return VersionDir(version, path, fp, marked, _mark_problem(path, fp) if marked else None)


def scan(base_path: Path) -> list[VersionDir]:
    """Every version folder under base_path, inspected, in version order."""
    return [inspect(v, p) for v, p in sorted(list_versions(base_path).items())]


def is_complete(
    current: VersionDir, previous: Fingerprint | None, now_ns: int, settle_seconds: float
) -> bool:
    """Pure: may this version folder be loaded now? (rules in the module docstring)

    A mark wins at once when its manifest matches. Without a mark: same fingerprint as the last
    poll and newest file older than settle_seconds. E.g. settle 1 s, poll 1 s: a folder renamed
    into place from files written a minute ago loads on the second poll that sees it (about 1 s);
    a `cp -r` still writing changes sizes between polls and waits until it has stopped for 1 s.
    """
    if current.marked:
        return current.mark_problem is None
    if not current.fingerprint or previous != current.fingerprint:
        return False
    return now_ns - current.newest_mtime_ns >= settle_seconds * 1e9
