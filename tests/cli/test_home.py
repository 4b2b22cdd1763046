"""Where modelport keeps its state (README, "registry"): `$MODELPORT_HOME`, by default
`~/.modelport`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _registry_list(env: dict[str, str]) -> list[object]:
    done = subprocess.run([sys.executable, "-m", "modelport", "registry", "list", "-o", "json"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed: list[object] = json.loads(done.stdout)
    return listed


def test_the_registry_lives_in_modelport_home_by_default_under_the_home_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MODELPORT_HOME"}
    assert _registry_list({**env, "HOME": str(tmp_path / "user")}) == []
    assert (tmp_path / "user" / ".modelport" / "registry.db").is_file()
    assert (
        _registry_list({**env, "HOME": str(tmp_path / "user"), "MODELPORT_HOME": str(tmp_path / "elsewhere")})
        == []
    )
    assert (tmp_path / "elsewhere" / "registry.db").is_file()
