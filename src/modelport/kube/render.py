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
from collections.abc import Iterable, Sequence
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
    Deployment,
    HorizontalPodAutoscaler,
    Object,
    Rollout,
    Service,
    Sourced,
    read_objects,
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


def _object_documents(
    obj: Object, options: PodOptions, services: list[Service], notes: list[Note]
) -> list[dict[str, Any]]:
    if isinstance(obj, Deployment):
        config = render_model_config(obj)
        deployment = render_deployment(obj, options, _upstream(obj, services), config_digest(config), notes)
        return [*([config] if config else []), deployment, render_disruption_budget(obj)]
    if isinstance(obj, Service):
        return [render_service(obj, notes)]
    if isinstance(obj, HorizontalPodAutoscaler):
        return [render_hpa(obj, notes)]
    if isinstance(obj, Rollout):  # Argo Rollouts' (argoproj.io/v1alpha1), its CRDs installed
        plain = as_deployment(obj)
        config = render_model_config(plain)
        rollout = render_rollout(obj, options, _upstream(plain, services), config_digest(config), notes)
        return [*([config] if config else []), rollout, render_disruption_budget(plain)]
    return [render_analysis_template(obj, notes)]


def _documents(
    objects: list[Sourced], options: PodOptions, notes: list[Note]
) -> list[tuple[str, dict[str, Any]]]:
    """Each document with what it was rendered from (`Deployment/mnist in deploy.yaml`)."""
    services = [s.obj for s in objects if isinstance(s.obj, Service)]
    docs = []
    for s in objects:
        origin = f"{s.obj.kind}/{s.obj.metadata.name}" + (f" in {s.source}" if s.source else "")
        docs += [(origin, doc) for doc in _object_documents(s.obj, options, services, notes)]
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


def render_kubernetes(objects: Sequence[Object | Sourced], options: PodOptions) -> Rendered:
    """Every object as Kubernetes documents, one file each, and the kustomization that lists them;
    the Prometheus Adapter values beside them (not applied: they configure an add-on). Two objects
    may render one document (a Deployment and a Rollout of one model, alternatives in a folder,
    each its model's ConfigMap): the same twice, it is written once; differently, render refuses."""
    sourced = [o if isinstance(o, Sourced) else Sourced("", o) for o in objects]
    notes: list[Note] = []
    files: dict[str, str] = {}
    origins: dict[str, str] = {}
    for origin, doc in _documents(sourced, options, notes):
        name, text = _file_name(doc), _dump(doc)
        if files.setdefault(name, text) != text:
            raise ModelportError(
                Code.INVALID_ARGUMENT,
                f"{doc['kind']}/{doc['metadata']['name']}: rendered differently from {origins[name]} "
                f"and from {origin}; render one of them",
            )
        origins.setdefault(name, origin)
    resources = list(files)
    adapter = render_adapter_values([s.obj for s in sourced if isinstance(s.obj, HorizontalPodAutoscaler)])
    if adapter is not None:
        files[ADAPTER_VALUES] = (
            "# helm install prometheus-adapter prometheus-community/prometheus-adapter -f this file\n"
            + _dump(adapter)
        )
    files[KUSTOMIZATION] = _kustomization(resources, notes)
    return Rendered(files, notes)


def load_objects_from(paths: Iterable[Path]) -> list[Sourced]:
    """The objects of each file, and of each folder's YAML files that hold modelport/v1 objects
    (modelport.spec.files: one given twice the same is kept once, differently is refused)."""
    return read_objects(paths)


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
