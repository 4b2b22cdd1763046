"""Where the registry keeps its records: one small interface, SQLite behind it by default.

A store only keeps rows and hands out version numbers; the rules (compatibility, gates,
checksums, what is served) live in registry/registry.py, so another database is one class.
Version numbers come from a counter per model bumped inside the same write transaction as the
insert: two publishers at once get consecutive numbers, never the same one, never a gap from a
failed insert, and a deleted version's number is never handed out again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelport.errors import Code, ModelportError
from modelport.sqlite import Database


@dataclass(frozen=True)
class VersionRecord:
    model: str
    version: int
    created: str
    publisher: str
    sha256: str  # of the version's manifest (every file's name, size and sha256)
    files: dict[str, dict[str, Any]]  # name -> {"size", "sha256"}
    metrics: dict[str, float]
    signature: dict[str, Any]
    environment: dict[str, Any]
    parent: int | None
    state: str  # pending (being copied in) | active | deprecated
    description: str = ""
    labels: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ModelRecord:
    name: str
    created: str
    repository: str  # the model repository (base_path) the registry writes served versions into
    policy: dict[str, Any]  # {"follow": "latest"} | {"follow": "label", "label": L} | {"pin": N}


Check = Callable[[list[VersionRecord]], None]


class RegistryStore(Protocol):
    def model(self, name: str) -> ModelRecord | None: ...
    def models(self) -> list[ModelRecord]: ...
    def create_model(self, record: ModelRecord) -> None: ...
    def set_policy(self, name: str, policy: dict[str, Any]) -> None: ...
    def add_version(self, record: VersionRecord, check: Check | None = None) -> VersionRecord:
        """Assigns the number. `check` sees the model's versions as they are inside the write
        transaction and may raise to refuse: no other publisher can add a version in between."""
        ...

    def versions(self, model: str) -> list[VersionRecord]: ...
    def set_state(self, model: str, version: int, state: str) -> None: ...
    def delete_version(self, model: str, version: int) -> None: ...
    def set_label(self, model: str, label: str, version: int | None) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, created TEXT NOT NULL, repository TEXT NOT NULL,
    policy TEXT NOT NULL, next_version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS versions (
    model TEXT NOT NULL REFERENCES models(name), version INTEGER NOT NULL,
    created TEXT NOT NULL, publisher TEXT NOT NULL, sha256 TEXT NOT NULL, files TEXT NOT NULL,
    metrics TEXT NOT NULL, signature TEXT NOT NULL, environment TEXT NOT NULL,
    parent INTEGER, state TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS labels (
    model TEXT NOT NULL, label TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (model, label), FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
"""


class SqliteStore:
    """The registry in one SQLite file (modelport.sqlite: WAL, IMMEDIATE write transactions)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._database = Database(path, _SCHEMA)
        self._db = self._database.connection
        self._write = self._database.write

    def model(self, name: str) -> ModelRecord | None:
        row = self._db().execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
        return _model(row) if row else None

    def models(self) -> list[ModelRecord]:
        return [_model(r) for r in self._db().execute("SELECT * FROM models ORDER BY name")]

    def create_model(self, record: ModelRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO models (name, created, repository, policy) VALUES (?, ?, ?, ?)",
                (record.name, record.created, record.repository, json.dumps(record.policy)),
            )

    def set_policy(self, name: str, policy: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("UPDATE models SET policy = ? WHERE name = ?", (json.dumps(policy), name))

    def add_version(self, record: VersionRecord, check: Check | None = None) -> VersionRecord:
        with self._write() as db:
            row = db.execute("SELECT next_version FROM models WHERE name = ?", (record.model,)).fetchone()
            if row is None:
                raise ModelportError(Code.NOT_FOUND, f"model '{record.model}' is not in the registry")
            if check is not None:
                check(_versions(db, record.model))  # under the write lock: what we check stays true
            version = int(row[0])
            db.execute("UPDATE models SET next_version = ? WHERE name = ?", (version + 1, record.model))
            db.execute(
                "INSERT INTO versions (model, version, created, publisher, sha256, files, metrics, "
                "signature, environment, parent, state, description) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.model, version, record.created, record.publisher, record.sha256,
                    json.dumps(record.files), json.dumps(record.metrics), json.dumps(record.signature),
                    json.dumps(record.environment), record.parent, record.state, record.description,
                ),
            )  # fmt: skip
        return VersionRecord(**{**record.__dict__, "version": version})

    def versions(self, model: str) -> list[VersionRecord]:
        return _versions(self._db(), model)

    def set_state(self, model: str, version: int, state: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE versions SET state = ? WHERE model = ? AND version = ?", (state, model, version)
            )

    def delete_version(self, model: str, version: int) -> None:
        with self._write() as db:
            db.execute("DELETE FROM labels WHERE model = ? AND version = ?", (model, version))
            db.execute("DELETE FROM versions WHERE model = ? AND version = ?", (model, version))

    def set_label(self, model: str, label: str, version: int | None) -> None:
        with self._write() as db:
            if version is None:
                db.execute("DELETE FROM labels WHERE model = ? AND label = ?", (model, label))
            else:
                db.execute(
                    "INSERT INTO labels (model, label, version) VALUES (?, ?, ?) "
                    "ON CONFLICT (model, label) DO UPDATE SET version = excluded.version",
                    (model, label, version),
                )


def _versions(db: sqlite3.Connection, model: str) -> list[VersionRecord]:
    labels: dict[int, list[str]] = {}
    for row in db.execute("SELECT label, version FROM labels WHERE model = ? ORDER BY label", (model,)):
        labels.setdefault(int(row["version"]), []).append(row["label"])
    rows = db.execute("SELECT * FROM versions WHERE model = ? ORDER BY version", (model,))
    return [_version(r, tuple(labels.get(int(r["version"]), ()))) for r in rows]


def _model(row: sqlite3.Row) -> ModelRecord:
    return ModelRecord(row["name"], row["created"], row["repository"], json.loads(row["policy"]))


def _version(row: sqlite3.Row, labels: tuple[str, ...]) -> VersionRecord:
    return VersionRecord(
        model=row["model"], version=int(row["version"]), created=row["created"], publisher=row["publisher"],
        sha256=row["sha256"], files=json.loads(row["files"]), metrics=json.loads(row["metrics"]),
        signature=json.loads(row["signature"]), environment=json.loads(row["environment"]),
        parent=row["parent"], state=row["state"], description=row["description"], labels=labels,
    )  # fmt: skip
