"""The registry: numbering under concurrent publishers, gates, checksums, compatibility, labels,
update policies, and a real model server following what the registry says to serve."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from modelport.errors import ModelportError
from modelport.examples import write_mnist_repository
from modelport.registry import Registry
from support import half_plus_two, running


@pytest.fixture(scope="module")
def mnist_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_mnist_repository(tmp_path_factory.mktemp("example") / "mnist")
    (folder / "_COMPLETE").unlink()
    return folder


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry.open(tmp_path / "home")


def _served(registry: Registry, name: str) -> list[str]:
    repository = Path(registry.model(name).repository)
    return sorted(p.name for p in repository.iterdir())


def test_publish_records_everything_and_writes_the_served_version(
    registry: Registry, mnist_version: Path
) -> None:
    first = registry.publish(
        "mnist", mnist_version, metrics={"accuracy": 0.96}, environment={"python": "3.11"}
    )
    second = registry.publish("mnist", mnist_version, metrics={"accuracy": 0.97}, parent=1)
    assert (first.version, second.version) == (1, 2)
    assert second.parent == 1 and second.metrics == {"accuracy": 0.97}
    assert set(second.files) >= {"model.onnx", "model.yaml"} and len(second.sha256) == 64
    assert second.signature["serving_default"]["inputs"] == {"image_bytes": ["string", [-1]]}
    assert registry.version("mnist", 1).environment == {"python": "3.11"}
    assert _served(registry, "mnist") == ["2"]  # follows latest by default
    manifest = json.loads((Path(registry.model("mnist").repository) / "2" / "_COMPLETE").read_text())
    assert manifest["files"]["model.onnx"] == second.files["model.onnx"]


def test_gates_refuse_and_say_why(registry: Registry, mnist_version: Path) -> None:
    with pytest.raises(ModelportError, match=r"refused by the gate: accuracy = 0.96, the gate wants >= 0.98"):
        registry.publish("mnist", mnist_version, metrics={"accuracy": 0.96}, gates={"accuracy": ">= 0.98"})
    with pytest.raises(ModelportError, match="f1 is not among the metrics"):
        registry.publish("mnist", mnist_version, metrics={"accuracy": 0.99}, gates={"f1": ">= 0.9"})
    with pytest.raises(ModelportError, match="is not a comparison"):
        registry.publish("mnist", mnist_version, metrics={"accuracy": 0.99}, gates={"accuracy": "high"})
    assert registry.store.model("mnist") is None  # nothing half-made


def test_files_changed_after_evaluation_are_refused(
    registry: Registry, mnist_version: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "candidate"
    shutil.copytree(mnist_version, folder)
    from modelport.registry import manifest, manifest_sha256

    evaluated = manifest_sha256(manifest(folder))
    (folder / "model.yaml").write_text((folder / "model.yaml").read_text() + "\n# edited\n")
    with pytest.raises(ModelportError, match="the files changed after they were evaluated"):
        registry.publish("mnist", folder, expected_sha256=evaluated)


def test_a_breaking_signature_needs_allow_breaking(
    registry: Registry, mnist_version: Path, tmp_path: Path
) -> None:
    registry.publish("mnist", mnist_version)
    other = half_plus_two(tmp_path / "half").parent
    with pytest.raises(
        ModelportError, match=r"would break clients of version 1: .*input 'image_bytes' is gone"
    ):
        registry.publish("mnist", other)
    assert registry.publish("mnist", other, allow_breaking=True).version == 2


def test_labels_policies_deprecation_and_guarded_delete(registry: Registry, mnist_version: Path) -> None:
    for _ in range(3):
        registry.publish("mnist", mnist_version)
    registry.label("mnist", "production", 2)
    registry.set_policy("mnist", {"follow": "label", "label": "production"})
    assert _served(registry, "mnist") == ["2"]
    registry.label("mnist", "production", 1)  # a rollback is moving the label
    assert _served(registry, "mnist") == ["1"]
    with pytest.raises(ModelportError, match="version 1 of 'mnist' is not deleted: it is being served"):
        registry.delete("mnist", 1)
    registry.set_policy("mnist", {"follow": "latest"})
    assert _served(registry, "mnist") == ["3"]
    registry.deprecate("mnist", 3)
    assert _served(registry, "mnist") == ["2"]  # latest *active*
    with pytest.raises(ModelportError, match=r"labels \['production'\] point at it"):
        registry.delete("mnist", 1)
    registry.delete("mnist", 1, force=True)
    assert [v.version for v in registry.versions("mnist")] == [2, 3]
    assert registry.publish("mnist", mnist_version).version == 4  # numbers are never reused
    registry.set_policy("mnist", {"pin": 2})
    assert _served(registry, "mnist") == ["2"]
    with pytest.raises(ModelportError, match="has no version 9"):
        registry.set_policy("mnist", {"pin": 9})


def _publish_many(home: str, folder: str, count: int, start: Any) -> list[int]:
    registry = Registry.open(Path(home))
    start.wait(30)  # both processes have the registry open, then publish together
    return [registry.publish("mnist", Path(folder)).version for _ in range(count)]


def test_two_publishers_at_once_get_distinct_numbers(tmp_path: Path, mnist_version: Path) -> None:
    Registry.open(tmp_path / "home")
    with multiprocessing.Manager() as manager, ProcessPoolExecutor(2) as pool:
        start = manager.Barrier(2)
        home, folder = str(tmp_path / "home"), str(mnist_version)
        runs = list(pool.map(_publish_many, [home] * 2, [folder] * 2, [4, 4], [start, start]))
    numbers = sorted(n for run in runs for n in run)
    assert numbers == list(range(1, 9))
    assert [v.version for v in Registry.open(tmp_path / "home").versions("mnist")] == numbers


def test_a_model_server_follows_the_production_label(tmp_path: Path, mnist_version: Path) -> None:
    registry = Registry.open(tmp_path / "home")
    registry.publish("mnist", mnist_version)
    registry.publish("mnist", mnist_version)
    repository = Path(registry.model("mnist").repository)
    args = [
        "--model_name",
        "mnist",
        "--model_base_path",
        str(repository),
        "--file_system_poll_wait_seconds",
        "0.1",
    ]
    with running(args, tmp_path) as server:
        server.wait_ready()
        server.wait_until(lambda: server.versions("mnist") == {2: "AVAILABLE"}, what="version 2 served")
        registry.label("mnist", "production", 1)
        registry.set_policy("mnist", {"follow": "label", "label": "production"})
        server.wait_until(
            lambda: server.versions("mnist").get(1) == "AVAILABLE",
            what="version 1 served after the label moved",
        )
        server.wait_until(lambda: server.versions("mnist").get(2) in (None, "END"), what="version 2 unloaded")
        body = json.loads((mnist_version.parent / "samples" / "request.json").read_text())
        assert server.post("/v1/models/mnist:predict", body).json()["predictions"][0]["classes"] == 7
