"""The PyTorch CNN on a small subset: it trains, its ONNX export gives PyTorch's own logits (the
network rebuilt here from its checkpoint), `evaluate` checks the file against them, and continued
training starts from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelport.pipeline.data import load_dataset
from modelport.pipeline.evaluate import evaluate
from modelport.pipeline.train import TrainConfig, pixels, train
from modelport.pipeline.train.cnn import _network


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory) -> str:
    data = load_dataset("mnist5k")
    keep = np.concatenate([np.flatnonzero(data.labels == d)[:60] for d in range(10)])
    path = tmp_path_factory.mktemp("d") / "small.npz"
    np.savez(path, images=data.images[keep], labels=data.labels[keep])
    return f"npz:{path}"


def _pytorch_logits(folder: Path, images: np.ndarray, hidden: int) -> np.ndarray:
    """The trained network itself, rebuilt from checkpoint.pt, on uint8 images [N, 28, 28]."""
    import torch

    net = _network(28, 28, 10, hidden)
    net.load_state_dict(torch.load(folder / "checkpoint.pt", weights_only=True))
    net.eval()
    with torch.no_grad():
        logits: np.ndarray = net(torch.from_numpy(pixels(images))).numpy()
    return logits


def _onnx_logits(folder: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    logits: np.ndarray = session.run(["logits"], {"pixels": pixels(images)})[0]
    return logits


def test_cnn_trains_exports_and_continues(subset: str, tmp_path: Path) -> None:
    first = train(TrainConfig(data=subset, model="cnn", epochs=3, batch_size=32, out=str(tmp_path / "a")))
    assert {p.name for p in first.iterdir()} == {
        "model.onnx",
        "model.yaml",
        "training.json",
        "checkpoint.pt",
        "framework_outputs.npy",
    }
    record = json.loads((first / "training.json").read_text())
    images = load_dataset(subset).images
    pytorch, served = _pytorch_logits(first, images, record["config"]["hidden"]), _onnx_logits(first, images)
    assert (served.argmax(1) == pytorch.argmax(1)).all()
    assert np.abs(served - pytorch).max() < 1e-3
    assert evaluate(first, out=tmp_path / "eval")["export_check"]["agrees"] is True
    assert record["history"][-1]["train_accuracy"] > record["history"][0]["train_accuracy"]
    assert record["environment"]["packages"]["torch"].startswith("2.")
    config = {"data": subset, "model": "cnn", "epochs": 1, "batch_size": 32, "out": str(tmp_path / "b"),
              "from": str(first), "parent_version": 1}  # fmt: skip
    child = json.loads((train(TrainConfig.model_validate(config)) / "training.json").read_text())
    assert child["parent"] == {"folder": str(first), "version": 1}
    assert child["history"][0]["val_accuracy"] >= record["history"][-1]["val_accuracy"] - 0.1
