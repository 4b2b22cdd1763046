"""What the progressive-delivery tests share (tests/e2e/test_canary.py, test_progressive.py): the
MNIST model and versions of it changed in their last layer, the digits clients send, the objects
a Rollout test applies, and the load that records which version answered."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from onnx import numpy_helper

from support import PATIENCE, Load, Plane

# The slow version is a pickled estimator, served with --allow_pickle, which the control plane
# takes only when told to.
UNSAFE = ("--allow-unsafe-args",)
STABLE, CANARY = "1", "2"  # the model versions: their answers' X-Model-Version
# Each analysis measurement's window: long enough for 20 canary answers at 20% even when the
# machine is busy (the load's threads then answer fewer than 50 a second); one window short of
# them is let go (inconclusiveLimit 1), two are Inconclusive.
INTERVAL, INTERVAL_SECONDS = "3s", 3
# The load's digits, skewed as real traffic is (a uniform mix hides a permutation of the classes).
MIX = [0] * 5 + [1] * 3 + [2] * 2


def _mnist_version(root: Path, change: Any) -> Path:
    """The MNIST example as version 2 of a repository of its own, its last layer changed by `change`."""
    from importlib.resources import files

    from modelport.repository.layout import write_version

    source = files("modelport.examples") / "mnist"
    model = onnx.load_from_string((source / "model.onnx").read_bytes())
    for tensor in model.graph.initializer:
        if tensor.name in ("W2", "B2"):
            changed = change(numpy_helper.to_array(tensor)).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(changed, tensor.name))

    def fill(folder: Path) -> None:
        (folder / "model.yaml").write_bytes((source / "model.yaml").read_bytes())
        (folder / "model.onnx").write_bytes(model.SerializeToString())

    write_version(root / "2", fill)
    return root


def mnist_models(root: Path) -> dict[str, Path]:
    """v1 in a repository of its own, and as version 2 each: `good`, `bad`, and `missing`."""
    from modelport.examples import write_mnist_repository

    write_mnist_repository(root / "v1")
    rng = np.random.default_rng(7)
    return {
        "v1": root / "v1",
        # A little further trained, as it were: the same weights moved slightly.
        "good": _mnist_version(root / "good", lambda w: w + rng.normal(0, 0.002, w.shape)),
        # Labels shuffled: every class answered as another one (healthy, fast, wrong).
        "bad": _mnist_version(root / "bad", lambda w: np.roll(w, 5, axis=-1)),
        "missing": root / "does-not-exist",
    }


def digit_bodies() -> list[dict[str, Any]]:
    from importlib.resources import files

    samples = files("modelport.examples") / "mnist" / "samples"
    pngs = {d: (samples / f"digit-{d}.png").read_bytes() for d in set(MIX)}
    return [{"instances": [{"image_bytes": {"b64": base64.b64encode(pngs[d]).decode()}}]} for d in MIX]


def traffic(url: str, bodies: list[dict[str, Any]], model: str = "mnist") -> Load:
    """Requests from three threads through the Service, each outcome kept: the answering model
    version (its X-Model-Version), or what went wrong."""
    return Load(f"{url}/v1/models/{model}:predict", threads=3, bodies=bodies, header="X-Model-Version")


def served(outcome: str) -> bool:
    return outcome in (STABLE, CANARY)


def rollout_yaml(
    name: str,
    base: Path,
    steps: list[Any],
    deadline: int = int(20 * PATIENCE),  # a busy machine starts a replica slowly
    model: str = "mnist",
    args: tuple[str, ...] = (),
    replicas: int = 2,
    services: dict[str, str] | None = None,  # canaryService / stableService: their names
) -> str:
    docs = [
        {"apiVersion": "modelport/v1", "kind": "Rollout", "metadata": {"name": name},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "progressDeadlineSeconds": deadline,
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"model": {"name": model, "basePath": str(base)}, "args": list(args)}},
                  "strategy": {"canary": {"steps": steps, "abortScaleDownDelaySeconds": 2,
                                          **(services or {})}}}},
        {"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": {"app": name}, "ports": [{"port": 0}]}},
        {"apiVersion": "modelport/v1", "kind": "AnalysisTemplate", "metadata": {"name": f"{name}-health"},
         "spec": {"metrics": [
             {"name": "class-distance", "interval": INTERVAL, "count": 2, "failureLimit": 0,
              "inconclusiveLimit": 1, "successCondition": "result < 0.35",
              "provider": {"modelport": {"metric": "classDistance", "minSamples": 20}}},
             {"name": "error-rate", "interval": INTERVAL, "count": 2, "inconclusiveLimit": 1,
              "successCondition": "result <= 0.01",
              "provider": {"modelport": {"metric": "errorRate", "minSamples": 10}}},
         ]}},
        *({"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": other},
           "spec": {"selector": {"app": name}, "ports": [{"port": 0}]}}
          for other in (services or {}).values()),
    ]  # fmt: skip
    return yaml.safe_dump_all(docs, sort_keys=False)


def apply(plane: Plane, tmp: Path, text: str) -> None:
    path = tmp / f"objects-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    plane.cli("apply", "-f", str(path))


def status(plane: Plane, name: str) -> dict[str, Any]:
    return dict(plane.get("Rollout", name).get("status", {}))


def deployed(plane: Plane, tmp: Path, models: dict[str, Path], name: str, steps: list[Any]) -> str:
    """A Rollout of v1 and its Service, rolled out: the URL."""
    apply(plane, tmp, rollout_yaml(name, models["v1"], steps))
    plane.cli("rollout", "status", f"rollout/{name}", "--timeout", "120", timeout=150)
    return plane.service_url(name)


def moved(
    plane: Plane, tmp: Path, name: str, base: Path, steps: list[Any], deadline: int = int(20 * PATIENCE)
) -> None:
    """The Rollout's template moved to another model: a canary starts."""
    apply(plane, tmp, rollout_yaml(name, base, steps, deadline))


def blue_green_yaml(base: Path, name: str = "bg", **strategy: Any) -> str:
    docs = [
        {"apiVersion": "modelport/v1", "kind": "Rollout", "metadata": {"name": name},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                  "progressDeadlineSeconds": int(20 * PATIENCE),
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"model": {"name": "mnist", "basePath": str(base)}}},
                  "strategy": {"blueGreen": {"activeService": name, "previewService": f"{name}-preview",
                                             "autoPromotionEnabled": False, "scaleDownDelaySeconds": 2,
                                             **strategy}}}},
        *({"apiVersion": "modelport/v1", "kind": "Service", "metadata": {"name": service},
           "spec": {"selector": {"app": name}, "ports": [{"port": 0}]}}
          for service in (name, f"{name}-preview")),
    ]  # fmt: skip
    return yaml.safe_dump_all(docs, sort_keys=False)
