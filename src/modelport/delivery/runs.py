"""Run history and the stage cache, in one SQLite file under MODELPORT_HOME (`pipelines.db`).

A run is recorded when it starts and again as each stage starts and ends, so a run killed half-way
is still listed (as `interrupted`: its process is gone). The stage cache keeps, per pipeline and
stage, the outputs of its last success and the checksum of the inputs that made them: a later run
whose inputs have the same checksum reuses them instead of running the stage again.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import Code, ModelportError
from modelport.sqlite import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, trigger TEXT NOT NULL,
    commit_id TEXT, data_sha256 TEXT, started TEXT NOT NULL, seconds REAL, status TEXT NOT NULL,
    pid INTEGER NOT NULL, stages TEXT NOT NULL, artifacts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stage_cache (
    pipeline TEXT NOT NULL, stage TEXT NOT NULL, inputs_sha256 TEXT NOT NULL, outputs TEXT NOT NULL,
    run INTEGER NOT NULL, PRIMARY KEY (pipeline, stage)
);
"""


@dataclass(frozen=True)
class Artifact:
    """What a stage made: a file or folder (`path`) and/or a small value, with its content's sha256."""

    type: str
    sha256: str
    path: str | None = None
    value: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageRecord:
    name: str
    kind: str
    # pending | running | succeeded | skipped (unchanged inputs, or before --from) | failed | not run
    status: str = "pending"
    started: float | None = None  # seconds after the run started
    seconds: float | None = None
    message: str = ""
    inputs_sha256: str | None = None
    outputs: dict[str, Artifact] = field(default_factory=dict)


@dataclass
class RunRecord:
    id: int
    pipeline: str
    trigger: str  # manual | watch:DIR | ci
    commit: str | None
    data_sha256: str | None
    started: str
    seconds: float | None
    status: str  # running | succeeded | failed | interrupted
    pid: int
    stages: list[StageRecord]

    def stage(self, name: str) -> StageRecord:
        return next(s for s in self.stages if s.name == name)

    def artifacts(self) -> dict[str, Artifact]:
        return {f"{s.name}.{n}": a for s in self.stages for n, a in s.outputs.items()}

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["artifacts"] = {k: asdict(a) for k, a in self.artifacts().items()}
        return doc


def _artifact(doc: dict[str, Any]) -> Artifact:
    return Artifact(doc["type"], doc["sha256"], doc.get("path"), doc.get("value") or {})


def _stage(doc: dict[str, Any]) -> StageRecord:
    outputs = {k: _artifact(v) for k, v in doc.get("outputs", {}).items()}
    return StageRecord(**{**doc, "outputs": outputs})


class RunStore:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, _SCHEMA)

    @classmethod
    def open(cls, home: Path) -> RunStore:
        return cls(home / "pipelines.db")

    def start(self, run: RunRecord) -> RunRecord:
        with self.db.write() as db:
            cursor = db.execute(
                "INSERT INTO runs (pipeline, trigger, commit_id, data_sha256, started, seconds, status, pid,"
                " stages, artifacts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')",
                (run.pipeline, run.trigger, run.commit, run.data_sha256, run.started, run.seconds,
                 run.status, run.pid, json.dumps([asdict(s) for s in run.stages])),
            )  # fmt: skip
            run.id = int(cursor.lastrowid or 0)
        return run

    def save(self, run: RunRecord) -> None:
        artifacts = {k: asdict(a) for k, a in run.artifacts().items()}
        with self.db.write() as db:
            db.execute(
                "UPDATE runs SET data_sha256 = ?, seconds = ?, status = ?, stages = ?, artifacts = ?"
                " WHERE id = ?",
                (run.data_sha256, run.seconds, run.status, json.dumps([asdict(s) for s in run.stages]),
                 json.dumps(artifacts), run.id),
            )  # fmt: skip

    def runs(self, pipeline: str | None = None, limit: int = 50) -> list[RunRecord]:
        where, args = ("WHERE pipeline = ?", (pipeline,)) if pipeline else ("", ())
        rows = self.db.connection().execute(
            f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT ?", (*args, limit)
        )
        return [_run(row) for row in rows]

    def run(self, run_id: int) -> RunRecord:
        row = self.db.connection().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise ModelportError(Code.NOT_FOUND, f"pipeline run {run_id} not found")
        return _run(row)

    def cached(self, pipeline: str, stage: str) -> tuple[str, dict[str, Artifact]] | None:
        """The inputs checksum and the outputs of the stage's last success, if any."""
        row = (
            self.db.connection()
            .execute(
                "SELECT inputs_sha256, outputs FROM stage_cache WHERE pipeline = ? AND stage = ?",
                (pipeline, stage),
            )
            .fetchone()
        )
        if row is None:
            return None
        return row["inputs_sha256"], {k: _artifact(v) for k, v in json.loads(row["outputs"]).items()}

    def remember(self, pipeline: str, stage: str, key: str, outputs: dict[str, Artifact], run: int) -> None:
        with self.db.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO stage_cache VALUES (?, ?, ?, ?, ?)",
                (pipeline, stage, key, json.dumps({k: asdict(a) for k, a in outputs.items()}), run),
            )


def _run(row: Any) -> RunRecord:
    status = row["status"]
    if status == "running" and not _alive(int(row["pid"])):
        status = "interrupted"
    return RunRecord(
        int(row["id"]), row["pipeline"], row["trigger"], row["commit_id"], row["data_sha256"], row["started"],
        row["seconds"], status, int(row["pid"]), [_stage(s) for s in json.loads(row["stages"])],
    )  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
