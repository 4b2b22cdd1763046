"""What each kind of stage does: the existing steps (train, evaluate, the registry, build, the
control plane), called with the stage's settings and its inputs; outputs as `Artifact`s.

A stage raises `StageFailed` with a message that says what happened in numbers (a gate that
refused, a rollout that did not finish and was rolled back); anything a step raises as a
ModelportError fails the stage with that step's message.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.delivery.definition import (
    BuildStage,
    Definition,
    EvaluateStage,
    GateStage,
    PromoteStage,
    PublishStage,
    ReleaseStage,
    RollbackStage,
    Stage,
    TrainStage,
)
from modelport.delivery.runs import Artifact
from modelport.errors import Code, ModelportError
from modelport.registry import REGISTRY_SCHEME, Registry, manifest, manifest_sha256
from modelport.registry.store import VersionRecord


class StageFailed(ModelportError):
    def __init__(self, message: str) -> None:
        super().__init__(Code.FAILED_PRECONDITION, message)


@dataclass(frozen=True)
class StageContext:
    definition: Definition
    stage: Stage
    inputs: dict[str, Artifact]  # by type: "model", "evaluation", "version", ...
    out: Path  # the stage's own folder under the pipeline's work dir
    run_id: int
    report: Callable[[str], None]  # a line of progress

    @property
    def model(self) -> str:
        return self.definition.pipeline.spec.model

    def fresh(self, name: str) -> Path:
        """An empty folder for an output (what an earlier run left there is removed)."""
        folder = self.out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        return folder


Outputs = dict[str, Artifact]


# -- checksums of what goes in and out --


def sha256_of(path: Path) -> str:
    """A file's bytes, or a folder's manifest (every file's name, size and sha256)."""
    if path.is_dir():
        return manifest_sha256(manifest(path))
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def value_sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def folder_artifact(kind: str, path: Path, value: dict[str, Any] | None = None) -> Artifact:
    return Artifact(kind, sha256_of(path), str(path), value or {})


def value_artifact(kind: str, value: dict[str, Any]) -> Artifact:
    return Artifact(kind, value_sha256(value), None, value)


def data_spec(definition: Definition, spec: str) -> str:
    """`npz:digits.npz` in pipeline.yaml means beside pipeline.yaml; mnist5k stays as it is."""
    kind, sep, where = spec.partition(":")
    if not sep or kind not in ("npz", "idx", "folder"):
        return spec
    return f"{kind}:{definition.path(where)}"


def data_location(definition: Definition, spec: str) -> Path | None:
    _, sep, where = data_spec(definition, spec).partition(":")
    return Path(where) if sep else None


def external_inputs(definition: Definition, stage: Stage) -> dict[str, str]:
    """The checksums of the files a stage reads that no other stage made: a train config and its
    data, a release manifest. Part of the stage's inputs checksum."""
    files: dict[str, Path] = {}
    settings = stage.settings
    if isinstance(settings, TrainStage | EvaluateStage) and settings.data:
        where = data_location(definition, settings.data)
        if where is not None:
            files["data"] = where
    if isinstance(settings, TrainStage) and settings.config:
        files["config"] = definition.path(settings.config)
    if isinstance(settings, ReleaseStage) and settings.manifest:
        files["manifest"] = definition.path(settings.manifest)
    sums = {}
    for name, path in files.items():
        if not path.exists():
            raise StageFailed(f"stage '{stage.name}': {name} {path} does not exist")
        sums[name] = sha256_of(path)
    if isinstance(settings, TrainStage) and "data" not in sums:
        sums["data"] = value_sha256(settings.data or "mnist5k")  # a bundled data set: its name
    return sums


# -- the kinds --


def train(ctx: StageContext) -> Outputs:
    from modelport.pipeline.train import load_config
    from modelport.pipeline.train import train as run

    settings = ctx.stage.settings
    assert isinstance(settings, TrainStage)
    out = ctx.fresh("model")
    overrides: dict[str, Any] = {
        "data": data_spec(ctx.definition, settings.data) if settings.data else None, "model": settings.model,
        "epochs": settings.epochs, "hidden": settings.hidden, "seed": settings.seed, "out": str(out),
    }  # fmt: skip
    config_file = ctx.definition.path(settings.config) if settings.config else None
    config = load_config(config_file, overrides)  # type: ignore[arg-type]

    def show(epoch: int, total: int, f: dict[str, float]) -> None:
        ctx.report(f"epoch {epoch}/{total}  loss {f['train_loss']:.3f}  val acc {f['val_accuracy']:.3f}")

    run(config, show, ["modelport", "pipeline", "run", ctx.definition.source, f"(run {ctx.run_id})"])
    return {"model": folder_artifact("model", out)}


def evaluate(ctx: StageContext) -> Outputs:
    from modelport.pipeline.evaluate import evaluate as run

    settings = ctx.stage.settings
    assert isinstance(settings, EvaluateStage)
    out = ctx.fresh("evaluation")
    data = data_spec(ctx.definition, settings.data) if settings.data else None
    ctx.report("measuring the ONNX file on the test split")
    report = run(Path(_path(ctx, "model")), data, out)
    metrics = report["metrics"]
    ctx.report(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return {
        "evaluation": folder_artifact("evaluation", out, {"metrics": metrics, "sha256": report["sha256"]})
    }


def gate(ctx: StageContext) -> Outputs:
    """Conditions, then the drop from the version `against` points at; fails with the numbers."""
    from modelport.registry.registry import check_gates

    settings = ctx.stage.settings
    assert isinstance(settings, GateStage)
    metrics: dict[str, float] = ctx.inputs["evaluation"].value["metrics"]
    failed = []
    try:
        check_gates(metrics, settings.metrics)
    except ModelportError as exc:
        failed.append(exc.message.removeprefix("refused by the gate: "))
    baseline = _baseline(ctx.model, settings.against)
    verdict: dict[str, Any] = {"metrics": metrics, "conditions": settings.metrics, "against": None}
    if baseline is not None and settings.max_drop:
        version, theirs = baseline
        verdict["against"] = {"label": settings.against, "version": version, "metrics": theirs}
        for name, allowed in settings.max_drop.items():
            if name not in theirs:
                continue  # the version there has no such figure recorded: nothing to compare with
            drop = theirs[name] - metrics[name]
            if drop > allowed:
                failed.append(
                    f"{name} = {metrics[name]:.4f}, {settings.against} (version {version}) has "
                    f"{theirs[name]:.4f}: {drop:.4f} worse, more than the {allowed:g} allowed"
                )
    if failed:
        raise StageFailed("refused by the gate: " + "; ".join(failed))
    where = (
        f"; no worse than {settings.against} (version {baseline[0]})"
        if baseline and settings.max_drop
        else (f"; no {settings.against} version to compare with yet" if settings.max_drop else "")
    )
    ctx.report(", ".join(f"{k} {metrics[k]:.4f}" for k in settings.metrics or metrics) + where)
    return {"verdict": value_artifact("verdict", {"passed": True, **verdict})}


def _baseline(model: str, label: str) -> tuple[int, dict[str, float]] | None:
    registry = Registry.open()
    if registry.store.model(model) is None:
        return None
    versions = registry.selected(model, label)
    if not versions:
        return None
    version = max(versions)
    return version, dict(registry.version(model, version).metrics)


def publish(ctx: StageContext) -> Outputs:
    settings = ctx.stage.settings
    assert isinstance(settings, PublishStage)
    folder = Path(_path(ctx, "model"))
    metrics, expected, environment, parent = {}, None, {}, None
    if "evaluation" in ctx.inputs:
        doc = json.loads((Path(_path(ctx, "evaluation")) / "evaluation.json").read_text())
        metrics, expected = doc["metrics"], doc.get("sha256")
        environment, parent = doc.get("environment", {}), doc.get("parent")
    registry = Registry.open()
    same = _published(registry, ctx.model, manifest_sha256(manifest(folder)))
    if same is not None:  # a re-run after production moved: the same bytes are not a new version
        for label in settings.labels:
            registry.label(ctx.model, label, same.version)
        ctx.report(f"already published as {ctx.model} version {same.version}")
        return {"version": _version(ctx.model, same.version, same.sha256)}
    record = registry.publish(
        ctx.model, folder, metrics=metrics, environment=environment, parent=parent,
        allow_breaking=settings.allow_breaking, expected_sha256=expected,
        description=settings.description or f"pipeline {ctx.definition.name}, run {ctx.run_id}",
    )  # fmt: skip
    for label in settings.labels:
        registry.label(ctx.model, label, record.version)
    ctx.report(
        f"{ctx.model} version {record.version}"
        + (f" ({', '.join(settings.labels)})" if settings.labels else "")
    )
    return {"version": _version(ctx.model, record.version, record.sha256)}


def _version(model: str, version: int, sha256: str) -> Artifact:
    return value_artifact("version", {"model": model, "version": version, "sha256": sha256})


def _published(registry: Registry, model: str, sha256: str) -> VersionRecord | None:
    if registry.store.model(model) is None:
        return None
    return next((v for v in registry.versions(model) if v.sha256 == sha256 and v.state == "active"), None)


def build(ctx: StageContext) -> Outputs:
    """The image's context (Dockerfile, the version, wheels) always; the image when `tag` is given."""
    from modelport.kube.builder import build_command, find_builder, run_build
    from modelport.kube.context import BuildOptions, resolve_source, write_context

    settings = ctx.stage.settings
    assert isinstance(settings, BuildStage)
    version = ctx.inputs["version"].value["version"]
    context = ctx.fresh("context")
    options = BuildOptions(base_image=settings.base_image) if settings.base_image else BuildOptions()
    write_context(resolve_source(f"{REGISTRY_SCHEME}{ctx.model}@{version}"), options, context)
    if settings.tag:
        ctx.report(f"building {settings.tag}")
        run_build(build_command(find_builder(settings.builder), settings.tag, context))
    ctx.report(f"image {settings.tag}" if settings.tag else f"context {context}")
    return {"image": folder_artifact("image", context, {"tag": settings.tag, "version": version})}


def release(ctx: StageContext) -> Outputs:
    from modelport.delivery.release import release_version

    settings = ctx.stage.settings
    assert isinstance(settings, ReleaseStage)
    version = int(ctx.inputs["version"].value["version"])
    manifest_file = ctx.definition.path(settings.manifest) if settings.manifest else None
    cause = f"pipeline {ctx.definition.name} run {ctx.run_id}: {ctx.model} version {version}"
    revision = release_version(settings, ctx.model, version, manifest_file, cause, ctx.report)
    return {"release": released(settings, ctx.model, version, revision)}


def promote(ctx: StageContext) -> Outputs:
    settings = ctx.stage.settings
    assert isinstance(settings, PromoteStage)
    version = int(ctx.inputs["version"].value["version"])
    Registry.open().label(ctx.model, settings.label, version)
    ctx.report(f"{ctx.model}: {settings.label} -> version {version}")
    return {
        "label": value_artifact("label", {"model": ctx.model, "label": settings.label, "version": version})
    }


def rollback(ctx: StageContext) -> Outputs:
    """Put the Deployment back on the version the label (production) points at."""
    from modelport.delivery.release import release_version

    settings = ctx.stage.settings
    assert isinstance(settings, RollbackStage)
    found = _baseline(ctx.model, settings.label)
    if found is None:
        raise StageFailed(f"no version of {ctx.model} is labelled {settings.label}: nothing to roll back to")
    target = ReleaseStage(name=settings.name, kind=settings.kind, namespace=settings.namespace,
                          timeoutSeconds=settings.timeout_seconds)  # fmt: skip
    cause = f"pipeline {ctx.definition.name} run {ctx.run_id}: back to {settings.label} (version {found[0]})"
    revision = release_version(target, ctx.model, found[0], None, cause, ctx.report)
    return {"release": released(target, ctx.model, found[0], revision)}


def released(settings: ReleaseStage, model: str, version: int, revision: int) -> Artifact:
    return value_artifact("release", {
        "model": model, "version": version, "name": settings.name, "kind": settings.kind,
        "namespace": settings.namespace, "revision": revision,
    })  # fmt: skip


def _path(ctx: StageContext, kind: str) -> str:
    artifact = ctx.inputs[kind]
    if artifact.path is None or not Path(artifact.path).exists():
        raise StageFailed(f"stage '{ctx.stage.name}': its {kind} input {artifact.path} is gone")
    return artifact.path


RUNNERS: dict[str, Callable[[StageContext], Outputs]] = {
    "train": train, "evaluate": evaluate, "gate": gate, "publish": publish, "build": build,
    "release": release, "promote": promote, "rollback": rollback,
}  # fmt: skip

# Kinds whose outputs are reused when their inputs' checksums did not change. A gate reads the
# registry (production may have moved), a promotion and a rollback are cheap and must hold now.
CACHEABLE = {"train", "evaluate", "publish", "build", "release"}


def still_valid(kind: str, outputs: Outputs) -> bool:
    """Are cached outputs still what they were? Files: same checksum; a release: the Deployment
    still points at that version (someone may have rolled it back since)."""
    for artifact in outputs.values():
        if artifact.path is not None:
            path = Path(artifact.path)
            if not path.exists() or sha256_of(path) != artifact.sha256:
                return False
    if kind == "release":
        from modelport.delivery.release import points_at

        value = next(iter(outputs.values())).value
        return points_at(value["kind"], value["name"], value["namespace"], value["model"], value["version"])
    return True
