"""The manager on a fake clock, stepped by hand: no threads, no sleeps."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from modelport.errors import ModelportError
from modelport.repository.config import ModelServerConfig, single_model_config
from modelport.repository.manager import ModelManager
from modelport.repository.policy import State
from modelport.runtimes import default_runtimes
from modelport.testing.clock import FakeClock
from support import half_plus_two, mark_complete


def _version(base: Path, version: int, offset: float) -> None:
    half_plus_two(base / str(version), offset=offset)
    mark_complete(base / str(version))


def _predict(manager: ModelManager, x: float, version: int | None = None) -> float:
    servable = manager.model("half").resolve(version)
    out = servable.signature(None).run(servable.model, {"x": np.array([[x]], np.float32)})
    return float(out["y"][0, 0])


@pytest.fixture
def transitions() -> list[tuple[str, int, State]]:
    return []


def _manager(base: Path, transitions: list[tuple[str, int, State]], **kw: object) -> ModelManager:
    config = single_model_config("half", str(base))
    return ModelManager(
        config,
        default_runtimes(),
        FakeClock(),
        listener=lambda m, v, s, t: transitions.append((m, v, s)),
        **kw,
    )


def test_loads_latest_and_publishes_lifecycle(tmp_path: Path, transitions: list) -> None:
    _version(tmp_path, 1, 2.0)
    _version(tmp_path, 2, 3.0)
    manager = _manager(tmp_path, transitions)
    assert not manager.is_ready()
    manager.poll()
    assert manager.is_ready()
    assert _predict(manager, 2.0) == 4.0
    assert transitions == [("half", 2, State.LOADING), ("half", 2, State.AVAILABLE)]
    manager.poll()  # idempotent: nothing more happens
    assert len(transitions) == 2


def test_new_version_then_unload_in_order(tmp_path: Path, transitions: list) -> None:
    _version(tmp_path, 1, 2.0)
    manager = _manager(tmp_path, transitions)
    manager.poll()
    old = manager.model("half").resolve(1)
    _version(tmp_path, 2, 3.0)
    manager.poll()
    assert [(v, s) for _, v, s in transitions[2:]] == [
        (2, State.LOADING), (2, State.AVAILABLE), (1, State.UNLOADING), (1, State.END),
    ]  # fmt: skip
    assert _predict(manager, 2.0) == 4.0
    # a request that resolved version 1 before the unload still completes on it
    out = old.signature(None).run(old.model, {"x": np.array([[2.0]], np.float32)})
    assert float(out["y"][0, 0]) == 3.0
    with pytest.raises(ModelportError, match=r"Specific\(half, 1\)"):
        manager.model("half").resolve(1)


def test_labels_and_latest(tmp_path: Path, transitions: list) -> None:
    from dataclasses import replace

    from modelport.repository.config import VersionPolicy

    _version(tmp_path, 1, 2.0)
    _version(tmp_path, 2, 3.0)
    model = replace(
        single_model_config("half", str(tmp_path)).models[0],
        version_policy=VersionPolicy("all"),
        version_labels=(("stable", 1),),
    )
    manager = ModelManager(ModelServerConfig((model,)), default_runtimes(), FakeClock())
    manager.poll()
    view = manager.model("half")
    assert view.resolve().version == 2
    assert view.resolve(label="stable").version == 1
    with pytest.raises(ModelportError, match="Unrecognized servable version label: canary"):
        view.resolve(label="canary")
    with pytest.raises(ModelportError, match="cannot be supplied"):
        view.resolve(1, "stable")


def test_config_change_applies_as_a_whole(tmp_path: Path, transitions: list) -> None:
    _version(tmp_path / "a", 1, 2.0)
    manager = _manager(tmp_path / "a", transitions)
    manager.poll()
    manager.apply_config(single_model_config("other", str(tmp_path / "a")))
    manager.poll()
    assert set(manager.view) == {"other"}
    assert ("half", 1, State.END) in transitions
    with pytest.raises(ModelportError, match="Latest"):
        manager.model("half")


def test_removed_folder_unloads(tmp_path: Path, transitions: list) -> None:
    _version(tmp_path, 1, 2.0)
    manager = _manager(tmp_path, transitions)
    manager.poll()
    shutil.rmtree(tmp_path / "1")
    manager.poll()
    assert not manager.is_ready()
    assert [s.state for s in manager.model("half").statuses] == [State.END]
    manager.poll()  # a finished version whose folder is gone is forgotten
    assert manager.model("half").statuses == ()


def test_base_path_gone_keeps_serving(tmp_path: Path, transitions: list) -> None:
    base = tmp_path / "m"
    _version(base, 1, 2.0)
    manager = _manager(base, transitions)
    manager.poll()
    base.rename(tmp_path / "elsewhere")  # e.g. a network mount dropped
    manager.poll()
    assert manager.is_ready()
    assert "cannot read base path" in manager.model("half").problem


def test_unloaded_version_stays_end_across_polls(tmp_path: Path, transitions: list) -> None:
    _version(tmp_path, 1, 2.0)
    manager = _manager(tmp_path, transitions)
    manager.poll()
    _version(tmp_path, 2, 3.0)
    for _ in range(3):
        manager.poll()
    states = {s.version: s.state for s in manager.model("half").statuses}
    assert states == {2: State.AVAILABLE, 1: State.END}
    shutil.rmtree(tmp_path / "2")  # the newer one goes: the older is wanted again and reloaded
    manager.poll()
    assert {s.version: s.state for s in manager.model("half").statuses} == {2: State.END, 1: State.AVAILABLE}
    assert _predict(manager, 2.0) == 3.0
