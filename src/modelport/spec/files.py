"""Objects read from the files and folders given with `-f` (apply, delete, render).

    sourced = read_objects([Path("examples/mnist/")])      # [Sourced(file, object), ...]

A folder is read as kubectl reads one: each of its YAML and JSON files, in name order. A folder
also holds other YAML (the example's training configs, a Pipeline): a file of it with no
modelport/v1 object is passed over; a file named on its own must hold them. A folder may hold
alternatives that each carry the same object (the model's Service beside a Deployment and beside
a Rollout): given twice the same, an object is kept once (kubectl would apply it twice, to the
same effect); given twice differently, everything is refused, naming both files, since which one
ends up in force would depend on the order the files are read in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from modelport.errors import Code, ModelportError
from modelport.spec.objects import API_VERSION, KINDS, Object, to_dict
from modelport.spec.validate import load_objects

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Sourced:
    source: str  # the file it came from
    obj: Object


def _is_ours(text: str) -> bool:
    """Holds a served object (`apiVersion: modelport/v1`, a kind the control plane knows)."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return True  # let load_objects name the problem
    return any(
        isinstance(d, dict) and d.get("apiVersion") == API_VERSION and d.get("kind") in KINDS for d in docs
    )


def key(obj: Object) -> tuple[str, str, str]:
    return obj.kind, obj.metadata.namespace or "default", obj.metadata.name


def _read(path: Path) -> str:
    try:
        return path.read_text() if str(path) != "-" else sys.stdin.read()
    except OSError as exc:
        raise ModelportError(Code.INVALID_ARGUMENT, f"{path}: {exc.strerror}") from None


def read_objects(paths: Iterable[Path]) -> list[Sourced]:
    """Every object of each file (`-` is standard input), and of each folder's files that hold
    modelport/v1 objects; an object given twice the same is kept once, differently is refused."""
    found: dict[tuple[str, str, str], Sourced] = {}
    for path in paths:
        in_folder = path.is_dir()
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES) if in_folder else [path]
        for file in files:
            text = _read(file)
            if in_folder and not _is_ours(text):
                continue
            for obj in load_objects(text, str(file)):
                earlier = found.setdefault(key(obj), Sourced(str(file), obj))
                if earlier.obj is not obj and to_dict(earlier.obj) != to_dict(obj):
                    kind, _, name = key(obj)
                    raise ModelportError(
                        Code.INVALID_ARGUMENT,
                        f"{kind}/{name}: given twice, differently, in {earlier.source} and {file}; "
                        "keep one of them (or give the files apart)",
                    )
    if not found:
        raise ModelportError(Code.INVALID_ARGUMENT, "no modelport/v1 objects in the files given")
    return list(found.values())
