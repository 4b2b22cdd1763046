"""A Deployment's Pod template from our ReplicaSpec: the container that runs `modelport serve` (or
`modelport gateway`) with the probes, resources and shutdown of running locally, plus what a
cluster needs that one machine does not (a locked-down security context, spreading over nodes,
scrape annotations)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from modelport.errors import Code, ModelportError
from modelport.kube import layout
from modelport.kube.notes import Note, whole_seconds
from modelport.spec import Deployment, Probe, ReplicaSpec
from modelport.spec.quantity import quantity

Models = Literal["image", "volume"]

# Flags render sets itself; the same flag in a Deployment's `args` would fight them (a second
# --rest_api_port would move the server off the port the probes and the Service use).
_SERVE_FLAGS = ("--rest_api_port", "--port", "--grpc_port", "--host", "--port_file",
                "--model_config_file", "--model_name", "--model_base_path")  # fmt: skip
_GATEWAY_FLAGS = ("--host", "--port", "--port-file", "--service", "--model-url", "--namespace")


_CLAIM = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")  # a DNS subdomain, as Kubernetes names objects


@dataclass(frozen=True)
class PodOptions:
    image: str
    models: Models = "image"
    claim: str = "models"  # the PersistentVolumeClaim of `--models volume`
    pull_policy: str = "IfNotPresent"

    def __post_init__(self) -> None:
        if not self.image.strip() or any(c.isspace() for c in self.image):
            raise ModelportError(Code.INVALID_ARGUMENT, f"--image: an image reference, got {self.image!r}")
        if len(self.claim) > 253 or not _CLAIM.fullmatch(self.claim):
            raise ModelportError(
                Code.INVALID_ARGUMENT,
                f"--models-claim: a claim name is lowercase a-z, 0-9, '-' and '.', got {self.claim!r}",
            )


def render_pod_template(
    dep: Deployment, options: PodOptions, upstream: str | None, config_sha: str | None, notes: list[Note]
) -> dict[str, Any]:
    """The `spec.template` of the apps/v1 Deployment. `upstream` is the model URL a gateway calls
    (`http://mnist:8501`); `config_sha` the model config's digest (a new config rolls the Pods)."""
    where = f"Deployment/{dep.metadata.name}"
    replica = dep.spec.template.spec
    gateway = replica.gateway is not None
    port = layout.GATEWAY_PORT if gateway else layout.REST_PORT
    if gateway:
        assert upstream is not None
        container = _gateway_container(replica, upstream, options, where)
    else:
        container = _serve_container(replica, options, where)
    container.update(_probes(replica, where, notes))
    if replica.resources.limits or replica.resources.requests:
        container["resources"] = replica.resources.model_dump(exclude_defaults=True)
    container["securityContext"] = _container_security()
    container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(layout.PRE_STOP_SECONDS)]}}}
    container["volumeMounts"] = _mounts(gateway, options)
    return {
        "metadata": _template_meta(dep, port, config_sha, notes),
        "spec": {
            "automountServiceAccountToken": False,  # a replica never calls the Kubernetes API
            "securityContext": _pod_security(),
            "terminationGracePeriodSeconds": layout.GRACE_SECONDS,
            "topologySpreadConstraints": [_spread(dep)],
            "containers": [container],
            "volumes": _volumes(dep, gateway, options),
        },
    }


def _refuse_fixed(args: list[str], fixed: tuple[str, ...], where: str) -> None:
    clash = sorted({a.split("=", 1)[0] for a in args} & set(fixed))
    if clash:
        raise ModelportError(
            Code.INVALID_ARGUMENT,
            f"{where}: spec.template.spec.args: {', '.join(clash)} is set by render (the ports, "
            "probes and model config of the Pod depend on it); remove it from args",
        )


def _serve_container(replica: ReplicaSpec, options: PodOptions, where: str) -> dict[str, Any]:
    _refuse_fixed(replica.args, _SERVE_FLAGS, where)
    config = f"{layout.CONFIG_DIR}/{layout.CONFIG_FILE}"
    return {
        "name": "serve",
        "image": options.image,
        "imagePullPolicy": options.pull_policy,
        "command": ["modelport"],
        # Every address, said outright: the kubelet's probes and the Service reach the Pod's IP.
        # Without keys, as before keys existed: the key store is not in the image yet, and who
        # reaches a Pod is the cluster's Service type and NetworkPolicy to decide.
        "args": ["serve", "--host=0.0.0.0", "--auth=off", f"--rest_api_port={layout.REST_PORT}",
                 f"--port={layout.GRPC_PORT}", f"--model_config_file={config}",
                 *compute_workers_args(replica), *replica.args],
        "ports": [
            {"name": "http", "containerPort": layout.REST_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": layout.GRPC_PORT, "protocol": "TCP"},
        ],
    }  # fmt: skip


def compute_workers_args(replica: ReplicaSpec) -> list[str]:
    """A pod whose CPU limit is more than one CPU runs that many workers, rounded up (what
    `--workers auto` reads from the container's cgroup): limits.cpu 2 -> --workers=2, 1500m -> 2,
    500m or none -> nothing (one worker: a pod without a limit may see the node's every core, and
    each worker holds every model). A `--workers` of the template's args wins."""
    cpu = replica.resources.limits.get("cpu")
    if cpu is None or any(a.split("=", 1)[0] == "--workers" for a in replica.args):
        return []
    workers = max(1, math.ceil(quantity(cpu)))
    return [f"--workers={workers}"] if workers > 1 else []


def _gateway_container(
    replica: ReplicaSpec, upstream: str, options: PodOptions, where: str
) -> dict[str, Any]:
    _refuse_fixed(replica.args, _GATEWAY_FLAGS, where)
    front = replica.gateway
    assert front is not None
    return {
        "name": "gateway",
        "image": options.image,
        "imagePullPolicy": options.pull_policy,
        "command": ["modelport"],
        "args": ["gateway", "--host=0.0.0.0", f"--port={layout.GATEWAY_PORT}", f"--model-url={upstream}",
                 f"--model={front.model}", f"--timeout={front.timeout_seconds:g}", *replica.args],
        "ports": [{"name": "http", "containerPort": layout.GATEWAY_PORT, "protocol": "TCP"}],
    }  # fmt: skip


def _probe(probe: Probe, field: str, where: str, notes: list[Note], liveness: bool) -> dict[str, Any]:
    success = probe.success_threshold
    if liveness and success != 1:
        why = f"{success} cannot be carried: Kubernetes requires 1 for a liveness probe"
        notes.append(Note(where, f"{field}.successThreshold", why))
        success = 1

    def seconds(value: float, minimum: int, name: str) -> int:
        return whole_seconds(value, minimum, where, f"{field}.{name}", notes)

    return {
        "httpGet": {"path": probe.path, "port": "http"},
        "initialDelaySeconds": seconds(probe.initial_delay_seconds, 0, "initialDelaySeconds"),
        "periodSeconds": seconds(probe.period_seconds, 1, "periodSeconds"),
        "timeoutSeconds": seconds(probe.timeout_seconds, 1, "timeoutSeconds"),
        "successThreshold": success,
        "failureThreshold": probe.failure_threshold,
    }


def _probes(replica: ReplicaSpec, where: str, notes: list[Note]) -> dict[str, Any]:
    """Readiness is /readyz: 200 only once every model is AVAILABLE, so a Pod joins the Service
    (and a rollout moves on) only when it can answer; liveness is /healthz, the process itself."""
    base = "spec.template.spec"
    return {
        "readinessProbe": _probe(replica.readiness_probe, f"{base}.readinessProbe", where, notes, False),
        "livenessProbe": _probe(replica.liveness_probe, f"{base}.livenessProbe", where, notes, True),
    }


def _template_meta(dep: Deployment, port: int, config_sha: str | None, notes: list[Note]) -> dict[str, Any]:
    meta = dep.spec.template.metadata
    where = f"Deployment/{dep.metadata.name}"
    for key in sorted(set(meta) - {"labels", "annotations"}):
        why = "left out: a Pod template carries only labels and annotations"
        notes.append(Note(where, f"spec.template.metadata.{key}", why))
    annotations = {
        **(meta.get("annotations") or {}),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    if config_sha is not None:
        annotations[layout.CONFIG_SHA_ANNOTATION] = config_sha
    return {"labels": dict(meta.get("labels") or {}), "annotations": annotations}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security() -> dict[str, Any]:
    uid = layout.RUN_AS_USER
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _spread(dep: Deployment) -> dict[str, Any]:
    """Replicas over nodes, at most one apart; ScheduleAnyway, so a one-node cluster still runs
    them all (DoNotSchedule would leave replicas Pending there)."""
    return {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": dict(dep.spec.selector.match_labels)},
    }


def _mounts(gateway: bool, options: PodOptions) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": f"scratch-{i}", "mountPath": p} for i, p in enumerate(layout.WRITABLE_PATHS)
    ]
    if not gateway:
        mounts.append({"name": "model-config", "mountPath": layout.CONFIG_DIR, "readOnly": True})
        if options.models == "volume":
            mounts.append({"name": "models", "mountPath": layout.MODELS_DIR, "readOnly": True})
    return mounts


def _volumes(dep: Deployment, gateway: bool, options: PodOptions) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": f"scratch-{i}", "emptyDir": {"sizeLimit": layout.SCRATCH_LIMIT}}
        for i in range(len(layout.WRITABLE_PATHS))
    ]
    if not gateway:
        volumes.append({"name": "model-config", "configMap": {"name": config_map_name(dep)}})
        if options.models == "volume":
            volumes.append(
                {"name": "models", "persistentVolumeClaim": {"claimName": options.claim, "readOnly": True}}
            )
    return volumes


def config_map_name(dep: Deployment) -> str:
    return f"{dep.metadata.name}-model-config"
