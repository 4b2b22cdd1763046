"""The build context of a model server image: which model versions a SOURCE names, copied with
their `_COMPLETE` manifests and verified, the image's model config, the wheels, the Dockerfile.

A SOURCE is one of:
- `registry://NAME@LABEL` (or `@latest`, or `@VERSION`): the version the registry says, with
  the manifest it was published with (a file changed since is refused); the label is kept in
  the image's model config (`/v1/models/NAME/labels/LABEL` answers as here);
- a model folder holding <version>/ folders: the versions TF Serving's default policy serves
  (the latest complete one), or a single <version>/ folder (the model named after its parent);
- a model config file (TF Serving's text format or YAML) with one or more models: each model's
  versions as its version policy selects them, its policy and labels kept.
A version folder without a `_COMPLETE` mark gets one, written from the files copied."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import Code, ModelportError, invalid
from modelport.kube import dockerfile
from modelport.kube.verify import verify_version
from modelport.kube.wheels import build_modelport_wheel, environment_wheels, runtime_requirements
from modelport.registry import REGISTRY_SCHEME, Registry, manifest_sha256
from modelport.repository import layout
from modelport.repository.config import ModelConfig, VersionPolicy, load_model_config_file
from modelport.repository.policy import compute_aspired

_VERSION_SELECTOR = re.compile(r"[1-9][0-9]*")


@dataclass(frozen=True)
class VersionSource:
    version: int
    path: Path
    files: dict[str, dict[str, Any]] | None = None  # the manifest to hold it to (registry)


@dataclass(frozen=True)
class ModelSource:
    config: dict[str, Any]  # the image's model config entry (name, policy, labels, ...)
    versions: tuple[VersionSource, ...]
    commit: str | None = None  # the git commit it was trained from, when known

    @property
    def name(self) -> str:
        return str(self.config["name"])


@dataclass(frozen=True)
class BuildOptions:
    base_image: str = dockerfile.DEFAULT_BASE_IMAGE
    bake_models: bool = True  # False: --no-model
    offline: bool = False  # every dependency's wheel from this environment
    wheels: Path | None = None  # a folder of wheels to add (then no package index either)
    source_commit: str | None = None  # default: where the (first) model came from
    healthcheck: bool = True


# -- what a SOURCE names --


def resolve_source(source: str, model_name: str | None = None) -> tuple[ModelSource, ...]:
    if source.startswith(REGISTRY_SCHEME):
        return (_from_registry(source, model_name),)
    path = Path(source)
    if path.is_file():
        if model_name:
            raise invalid(f"--model-name: {source} is a model config file; its models have their names")
        return tuple(_from_config(m, source) for m in load_model_config_file(path).models)
    if path.is_dir():
        return (_from_folder(path.resolve(), model_name),)
    raise invalid(
        f"{source}: no such file or folder (give registry://NAME@LABEL, a model folder or a config)"
    )


def _from_registry(source: str, model_name: str | None) -> ModelSource:
    name, sep, selector = source.removeprefix(REGISTRY_SCHEME).partition("@")
    selector = selector if sep else "latest"
    if not name:
        raise invalid(f"{source}: write registry://MODEL@LABEL (or @latest, or @VERSION)")
    registry = Registry.open()
    if _VERSION_SELECTOR.fullmatch(selector):
        versions = {int(selector)}
    else:
        registry.model(name)
        versions = registry.selected(name, selector)
    if not versions:
        raise ModelportError(Code.NOT_FOUND, f"{source}: no version of '{name}' is {selector}")
    records = [registry.version(name, v) for v in sorted(versions)]
    config: dict[str, Any] = {"name": model_name or name}
    if not _VERSION_SELECTOR.fullmatch(selector) and selector != "latest":
        config["version_labels"] = {selector: records[-1].version}
    git = records[-1].environment.get("git") or {}
    return ModelSource(
        config,
        tuple(VersionSource(r.version, registry.artifact(name, r.version), dict(r.files)) for r in records),
        git.get("commit") if isinstance(git, dict) else None,
    )


def _complete_versions(base: Path) -> dict[int, Path]:
    """Version folders that are complete: a matching mark, or (unmarked) any files at all."""
    return {
        v.version: v.path
        for v in layout.scan(base)
        if (v.mark_problem is None if v.marked else v.fingerprint)
    }


def _from_folder(path: Path, model_name: str | None) -> ModelSource:
    if layout.list_versions(path):
        found = _complete_versions(path)
        chosen = compute_aspired(VersionPolicy(), found)
        if not chosen:
            raise invalid(f"{path}: no complete <version>/ folder to copy")
        versions = tuple(VersionSource(v, found[v]) for v in sorted(chosen))
        return ModelSource({"name": model_name or path.name}, versions, _git_commit(path))
    version = layout.parse_version(path.name)
    if version is None or not any(path.iterdir()):
        raise invalid(f"{path}: neither a model folder (with <version>/ folders) nor a <version>/ folder")
    return ModelSource(
        {"name": model_name or path.parent.name}, (VersionSource(version, path),), _git_commit(path)
    )


def _from_config(model: ModelConfig, source: str) -> ModelSource:
    entry: dict[str, Any] = {"name": model.name}
    if model.model_platform:
        entry["model_platform"] = model.model_platform
    policy = model.version_policy
    entry["model_version_policy"] = (
        {"latest": {"num_versions": policy.num_versions}} if policy.kind == "latest"
        else {"all": {}} if policy.kind == "all" else {"specific": {"versions": list(policy.versions)}}
    )  # fmt: skip
    if model.version_labels:
        entry["version_labels"] = dict(model.version_labels)
    if model.runtime_options:
        entry["runtime_options"] = dict(model.runtime_options)
    if model.base_path.startswith(REGISTRY_SCHEME):
        found = _from_registry(model.base_path, model.name)
        labels = {**entry.get("version_labels", {}), **found.config.get("version_labels", {})}
        merged = {**entry, **({"version_labels": labels} if labels else {})}
        return ModelSource(merged, found.versions, found.commit)
    base = Path(model.base_path)
    if not base.is_dir():
        raise invalid(f"{source}: model '{model.name}': base_path {base} is not a folder")
    complete = _complete_versions(base)
    chosen = compute_aspired(policy, complete)
    if not chosen:
        raise invalid(f"{source}: model '{model.name}': no complete version under {base} for its policy")
    return ModelSource(entry, tuple(VersionSource(v, complete[v]) for v in sorted(chosen)), _git_commit(base))


def _git_commit(path: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


# -- the context --


def copy_version(version: VersionSource, target: Path) -> str:
    """Copy one version folder to `target` with its manifest, verify the copy against it, and
    return the manifest's sha256 (as the registry records it)."""
    shutil.copytree(version.path, target, ignore=shutil.ignore_patterns("__pycache__"))
    mark = target / layout.COMPLETE_MARK
    if version.files is not None:  # the registry's record is the authority, not the copy's mark
        mark.write_text(json.dumps({"files": version.files}, indent=1) + "\n")
    elif not mark.exists():
        mark.write_text(json.dumps({"files": layout.manifest(target)}, indent=1) + "\n")
    verify_version(target)
    return manifest_sha256(layout.read_manifest(target))


def write_models(models: tuple[ModelSource, ...], context: Path) -> tuple[dockerfile.ImageModel, ...]:
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise invalid(f"model names must differ in one image: {', '.join(names)}")
    out = []
    for model in models:
        digests = tuple(
            copy_version(v, context / dockerfile.MODELS_DIR / model.name / str(v.version))
            for v in model.versions
        )
        out.append(dockerfile.ImageModel(model.name, tuple(v.version for v in model.versions), digests))
    return tuple(out)


def write_context(models: tuple[ModelSource, ...], options: BuildOptions, path: Path) -> dockerfile.ImageSpec:
    """Write the whole context into `path` (a new or empty folder): models, model config,
    wheels, Dockerfile. Returns what the Dockerfile was made from."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise invalid(f"{path}: the context folder must be new or empty")
    path.mkdir(parents=True, exist_ok=True)
    wheels = path / dockerfile.WHEELS_DIR
    wheels.mkdir()
    (path / dockerfile.DIST_DIR).mkdir()
    own = build_modelport_wheel(path / dockerfile.DIST_DIR)
    if options.offline:
        requirements = [f"{d.metadata['Name']}=={d.version}" for d in environment_wheels(wheels)]
    else:
        requirements = runtime_requirements()
    (wheels / "requirements.txt").write_text("\n".join(requirements) + "\n")
    if options.wheels is not None:
        given = sorted(options.wheels.glob("*.whl"))
        if not given:
            raise invalid(f"--wheels {options.wheels}: no .whl files there")
        for wheel in given:
            if not wheel.name.startswith("modelport-"):  # the running modelport's wheel wins
                shutil.copyfile(wheel, wheels / wheel.name)
    if options.bake_models:
        image_models = write_models(models, path)
    else:
        image_models = tuple(dockerfile.ImageModel(m.name) for m in models)
    if models:
        text = dockerfile.render_image_config(tuple(m.config for m in models))
        (path / dockerfile.CONFIG_NAME).write_text(text)
    commits = [m.commit for m in models if m.commit]
    spec = dockerfile.ImageSpec(
        modelport_version=own.name.split("-")[1],
        modelport_wheel=own.name,
        models=image_models,
        base_image=options.base_image,
        bake_models=options.bake_models,
        offline=options.offline or options.wheels is not None,
        source_commit=options.source_commit or (commits[0] if commits else None),
        healthcheck=options.healthcheck,
    )
    (path / "Dockerfile").write_text(dockerfile.render_dockerfile(spec))
    (path / ".dockerignore").write_text(dockerfile.render_dockerignore())
    return spec
