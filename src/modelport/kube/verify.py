"""Checks a models folder (<model>/<version>/ with a `_COMPLETE` manifest each) against its
manifests: every listed file present at its size and sha256, no file that is not listed.
`modelport build` runs it on the build context, and the image build runs it again inside
(`python -m modelport.kube.verify /models`), so a context edited between the two fails too."""

from __future__ import annotations

import sys
from pathlib import Path

from modelport.errors import Code, ModelportError
from modelport.repository.layout import COMPLETE_MARK, file_sha256, parse_version, read_manifest


def verify_version(folder: Path) -> None:
    """Raise DATA_LOSS naming the first file that does not match `folder`'s _COMPLETE manifest."""
    if not (folder / COMPLETE_MARK).is_file():
        raise ModelportError(Code.DATA_LOSS, f"{folder}: no {COMPLETE_MARK} manifest")
    try:
        listed = read_manifest(folder)
    except (ValueError, OSError) as exc:
        raise ModelportError(
            Code.DATA_LOSS, f"{folder}/{COMPLETE_MARK}: not a valid manifest: {exc}"
        ) from exc
    present = {
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE_MARK
    }
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise ModelportError(Code.DATA_LOSS, f"{folder / unlisted[0]}: not listed in {COMPLETE_MARK}")
    for rel, entry in sorted(listed.items()):
        path = folder / rel
        if rel not in present:
            raise ModelportError(Code.DATA_LOSS, f"{path}: listed in {COMPLETE_MARK} but missing")
        size, want = entry.get("size"), entry.get("sha256")
        if size is not None and path.stat().st_size != size:
            raise ModelportError(
                Code.DATA_LOSS, f"{path}: {path.stat().st_size} bytes, {COMPLETE_MARK} says {size}"
            )
        if want and (got := file_sha256(path)) != want:
            raise ModelportError(
                Code.DATA_LOSS, f"{path}: sha256 {got} does not match {want} in {COMPLETE_MARK}"
            )


def verify_models(root: Path) -> int:
    """Every <model>/<version>/ under `root`; returns how many versions were checked."""
    count = 0
    for model in sorted(p for p in root.iterdir() if p.is_dir()):
        for version in sorted(p for p in model.iterdir() if p.is_dir() and parse_version(p.name) is not None):
            verify_version(version)
            count += 1
    return count


def main(argv: list[str]) -> int:
    try:
        count = verify_models(Path(argv[0]))
    except ModelportError as exc:
        print(f"modelport: {exc.message}", file=sys.stderr)
        return 1
    print(f"modelport: {count} model version(s) under {argv[0]} match their {COMPLETE_MARK} manifests")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
