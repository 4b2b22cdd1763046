"""`modelport evaluate`: metrics a person can check by hand, the fitting diagnosis, the report, and
the checksum that ties an evaluation to what gets published."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from modelport.errors import ModelportError
from modelport.pipeline.evaluate import classification_metrics, diagnose, evaluate
from modelport.pipeline.train import TrainConfig, train
from modelport.registry import Registry


def test_metrics_match_a_hand_computed_example() -> None:
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(truth, predicted, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8),
                                   "support": 3}  # fmt: skip
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert m["macro"]["recall"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["weighted"]["recall"] == pytest.approx(4 / 6)  # weighted recall is accuracy


def _history(train: list[float], val: list[float], val_loss: list[float]) -> list[dict[str, float]]:
    return [
        {"epoch": i + 1, "train_accuracy": t, "val_accuracy": v, "train_loss": 0.1, "val_loss": loss}
        for i, (t, v, loss) in enumerate(zip(train, val, val_loss, strict=True))
    ]


def test_diagnosis_says_which_numbers_led_to_it() -> None:
    over = diagnose(_history([0.9, 0.99, 1.0], [0.9, 0.93, 0.92], [0.3, 0.25, 0.35]))
    assert over["verdict"] == "overfitting"
    assert over["evidence"]["best_val_loss_epoch"] == 2 and over["evidence"]["gap"] == pytest.approx(0.08)
    assert "risen 40% since epoch 2" in over["reason"]
    under = diagnose(_history([0.6, 0.7], [0.6, 0.69], [0.9, 0.8]))
    assert under["verdict"] == "underfitting" and "0.700" in under["reason"]
    assert diagnose(_history([0.95, 0.97], [0.94, 0.96], [0.2, 0.15]))["verdict"] == "good fit"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(TrainConfig(epochs=10, out=str(tmp_path_factory.mktemp("e") / "v")))


def test_the_report_and_the_figures(folder: Path, tmp_path: Path) -> None:
    report = evaluate(folder, out=tmp_path / "eval")
    figures = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert figures["metrics"]["accuracy"] == report["metrics"]["accuracy"] > 0.9
    assert figures["data"] == {"name": "mnist5k", "split": "test", "size": 500}
    assert sum(map(sum, figures["details"]["confusion_matrix"])) == 500
    assert figures["export_check"]["same_class"] == 1.0  # the served file agrees with training
    page = (tmp_path / "eval" / "report.html").read_text()
    assert len(re.findall(r"<rect ", page)) == 100  # a 10 x 10 confusion matrix
    assert len(re.findall(r"<polyline ", page)) == 4  # accuracy and loss, train and validation
    assert "Diagnosis:" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")  # offline


def test_publishing_what_was_evaluated_and_only_that(folder: Path, tmp_path: Path) -> None:
    report = evaluate(folder, out=tmp_path / "eval")
    registry = Registry.open(tmp_path / "home")
    version = registry.publish("mnist", folder, metrics=report["metrics"], expected_sha256=report["sha256"],
                               gates={"accuracy": ">= 0.9"})  # fmt: skip
    assert version.metrics["accuracy"] == report["metrics"]["accuracy"]
    (folder / "model.yaml").write_text((folder / "model.yaml").read_text() + "\n")
    with pytest.raises(ModelportError, match="the files changed after they were evaluated"):
        registry.publish("mnist", folder, metrics=report["metrics"], expected_sha256=report["sha256"])


def test_a_model_that_does_not_fit_the_data_is_named(folder: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 255, (40, 32, 32), dtype=np.uint8)
    np.savez(tmp_path / "wide.npz", images=wide, labels=np.arange(40) % 10)
    mismatch = r"the model takes \['batch', 784\], the data gives \[\d+, 1024\]"
    with pytest.raises(ModelportError, match=mismatch):
        evaluate(folder, data_spec=f"npz:{tmp_path / 'wide.npz'}", out=tmp_path / "o")
    few = rng.integers(0, 255, (40, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "few.npz", images=few, labels=np.arange(40) % 3)
    with pytest.raises(ModelportError, match="the model has 10 classes, the data 3"):
        evaluate(folder, data_spec=f"npz:{tmp_path / 'few.npz'}", out=tmp_path / "o")
