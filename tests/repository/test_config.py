"""--model_config_file: TF Serving's text format and YAML of the same content give the same config,
and every mistake is named with its field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.errors import ModelportError
from modelport.repository.config import (
    VersionPolicy,
    load_model_config_file,
    parse_model_config,
    single_model_config,
)

TEXT = """
# two models, as a TF Serving user writes them
model_config_list {
  config {
    name: 'mnist'
    base_path: "/models/mnist"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 3 } }
    version_labels { key: 'stable' value: 1 }
    version_labels { key: 'canary' value: 3 }
  }
  config: {
    name: "iris"
    base_path: "/models/iris"
    model_platform: "sklearn"
    model_version_policy: { latest: { num_versions: 2 } }
  }
}
"""

YAML = """
model_config_list:
  config:
    - name: mnist
      base_path: /models/mnist
      model_platform: tensorflow
      model_version_policy:
        specific:
          versions: [1, 3]
      version_labels:
        stable: 1
        canary: 3
    - name: iris
      base_path: /models/iris
      model_platform: sklearn
      model_version_policy:
        latest:
          num_versions: 2
"""


def test_text_and_yaml_of_the_same_content_are_the_same_config() -> None:
    text, yaml = parse_model_config(TEXT), parse_model_config(YAML)
    assert text == yaml
    mnist, iris = text.models
    assert (mnist.name, mnist.base_path, mnist.model_platform) == ("mnist", "/models/mnist", "tensorflow")
    assert mnist.version_policy == VersionPolicy("specific", versions=(1, 3))
    assert dict(mnist.version_labels) == {"stable": 1, "canary": 3}
    assert iris.version_policy == VersionPolicy("latest", num_versions=2)
    assert mnist.transition == "availability_preserving"


def test_the_issue_yaml_with_a_scalar_version_and_version_policy_spelling() -> None:
    config = parse_model_config(
        "model_config_list:\n"
        "  config:\n"
        "    - name: mnist\n"
        "      base_path: /tmp/tfserving/saved_model\n"
        "      model_platform: onnx\n"
        "      version_policy:\n"
        "        specific:\n"
        "          versions: 1\n"
    )
    (model,) = config.models
    assert model.version_policy == VersionPolicy("specific", versions=(1,))
    assert model.model_platform == "onnx"


def test_text_format_with_angle_brackets_commas_and_all_policy() -> None:
    config = parse_model_config(
        'model_config_list < config < name: "a", base_path: "/a", model_version_policy < all {} > > >'
    )
    assert config.models[0].version_policy == VersionPolicy("all")


def test_defaults_serve_the_latest_version() -> None:
    (model,) = single_model_config("m", "/m").models
    assert model.version_policy == VersionPolicy("latest", num_versions=1)
    assert model.version_labels == ()


def test_relative_base_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    file = tmp_path / "models.config"
    file.write_text('model_config_list { config { name: "m" base_path: "store/m" } }')
    (model,) = load_model_config_file(file).models
    assert model.base_path == str(tmp_path.resolve() / "store" / "m")


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ("model_config_list:\n  config:\n    - base_path: /a\n", "config[0].name: required"),
        (
            "model_config_list:\n  config:\n    - {name: a, base_path: /a}\n    - {name: b}\n",
            "model_config_list.config[1].base_path: required",
        ),
        (
            "model_config_list:\n  config:\n    - {name: a, base_path: /a, model_platform: torch}\n",
            "model_config_list.config[0].model_platform: 'torch' is not one of",
        ),
        (
            "model_config_list:\n  config:\n    - {name: a, base_path: /a, basepath: /b}\n",
            "model_config_list.config[0].basepath: unknown field",
        ),
        (
            "model_config_list:\n  config:\n"
            "    - {name: a, base_path: /a, model_version_policy: {latest: {num_versions: 0}}}\n",
            "model_config_list.config[0].model_version_policy.latest.num_versions: must be >= 1, got 0",
        ),
        (
            "model_config_list:\n  config:\n"
            "    - {name: a, base_path: /a, model_version_policy: {specific: {versions: [1, -2]}}}\n",
            "model_config_list.config[0].model_version_policy.specific.versions: must be positive integers",
        ),
        (
            "model_config_list:\n  config:\n"
            "    - {name: a, base_path: /a, model_version_policy: {latest: {}, all: {}}}\n",
            "config[0].model_version_policy: must have exactly one of latest, all, specific",
        ),
        (
            "model_config_list:\n  config:\n"
            "    - {name: a, base_path: /a, model_version_policy: {specific: {versions: 1}},"
            " version_labels: {stable: 2}}\n",
            "model_config_list.config[0].version_labels.stable: version 2 is not in the specific policy",
        ),
        (
            "model_config_list:\n  config:\n    - {name: a, base_path: /a, version_labels: {stable: zero}}\n",
            "model_config_list.config[0].version_labels.stable: must be a positive version number",
        ),
        (
            "model_config_list:\n  config:\n    - {name: a, base_path: /a}\n    - {name: a, base_path: /b}\n",
            "model_config_list.config[1].name: 'a' is used by another model",
        ),
        (
            "model_config_list:\n  config:\n    - {name: a, base_path: /a, transition: eager}\n",
            "model_config_list.config[0].transition: must be availability_preserving or resource_preserving",
        ),
        ("model_config_list:\n  config: []\n", "model_config_list.config: at least one model is required"),
        ("models:\n  - name: a\n", "unknown top-level keys ['models']"),
        ("model_config_list:\n  config:\n    - name: a\n      base_path: [/a\n", "not valid YAML"),
        ('model_config_list { config { name: "a" base_path: "/a" }', "models.yaml:1: expected '}'"),
        ("model_config_list {\n config { name: } }", "models.yaml:2: expected a value for 'name'"),
    ],
)
def test_mistakes_are_named_with_their_field_path(config: str, named: str) -> None:
    with pytest.raises(ModelportError) as caught:
        parse_model_config(config, "models.yaml")
    message = str(caught.value)
    assert named in message
    assert message.startswith("models.yaml")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ModelportError) as caught:
        parse_model_config(
            "model_config_list:\n  config:\n"
            "    - {name: '', base_path: /a}\n"
            "    - {name: b, model_platform: x}\n"
        )
    message = str(caught.value)
    for part in ("config[0].name: required", "config[1].base_path: required", "config[1].model_platform"):
        assert part in message


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelportError, match=r"cannot read model config .*missing\.config"):
        load_model_config_file(tmp_path / "missing.config")
