"""A replica's log, kept within bounds while the replica runs, as Kubernetes' kubelet keeps a
container's (`containerLogMaxSize` 10Mi, `containerLogMaxFiles` 5):

    NAME.log             what the replica writes now (its stdout and stderr, opened O_APPEND)
    NAME.log.1 ... .4    earlier parts of this run, .1 the most recent
    NAME.previous.log    the last part of the run before (a restart moves NAME.log here)

Whenever NAME.log has grown past the size limit, its content is copied to NAME.log.1 (the older
ones shifting up, the oldest dropped) and NAME.log is truncated to nothing: logrotate's
`copytruncate`. The replica keeps writing through the same open file, which is what lets a
replica outlive a control plane that crashed (no pipe to break) and needs nothing of the
replica; its next write lands at the start of the emptied file because the file was opened for
appending. The cost: a line written in the instant between the copy and the truncation is lost.
The check runs at each supervisor round (every 0.2 s by default), so a file exceeds the limit by
at most what the replica writes in one round.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LogPolicy:
    max_bytes: int = 10 * 2**20  # Kubernetes' containerLogMaxSize
    max_files: int = 5  # Kubernetes' containerLogMaxFiles: the live file and 4 rotated ones


def rotated(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def previous_log(path: Path) -> Path:
    """Where a restart puts the log of the run before (what `logs --previous` shows)."""
    return path.with_name(path.name.removesuffix(".log") + ".previous.log")


def rotate_if_full(path: Path, policy: LogPolicy) -> bool:
    """Rotate `path` if it is over the limit (see the module docstring); True if it did."""
    try:
        if path.stat().st_size <= policy.max_bytes:
            return False
    except OSError:
        return False
    oldest = policy.max_files - 1
    if oldest >= 1:
        with contextlib.suppress(FileNotFoundError):
            rotated(path, oldest).unlink()
        for index in range(oldest - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                rotated(path, index).replace(rotated(path, index + 1))
        partial = path.with_name(f".{path.name}.rotating")
        with open(path, "rb") as source, open(partial, "wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
        os.truncate(path, 0)
        partial.replace(rotated(path, 1))
    else:
        os.truncate(path, 0)  # one file allowed: the live one, emptied
    return True


def retire(path: Path, policy: LogPolicy) -> None:
    """At a restart: the run's live log becomes the previous run's log, its rotated parts go."""
    with contextlib.suppress(FileNotFoundError):
        path.replace(previous_log(path))
    for index in range(1, max(policy.max_files, 2)):
        with contextlib.suppress(FileNotFoundError):
            rotated(path, index).unlink()


__all__ = ["LogPolicy", "previous_log", "retire", "rotate_if_full", "rotated"]
