"""A SQLite file as the registry and the control plane keep their state: WAL mode (readers never
wait for the writer), a connection per thread, and every write one IMMEDIATE transaction (the
database's write lock, taken up front), rolled back whole on any error."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class Database:
    def __init__(
        self,
        path: Path,
        schema: str,
        synchronous: str = "FULL",
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._synchronous = synchronous
        self._after_commit = after_commit
        self._local = threading.local()
        self.connection().executescript(schema)  # idempotent; executescript commits by itself

    def connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            db.execute("PRAGMA foreign_keys=ON")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if self._after_commit is not None:
            self._after_commit()
