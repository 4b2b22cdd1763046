"""`modelport train` with the fast model: a servable folder whose ONNX file agrees with training,
its record, continued training from a parent, and configs that name their mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelport.errors import ModelportError
from modelport.pipeline.data import load_dataset, splits
from modelport.pipeline.train import TrainConfig, load_config, pixels, train


def test_the_folder_is_a_servable_version(trained_mlp: Path) -> None:
    assert {p.name for p in trained_mlp.iterdir()} == {
        "model.onnx",
        "model.yaml",
        "training.json",
        "framework_outputs.npy",
    }
    record = json.loads((trained_mlp / "training.json").read_text())
    assert [h["epoch"] for h in record["history"]] == list(range(1, 9))
    assert record["data"]["sizes"] == {"train": 4000, "val": 500, "test": 500}
    assert record["environment"]["seeds"] == {"init": 0, "split": 0}
    assert record["environment"]["packages"]["scikit-learn"]
    data = load_dataset("mnist5k")
    test_images, test_labels = splits(data, seed=0).test
    session = ort.InferenceSession(str(trained_mlp / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"pixels": pixels(test_images)})[0]
    assert float((logits.argmax(1) == test_labels).mean()) > 0.9


def test_continued_training_starts_from_the_parent(trained_mlp: Path, tmp_path: Path) -> None:
    scratch = train(TrainConfig(epochs=1, out=str(tmp_path / "scratch")))
    config = {"epochs": 1, "out": str(tmp_path / "child"), "from": str(trained_mlp), "parent_version": 3}
    child = train(TrainConfig.model_validate(config))
    record = json.loads((child / "training.json").read_text())
    assert record["parent"] == {"folder": str(trained_mlp), "version": 3}
    first_child = record["history"][0]["val_accuracy"]
    first_scratch = json.loads((scratch / "training.json").read_text())["history"][0]["val_accuracy"]
    assert first_child > first_scratch  # it began where the parent ended, not from random weights
    with pytest.raises(ModelportError, match=r"has layers .* this config makes"):
        train(
            TrainConfig.model_validate(
                {"epochs": 1, "hidden": 16, "out": str(tmp_path / "x"), "from": str(trained_mlp)}
            )
        )


def test_configs_name_their_mistakes(tmp_path: Path) -> None:
    (tmp_path / "train.yaml").write_text("epochs: three\nlearning: 0.1\n")
    with pytest.raises(ModelportError) as caught:
        load_config(tmp_path / "train.yaml", {})
    assert "epochs: Input should be a valid integer" in caught.value.message
    assert "learning: Extra inputs are not permitted" in caught.value.message
    (tmp_path / "ok.yaml").write_text("epochs: 2\nmodel: mlp\n")
    assert load_config(tmp_path / "ok.yaml", {"epochs": 5}).epochs == 5  # a flag wins over the file


def test_a_model_trained_on_mislabelled_data_is_refused_early(tmp_path: Path) -> None:
    data = load_dataset("mnist5k")
    labels = data.labels.copy()
    labels[3] = 10
    np.savez(tmp_path / "d.npz", images=data.images, labels=labels, classes=np.array(list("0123456789")))
    with pytest.raises(ModelportError, match="label 10 at row 3 is not a class"):
        train(TrainConfig(data=f"npz:{tmp_path / 'd.npz'}", epochs=1, out=str(tmp_path / "o")))


def test_the_command_shows_progress_and_writes_the_folder(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelport", "train", "--epochs", "2", "--out", str(tmp_path / "v")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "epoch 2/2" in done.stdout and "img/s" in done.stdout and "val acc" in done.stdout
    assert (tmp_path / "v" / "model.onnx").exists()
