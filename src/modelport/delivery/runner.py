"""Running a pipeline: stages in the order their inputs give, independent ones at the same time,
each skipped when its inputs did not change; the run recorded in the store as it goes.

    pending ─▶ running ─▶ succeeded | failed
        ├────▶ skipped   (inputs' checksums as in the cached success, or before --from / beside --only)
        └────▶ not run   (a stage it waits for failed; or `when: failure` and nothing failed)

A stage's inputs checksum covers its settings, the checksums of the outputs it takes from other
stages, and the files it reads itself (train config, data, manifest). A failed stage stops the
run: stages already running finish, nothing new starts but the `when: failure` stages.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from modelport.delivery.definition import PROVIDES, Definition, Stage
from modelport.delivery.graph import dependencies, downstream, split_ref
from modelport.delivery.runs import Artifact, RunRecord, RunStore, StageRecord
from modelport.delivery.stages import (
    CACHEABLE,
    RUNNERS,
    StageContext,
    StageFailed,
    external_inputs,
    still_valid,
    value_sha256,
)
from modelport.errors import ModelportError, invalid

PARALLEL_STAGES = 2


@dataclass(frozen=True)
class RunOptions:
    start_from: str | None = None  # run this stage and every stage after it; reuse the rest
    only: str | None = None  # run this stage alone, its inputs from earlier runs
    trigger: str = "manual"
    commit: str | None = None


# (run, stage, line): a stage started, moved on (a progress line) or finished; `line` "" for none.
Listener = Callable[[RunRecord, StageRecord, str], None]


def selected(definition: Definition, options: RunOptions) -> set[str]:
    stages = definition.pipeline.spec.stages
    for name in (options.start_from, options.only):
        if name is not None and name not in definition.stages:
            raise invalid(f"no stage named '{name}' (stages: {', '.join(definition.stages)})")
    if options.only:
        return {options.only}
    if options.start_from:
        return downstream(stages, options.start_from)
    return set(definition.stages)


class Run:
    def __init__(
        self, definition: Definition, store: RunStore, options: RunOptions, listen: Listener
    ) -> None:
        self.definition, self.store, self.options, self.listen = definition, store, options, listen
        self.chosen = selected(definition, options)
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._check_reusable()
        stages = [StageRecord(s.name, s.kind) for s in definition.pipeline.spec.stages]
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        first = RunRecord(0, definition.name, options.trigger, options.commit, None, started, None, "running",
                          os.getpid(), stages)  # fmt: skip
        self.record = store.start(first)

    def _check_reusable(self) -> None:
        """Stages outside --from/--only must have run before: their outputs are reused."""
        for name in self.definition.stages:
            if name not in self.chosen and self.store.cached(self.definition.name, name) is None:
                raise invalid(
                    f"stage '{name}' has no earlier outputs to reuse: run the pipeline without "
                    "--from/--only first"
                )

    def execute(self) -> RunRecord:
        t0 = self._t0 = time.monotonic()
        deps = {s.name: dependencies(s) for s in self.definition.pipeline.spec.stages}
        finished: set[str] = set()
        futures: dict[Future[None], str] = {}
        with ThreadPoolExecutor(PARALLEL_STAGES, thread_name_prefix="stage") as pool:
            while True:
                settled = False  # a stage settled without running may make others ready: look again
                for name in [n for n, d in deps.items() if n not in finished and n not in futures.values()]:
                    if deps[name] <= finished:
                        if self._decide(name):
                            self._set(name, "running")
                            futures[pool.submit(self._stage, name)] = name
                        else:
                            finished.add(name)
                            settled = True
                if futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        finished.add(futures.pop(future))
                elif not settled:
                    break
        self.record.seconds = round(time.monotonic() - t0, 2)
        failed = any(s.status == "failed" for s in self.record.stages)
        self.record.status = "failed" if failed else "succeeded"
        self.record.data_sha256 = self._data_sha256()
        self.store.save(self.record)
        return self.record

    def _decide(self, name: str) -> bool:
        """Start the stage now? Else it is settled here: skipped (reused) or not run."""
        stage = self.definition.stages[name]
        upstream = [self.record.stage(d) for d in dependencies(stage)]
        failed_upstream = any(s.status in ("failed", "not run") for s in upstream)
        failed_any = any(s.status == "failed" for s in self.record.stages)
        if stage.when == "failure":
            if not any(s.status == "failed" for s in upstream):
                self._set(name, "not run", "nothing it watches failed")
                return False
            return True
        if failed_upstream or failed_any:
            self._set(name, "not run", "an earlier stage failed")
            return False
        if name not in self.chosen:
            cached = self.store.cached(self.definition.name, name)
            assert cached is not None  # _check_reusable
            self._finish(
                name, "skipped", "outputs of an earlier run reused (--from/--only)", cached[0], cached[1]
            )
            return False
        return True

    def _stage(self, name: str) -> None:
        stage = self.definition.stages[name]
        t0 = time.monotonic()
        try:
            inputs = self._inputs(stage)
            key = self._key(stage, inputs)
            cached = self.store.cached(self.definition.name, name)
            named = name in (self.options.start_from, self.options.only)  # asked for: run it
            if (
                not named
                and stage.kind in CACHEABLE
                and cached
                and cached[0] == key
                and still_valid(stage.kind, cached[1])
            ):
                self._finish(
                    name, "skipped", "inputs unchanged: outputs of an earlier run reused", key, cached[1]
                )
                return
            ctx = StageContext(
                self.definition, stage, inputs, self.definition.work_dir / name, self.record.id,
                lambda line: self._progress(name, line),
            )  # fmt: skip
            outputs = RUNNERS[stage.kind](ctx)
        except ModelportError as exc:
            self._finish(name, "failed", exc.message, None, {}, time.monotonic() - t0)
            return
        except Exception as exc:  # a stage's bug fails the stage, with its words; the run goes on recording
            self._finish(name, "failed", f"{type(exc).__name__}: {exc}", None, {}, time.monotonic() - t0)
            return
        outputs = {k: v for k, v in outputs.items() if k in stage.made}
        self.store.remember(self.definition.name, name, key, outputs, self.record.id)
        self._finish(name, "succeeded", self.record.stage(name).message, key, outputs, time.monotonic() - t0)

    def _inputs(self, stage: Stage) -> dict[str, Artifact]:
        """The outputs it names, by type (a `release` output also serves as a `version`)."""
        found: dict[str, Artifact] = {}
        for ref in stage.inputs:
            source, output = split_ref(ref)
            artifact = self.record.stage(source).outputs.get(output)
            if artifact is None:
                continue  # a `when: failure` stage after a failed one
            for kind in PROVIDES.get(output, {output}):
                found.setdefault(kind, artifact)
        return found

    def _key(self, stage: Stage, inputs: dict[str, Artifact]) -> str:
        return value_sha256({
            "stage": stage.model_dump(by_alias=True), "model": self.definition.pipeline.spec.model,
            "inputs": {k: a.sha256 for k, a in sorted(inputs.items())},
            "files": external_inputs(self.definition, stage),
        })  # fmt: skip

    def _data_sha256(self) -> str | None:
        trains = [s for s in self.definition.pipeline.spec.stages if s.kind == "train"]
        try:
            sums = [external_inputs(self.definition, s)["data"] for s in trains]
        except StageFailed:
            return None
        return sums[0] if len(sums) == 1 else (value_sha256(sums) if sums else None)

    # -- recording --

    def _set(self, name: str, status: str, message: str = "") -> None:
        with self._lock:
            stage = self.record.stage(name)
            stage.status, stage.message = status, message
            if status == "running":
                stage.started = round(time.monotonic() - self._t0, 3)
            self.store.save(self.record)
        self.listen(self.record, stage, "")

    def _progress(self, name: str, line: str) -> None:
        with self._lock:
            stage = self.record.stage(name)
            stage.message = line
        self.listen(self.record, stage, line)

    def _finish(
        self, name: str, status: str, message: str, key: str | None, outputs: dict[str, Artifact],
        seconds: float | None = None,
    ) -> None:  # fmt: skip
        with self._lock:
            stage = self.record.stage(name)
            stage.status, stage.message, stage.inputs_sha256 = status, message, key
            stage.outputs = outputs
            stage.seconds = round(seconds, 2) if seconds is not None else None
            self.store.save(self.record)
        self.listen(self.record, stage, "")


def run_pipeline(
    definition: Definition, home: Path, options: RunOptions, listen: Listener | None = None
) -> RunRecord:
    run = Run(definition, RunStore.open(home), options, listen or (lambda *_: None))
    return run.execute()
