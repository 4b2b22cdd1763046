"""`modelport render --target kubernetes`: our objects in, a kustomization out.

    objects = load_objects_from([Path("examples/mnist/")])
    rendered = render_kubernetes(objects, PodOptions(image="mnist:1"))
    write_output(rendered, Path("deploy/k8s"))      # then: kubectl apply -k deploy/k8s/

`render_kubernetes` is pure (objects in, file texts and notes out); the file system is touched
only by `load_objects_from` and `write_output`, which writes a whole folder or nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelport.errors import Code, ModelportError
from modelport.kube.argo import as_deployment, render_analysis_template, render_rollout
from modelport.kube.hpa import render_adapter_values, render_hpa
from modelport.kube.mapping import (
    config_digest,
    render_deployment,
    render_disruption_budget,
    render_model_config,
    render_service,
)
from modelport.kube.notes import Note
from modelport.kube.pods import PodOptions
from modelport.spec import (
    API_VERSION,
    KINDS,
    Deployment,
    HorizontalPodAutoscaler,
    Object,
    Rollout,
    Service,
    load_objects,
)

KUSTOMIZATION = "kustomization.yaml"
ADAPTER_VALUES = "prometheus-adapter-values.yaml"
# The first line of every kustomization render writes: how it knows a folder is its own to replace.
HEADER = "# Rendered by `modelport render`: edit the modelport/v1 files and render again."
_SHORT = {"Deployment": "deployment", "Service": "service", "HorizontalPodAutoscaler": "hpa",
          "PodDisruptionBudget": "pdb", "ConfigMap": "configmap", "Rollout": "rollout",
          "AnalysisTemplate": "analysistemplate"}  # fmt: skip


@dataclass(frozen=True)
class Rendered:
    files: dict[str, str]  # file name -> YAML text, kustomization.yaml among them
    notes: list[Note] = field(default_factory=list)


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)


def _file_name(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    namespace = f"{meta['namespace']}-" if "namespace" in meta else ""
    return f"{_SHORT[doc['kind']]}-{namespace}{meta['name']}.yaml"


def _upstream(dep: Deployment, services: list[Service]) -> str | None:
    """The URL a gateway calls: its Service by name, in its namespace, on the Service's first
    port (`http://mnist:8501`; the short name resolves within the namespace)."""
    front = dep.spec.template.spec.gateway
    if front is None:
        return None
    for svc in services:
        if svc.metadata.name == front.service and svc.metadata.namespace == dep.metadata.namespace:
            return f"http://{svc.metadata.name}:{svc.spec.ports[0].port}"
    raise ModelportError(
        Code.INVALID_ARGUMENT,
        f"Deployment/{dep.metadata.name}: spec.template.spec.gateway.service: Service "
        f"{front.service!r} is not among the files rendered; render it with them (its port is the URL)",
    )


def _documents(objects: list[Object], options: PodOptions, notes: list[Note]) -> list[dict[str, Any]]:
    services = [o for o in objects if isinstance(o, Service)]
    docs: list[dict[str, Any]] = []
    for obj in objects:
        if isinstance(obj, Deployment):
            config = render_model_config(obj)
            if config is not None:
                docs.append(config)
            docs.append(
                render_deployment(obj, options, _upstream(obj, services), config_digest(config), notes)
            )
            docs.append(render_disruption_budget(obj))
        elif isinstance(obj, Service):
            docs.append(render_service(obj, notes))
        elif isinstance(obj, HorizontalPodAutoscaler):
            docs.append(render_hpa(obj, notes))
        elif isinstance(obj, Rollout):  # Argo Rollouts' (argoproj.io/v1alpha1), its CRDs installed
            plain = as_deployment(obj)
            config = render_model_config(plain)
            if config is not None:
                docs.append(config)
            docs.append(
                render_rollout(obj, options, _upstream(plain, services), config_digest(config), notes)
            )
            docs.append(render_disruption_budget(plain))
        else:
            docs.append(render_analysis_template(obj, notes))
    return docs


def _kustomization(resources: Iterable[str], notes: list[Note]) -> str:
    lines = [HEADER]
    if notes:
        lines.append("# Not carried as is (see `modelport render`'s warnings):")
        lines += [f"#  - {note}" for note in notes]
    body = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(resources),
    }
    return "\n".join(lines) + "\n" + _dump(body)


def render_kubernetes(objects: list[Object], options: PodOptions) -> Rendered:
    """Every object as Kubernetes documents, one file each, and the kustomization that lists them;
    the Prometheus Adapter values beside them (not applied: they configure an add-on)."""
    notes: list[Note] = []
    files: dict[str, str] = {}
    for doc in _documents(objects, options, notes):
        name = _file_name(doc)
        if name in files:
            raise ModelportError(
                Code.INVALID_ARGUMENT, f"{doc['kind']}/{doc['metadata']['name']}: given twice"
            )
        files[name] = _dump(doc)
    resources = list(files)
    adapter = render_adapter_values([o for o in objects if isinstance(o, HorizontalPodAutoscaler)])
    if adapter is not None:
        files[ADAPTER_VALUES] = (
            "# helm install prometheus-adapter prometheus-community/prometheus-adapter -f this file\n"
            + _dump(adapter)
        )
    files[KUSTOMIZATION] = _kustomization(resources, notes)
    return Rendered(files, notes)


def _is_ours(text: str) -> bool:
    """A YAML file of our served objects (`apiVersion: modelport/v1`, a kind render knows); a
    folder also holds other YAML (the example's training configs, a Pipeline), which render
    passes over."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return True  # let load_objects name the problem
    return any(
        isinstance(d, dict) and d.get("apiVersion") == API_VERSION and d.get("kind") in KINDS for d in docs
    )


def load_objects_from(paths: Iterable[Path]) -> list[Object]:
    """The objects of each file, and of each folder's YAML files that hold modelport/v1 objects."""
    objects: list[Object] = []
    for path in paths:
        files = (
            sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
        )
        for file in files:
            try:
                text = file.read_text()
            except OSError as exc:
                raise ModelportError(Code.INVALID_ARGUMENT, f"{file}: {exc.strerror}") from None
            if path.is_dir() and not _is_ours(text):
                continue
            objects += load_objects(text, str(file))
    if not objects:
        raise ModelportError(Code.INVALID_ARGUMENT, "no modelport/v1 objects in the files given")
    return objects


def _replaceable(out: Path) -> bool:
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    kustomization = out / KUSTOMIZATION
    if not any(out.iterdir()):
        return True
    with contextlib.suppress(OSError):
        return kustomization.read_text().startswith(HEADER)
    return False


def write_output(rendered: Rendered, out: Path) -> None:
    """The folder as a whole: written beside `out`, then swapped in, so a reader (or a failure
    half-way) never sees a mix of old and new files. A folder that render did not write is never
    replaced."""
    if not _replaceable(out):
        raise ModelportError(
            Code.INVALID_ARGUMENT,
            f"{out}: exists and was not written by modelport render; choose another -o or remove it",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = out.parent / f".{out.name}.render-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    try:
        for name, text in rendered.files.items():
            (fresh / name).write_text(text)
        if out.exists():
            out.rename(old)
        try:
            fresh.rename(out)
        except OSError:
            if old.exists():
                old.rename(out)  # the previous render stays whole
            raise
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
