"""One trained MLP for the whole session: training is the slow step, and every test here that
needs a trained folder reads the same one. A test that changes a folder works on `mlp_copy`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelport.pipeline.train import TrainConfig, train

EPOCHS = 8


@pytest.fixture(scope="session")
def trained_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MLP on mnist5k, 8 epochs, seeds 0: read it, never change it."""
    return train(TrainConfig(epochs=EPOCHS, out=str(tmp_path_factory.mktemp("mlp") / "v")))


@pytest.fixture
def mlp_copy(trained_mlp: Path, tmp_path: Path) -> Path:
    """A copy of the trained folder this test may change."""
    return Path(shutil.copytree(trained_mlp, tmp_path / "v"))
