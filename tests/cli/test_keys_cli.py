"""`modelport keys`: create prints the secret once, list shows everything but the secret, revoke and
rotate; bad flags are usage errors naming the flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from modelport.cli import cli


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["keys", *args], env={"MODELPORT_HOME": str(home)})


def test_create_list_rotate_revoke(tmp_path: Path) -> None:
    made = run(tmp_path, "create", "app", "--model", "mnist", "--model", "half", "--scope", "predict,read",
               "--rate", "100/s", "--burst", "200", "--quota", "1000000/day", "--expires", "30d")  # fmt: skip
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("mpk_") and len(secret) > 50
    assert "shown only now" in made.stderr
    (key,) = json.loads(run(tmp_path, "list", "-o", "json").stdout)
    assert key["id"] == secret[4:12] and key["name"] == "app"
    assert (key["scopes"], key["models"], key["rate"], key["burst"], key["quota"]) == (
        ["predict", "read"],
        ["mnist", "half"],
        100.0,
        200,
        1_000_000,
    )
    assert key["expires"] - key["created"] == pytest.approx(30 * 86400)
    assert key["last_used"] is None and key["state"] == "active"
    table = run(tmp_path, "list").stdout
    assert "app" in table and "100/s burst 200" in table and secret[12:] not in table
    assert secret not in (tmp_path / "registry.db").read_bytes().decode("latin-1")  # hashed only

    rotated = run(tmp_path, "rotate", "app").stdout.strip()
    assert rotated[:13] == secret[:13] and rotated != secret  # same id, new secret
    assert run(tmp_path, "revoke", key["id"]).exit_code == 0
    assert run(tmp_path, "list", "-o", "json").stdout.strip() == "[]"
    (gone,) = json.loads(run(tmp_path, "list", "--all", "-o", "json").stdout)
    assert gone["state"] == "revoked"
    assert "no active key" in run(tmp_path, "revoke", "app").output


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--scope", "predict"], "--model"),
        (["--model", "m", "--all-models"], "--model"),
        (["--model", "m", "--scope", "predict,admin"], "--scope"),
        (["--model", "m", "--rate", "fast"], "--rate"),
        (["--model", "m", "--rate", "0/s"], "--rate"),
        (["--model", "m", "--burst", "5"], "--burst"),
        (["--model", "m", "--quota", "10/week"], "--quota"),
        (["--model", "m", "--expires", "soon"], "--expires"),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(tmp_path: Path, args: list[str], flag: str) -> None:
    result = run(tmp_path, "create", "k", *args)
    assert result.exit_code == 2 and f"Invalid value for {flag}" in result.output


def test_a_second_active_key_of_the_same_name_is_refused(tmp_path: Path) -> None:
    assert run(tmp_path, "create", "k", "--all-models").exit_code == 0
    again = run(tmp_path, "create", "k", "--all-models")
    assert again.exit_code == 2 and "a key named 'k' exists" in again.output
