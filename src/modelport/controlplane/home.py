"""Where a control plane keeps its state, and its API token: all a client needs to find it.

Kept apart from `main.py` (the composition root) so that a client - every `modelport get` - imports
these few lines, not the controllers, HAProxy and pydantic behind them.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from modelport.errors import Code, ModelportError


def default_home() -> Path:
    return Path(os.environ.get("MODELPORT_HOME") or Path.home() / ".modelport")


def state_dir(home: Path) -> Path:
    return home / "controlplane"


def make_state_dir(home: Path) -> Path:
    """`home` and its `controlplane/` made, if missing, readable by their user only (0700): they
    hold the API token and every replica's logs. A folder that already exists keeps its mode."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = state_dir(home)
    state.mkdir(mode=0o700, exist_ok=True)
    return state


def tokens_path(home: Path) -> Path:
    """The scoped tokens (security/tokens.py): hashes, names, scopes."""
    return state_dir(home) / "tokens.json"


def gateway_token(home: Path, namespace: str) -> Path:
    """The file holding the `services:get` token of a namespace's gateway replicas (mode 600),
    made on first use: a gateway finds its Service with it, never with the admin token."""
    from modelport.security.tokens import SERVICES_GET, TokenFile

    path = state_dir(home) / "gateway-tokens" / namespace
    tokens = TokenFile(tokens_path(home))
    name = f"gateway-{namespace}"
    if path.exists() and tokens.find(name) is not None:
        return path
    if tokens.find(name) is not None:
        tokens.revoke(name)  # its secret is lost: a new one
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = tokens.create(name, SERVICES_GET, namespace)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret)
    return path


def check_token_file(home: Path) -> None:
    """Refuse a token file that group or others can read: anyone who reads it controls every replica."""
    path = state_dir(home) / "token"
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ModelportError(
            Code.FAILED_PRECONDITION,
            f"the API token file {path} is readable by others (mode {mode:04o}): run chmod 600 {path}",
        )


def read_token(home: Path) -> str:
    """The API's bearer token, made on first use: 32 random bytes in a file only its user can read."""
    path = state_dir(home) / "token"
    if not path.exists():
        make_state_dir(home)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
