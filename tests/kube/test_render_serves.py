"""The rendered model-server container, run as a real process: its arguments and its ConfigMap
serve the model, and its readiness probe answers 200 only once the model is AVAILABLE (before the
model's folder holds a version, the Pod would stay out of its Service).

The cluster's paths (/models, /etc/modelport) become folders of the test; the ports become free
ones (the Pod's 8501 and 8500 may be taken here); everything else is the rendered container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelport.examples import write_mnist_repository
from modelport.kube import layout
from modelport.kube.pods import PodOptions
from modelport.kube.render import load_objects_from, render_kubernetes
from support import running

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"


def _rendered() -> tuple[dict[str, Any], str]:
    files = render_kubernetes(
        load_objects_from([EXAMPLE / "deploy.yaml", EXAMPLE / "hpa.yaml"]), PodOptions("mnist:1")
    ).files
    dep = yaml.safe_load(files["deployment-mnist.yaml"])
    config = yaml.safe_load(files["configmap-mnist-model-config.yaml"])["data"][layout.CONFIG_FILE]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return container, config


def test_the_rendered_container_serves_the_model_once_it_is_available(tmp_path: Path) -> None:
    container, config = _rendered()
    models, etc = tmp_path / "models", tmp_path / "etc"
    (models / "mnist").mkdir(parents=True)
    etc.mkdir()
    (etc / layout.CONFIG_FILE).write_text(config.replace(layout.MODELS_DIR, str(models)))
    assert container["command"] == ["modelport"] and container["args"][0] == "serve"
    fixed = (f"--rest_api_port={layout.REST_PORT}", f"--port={layout.GRPC_PORT}")
    args = [a.replace(layout.CONFIG_DIR, str(etc)) for a in container["args"][1:] if a not in fixed]
    ready, live = (
        container["readinessProbe"]["httpGet"]["path"],
        container["livenessProbe"]["httpGet"]["path"],
    )
    with running(args, tmp_path) as server:
        server.wait_until(lambda: server.get(live).status_code == 200, what="liveness")
        assert server.get(ready).status_code == 503  # no version yet: not ready, still alive
        write_mnist_repository(models / "mnist")
        server.wait_ready()
        answer = server.get("/v1/models/mnist").json()
        assert answer["model_version_status"][0]["state"] == "AVAILABLE"
