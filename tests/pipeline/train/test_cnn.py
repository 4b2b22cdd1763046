"""The PyTorch CNN on a small subset: it trains, its ONNX export agrees with PyTorch, the folder
serves, and continued training starts from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelport.pipeline.data import load_dataset
from modelport.pipeline.train import TrainConfig, train


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory) -> str:
    data = load_dataset("mnist5k")
    keep = np.concatenate([np.flatnonzero(data.labels == d)[:60] for d in range(10)])
    path = tmp_path_factory.mktemp("d") / "small.npz"
    np.savez(path, images=data.images[keep], labels=data.labels[keep])
    return f"npz:{path}"


def test_cnn_trains_exports_and_continues(subset: str, tmp_path: Path) -> None:
    first = train(TrainConfig(data=subset, model="cnn", epochs=3, batch_size=32, out=str(tmp_path / "a")))
    assert {p.name for p in first.iterdir()} == {"model.onnx", "model.yaml", "training.json", "checkpoint.pt"}
    record = json.loads((first / "training.json").read_text())
    assert record["export_check"]["same_class"] == 1.0
    assert record["export_check"]["max_abs_logit_difference"] < 1e-3
    assert record["history"][-1]["train_accuracy"] > record["history"][0]["train_accuracy"]
    assert record["environment"]["packages"]["torch"].startswith("2.")
    config = {"data": subset, "model": "cnn", "epochs": 1, "batch_size": 32, "out": str(tmp_path / "b"),
              "from": str(first), "parent_version": 1}  # fmt: skip
    child = json.loads((train(TrainConfig.model_validate(config)) / "training.json").read_text())
    assert child["parent"] == {"folder": str(first), "version": 1}
    assert child["history"][0]["val_accuracy"] >= record["history"][-1]["val_accuracy"] - 0.1
