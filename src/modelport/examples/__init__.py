"""Example model repositories that ship with modelport (built by examples/*/build.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from importlib.resources import as_file, files
from pathlib import Path

from modelport.errors import Code, ModelportError
from modelport.repository.layout import COMPLETE_MARK

_VERSION_FILES = ("model.onnx", "model.yaml", "training.json")


def _manifest(folder: Path) -> dict[str, dict[str, dict[str, object]]]:
    entries = {}
    for name in sorted(p.name for p in folder.iterdir() if p.is_file()):
        data = (folder / name).read_bytes()
        entries[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return {"files": entries}


def write_mnist_repository(dest: Path, version: int = 1) -> Path:
    """Write the MNIST example as `dest/<version>/` (+ `dest/samples/`); returns the version folder.

    The version folder is published the safe way: written under a dot-name, marked complete
    with a manifest of sizes and checksums, then renamed into place, so a server already
    watching `dest` never sees it half-written.
    """
    final = dest / str(version)
    if final.exists() and any(final.iterdir()):
        raise ModelportError(Code.ALREADY_EXISTS, f"{final} already exists and is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    partial = dest / f".{version}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    with as_file(files("modelport.examples") / "mnist") as source:
        for name in _VERSION_FILES:
            shutil.copyfile(source / name, partial / name)
        shutil.copytree(source / "samples", dest / "samples", dirs_exist_ok=True)
    (partial / COMPLETE_MARK).write_text(json.dumps(_manifest(partial), indent=1) + "\n")
    if final.exists():
        final.rmdir()  # empty, checked above
    os.rename(partial, final)
    return final
