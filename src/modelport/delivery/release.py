"""A release: point a Deployment (or a Rollout) at one registry version and wait for its rollout.

    registry://mnist@2      the registry keeps a folder holding version 2 only (`Registry.subscribe`)

The new template is a new revision: the controller rolls it out by its strategy (a rolling update,
or a Rollout's canary steps and analysis), and the old replicas keep serving the old version until
the new ones are ready. A rollout that fails or does not finish in `timeoutSeconds` is undone: the
template from before goes back, and the stage fails saying why.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.controlplane.client import Client
from modelport.controlplane.meta import CHANGE_CAUSE
from modelport.controlplane.rollout_status import canary_state, rollout_state
from modelport.delivery.definition import ReleaseStage
from modelport.errors import Code, ModelportError
from modelport.registry import REGISTRY_SCHEME

Obj = dict[str, Any]
POLL_SECONDS = 0.2


def base_path(model: str, version: int) -> str:
    return f"{REGISTRY_SCHEME}{model}@{version}"


def release_version(
    settings: ReleaseStage,
    model: str,
    version: int,
    manifest: Path | None,
    cause: str,
    report: Callable[[str], None],
) -> int:
    """Returns the workload's generation once rolled out; raises StageFailed after rolling back."""
    from modelport.delivery.stages import StageFailed

    api = Client.from_home()
    kind, name, namespace = settings.kind, settings.name, settings.namespace
    target = base_path(model, version)
    before = _get(api, kind, name, namespace)
    if before is None:
        _create_from(api, settings, manifest, target, cause)
        report(f"{kind.lower()}/{name} created at {target}")
    else:
        _create_from(api, settings, manifest, None, cause)  # only the objects still missing
        _update(api, kind, name, namespace, lambda t: _point(t, target), cause)
        report(f"{kind.lower()}/{name} -> {target}")
    message, done = wait_rollout(api, kind, name, namespace, settings.timeout_seconds, report)
    if done:
        return int(_get_or_fail(api, kind, name, namespace)["metadata"].get("generation", 0))
    why = message if done is False else f"not rolled out after {settings.timeout_seconds:g} s ({message})"
    if before is None:
        raise StageFailed(f"release: {why}; {kind.lower()}/{name} was new, nothing to roll back to")
    previous = before["spec"]["template"]
    _update(api, kind, name, namespace, lambda t: _restore(t, previous), f"rolled back: {why}")
    back, ok = wait_rollout(api, kind, name, namespace, settings.timeout_seconds, report)
    where = _source(previous)
    raise StageFailed(
        f"release: {why}; rolled {kind.lower()}/{name} back to {where}"
        + ("" if ok else f" (that rollout has not finished either: {back})")
    )


def wait_rollout(
    api: Client, kind: str, name: str, namespace: str, timeout: float, report: Callable[[str], None]
) -> tuple[str, bool | None]:
    """(message, True) when rolled out, (message, False) when failed, (message, None) at the timeout."""
    deadline = time.monotonic() + timeout
    last = ""
    state = canary_state if kind == "Rollout" else rollout_state  # a Rollout: its steps and analysis
    while True:
        message, done = state(_get_or_fail(api, kind, name, namespace))
        if message != last:
            report(message)
            last = message
        if done is not None or time.monotonic() > deadline:
            return message, done
        time.sleep(POLL_SECONDS)


def points_at(kind: str, name: str, namespace: str, model: str, version: int) -> bool:
    """Does the workload serve this version now (a cached release still holds)?"""
    try:
        current = _get(Client.from_home(), kind, name, namespace)
    except (ModelportError, OSError):
        return False
    return current is not None and _source(current["spec"]["template"]) == base_path(model, version)


def _get(api: Client, kind: str, name: str, namespace: str) -> Obj | None:
    try:
        return api.get(kind, name, namespace)
    except ModelportError as exc:
        if exc.code is Code.NOT_FOUND:
            return None
        raise


def _get_or_fail(api: Client, kind: str, name: str, namespace: str) -> Obj:
    found = _get(api, kind, name, namespace)
    if found is None:
        raise ModelportError(Code.NOT_FOUND, f"{kind.lower()}/{name} was deleted during the release")
    return found


def _source(template: Obj) -> str:
    return str((template.get("spec", {}).get("model") or {}).get("basePath", "?"))


def _point(template: Obj, target: str) -> None:
    model = template["spec"].get("model")
    if model is None:
        raise ModelportError(Code.INVALID_ARGUMENT, "release: the workload runs no model (a gateway?)")
    model["basePath"] = target


def _restore(template: Obj, previous: Obj) -> None:
    template.clear()
    template.update(copy.deepcopy(previous))


def _update(
    api: Client, kind: str, name: str, namespace: str, change: Callable[[Obj], None], cause: str
) -> None:
    """Read, change the template, write back with the version read; again on a conflict."""
    for _ in range(10):
        obj = api.get(kind, name, namespace)
        change(obj["spec"]["template"])
        obj["metadata"].setdefault("annotations", {})[CHANGE_CAUSE] = cause
        try:
            api.replace(obj)
            return
        except ModelportError as exc:
            if exc.code is not Code.ABORTED:
                raise
    raise ModelportError(Code.ABORTED, f"{kind.lower()}/{name}: kept conflicting with other writers")


def _create_from(
    api: Client, settings: ReleaseStage, manifest: Path | None, target: str | None, cause: str
) -> None:
    """Create the manifest's objects that do not exist yet; the released workload pointed at `target`."""
    if manifest is None:
        if target is not None:
            raise ModelportError(
                Code.NOT_FOUND,
                f"release: {settings.kind.lower()}/{settings.name} does not exist; create it, or name "
                "a manifest that holds it (release.manifest)",
            )
        return
    from modelport.spec import load_objects, to_dict

    objects = [to_dict(o) for o in load_objects(manifest.read_text(), str(manifest))]
    for obj in objects:
        meta = obj["metadata"]
        meta.setdefault("namespace", settings.namespace)
        if _get(api, obj["kind"], meta["name"], meta["namespace"]) is not None:
            continue
        released = obj["kind"] == settings.kind and meta["name"] == settings.name
        if released and target is not None:
            _point(obj["spec"]["template"], target)
            meta.setdefault("annotations", {})[CHANGE_CAUSE] = cause
        api.create(obj)
    if target is not None and not any(
        o["kind"] == settings.kind and o["metadata"]["name"] == settings.name for o in objects
    ):
        raise ModelportError(
            Code.NOT_FOUND, f"release: {manifest} holds no {settings.kind} named {settings.name}"
        )
