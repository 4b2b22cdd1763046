"""The README's trust model for scikit-learn files: a `.joblib`/`.pkl` is a program, refused
unless the operator passes `--allow_pickle` (its code never runs otherwise, and a model folder
cannot grant itself the right); a `.skops` file needing types outside skops' safe set loads only
when the operator trusts them by name with `--trusted_types`."""

from __future__ import annotations

import fractions
import pathlib
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from claims_support import serve_config
from modelport.repository.config import single_model_config
from modelport.repository.manager import ModelManager, VersionStatus
from modelport.runtimes import default_runtimes
from modelport.testing.clock import FakeClock
from support import mark_complete

X = np.array([[0.0], [1.0], [2.0], [3.0]])


class _Canary:
    """Unpickling this creates the file at `path`: proof that loading ran the file's code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.path,))


def _version(base: Path, name: str, write: Any) -> Path:
    folder = base / "1"
    folder.mkdir(parents=True)
    write(folder / name)
    mark_complete(folder)
    return folder


def _load(base: Path, **trust: Any) -> tuple[ModelManager, VersionStatus]:
    manager = ModelManager(single_model_config("m", str(base)), default_runtimes(**trust), FakeClock())
    manager.poll()
    (status,) = manager.view["m"].statuses
    return manager, status


def _classifier() -> LogisticRegression:
    return LogisticRegression().fit(X, [0, 0, 1, 1])


def _predict(manager: ModelManager, x: float) -> int:
    servable = manager.model("m").resolve()
    out = servable.signature(None).run(servable.model, {"X": np.array([[x]])})
    return int(out["classes"][0])


def test_a_pickle_is_refused_without_allow_pickle_and_its_code_never_runs(tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    _version(tmp_path / "m", "model.joblib", lambda p: joblib.dump(_Canary(canary), p))
    manager, status = _load(tmp_path / "m")
    assert not manager.is_ready() and status.error_code == "PERMISSION_DENIED"
    path = tmp_path / "m" / "1" / "model.joblib"
    assert status.error_message.startswith(
        f"refusing to load pickle file {path}: unpickling runs arbitrary code"
    )
    assert not canary.exists()
    _load(tmp_path / "m", allow_pickle=True)  # the operator allows it: the file's code runs
    assert canary.exists()


def test_a_pickle_loads_and_answers_with_allow_pickle(tmp_path: Path) -> None:
    _version(tmp_path / "m", "model.pkl", lambda p: joblib.dump(_classifier(), p))
    assert _load(tmp_path / "m")[1].error_code == "PERMISSION_DENIED"
    manager, _ = _load(tmp_path / "m", allow_pickle=True)
    assert manager.is_ready() and (_predict(manager, 0.0), _predict(manager, 3.0)) == (0, 1)


def test_a_model_folder_cannot_grant_itself_pickle_loading(tmp_path: Path) -> None:
    folder = _version(tmp_path / "m", "model.joblib", lambda p: joblib.dump(_classifier(), p))
    (folder / "model.yaml").write_text("platform: sklearn\nruntime: {allow_pickle: true}\n")
    manager, status = _load(tmp_path / "m")
    assert not manager.is_ready() and status.error_code == "INVALID_ARGUMENT"
    assert status.error_message == "scikit-learn models take no runtime options: {'allow_pickle': True}"


def test_a_skops_file_needing_other_types_loads_only_when_they_are_trusted(tmp_path: Path) -> None:
    model = _classifier()
    model.note = fractions.Fraction(1, 3)  # a type outside skops' safe set
    _version(tmp_path / "m", "model.skops", lambda p: sio.dump(model, p))
    manager, status = _load(tmp_path / "m")
    assert not manager.is_ready() and status.error_code == "PERMISSION_DENIED"
    assert status.error_message == (
        f"{tmp_path / 'm' / '1' / 'model.skops'} needs types that are not trusted: ['fractions.Fraction']; "
        "trust them by name with --trusted_types if you trust the file's author"
    )
    manager, _ = _load(tmp_path / "m", trusted_types=["fractions.Fraction"])
    assert manager.is_ready() and _predict(manager, 3.0) == 1


def test_a_skops_file_of_safe_types_loads_without_trusting_anything(tmp_path: Path) -> None:
    _version(tmp_path / "m", "model.skops", lambda p: sio.dump(_classifier(), p))
    manager, _ = _load(tmp_path / "m")
    assert manager.is_ready() and _predict(manager, 0.0) == 0


def test_the_serve_flags_reach_the_runtimes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = ["--model_name", "m", "--model_base_path", str(tmp_path)]
    default = serve_config(monkeypatch, *model)
    assert (default.allow_pickle, tuple(default.trusted_types)) == (False, ())
    given = serve_config(monkeypatch, *model, "--allow_pickle", "--trusted_types", "fractions.Fraction,a.B")
    assert (given.allow_pickle, tuple(given.trusted_types)) == (True, ("fractions.Fraction", "a.B"))
