"""`pipeline run --watch DIR`: a run each time new data has landed in DIR, and only once it is whole.

The rules are the model repository's (`repository/layout.py`): a folder with a `_COMPLETE` mark
counts when every file the mark lists is there at its size; without a mark, when nothing in it
changed between two looks at least `settle_seconds` apart and its newest file is that old. So a
data set still being copied (sizes and mtimes moving) is not picked up, and a burst of files
landing one after another makes one run, not one per file (the debounce). A landing whose
content checksum is the one already run (a `touch`, a copy of the same bytes) starts nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from modelport.clock import Clock, SystemClock
from modelport.repository.layout import Fingerprint, inspect, is_complete


class DataWatch:
    def __init__(self, folder: Path, settle_seconds: float = 2.0, clock: Clock | None = None) -> None:
        self.folder = folder
        self.settle_seconds = settle_seconds
        self.clock = clock or SystemClock()
        self._previous: Fingerprint | None = None
        self._handled: str | None = None  # the content checksum of the last landing reported
        self.waiting: str | None = None  # why what is there now is not taken yet, in words

    def step(self) -> str | None:
        """Look once: the content's checksum if a new, complete data set is there now, else None."""
        from modelport.delivery.stages import sha256_of

        if not self.folder.is_dir():
            self._previous = None
            return None
        current = inspect(0, self.folder)
        complete = is_complete(current, self._previous, int(self.clock.now() * 1e9), self.settle_seconds)
        self._previous = current.fingerprint
        if not complete or not current.fingerprint:
            self.waiting = (
                current.mark_problem
                if current.marked
                else (f"changed in the last {self.settle_seconds:g} s" if current.fingerprint else None)
            )
            return None
        self.waiting = None
        checksum = sha256_of(self.folder)
        if checksum == self._handled:
            return None
        self._handled = checksum
        return checksum

    def landings(
        self, stop: threading.Event | None = None, waiting: Callable[[str], None] | None = None
    ) -> Iterator[str]:
        """Each new complete data set's checksum, as it lands; looks every settle_seconds / 2.
        `waiting` hears why a data set is not taken yet, each time the reason changes."""
        stop = stop or threading.Event()
        said: str | None = None
        while not stop.is_set():
            found = self.step()
            if found is not None:
                yield found
            if waiting is not None and self.waiting and self.waiting != said:
                waiting(self.waiting)
            said = self.waiting
            self.clock.wait(stop, max(self.settle_seconds / 2, 0.05))
