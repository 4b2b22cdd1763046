"""The model registry: published versions with their checksums, metrics, signature, training
environment, lineage and labels, and the model repository it keeps in step with them.

    registry = Registry.open()                       # $MODELPORT_HOME (default ~/.modelport)
    v = registry.publish("mnist", Path("out/model"), metrics={"accuracy": 0.98},
                         gates={"accuracy": ">= 0.97"})
    registry.label("mnist", "production", v.version)

Every model has an update policy saying which versions its serving repository holds: the latest
active version (the default), the version a label points at (`production`), or a pinned one.
The registry writes those versions into the repository the safe way (a dot-named folder, a
`_COMPLETE` manifest, one rename) and removes the others only after, so a model server watching
the repository (its hot reload) loads the new version before it lets go of the old one.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import getpass
import hashlib
import json
import operator
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from modelport.errors import Code, ModelportError, invalid
from modelport.quality.profile import FILE as PROFILE_FILE
from modelport.registry.store import ModelRecord, RegistryStore, SqliteStore, VersionRecord
from modelport.repository.layout import COMPLETE_MARK, manifest, write_version
from modelport.security.audit import AuditEvent, AuditLog, audit_path

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_GATE = re.compile(r"\s*(>=|<=|>|<|==)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
}  # fmt: skip


def home() -> Path:
    return Path(os.environ.get("MODELPORT_HOME") or Path.home() / ".modelport").expanduser()


def manifest_sha256(files: Mapping[str, Mapping[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def check_gates(metrics: Mapping[str, float], gates: Mapping[str, str]) -> None:
    """`{"accuracy": ">= 0.98"}`: every gate must hold; a metric a gate names must exist."""
    failed = []
    for name, rule in gates.items():
        match = _GATE.fullmatch(str(rule))
        if match is None:
            raise invalid(f"gate {name}: {rule!r} is not a comparison like '>= 0.98'")
        op, bound = match[1], float(match[2])
        if name not in metrics:
            failed.append(f"{name} is not among the metrics ({', '.join(sorted(metrics)) or 'none'})")
        elif not _OPS[op](float(metrics[name]), bound):
            failed.append(f"{name} = {metrics[name]:.4g}, the gate wants {op} {bound:g}")
    if failed:
        raise ModelportError(Code.FAILED_PRECONDITION, "refused by the gate: " + "; ".join(failed))


def signature_of(folder: Path) -> dict[str, Any]:
    """The served signatures of a version folder: names, dtypes and shapes of inputs and outputs."""
    from modelport.runtimes import default_runtimes, find_model_file
    from modelport.runtimes.metadata import read_metadata
    from modelport.runtimes.signature import build_signatures

    metadata = read_metadata(folder)
    runtimes = default_runtimes(False, (), {})
    runtime, model_file = find_model_file(folder, metadata.platform or "", metadata.model_file, runtimes)
    model = runtime.load(model_file, metadata.runtime)
    signatures = build_signatures(model, metadata)
    return {
        name: {
            "inputs": {n: [b.dtype, list(b.shape)] for n, b in sig.inputs.items()},
            "outputs": {n: [b.dtype, list(b.shape)] for n, b in sig.outputs.items()},
        }
        for name, sig in signatures.items()
    }


def signature_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(f"signature '{name}' is gone")
        elif name not in old:
            continue  # a new signature breaks nobody
        else:
            for side in ("inputs", "outputs"):
                before, after = old[name][side], new[name][side]
                for tensor in sorted(set(before) | set(after)):
                    if tensor not in after:
                        changes.append(f"{name}: {side[:-1]} '{tensor}' is gone")
                    elif tensor not in before:
                        if side == "inputs":
                            changes.append(f"{name}: new required input '{tensor}'")
                    elif before[tensor] != after[tensor]:
                        changes.append(
                            f"{name}: {side[:-1]} '{tensor}' was {before[tensor]}, now {after[tensor]}"
                        )
    return changes


def compatible_with_previous(
    name: str, signature: Mapping[str, Any], parent: int | None, allow_breaking: bool
) -> Callable[[list[VersionRecord]], None]:
    """The check a new version must pass against the versions already there. The store runs it
    inside its write transaction, so a publisher at the same moment cannot slip a version in
    between the check and the insert; a version still being copied in (pending) counts, as it
    will be the one before ours."""

    def check(versions: list[VersionRecord]) -> None:
        if parent is not None and parent not in {v.version for v in versions}:
            raise invalid(f"parent version {parent} of '{name}' is not in the registry")
        previous = [v for v in versions if v.state in ("active", "pending")]
        if previous and not allow_breaking:
            last = previous[-1]
            changes = signature_changes(last.signature, signature)
            if changes:
                pending = (
                    f" (version {last.version} is still pending: being published now, or left by a "
                    f"publish that did not finish, which `registry delete {name} {last.version}` removes)"
                    if last.state == "pending"
                    else ""
                )
                raise ModelportError(
                    Code.FAILED_PRECONDITION,
                    f"version would break clients of version {last.version}: "
                    + "; ".join(changes)
                    + " (publish with --allow-breaking if that is meant)"
                    + pending,
                )

    return check


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _publisher() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _audited(action: str, obj: Callable[..., str]) -> Callable[[_Method], _Method]:
    """A registry write, recorded in the home's audit log (security/audit.py) whether it succeeds
    ("ok") or is refused (the error's reason): who (the OS user), what, on which object."""

    def wrap(method: _Method) -> _Method:
        @functools.wraps(method)
        def audited(self: Registry, *args: Any, **kwargs: Any) -> Any:
            target = obj(*args, **kwargs)
            try:
                result = method(self, *args, **kwargs)
            except ModelportError as exc:
                self._record(action, target, exc.code.reason)
                raise
            if isinstance(result, VersionRecord):
                target = f"{target}/versions/{result.version}"
            self._record(action, target, "ok")
            return result

        return cast(_Method, audited)

    return wrap


class Registry:
    def __init__(self, store: RegistryStore, root: Path, audit: AuditLog | None = None) -> None:
        self.store = store
        self.root = root
        self.audit = audit

    def _record(self, action: str, target: str, result: str) -> None:
        if self.audit is not None:
            self.audit.record(AuditEvent("registry", f"user:{_publisher()}", "local", action, target, result))

    @classmethod
    def open(cls, root: Path | None = None) -> Registry:
        root = root or home()
        return cls(SqliteStore(root / "registry.db"), root, AuditLog(audit_path(root)))

    # -- reading --

    def model(self, name: str) -> ModelRecord:
        record = self.store.model(name)
        if record is None:
            known = ", ".join(m.name for m in self.store.models()) or "none yet"
            raise ModelportError(Code.NOT_FOUND, f"model '{name}' is not in the registry (models: {known})")
        return record

    def versions(self, name: str) -> list[VersionRecord]:
        self.model(name)
        return self.store.versions(name)

    def version(self, name: str, version: int) -> VersionRecord:
        for record in self.versions(name):
            if record.version == version:
                return record
        raise ModelportError(Code.NOT_FOUND, f"model '{name}' has no version {version}")

    def artifact(self, name: str, version: int) -> Path:
        return self.root / "artifacts" / name / str(version)

    def served(self, name: str) -> set[int]:
        """The versions the model's update policy puts in its serving repository."""
        policy = self.model(name).policy
        versions = self.store.versions(name)
        active = [v for v in versions if v.state == "active"]
        if "pin" in policy:
            return {int(policy["pin"])} & {v.version for v in versions if v.state != "pending"}
        if policy.get("follow") == "label":
            return {v.version for v in versions if policy["label"] in v.labels}
        return {max(v.version for v in active)} if active else set()

    # -- writing --

    @_audited("publish", lambda name, *a, **k: f"models/{name}")
    def publish(
        self,
        name: str,
        folder: Path,
        *,
        metrics: Mapping[str, float] | None = None,
        environment: Mapping[str, Any] | None = None,
        parent: int | None = None,
        gates: Mapping[str, str] | None = None,
        allow_breaking: bool = False,
        expected_sha256: str | None = None,
        repository: Path | None = None,
        description: str = "",
        profile: Mapping[str, Any] | None = None,
    ) -> VersionRecord:
        """`profile`: the version's reference profile (`modelport evaluate` makes it), stored
        beside its files as reference_profile.json, what the server measures drift against;
        a folder that has one already keeps its own."""
        if not _NAME.fullmatch(name):
            raise invalid(f"model name {name!r} must match [A-Za-z0-9][A-Za-z0-9._-]*")
        files = manifest(folder)
        digest = manifest_sha256(files)
        if expected_sha256 is not None and expected_sha256 != digest:
            raise ModelportError(
                Code.FAILED_PRECONDITION,
                f"{folder}: the files changed after they were evaluated (checksum {digest[:12]}, "
                f"the evaluation saw {expected_sha256[:12]}); evaluate again before publishing",
            )
        check_gates(dict(metrics or {}), dict(gates or {}))
        extra: dict[str, bytes] = {}
        if profile is not None and PROFILE_FILE not in files:
            extra[PROFILE_FILE] = (json.dumps(profile, indent=1) + "\n").encode()
            entry = {
                "size": len(extra[PROFILE_FILE]),
                "sha256": hashlib.sha256(extra[PROFILE_FILE]).hexdigest(),
            }
            files = {**files, PROFILE_FILE: entry}
            digest = manifest_sha256(files)
        signature = signature_of(folder)
        self.store.create_model(
            ModelRecord(
                name, _now(), str(repository or self.root / "repository" / name), {"follow": "latest"}
            )
        )

        record = self.store.add_version(
            VersionRecord(
                name, 0, _now(), _publisher(), digest, files, dict(metrics or {}), signature,
                dict(environment or {}), parent, "pending", description,
            ),
            compatible_with_previous(name, signature, parent, allow_breaking),
        )  # fmt: skip
        try:
            _copy(folder, self.artifact(name, record.version), files, extra)
        except BaseException:
            self.store.delete_version(name, record.version)  # the number is not reused
            shutil.rmtree(self.artifact(name, record.version), ignore_errors=True)
            raise
        self.store.set_state(name, record.version, "active")  # only now can it be served
        self.sync(name)
        return self.version(name, record.version)

    def publish_converted(
        self,
        name: str,
        folder: Path,
        *,
        to: str = "onnx",
        signature: str = "serving_default",
        model_yaml: Path | None = None,
        eval_data: Path | None = None,
        atol: float | None = None,
        rtol: float | None = None,
        **publish: Any,
    ) -> VersionRecord:
        """`publish`, of FOLDER (a SavedModel) converted to ONNX and checked against it
        (registry/convert.py); the check's record goes into the version and its environment."""
        from modelport.registry import convert

        if to != "onnx":
            raise invalid(f"--convert {to!r}: only onnx is a conversion target")
        staging = self.root / "staging" / uuid.uuid4().hex
        try:
            record = convert.convert_to_onnx(
                folder, staging, signature=signature, model_yaml=model_yaml, eval_data=eval_data,
                atol=convert.DEFAULT_ATOL if atol is None else atol,
                rtol=convert.DEFAULT_RTOL if rtol is None else rtol,
            )  # fmt: skip
            environment = {**dict(publish.pop("environment", None) or {}), "conversion": record}
            return self.publish(name, staging, environment=environment, **publish)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @_audited("label", lambda name, label, version: f"models/{name}/labels/{label}={version}")
    def label(self, name: str, label: str, version: int | None) -> None:
        if not _LABEL.fullmatch(label):
            raise invalid(f"label {label!r} must match [A-Za-z][A-Za-z0-9_-]*")
        if version is not None:
            record = self.version(name, version)
            if record.state != "active":
                raise invalid(
                    f"version {version} of '{name}' is {record.state}: labels go on active versions"
                )
        else:
            self.model(name)
        self.store.set_label(name, label, version)
        self.sync(name)

    @_audited("set-policy", lambda name, policy: f"models/{name}/policy")
    def set_policy(self, name: str, policy: Mapping[str, Any]) -> None:
        self.model(name)
        if "pin" in policy:
            self.version(name, int(policy["pin"]))
        elif policy.get("follow") == "label":
            if not _LABEL.fullmatch(str(policy.get("label", ""))):
                raise invalid(f"policy: label {policy.get('label')!r} is not a label name")
        elif policy != {"follow": "latest"}:
            raise invalid(f"policy {dict(policy)} must be latest, label:<name> or pin:<version>")
        self.store.set_policy(name, dict(policy))
        self.sync(name)

    @_audited("deprecate", lambda name, version: f"models/{name}/versions/{version}")
    def deprecate(self, name: str, version: int) -> None:
        self.version(name, version)
        self.store.set_state(name, version, "deprecated")
        self.sync(name)

    @_audited("delete", lambda name, version, force=False: f"models/{name}/versions/{version}")
    def delete(self, name: str, version: int, force: bool = False) -> None:
        record = self.version(name, version)
        if not force and (version in self.served(name) or record.labels):
            why = (
                "it is being served"
                if version in self.served(name)
                else f"labels {list(record.labels)} point at it"
            )
            raise ModelportError(
                Code.FAILED_PRECONDITION,
                f"version {version} of '{name}' is not deleted: {why} (use --force to delete anyway)",
            )
        self.store.delete_version(name, version)
        shutil.rmtree(self.artifact(name, version), ignore_errors=True)
        self.sync(name)

    def sync(self, name: str) -> Path:
        """Make the serving repository hold exactly the served versions: add first, then remove."""
        repository = Path(self.model(name).repository)
        repository.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "sync.lock", "a") as lock:  # one sync at a time, across processes
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._sync(name, repository)

    def subscribe(self, name: str, selector: str) -> Path:
        """A repository that holds what `selector` (`latest`, a label, or a version number) points
        at, kept in step from now on: what a server config's `base_path: registry://NAME@SELECTOR`
        means. A version number pins: the repository holds that version until it is deleted."""
        self.model(name)
        if selector != "latest" and not _LABEL.fullmatch(selector) and not _is_number(selector):
            raise invalid(
                f"registry://{name}@{selector}: '{selector}' is neither latest, a label name nor a version"
            )
        if _is_number(selector):
            self.version(name, int(selector))
        folder = self.root / "serving" / f"{name}@{selector}"
        folder.mkdir(parents=True, exist_ok=True)
        self.sync(name)
        return folder

    def selected(self, name: str, selector: str) -> set[int]:
        versions = self.store.versions(name)
        if _is_number(selector):
            return {v.version for v in versions if v.version == int(selector) and v.state != "pending"}
        if selector == "latest":
            active = [v.version for v in versions if v.state == "active"]
            return {max(active)} if active else set()
        return {v.version for v in versions if selector in v.labels}

    def _sync(self, name: str, repository: Path) -> Path:
        self._mirror(name, repository, self.served(name))
        serving = self.root / "serving"
        if serving.is_dir():
            for folder in serving.glob(f"{name}@*"):
                self._mirror(name, folder, self.selected(name, folder.name.split("@", 1)[1]))
        return repository

    def _mirror(self, name: str, repository: Path, wanted: set[int]) -> None:
        for version in sorted(wanted):
            target = repository / str(version)
            if not target.exists():
                _copy(self.artifact(name, version), target, self.version(name, version).files)
        for entry in repository.iterdir():
            if entry.is_dir() and _is_number(entry.name) and int(entry.name) not in wanted:
                trash = repository / f".{entry.name}.removed-{uuid.uuid4().hex[:8]}"
                os.rename(entry, trash)  # one step for the server: the version is gone
                shutil.rmtree(trash, ignore_errors=True)


def _copy(
    source: Path, target: Path, files: Mapping[str, Any], extra: Mapping[str, bytes] | None = None
) -> None:
    """A version folder into place atomically, verified against the manifest it was published
    with; `extra` files (name -> bytes) are written beside the folder's own."""

    def fill(partial: Path) -> None:
        shutil.copytree(source, partial, dirs_exist_ok=True, ignore=shutil.ignore_patterns(COMPLETE_MARK))
        for name, data in (extra or {}).items():
            (partial / name).write_bytes(data)

    write_version(target, fill, expected=files)


REGISTRY_SCHEME = "registry://"


def resolve_base_path(base_path: str) -> str:
    """`registry://mnist@production` -> the folder the registry keeps for it; other paths unchanged."""
    if not base_path.startswith(REGISTRY_SCHEME):
        return base_path
    name, sep, selector = base_path.removeprefix(REGISTRY_SCHEME).partition("@")
    if not name:
        raise invalid(f"{base_path}: write registry://MODEL@LABEL (or @latest)")
    return str(Registry.open().subscribe(name, selector if sep else "latest"))


__all__ = ["REGISTRY_SCHEME", "Registry", "check_gates", "manifest", "manifest_sha256", "resolve_base_path"]


def _is_number(text: str) -> bool:
    """ASCII digits: str.isdigit() alone also takes "²", which int() refuses."""
    return text.isascii() and text.isdigit()
