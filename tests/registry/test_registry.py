"""The registry: numbering under concurrent publishers, gates, checksums, compatibility, labels,
update policies, and a real model server following what the registry says to serve."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from modelport.errors import ModelportError
from modelport.examples import write_mnist_repository
from modelport.registry import Registry
from modelport.registry.registry import signature_of
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


def test_registry_url_with_a_version_number_holds_that_version_only(
    registry: Registry, mnist_version: Path
) -> None:
    """registry://mnist@1 (what a pipeline's release points a Deployment at): version 1 stays
    while newer versions are published and labels move, and a version that is not there is refused."""
    registry.publish("mnist", mnist_version)
    pinned = registry.subscribe("mnist", "1")
    registry.publish("mnist", mnist_version)
    registry.label("mnist", "production", 2)
    assert sorted(p.name for p in pinned.iterdir()) == ["1"]
    with pytest.raises(ModelportError, match="has no version 7"):
        registry.subscribe("mnist", "7")


def test_a_folder_of_unicode_digits_in_the_served_repository_is_left_alone(
    registry: Registry, mnist_version: Path
) -> None:
    """A folder named "²" passed str.isdigit(), then int() refused it: every publish or label move
    raised a ValueError."""
    registry.publish("mnist", mnist_version)
    (Path(registry.model("mnist").repository) / "²").mkdir()
    registry.publish("mnist", mnist_version)
    assert _served(registry, "mnist") == ["2", "²"]


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


class _AnotherPublisherCutsIn:
    """The registry's store, but the first version added waits until another publisher (a
    thread with its own connection) has published one whole version: the race two `registry
    publish` commands at the same moment can run into, made certain."""

    def __init__(self, store: Any, other: Any) -> None:
        self._store, self._other, self._cut_in = store, other, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def add_version(self, *args: Any, **kwargs: Any) -> Any:
        if not self._cut_in:
            self._cut_in = True
            with ThreadPoolExecutor(1) as other:
                other.submit(self._other).result()
        return self._store.add_version(*args, **kwargs)


def test_a_version_published_meanwhile_is_the_one_compatibility_is_checked_against(
    tmp_path: Path, mnist_version: Path
) -> None:
    """Publisher B checks mnist against version 1 and is about to add it; meanwhile publisher A
    publishes a breaking version 2 (allowed). B's version would break version 2's clients: refused,
    not slipped in as 3 on the strength of a check against a state that is gone."""
    home = tmp_path / "home"
    registry = Registry.open(home)
    registry.publish("mnist", mnist_version)
    other = half_plus_two(tmp_path / "half").parent
    a = Registry.open(home)
    cut_in = _AnotherPublisherCutsIn(registry.store, lambda: a.publish("mnist", other, allow_breaking=True))
    b = Registry(cut_in, home)
    with pytest.raises(ModelportError, match=r"would break clients of version 2: .*input 'x' is gone"):
        b.publish("mnist", mnist_version)
    assert [(v.version, v.state) for v in registry.versions("mnist")] == [(1, "active"), (2, "active")]
    assert _served(registry, "mnist") == ["2"]


def test_a_version_left_pending_by_a_publish_that_died_is_named_with_its_remedy(
    tmp_path: Path, mnist_version: Path
) -> None:
    """A publisher killed while copying leaves its version pending. It counts as the version
    before the next one (it may be one being published right now), and the refusal says what it
    is and how to remove it; removed, the next publish is checked against the last active one."""
    registry = Registry.open(tmp_path / "home")
    registry.publish("mnist", mnist_version)
    other = half_plus_two(tmp_path / "half").parent
    # what a publish of `other` writes before it copies the files, and all it wrote before it died
    died = replace(registry.version("mnist", 1), version=0, signature=signature_of(other), state="pending")
    Registry.open(tmp_path / "home").store.add_version(died)
    with pytest.raises(ModelportError) as refused:
        registry.publish("mnist", mnist_version)
    assert "would break clients of version 2: " in refused.value.message
    assert refused.value.message.endswith(
        "(version 2 is still pending: being published now, or left by a publish that did not finish, "
        "which `registry delete mnist 2` removes)"
    )
    registry.delete("mnist", 2)
    assert registry.publish("mnist", mnist_version).version == 3


def test_a_published_version_is_on_disk_before_it_is_visible(tmp_path: Path, mnist_version: Path) -> None:
    """Every file and folder of a new version is fsynced before the rename that makes it visible
    (to the registry's artifacts and to a watching server), and the rename is fsynced after: a
    power cut leaves no torn version. Read from the system calls of a real `registry publish`."""
    trace = tmp_path / "strace.txt"
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path / "home")}
    subprocess.run(
        ["strace", "-f", "-y", "-qq", "-e", "trace=fsync,rename", "-o", str(trace),
         sys.executable, "-m", "modelport", "registry", "publish", "mnist", str(mnist_version)],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    calls = [line.split(None, 1)[1] for line in trace.read_text().splitlines() if " = 0" in line]
    renames = [i for i, call in enumerate(calls) if call.startswith("rename(") and ".partial-" in call]
    assert len(renames) == 2, calls  # into artifacts/mnist/1, then into repository/mnist/1
    start = 0
    for rename in renames:
        partial = re.search(r'rename\("([^"]+)", "([^"]+)"\)', calls[rename])
        assert partial is not None
        source, target = Path(partial[1]), Path(partial[2])
        synced = {m[1] for call in calls[start:rename] if (m := re.match(r"fsync\(\d+<([^>]+)>\)", call))}
        wanted = {str(source / name) for name in ["", "_COMPLETE", *_names(mnist_version)]}
        assert wanted <= synced, f"not fsynced before {target} appeared: {sorted(wanted - synced)}"
        after = calls[rename + 1 : rename + 2]
        assert after and after[0].startswith("fsync(") and f"<{target.parent}>" in after[0], after
        start = rename + 1


def _names(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*")]
