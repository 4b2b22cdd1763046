"""Where a control plane keeps its state, and its API token: all a client needs to find it.

Kept apart from `main.py` (the composition root) so that a client - every `modelport get` - imports
these few lines, not the controllers, HAProxy and pydantic behind them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("MODELPORT_HOME") or Path.home() / ".modelport")


def state_dir(home: Path) -> Path:
    return home / "controlplane"


def read_token(home: Path) -> str:
    """The API's bearer token, made on first use: 32 random bytes in a file only its user can read."""
    path = state_dir(home) / "token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
