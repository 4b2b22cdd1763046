"""`pipeline.yaml` (`kind: Pipeline`, `apiVersion: modelport/v1`): stages, what each needs and makes.

    apiVersion: modelport/v1
    kind: Pipeline
    metadata: {name: mnist}
    spec:
      model: mnist                          # the registry's name for what this pipeline publishes
      stages:
        - name: train
          train: {config: mlp.yaml, epochs: 8}
          outputs: [model]
        - name: evaluate
          evaluate: {}
          inputs: [train.model]
        - name: gate
          gate: {metrics: {accuracy: ">= 0.9"}, maxDrop: {accuracy: 0.01}}
          inputs: [evaluate.evaluation]
        ...

A stage holds exactly one of the stage kinds (train, evaluate, gate, publish, build, release,
promote, rollback) with its settings; `inputs` name other stages' outputs (`STAGE.OUTPUT`), and the
order of the run is derived from them (`graph.py`). Everything is checked before anything runs;
every problem is reported at once with its field path (`spec.stages[2].gate.metrics.f1: ...`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelport.errors import invalid
from modelport.pipeline.evaluate import METRICS
from modelport.spec import API_VERSION, field_path

_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
_RULE = re.compile(r"\s*(>=|<=|>|<|==)\s*-?[0-9.]+(?:e-?[0-9]+)?\s*")
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class TrainStage(_Fields):
    """`modelport train`: a train.yaml (relative to pipeline.yaml) and the settings given here over it."""

    config: str | None = None
    data: str | None = None  # mnist5k, idx:DIR, folder:DIR or npz:FILE (paths relative to pipeline.yaml)
    model: Literal["mlp", "cnn"] | None = None
    epochs: int | None = Field(default=None, ge=1)
    hidden: int | None = Field(default=None, ge=1)
    seed: int | None = None


class EvaluateStage(_Fields):
    data: str | None = None  # default: the data the model was trained on


class GateStage(_Fields):
    """Conditions on the evaluation's metrics, and "no worse than the version `against` points at
    (production) by more than maxDrop" against the registry."""

    metrics: dict[str, str] = Field(default_factory=dict)  # {"accuracy": ">= 0.9"}
    max_drop: dict[str, float] = Field(default_factory=dict, alias="maxDrop")  # {"accuracy": 0.01}
    against: str = "production"


class PublishStage(_Fields):
    labels: list[str] = Field(default_factory=list)
    allow_breaking: bool = Field(default=False, alias="allowBreaking")
    description: str = ""


class BuildStage(_Fields):
    """`modelport build` of the published version: an image (`tag`), or only its context."""

    tag: str | None = None
    builder: str | None = None
    base_image: str | None = Field(default=None, alias="baseImage")


class ReleaseStage(_Fields):
    """Point the Deployment (or Rollout) at the new version and wait for its rollout to finish; on
    failure, roll it back. `manifest`: objects to create first if they do not exist yet."""

    name: str  # the Deployment or Rollout
    kind: Literal["Deployment", "Rollout"] = "Deployment"
    namespace: str = "default"
    manifest: str | None = None
    timeout_seconds: float = Field(default=600, gt=0, alias="timeoutSeconds")


class PromoteStage(_Fields):
    label: str = "production"


class RollbackStage(_Fields):
    """Put the Deployment back on the version `label` points at (run when an input stage failed)."""

    name: str
    kind: Literal["Deployment", "Rollout"] = "Deployment"
    namespace: str = "default"
    label: str = "production"
    timeout_seconds: float = Field(default=600, gt=0, alias="timeoutSeconds")


Settings = (
    TrainStage | EvaluateStage | GateStage | PublishStage | BuildStage | ReleaseStage | PromoteStage
    | RollbackStage
)  # fmt: skip


@dataclass(frozen=True)
class Kind:
    needs: tuple[str, ...]  # the types of input the stage cannot run without
    outputs: tuple[str, ...]  # what it makes, each named by its type


# What each kind needs and makes. An output named `release` also carries the version released.
KINDS: dict[str, Kind] = {
    "train": Kind((), ("model",)),
    "evaluate": Kind(("model",), ("evaluation",)),
    "gate": Kind(("evaluation",), ("verdict",)),
    "publish": Kind(("model",), ("version",)),
    "build": Kind(("version",), ("image",)),
    "release": Kind(("version",), ("release",)),
    "promote": Kind(("version",), ("label",)),
    "rollback": Kind((), ("release",)),
}
PROVIDES = {"release": {"release", "version"}}


class Stage(_Fields):
    name: str
    train: TrainStage | None = None
    evaluate: EvaluateStage | None = None
    gate: GateStage | None = None
    publish: PublishStage | None = None
    build: BuildStage | None = None
    release: ReleaseStage | None = None
    promote: PromoteStage | None = None
    rollback: RollbackStage | None = None
    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] | None = None  # default: every output of the kind
    # success: run when every input stage succeeded; failure: only when one of them failed.
    when: Literal["success", "failure"] = "success"

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def settings(self) -> Settings:
        found: Settings = getattr(self, self.kind)
        return found

    @property
    def made(self) -> tuple[str, ...]:
        return tuple(self.outputs) if self.outputs is not None else KINDS[self.kind].outputs


class Metadata(_Fields):
    name: str


class PipelineSpec(_Fields):
    model: str  # the registry's name for the model
    work_dir: str | None = Field(default=None, alias="workDir")  # default .modelport/<name> beside the file
    stages: list[Stage] = Field(min_length=1)


class Pipeline(_Fields):
    api_version: Literal["modelport/v1"] = Field(alias="apiVersion")
    kind: Literal["Pipeline"]
    metadata: Metadata
    spec: PipelineSpec


@dataclass(frozen=True)
class Definition:
    """A checked pipeline and where it lives (paths in it are relative to `base`)."""

    pipeline: Pipeline
    base: Path
    source: str

    @property
    def name(self) -> str:
        return self.pipeline.metadata.name

    @property
    def stages(self) -> dict[str, Stage]:
        return {s.name: s for s in self.pipeline.spec.stages}

    @property
    def work_dir(self) -> Path:
        given = self.pipeline.spec.work_dir
        return self.base / given if given else self.base / ".modelport" / self.name

    def path(self, relative: str) -> Path:
        return self.base / relative


def load_pipeline(path: Path) -> Definition:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise invalid(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise invalid(f"{path}: not valid YAML: {exc}") from None
    return parse_pipeline(doc, path.resolve().parent, str(path))


def parse_pipeline(doc: Any, base: Path, source: str = "pipeline.yaml") -> Definition:
    """Every problem at once, each with its field path; the graph's too (`graph.check`)."""
    from modelport.delivery.graph import check

    if not isinstance(doc, dict):
        raise invalid(f"{source}: must be a mapping with apiVersion, kind, metadata and spec")
    if doc.get("apiVersion") != API_VERSION:
        raise invalid(f"{source}: apiVersion: must be {API_VERSION}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != "Pipeline":
        raise invalid(f"{source}: kind: must be Pipeline, got {doc.get('kind')!r}")
    try:
        pipeline = Pipeline.model_validate(doc)
    except ValidationError as exc:
        problems = [f"{field_path(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise invalid(f"{source}: " + "; ".join(problems)) from None
    problems = _rules(pipeline)
    if not problems:
        problems = check(pipeline.spec.stages)
    if problems:
        raise invalid(f"{source}: " + "; ".join(problems))
    return Definition(pipeline, base, source)


def _rules(pipeline: Pipeline) -> list[str]:
    """What the schema cannot say: names, one kind per stage, outputs, gate rules."""
    problems: list[str] = []
    if not _NAME.fullmatch(pipeline.metadata.name):
        problems.append("metadata.name: must be a lowercase name (a-z, 0-9, '-'), starting with a letter")
    seen: set[str] = set()
    for i, stage in enumerate(pipeline.spec.stages):
        path = f"spec.stages[{i}]"
        if not _NAME.fullmatch(stage.name):
            problems.append(f"{path}.name: {stage.name!r} must be a lowercase name (a-z, 0-9, '-')")
        if stage.name in seen:
            problems.append(f"{path}.name: stage '{stage.name}' is named twice")
        seen.add(stage.name)
        kinds = [k for k in KINDS if getattr(stage, k) is not None]
        if len(kinds) != 1:
            problems.append(
                f"{path}: needs exactly one of {', '.join(KINDS)}, got {' and '.join(kinds) or 'none'}"
            )
            continue
        made = KINDS[stage.kind].outputs
        for j, output in enumerate(stage.outputs or []):
            if output not in made:
                problems.append(
                    f"{path}.outputs[{j}]: a {stage.kind} stage makes {list(made)}, not {output!r}"
                )
        if isinstance(stage.settings, GateStage):
            problems += _gate_rules(stage.settings, f"{path}.gate")
        for label in _labels(stage.settings):
            if not _LABEL.fullmatch(label):
                problems.append(f"{path}.{stage.kind}: label {label!r} must match [A-Za-z][A-Za-z0-9_-]*")
    return problems


def _labels(settings: Settings) -> list[str]:
    if isinstance(settings, PublishStage):
        return settings.labels
    if isinstance(settings, PromoteStage | RollbackStage):
        return [settings.label]
    if isinstance(settings, GateStage):
        return [settings.against]
    return []


def _gate_rules(gate: GateStage, path: str) -> list[str]:
    """A gate on a metric evaluation does not produce could never pass: refused here, not after
    training. Evaluation produces METRICS."""
    problems = []
    if not gate.metrics and not gate.max_drop:
        problems.append(f"{path}: give metrics (conditions) or maxDrop (against {gate.against}), or both")
    for field, names in (("metrics", gate.metrics), ("maxDrop", gate.max_drop)):
        for name in names:
            if name not in METRICS:
                problems.append(
                    f"{path}.{field}.{name}: evaluation produces no metric {name!r} (it produces "
                    f"{', '.join(METRICS)})"
                )
    for name, rule in gate.metrics.items():
        if not _RULE.fullmatch(rule):
            problems.append(f"{path}.metrics.{name}: {rule!r} is not a comparison like '>= 0.9'")
    for name, drop in gate.max_drop.items():
        if drop < 0:
            problems.append(f"{path}.maxDrop.{name}: must be 0 or more, got {drop:g}")
    return problems
