"""The model manager: watches each model's base path, loads and unloads versions, and publishes
an immutable view of what is served.

One thread polls (every --file_system_poll_wait_seconds) and does all loading; request handlers
only read `view`, a snapshot swapped atomically after every change, so they never take a lock
and never see a half-made state. The decisions are the pure functions of `policy.py`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from modelport.clock import Clock
from modelport.errors import Code, ModelportError, invalid, not_found
from modelport.quality import profile as quality_profile
from modelport.quality.profile import Profile
from modelport.repository import layout
from modelport.repository.config import ModelConfig, ModelServerConfig
from modelport.repository.policy import (
    Load,
    State,
    Transition,
    Unload,
    compute_aspired,
    compute_next_action,
)
from modelport.runtimes import Model, Runtime, find_model_file
from modelport.runtimes.metadata import DEFAULT_SIGNATURE, LoggingSpec, read_metadata
from modelport.runtimes.signature import Signature, build_signatures

log = logging.getLogger("modelport.repository")

_LIVE = (State.LOADING, State.AVAILABLE, State.UNLOADING)


@dataclass(frozen=True, eq=False)  # identity, not value: servables key per-version caches
class Servable:
    """A loaded, AVAILABLE model version: what a request runs against."""

    model_name: str
    version: int
    path: Path
    platform: str
    model: Model
    signatures: Mapping[str, Signature]
    max_batch_size: int | None = None  # model.yaml's; None: the server's --max_batch_size
    logging: LoggingSpec | None = None  # model.yaml's prediction log; None: the server's flags
    profile: Profile | None = None  # reference_profile.json: what drift is measured against

    def signature(self, name: str | None) -> Signature:
        key = name or DEFAULT_SIGNATURE
        if key not in self.signatures:
            raise ModelportError(
                Code.FAILED_PRECONDITION,
                f'Serving signature key "{key}" not found. Signatures of model '
                f"'{self.model_name}' version {self.version}: {sorted(self.signatures)}",
            )
        return self.signatures[key]


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: State
    error_code: str = "OK"  # a Code name, as TF Serving's status.error_code
    error_message: str = ""
    load_seconds: float | None = None


@dataclass(frozen=True)
class ModelView:
    name: str
    versions: Mapping[int, Servable]  # AVAILABLE only
    labels: Mapping[str, int]
    statuses: tuple[VersionStatus, ...]
    problem: str = ""  # e.g. the base path cannot be read

    def resolve(self, version: int | None = None, label: str | None = None) -> Servable:
        if version is not None and label is not None:
            raise invalid(
                f"Both model version ({version}) and model version label ({label}) cannot be supplied."
            )
        if label is not None:
            if label not in self.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = self.labels[label]
        if version is None:
            if not self.versions:
                raise not_found(f"Servable not found for request: Latest({self.name})")
            return self.versions[max(self.versions)]
        if version not in self.versions:
            raise not_found(f"Servable not found for request: Specific({self.name}, {version})")
        return self.versions[version]


@dataclass
class _Record:
    version: int
    path: Path
    state: State = State.START
    fingerprint: layout.Fingerprint = ()
    error_code: str = "OK"
    error: str = ""
    load_seconds: float | None = None
    servable: Servable | None = None


@dataclass
class _ModelState:
    config: ModelConfig
    records: dict[int, _Record] = field(default_factory=dict)
    seen: dict[int, layout.Fingerprint] = field(default_factory=dict)  # fingerprints of last poll
    problem: str = ""


# Called on every state change: (model, version, new state, load seconds or None).
Listener = Callable[[str, int, State, float | None], None]


class ModelManager:
    def __init__(
        self,
        config: ModelServerConfig,
        runtimes: Mapping[str, Runtime],
        clock: Clock,
        settle_seconds: float = 1.0,
        listener: Listener | None = None,
        published: Callable[[Mapping[str, ModelView]], None] | None = None,
    ) -> None:
        """`listener`: told every version's state change; `published`: given each new view (the
        models and versions requests see), under the manager's lock."""
        self._runtimes = runtimes
        self._clock = clock
        self._settle = settle_seconds
        self._listener = listener or (lambda *_: None)
        self._published = published or (lambda _: None)
        self._models: dict[str, _ModelState] = {}
        self._lock = threading.Lock()  # serialises polls and config changes, never requests
        self.view: Mapping[str, ModelView] = MappingProxyType({})
        self.apply_config(config)

    # -- what request handlers call (lock-free reads of the published view) --

    def model(self, name: str) -> ModelView:
        view = self.view.get(name)
        if view is None:
            raise not_found(f"Servable not found for request: Latest({name})")
        return view

    def is_ready(self) -> bool:
        """Every configured model has at least one AVAILABLE version."""
        views = self.view
        return bool(views) and all(v.versions for v in views.values())

    # -- configuration --

    def apply_config(self, config: ModelServerConfig) -> None:
        """Apply a whole config, as TF Serving does: models missing from it are unloaded."""
        with self._lock:
            wanted = {m.name: m for m in config.models}
            for name in list(self._models):
                if name not in wanted:
                    self._retire(name)
            for name, model_config in wanted.items():
                state = self._models.setdefault(name, _ModelState(model_config))
                state.config = model_config
            self._publish()

    def _retire(self, name: str) -> None:
        state = self._models.pop(name)
        for record in state.records.values():
            if record.state == State.AVAILABLE:
                self._set(name, record, State.UNLOADING)
                record.servable = None
                self._set(name, record, State.END)
        log.info("model %s removed from the config; unloaded", name)

    # -- the poll loop --

    def run(self, stop: threading.Event, poll_wait_seconds: float) -> None:
        while True:
            try:
                self.poll()
            except Exception:  # the loop must outlive any one bad poll
                log.exception("model repository poll failed")
            if self._clock.wait(stop, poll_wait_seconds):
                return

    def poll(self) -> None:
        with self._lock:
            for name, state in self._models.items():
                self._sync_model(name, state)
            self._publish()

    def _sync_model(self, name: str, state: _ModelState) -> None:
        base = Path(state.config.base_path)
        try:
            present = layout.list_versions(base)
        except OSError as exc:
            # An unreadable base path keeps what is served (a network mount may come back).
            problem = f"cannot read base path {base}: {exc.strerror or exc}"
            if problem != state.problem:
                log.warning("model %s: %s", name, problem)
            state.problem = problem
            return
        state.problem = "" if present else f"no version folders under {base}"
        complete = self._complete_versions(state, present)
        aspired = compute_aspired(state.config.version_policy, complete)
        self._track(state, present, aspired)
        transition = Transition(state.config.transition)
        while action := compute_next_action(
            {v: r.state for v, r in state.records.items()}, aspired, transition
        ):
            if isinstance(action, Load):
                self._load(name, state, state.records[action.version])
            elif isinstance(action, Unload):
                self._unload(name, state.records[action.version])
            self._publish()

    def _complete_versions(self, state: _ModelState, present: Mapping[int, Path]) -> set[int]:
        """Versions that may be loaded: the decided ones, and the new ones now complete.

        A version loaded (or cleanly unloaded) before is complete for as long as its folder
        exists, whatever happens to its mtimes. Only new and failed versions are fingerprinted,
        so a steady-state poll is a single directory read: polls run every second beside the
        request loop and every file system call they make is a hand-over of the GIL.
        """
        decided = {
            v
            for v, r in state.records.items()
            if v in present and (r.state in _LIVE or (r.state == State.END and not r.error))
        }
        inspected = {v: layout.inspect(v, p) for v, p in present.items() if v not in decided}
        now_ns = int(self._clock.now() * 1e9)
        ready = {
            v for v, d in inspected.items() if layout.is_complete(d, state.seen.get(v), now_ns, self._settle)
        }
        state.seen = {v: d.fingerprint for v, d in inspected.items()}
        return decided | ready

    def _track(self, state: _ModelState, present: Mapping[int, Path], aspired: frozenset[int]) -> None:
        """Records for aspired versions; forget finished ones whose folder is gone."""
        for version in aspired:
            record = state.records.get(version)
            if record is None:
                state.records[version] = _Record(version, present[version])
            elif record.state == State.END and (
                not record.error or state.seen.get(version, record.fingerprint) != record.fingerprint
            ):
                # Unloaded before and wanted again, or failed and since changed on disk: retry.
                state.records[version] = _Record(version, present[version])
        for version, record in list(state.records.items()):
            if version not in present and record.state in (State.START, State.END):
                del state.records[version]

    def _load(self, name: str, state: _ModelState, record: _Record) -> None:
        # What is being loaded: a failed version is retried only when this changes.
        record.fingerprint = layout.fingerprint(record.path)
        self._set(name, record, State.LOADING)
        self._publish()
        started = self._clock.monotonic()
        try:
            servable = self._build_servable(name, state.config, record)
        except ModelportError as exc:
            self._fail(name, record, exc.code.name, exc.message)
            return
        except Exception as exc:  # a runtime may raise anything on a broken file
            self._fail(name, record, Code.UNKNOWN.name, f"{type(exc).__name__}: {exc}")
            return
        record.servable = servable
        record.load_seconds = self._clock.monotonic() - started
        self._set(name, record, State.AVAILABLE)
        log.info(
            "model %s version %d AVAILABLE (loaded in %.3f s)", name, record.version, record.load_seconds
        )

    def _fail(self, name: str, record: _Record, code: str, message: str) -> None:
        record.error_code, record.error = code, message
        self._set(name, record, State.END)
        log.error("model %s version %d failed to load: %s", name, record.version, message)

    def _unload(self, name: str, record: _Record) -> None:
        self._set(name, record, State.UNLOADING)
        self._publish()  # requests stop seeing it before it is dropped
        record.servable = None  # requests still running hold their own reference
        self._set(name, record, State.END)
        log.info("model %s version %d unloaded", name, record.version)

    def _set(self, name: str, record: _Record, new: State) -> None:
        record.state = new
        self._listener(name, record.version, new, record.load_seconds if new == State.AVAILABLE else None)

    def _build_servable(self, name: str, config: ModelConfig, record: _Record) -> Servable:
        metadata = read_metadata(record.path)
        _verify_checksums(record.path)
        platform = metadata.platform or config.model_platform
        runtime, model_file = find_model_file(record.path, platform, metadata.model_file, self._runtimes)
        # The operator's config outranks the publisher's model.yaml.
        options = {**metadata.runtime, **config.runtime_options}
        model = runtime.load(model_file, options)
        signatures = build_signatures(model, metadata)
        profile = _read_profile(record.path)
        _warm_up(model)
        return Servable(
            name, record.version, record.path, runtime.platform, model, signatures,
            metadata.max_batch_size, metadata.logging, profile,
        )  # fmt: skip

    # -- publishing the view --

    def _publish(self) -> None:
        views: dict[str, ModelView] = {}
        for name, state in self._models.items():
            records = sorted(state.records.values(), key=lambda r: -r.version)
            views[name] = ModelView(
                name=name,
                versions=MappingProxyType(
                    {r.version: r.servable for r in records if r.servable and r.state == State.AVAILABLE}
                ),
                labels=MappingProxyType(dict(state.config.version_labels)),
                statuses=tuple(
                    VersionStatus(r.version, r.state, r.error_code, r.error, r.load_seconds) for r in records
                ),
                problem=state.problem,
            )
        self.view = MappingProxyType(views)
        self._published(self.view)


def _read_profile(path: Path) -> Profile | None:
    """The version's reference profile, if it has one; a broken one fails the load (as a broken
    model.yaml does), naming the field."""
    file = path / quality_profile.FILE
    if not file.exists():
        return None
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"{file}: not valid JSON: {exc}") from None
    return quality_profile.parse(doc, str(file))


def _verify_checksums(path: Path) -> None:
    if not (path / layout.COMPLETE_MARK).exists():
        return
    for rel, entry in layout.read_manifest(path).items():
        want = entry.get("sha256") if isinstance(entry, dict) else None
        if not want:
            continue
        got = layout.file_sha256(path / rel)
        if got != want:
            raise ModelportError(
                Code.DATA_LOSS, f"{path / rel}: sha256 {got} does not match {want} in _COMPLETE"
            )


def _warm_up(model: Model) -> None:
    """One run with zeros, so the first request does not pay for lazy allocations.

    Only for numeric inputs whose dims other than the batch are known; a model that rejects
    zeros is not broken for that, so failures here are ignored.
    """
    feeds: dict[str, Any] = {}
    for spec in model.inputs:
        if spec.dtype == "string" or any(d < 0 for d in spec.shape[1:]):
            return
        feeds[spec.name] = np.zeros((1, *spec.shape[1:]), dtype=spec.dtype)
    try:
        model.run(feeds)
    except Exception:
        log.debug("warm-up run failed", exc_info=True)
