"""The Dockerfile `modelport build` writes, as text: what the image holds and how it runs (the
image contract render relies on, kube/layout.py). Built for real in tests/kube/test_build_image.py."""

from __future__ import annotations

import json
import re

import yaml

from modelport.kube import layout
from modelport.kube.dockerfile import ImageModel, ImageSpec, render_dockerfile, render_image_config
from modelport.repository.config import parse_model_config

WHEEL = "modelport-0.1.0-py3-none-any.whl"
MNIST = ImageModel("mnist", (3,), ("ab" * 32,))
FASHION = ImageModel("fashion", (1, 2), ("cd" * 32, "ef" * 32))


def _instructions(text: str) -> list[str]:
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line and not line.startswith("#")]


def _labels(text: str) -> dict[str, str]:
    (line,) = [i for i in _instructions(text) if i.startswith("LABEL ")]
    return {k: json.loads(v) for k, v in re.findall(r'(\S+)=("(?:[^"\\]|\\.)*")', line)}


def test_the_image_runs_modelport_serve_as_a_non_root_user_on_tf_servings_ports() -> None:
    text = render_dockerfile(ImageSpec("0.1.0", WHEEL, (MNIST,)))
    lines = _instructions(text)
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM "))]
    assert final == "FROM python:3.11-slim"  # the official image, by default
    assert f"USER {layout.RUN_AS_USER}:{layout.RUN_AS_USER}" in lines
    assert "EXPOSE 8500 8501" in lines
    assert 'ENTRYPOINT ["modelport"]' in lines
    cmd = json.loads(next(line for line in lines if line.startswith("CMD "))[4:])
    assert cmd == ["serve", "--host=0.0.0.0", "--auth=off", "--rest_api_port=8501", "--port=8500",
                   "--model_config_file=/etc/modelport/models.yaml"]  # fmt: skip
    assert 'VOLUME ["/tmp"]' in lines  # the one writable path: a read-only root file system works
    assert any(line.startswith("HEALTHCHECK ") and "/healthz" in line for line in lines)


def test_the_models_are_verified_in_a_stage_of_their_own_and_only_they_reach_the_image() -> None:
    lines = _instructions(render_dockerfile(ImageSpec("0.1.0", WHEEL, (MNIST,))))
    assert [line for line in lines if line.startswith("FROM ")] == [
        "FROM python:3.11-slim AS install", "FROM install AS models", "FROM python:3.11-slim"]  # fmt: skip
    assert '"-m", "modelport.kube.verify", "/models"]' in lines[lines.index("COPY models/ /models/") + 1]
    assert "COPY --from=models /models /models" in lines
    assert "COPY --from=install /opt/modelport /opt/modelport" in lines
    final = lines[lines.index("FROM python:3.11-slim") :]
    assert not any("/wheels" in line or "/dist" in line for line in final)


def test_offline_installs_from_the_context_wheels_alone() -> None:
    offline = _instructions(render_dockerfile(ImageSpec("0.1.0", WHEEL, (MNIST,), offline=True)))
    online = _instructions(render_dockerfile(ImageSpec("0.1.0", WHEEL, (MNIST,), offline=False)))
    deps = "--find-links /wheels --requirement /wheels/requirements.txt"
    assert f"--no-index {deps}" in " ".join(offline)
    assert f"--no-index {deps}" not in " ".join(online) and deps in " ".join(online)


def test_modelport_goes_in_after_its_dependencies_in_a_layer_of_its_own() -> None:
    """A new modelport (a code change) rebuilds one small layer, not every dependency."""
    lines = _instructions(render_dockerfile(ImageSpec("0.1.0", WHEEL, (MNIST,))))
    deps = next(i for i, line in enumerate(lines) if "--requirement /wheels/requirements.txt" in line)
    assert lines[deps + 1] == f"COPY dist/{WHEEL} /dist/"
    assert lines[deps + 2].endswith(f"--no-index --no-deps /dist/{WHEEL}")


def test_labels_name_the_model_version_checksum_commit_and_modelport_version() -> None:
    labels = _labels(render_dockerfile(ImageSpec("0.1.0", WHEEL, (MNIST,), source_commit="1f2e3d")))
    assert labels["modelport.model.name"] == "mnist"
    assert labels["modelport.model.version"] == "3"
    assert labels["modelport.model.sha256"] == "ab" * 32
    assert labels["modelport.version"] == "0.1.0"
    assert labels["org.opencontainers.image.revision"] == "1f2e3d"
    assert labels["org.opencontainers.image.title"] == "mnist"
    several = _labels(render_dockerfile(ImageSpec("0.1.0", WHEEL, (MNIST, FASHION))))
    assert several["modelport.model.name"] == "mnist,fashion"
    assert several["modelport.model.version"] == "3,1 2"
    assert several["modelport.model.sha256"] == f"{'ab' * 32},{'cd' * 32} {'ef' * 32}"


def test_no_model_copies_no_model_and_has_no_models_stage() -> None:
    text = render_dockerfile(ImageSpec("0.1.0", WHEEL, (MNIST,), bake_models=False))
    lines = _instructions(text)
    assert "FROM install AS models" not in lines and "COPY --from=models /models /models" not in lines
    assert "COPY models.yaml /etc/modelport/models.yaml" in lines  # the names, served from /models
    labels = _labels(text)
    assert labels["modelport.model.name"] == "mnist" and "modelport.model.sha256" not in labels
    bare = _instructions(render_dockerfile(ImageSpec("0.1.0", WHEEL, bake_models=False)))
    assert not any(line.startswith("COPY models") for line in bare)  # the config is mounted too


def test_the_base_image_is_the_one_given() -> None:
    lines = _instructions(render_dockerfile(ImageSpec("0.1.0", WHEEL, (MNIST,), base_image="local/py:1")))
    assert [line for line in lines if line.startswith("FROM ") and "install" not in line[5:12]] == [
        "FROM local/py:1 AS install", "FROM local/py:1"]  # fmt: skip


def test_the_image_config_serves_each_model_from_models_and_keeps_its_policy_and_labels() -> None:
    text = render_image_config((
        {"name": "mnist", "base_path": "/somewhere/mnist", "version_labels": {"production": 3}},
        {"name": "fashion", "base_path": "x", "model_version_policy": {"all": {}}},
    ))  # fmt: skip
    config = parse_model_config(text, "models.yaml")
    assert [(m.name, m.base_path, m.version_policy.kind) for m in config.models] == [
        ("mnist", "/models/mnist", "latest"), ("fashion", "/models/fashion", "all")]  # fmt: skip
    assert config.models[0].version_labels == (("production", 3),)
    assert yaml.safe_load(text)["model_config_list"]["config"][0]["base_path"] == "/models/mnist"
