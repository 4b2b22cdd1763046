"""Example model repositories that ship with modelport (built by examples/*/build.py)."""

from __future__ import annotations

import shutil
from importlib.resources import as_file, files
from pathlib import Path

from modelport.errors import Code, ModelportError
from modelport.repository.layout import write_version

_VERSION_FILES = ("model.onnx", "model.yaml", "reference_profile.json", "training.json")


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
    if final.exists():
        final.rmdir()  # empty, checked above

    def fill(folder: Path) -> None:
        with as_file(files("modelport.examples") / "mnist") as source:
            for name in _VERSION_FILES:
                shutil.copyfile(source / name, folder / name)

    with as_file(files("modelport.examples") / "mnist") as source:
        shutil.copytree(source / "samples", dest / "samples", dirs_exist_ok=True)
    write_version(final, fill)
    return final
