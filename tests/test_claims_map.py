"""tests/CLAIMS.md maps README claims to tests by id: every id it names must be a test that exists,
or the map says a claim is checked by a test that was renamed or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).parent
# `e2e/test_x.py::test_name`, or `::test_name` for another test of the file named just before it
ID = re.compile(r"`((?:[\w/]+\.py)?)::(test_\w+)")


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_test_id_in_the_claims_map_exists() -> None:
    missing: list[str] = []
    known: dict[str, set[str]] = {}
    for number, line in enumerate((TESTS / "CLAIMS.md").read_text().splitlines(), start=1):
        current = ""
        for file, name in ID.findall(line):
            current = file or current
            if not current:
                missing.append(f"line {number}: ::{name} names no file before it")
                continue
            path = TESTS / current
            if current not in known:
                known[current] = _functions(path) if path.exists() else set()
            if name not in known[current]:
                missing.append(f"line {number}: {current}::{name}")
    assert not missing, "CLAIMS.md names tests that do not exist:\n" + "\n".join(missing)
    assert sum(len(names) for names in known.values()) > 0
