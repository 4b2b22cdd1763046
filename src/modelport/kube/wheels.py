"""Wheels for the build context, made from what is installed here, with no network.

- modelport's own wheel is made from the package that is running (`modelport.__file__`'s
  folder, package data included), so the image holds exactly the modelport that built it, an
  editable checkout's uncommitted changes too.
- With `--offline`, every runtime dependency of modelport (Requires-Dist, extras followed,
  markers evaluated for this interpreter) is packed back into a wheel from its installed files
  and its own dist-info (the WHEEL file keeps the tags it was installed from). The image's
  Python must then be the one these wheels were built for: the same minor version, on a
  compatible platform (CPython 3.11 on x86_64 Linux for python:3.11-slim).

Files installed outside site-packages (console scripts: pip writes them again from
entry_points.txt) and compiled bytecode are left out."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelport.errors import Code, ModelportError

_SKIP_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _wheel_name(name: str, version: str, wheel_file: str) -> str:
    """`onnxruntime-1.22.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl` from the
    WHEEL file's Tag lines (one per python-abi-platform triple)."""
    tags = [line.split(":", 1)[1].strip() for line in wheel_file.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise ModelportError(Code.FAILED_PRECONDITION, f"{name} {version}: its WHEEL file names no tag")
    parts = [sorted({t.split("-")[i] for t in tags}) for i in range(3)]
    tag = "-".join(".".join(p) for p in parts)
    return f"{canonicalize_name(name).replace('-', '_')}-{version}-{tag}.whl"


def _entry(arcname: str, executable: bool = False) -> zipfile.ZipInfo:
    """Fixed date and mode: the same files make the same wheel, byte for byte, so the image
    build's layer cache holds across builds."""
    info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = (0o755 if executable else 0o644) << 16
    return info


def _write_wheel(
    dest: Path, filename: str, files: Iterable[tuple[str, Path | bytes]], dist_info: str
) -> Path:
    """A wheel of `files` (archive name, source file or bytes) plus its RECORD. Stored, not
    deflated: the wheel is unpacked once, in the build, and storing is a plain copy."""
    target = dest / filename
    records: list[tuple[str, str, str]] = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for arcname, source in files:
            data = source if isinstance(source, bytes) else source.read_bytes()
            executable = not isinstance(source, bytes) and source.stat().st_mode & 0o111 != 0
            archive.writestr(_entry(arcname, executable), data)
            records.append((arcname, _record_hash(data), str(len(data))))
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([*records, (f"{dist_info}/RECORD", "", "")])
        archive.writestr(_entry(f"{dist_info}/RECORD"), out.getvalue())
    return target


def _dist_info_name(dist: md.Distribution) -> str:
    return f"{canonicalize_name(dist.metadata['Name']).replace('-', '_')}-{dist.version}.dist-info"


def _metadata_files(dist: md.Distribution, dist_info: str) -> Iterator[tuple[str, bytes]]:
    for name in ("METADATA", "entry_points.txt", "top_level.txt"):
        text = dist.read_text(name)
        if text is not None:
            yield f"{dist_info}/{name}", text.encode()


def _modelport_distribution() -> md.Distribution:
    try:
        return md.distribution("modelport")
    except md.PackageNotFoundError as exc:
        raise ModelportError(
            Code.FAILED_PRECONDITION,
            "modelport runs here without being installed (no dist-info): `pip install` it (an "
            "editable install will do), so that build knows its metadata and requirements",
        ) from exc


def build_modelport_wheel(dest: Path) -> Path:
    """modelport's wheel, from the running package's folder (see the module docstring)."""
    import modelport

    dist = _modelport_distribution()
    package = Path(modelport.__file__).resolve().parent
    dist_info = _dist_info_name(dist)
    files: list[tuple[str, Path | bytes]] = [
        (f"modelport/{p.relative_to(package).as_posix()}", p)
        for p in sorted(package.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    files += list(_metadata_files(dist, dist_info))
    files.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: modelport build\n"
                  b"Root-Is-Purelib: true\nTag: py3-none-any\n"))  # fmt: skip
    return _write_wheel(dest, f"modelport-{dist.version}-py3-none-any.whl", files, dist_info)


def _repack(dist: md.Distribution, dest: Path) -> Path:
    wheel_file = dist.read_text("WHEEL")
    name = dist.metadata["Name"]
    if wheel_file is None or dist.files is None:
        raise ModelportError(
            Code.FAILED_PRECONDITION,
            f"{name} {dist.version} was not installed from a wheel (no WHEEL or RECORD file): "
            "it cannot be packed for --offline; give its wheel with --wheels DIR",
        )
    files: list[tuple[str, Path | bytes]] = []
    for path in dist.files:
        rel = path.as_posix()
        if rel.startswith("../") or "__pycache__" in path.parts or rel.endswith(".pyc"):
            continue
        if ".dist-info/" in rel and path.name in _SKIP_DIST_INFO:
            continue
        source = Path(str(dist.locate_file(path)))
        if source.is_file():
            files.append((rel, source))
    dist_info = next((p.split("/")[0] for p, _ in files if p.split("/")[0].endswith(".dist-info")), None)
    return _write_wheel(dest, _wheel_name(name, dist.version, wheel_file), files,
                        dist_info or _dist_info_name(dist))  # fmt: skip


def runtime_closure(root: str = "modelport") -> list[md.Distribution]:
    """The installed distributions `root` needs at run time: its Requires-Dist and theirs, with
    the extras asked for (`uvicorn[standard]`), markers evaluated here; `root` itself left out."""
    seen: dict[str, md.Distribution] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in done:
            continue
        done.add((key, extras))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError as exc:
            raise ModelportError(
                Code.FAILED_PRECONDITION,
                f"{name} is needed by modelport but not installed here: install it, or give its "
                "wheel with --wheels DIR",
            ) from exc
        if key != canonicalize_name(root):
            seen[key] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            wanted = req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in (*sorted(extras), "")
            )
            if wanted:
                todo.append((req.name, frozenset(req.extras)))
    return [seen[k] for k in sorted(seen)]


def environment_wheels(dest: Path) -> list[md.Distribution]:
    """A wheel per runtime dependency of modelport, packed from this environment; returns the
    distributions packed."""
    closure = runtime_closure()
    for dist in closure:
        _repack(dist, dest)
    return closure


def runtime_requirements() -> list[str]:
    """modelport's own Requires-Dist, the optional extras' left out (`uvicorn[standard]>=0.30`)."""
    out = []
    for line in _modelport_distribution().requires or []:
        req = Requirement(line)
        if req.marker is None or "extra" not in str(req.marker):  # other markers: pip's, in the image
            out.append(str(req))
    return out
