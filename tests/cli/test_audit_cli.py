"""`modelport audit` reads what the local commands wrote: keys and tokens created, rotated and
revoked, by the OS user, with ids and never secrets; `--since` takes a duration or says why not."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from click.testing import CliRunner, Result

from modelport.cli import cli


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"MODELPORT_HOME": str(home)})


def test_key_and_token_writes_are_audited_without_their_secrets(tmp_path: Path) -> None:
    key = run(tmp_path, "keys", "create", "app", "--model", "mnist").stdout.strip()
    run(tmp_path, "keys", "rotate", "app")
    run(tmp_path, "keys", "revoke", "app")
    token = run(tmp_path, "tokens", "create", "gw").stdout.strip()
    assert run(tmp_path, "tokens", "create", "gw").exit_code == 2  # exists: refused, and audited
    run(tmp_path, "tokens", "revoke", "gw")
    events = json.loads(run(tmp_path, "audit", "-o", "json", "--since", "10m").stdout)
    user = f"user:{getpass.getuser()}"
    assert [
        (e["source"], e["actor"], e["client"], e["action"], e["object"], e["result"]) for e in events
    ] == [
        ("cli", user, "local", "create-key", f"keys/{key[4:12]}", "ok"),
        ("cli", user, "local", "rotate-key", f"keys/{key[4:12]}", "ok"),
        ("cli", user, "local", "revoke-key", f"keys/{key[4:12]}", "ok"),
        ("cli", user, "local", "create-token", "tokens/gw", "ok"),
        ("cli", user, "local", "create-token", "tokens/gw", "AlreadyExists"),
        ("cli", user, "local", "revoke-token", "tokens/gw", "ok"),
    ]
    text = (tmp_path / "audit.log").read_text()
    assert key[13:] not in text and token[13:] not in text
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600


def test_since_wants_a_duration(tmp_path: Path) -> None:
    result = run(tmp_path, "audit", "--since", "yesterday")
    assert result.exit_code == 2
    assert "--since" in result.output and "give a duration like 30m, 1h or 7d" in result.output
    assert run(tmp_path, "audit").stdout.split() == [
        "TIME",
        "SOURCE",
        "ACTOR",
        "CLIENT",
        "ACTION",
        "OBJECT",
        "RESULT",
    ]
