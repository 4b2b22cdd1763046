"""What a control plane's home holds is its user's alone: `$MODELPORT_HOME` and `controlplane/` are
made 0700, the API token 0600, and a token file others can read is refused at `modelport up` with
the chmod that fixes it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from modelport.controlplane.home import check_token_file, read_token, state_dir
from modelport.errors import ModelportError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_home_and_its_state_folder_are_readable_by_their_user_only(tmp_path: Path) -> None:
    home = tmp_path / "nested" / "home"
    token = read_token(home)
    assert len(token) >= 32
    assert _mode(home) == 0o700
    assert _mode(state_dir(home)) == 0o700
    assert _mode(state_dir(home) / "token") == 0o600
    check_token_file(home)  # the file it made passes its own check


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_token_file_group_or_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    read_token(tmp_path)
    token = state_dir(tmp_path) / "token"
    token.chmod(mode)
    with pytest.raises(ModelportError) as refused:
        check_token_file(tmp_path)
    assert refused.value.message == (
        f"the API token file {token} is readable by others (mode {mode:04o}): run chmod 600 {token}"
    )


def test_up_refuses_a_token_file_others_can_read_and_exits_1(tmp_path: Path) -> None:
    home = tmp_path / "home"
    read_token(home)
    token = state_dir(home) / "token"
    token.chmod(0o644)
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    # `run` kills the child if it outlives the timeout (what the code before this check did: serve).
    done = subprocess.run([sys.executable, "-m", "modelport", "up"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"readable by others (mode 0644): run chmod 600 {token}" in done.stderr
    assert not (state_dir(home) / "api.json").exists()


def test_up_detach_makes_a_new_home_readable_by_its_user_only(tmp_path: Path) -> None:
    home = tmp_path / "fresh" / "home"
    modelport = [sys.executable, "-m", "modelport"]
    up = subprocess.run([*modelport, "up", "--detach", "--home", str(home)], capture_output=True,
                        text=True, timeout=60)  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        assert _mode(home) == 0o700 and _mode(state_dir(home)) == 0o700
        assert _mode(state_dir(home) / "token") == 0o600
    finally:
        subprocess.run([*modelport, "down", "--home", str(home)], capture_output=True, timeout=60)
