"""The Dockerfile of a model server image, from options: pure text, no I/O.

Three stages, so that nothing the build needs ends up in the image:

    install  the base image + a virtual environment /opt/modelport with modelport and its
             dependencies, installed from the wheels in the context (`--no-index` when the
             context holds them all: the build needs no package index, nor any network)
    models   (with baked models) the model versions copied to /models and their `_COMPLETE`
             checksums verified by modelport itself: a tampered file fails the build
    final    the base image + the environment + the models + the model config; a non-root
             user (layout.RUN_AS_USER); /tmp the one writable path (a VOLUME, so a read-only
             root file system works: `docker run --read-only`); REST and gRPC ports exposed;
             a HEALTHCHECK on the server's own /healthz (Docker uses it; Kubernetes ignores it
             and uses the rendered probes); OCI labels saying what the image holds.

The image meets layout.py's contract with `render`: `modelport` on the PATH, the models under
/models/<model>/<version>/, the model config at /etc/modelport/models.yaml (a rendered ConfigMap
mounts over it), `sleep` from the base image."""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from modelport.kube import layout

DEFAULT_BASE_IMAGE = "python:3.11-slim"
VENV = "/opt/modelport"
WHEELS_DIR = "wheels"  # in the context: the dependencies' wheels (if any) and requirements.txt
DIST_DIR = "dist"  # in the context: modelport's own wheel
MODELS_DIR = "models"  # in the context: <model>/<version>/ as in the image
CONFIG_NAME = "models.yaml"  # in the context
CONFIG_PATH = f"{layout.CONFIG_DIR}/{layout.CONFIG_FILE}"
USER_NAME = "modelport"


@dataclass(frozen=True)
class ImageModel:
    """One model of the image: its name, the versions the image holds (none with --no-model) and
    each version's sha256 (of its `_COMPLETE` manifest, as the registry records it)."""

    name: str
    versions: tuple[int, ...] = ()
    sha256: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageSpec:
    modelport_version: str
    modelport_wheel: str  # the file name of modelport's own wheel in the context's dist/
    models: tuple[ImageModel, ...] = ()
    base_image: str = DEFAULT_BASE_IMAGE
    bake_models: bool = True  # False: --no-model (the models come from a volume at /models)
    offline: bool = True  # every wheel is in the context: pip install --no-index
    source_commit: str | None = None
    healthcheck: bool = True


def render_labels(spec: ImageSpec) -> dict[str, str]:
    """OCI annotations plus ours. With several models, each modelport.model.* label lists them
    comma-separated in the same order; a model's several versions are separated by spaces:
    `name=mnist,fashion version=3,1 2`."""
    names = ",".join(m.name for m in spec.models)
    what = f"modelport model server: {names}" if names else "modelport model server"
    labels = {
        "org.opencontainers.image.title": names or "modelport",
        "org.opencontainers.image.description": what
        + ("" if spec.bake_models else " (models mounted at /models)"),
        "org.opencontainers.image.base.name": spec.base_image,
        "modelport.version": spec.modelport_version,
    }
    if spec.source_commit:
        labels["org.opencontainers.image.revision"] = spec.source_commit
    if spec.models:
        labels["modelport.model.name"] = names
    if spec.bake_models and spec.models:
        labels["modelport.model.version"] = ",".join(" ".join(map(str, m.versions)) for m in spec.models)
        labels["modelport.model.sha256"] = ",".join(" ".join(m.sha256) for m in spec.models)
    labels["modelport.writable-paths"] = " ".join(layout.WRITABLE_PATHS)
    return labels


def _install_stage(spec: ImageSpec) -> list[str]:
    """The dependencies first, in a layer of their own (from wheels/requirements.txt), then
    modelport alone: a new modelport (a code change) rebuilds only its own small layer."""
    index = "--no-index " if spec.offline else ""
    pip = f"{VENV}/bin/pip install --no-cache-dir --disable-pip-version-check"
    where = " only (no package index, no network)" if spec.offline else " and the package index"
    return [
        f"FROM {spec.base_image} AS install",
        f"# modelport's dependencies, from the context's wheels{where}.",
        f"COPY {WHEELS_DIR}/ /wheels/",
        f"RUN python3 -m venv {VENV} \\",
        f"    && {pip} {index}\\",
        "       --find-links /wheels --requirement /wheels/requirements.txt",
        "# modelport, at the exact version that wrote this file.",
        f"COPY {DIST_DIR}/{spec.modelport_wheel} /dist/",
        f"RUN {pip} --no-index --no-deps /dist/{spec.modelport_wheel}",
    ]


def _models_stage(spec: ImageSpec) -> list[str]:
    return [
        "FROM install AS models",
        "# The model versions with their _COMPLETE manifests; a file whose sha256 differs fails here.",
        f"COPY {MODELS_DIR}/ {layout.MODELS_DIR}/",
        f'RUN ["{VENV}/bin/python", "-m", "modelport.kube.verify", "{layout.MODELS_DIR}"]',
    ]


def _final_stage(spec: ImageSpec) -> list[str]:
    uid = layout.RUN_AS_USER
    labels = render_labels(spec)
    lines = [
        f"FROM {spec.base_image}",
        "LABEL " + " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()),
    ]
    lines += [
        f"RUN groupadd --gid {uid} {USER_NAME} \\",
        f"    && useradd --no-log-init --uid {uid} --gid {uid} --home-dir /tmp --no-create-home \\",
        f"       --shell /usr/sbin/nologin {USER_NAME}",
        f"COPY --from=install {VENV} {VENV}",
    ]
    if spec.bake_models and spec.models:
        lines.append(f"COPY --from=models {layout.MODELS_DIR} {layout.MODELS_DIR}")
    if spec.models:
        lines.append(f"COPY {CONFIG_NAME} {CONFIG_PATH}")
    writable = ", ".join(json.dumps(p) for p in layout.WRITABLE_PATHS)
    serve = [
        "serve", "--host=0.0.0.0", "--auth=off", f"--rest_api_port={layout.REST_PORT}",
        f"--port={layout.GRPC_PORT}", f"--model_config_file={CONFIG_PATH}",
    ]  # fmt: skip
    lines += [
        # No .pyc written next to the code (the root file system may be read-only); logs unbuffered.
        f"ENV PATH={VENV}/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \\",
        "    HOME=/tmp MODELPORT_HOME=/tmp/modelport",
        "# The one path the server writes; everything else may be read-only (docker run --read-only).",
        f"VOLUME [{writable}]",
        f"USER {uid}:{uid}",
        "WORKDIR /tmp",
        f"EXPOSE {layout.GRPC_PORT} {layout.REST_PORT}",
    ]
    if spec.healthcheck:
        url = f"http://127.0.0.1:{layout.REST_PORT}/healthz"
        probe = f"import urllib.request; urllib.request.urlopen('{url}', timeout=2)"
        lines.append(
            "HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\\n"
            f"    CMD {json.dumps(['python3', '-c', probe])}"
        )
    lines += ['ENTRYPOINT ["modelport"]', f"CMD {json.dumps(serve)}"]
    return lines


def render_dockerfile(spec: ImageSpec) -> str:
    """The Dockerfile text (stages in the module docstring)."""
    head = [
        f"# Made by `modelport build` (modelport {spec.modelport_version}).",
        "# Build it with: docker build -t IMAGE .   (podman build / buildah bud work too)",
    ]
    stages = [_install_stage(spec)]
    if spec.bake_models and spec.models:
        stages.append(_models_stage(spec))
    stages.append(_final_stage(spec))
    return "\n\n".join("\n".join(stage) for stage in [head, *stages]) + "\n"


def render_image_config(models: tuple[dict[str, object], ...]) -> str:
    """The image's model config (TF Serving's model_config_list as YAML): each model's entries,
    its base_path set to /models/<name>."""
    config = [{**m, "base_path": f"{layout.MODELS_DIR}/{m['name']}"} for m in models]
    return yaml.safe_dump({"model_config_list": {"config": config}}, sort_keys=False)


def render_dockerignore() -> str:
    return "# The context holds only what the Dockerfile copies.\n**/__pycache__\n"
