"""`modelport evaluate`: metrics a person can check by hand, the fitting diagnosis, the report, and
the checksum that ties an evaluation to what gets published, and the served file run against the
framework model's recorded answers (a file that is not the trained model is refused)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from modelport.errors import ModelportError
from modelport.pipeline.data import load_dataset, splits
from modelport.pipeline.evaluate import classification_metrics, diagnose, evaluate
from modelport.pipeline.train import pixels
from modelport.pipeline.train.mlp import mlp_onnx
from modelport.quality.profile import FILE as PROFILE_FILE
from modelport.quality.profile import parse
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


def _test_split_accuracy(folder: Path) -> float:
    """The accuracy of model.onnx on mnist5k's test split, computed here, not by `evaluate`."""
    images, labels = splits(load_dataset("mnist5k"), seed=0).test
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"pixels": pixels(images)})[0]
    return float((logits.argmax(1) == labels).mean())


def test_the_report_and_the_figures(trained_mlp: Path, tmp_path: Path) -> None:
    evaluate(trained_mlp, out=tmp_path / "eval")
    figures = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    accuracy = _test_split_accuracy(trained_mlp)
    assert accuracy > 0.9 and figures["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert figures["data"] == {"name": "mnist5k", "split": "test", "size": 500}
    matrix = np.array(figures["details"]["confusion_matrix"])
    assert matrix.sum() == 500 and np.trace(matrix) == round(accuracy * 500)
    page = (tmp_path / "eval" / "report.html").read_text()
    assert len(re.findall(r"<rect ", page)) == 100  # a 10 x 10 confusion matrix
    assert len(re.findall(r"<polyline ", page)) == 4  # accuracy and loss, train and validation
    assert "Diagnosis:" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")  # offline
    assert "Served file against the framework model: agrees with the framework model on 500 test rows" in page


def test_the_served_file_is_run_against_the_framework_models_answers(
    trained_mlp: Path, tmp_path: Path
) -> None:
    check = evaluate(trained_mlp, out=tmp_path / "eval")["export_check"]
    assert check["checked"] is True and check["agrees"] is True
    assert (check["split"], check["rows"], check["compared"], check["same_class"]) == (
        "test",
        500,
        "probabilities",
        1.0,
    )
    assert check["max_abs_difference"] <= check["tolerance"] == 1e-4


def _weights(folder: Path) -> dict[str, np.ndarray]:
    graph = onnx.load(str(folder / "model.onnx")).graph
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def test_another_models_file_with_the_same_signature_is_refused(mlp_copy: Path, tmp_path: Path) -> None:
    shapes = {name: array.shape for name, array in _weights(mlp_copy).items()}
    rng = np.random.default_rng(1)
    other = {name: rng.normal(0, 0.05, shape) for name, shape in shapes.items()}
    (mlp_copy / "model.onnx").write_bytes(
        mlp_onnx([other["W1"], other["W2"]], [other["B1"], other["B2"]], 784, 10)
    )
    refused = r"disagrees with the framework model training recorded: [1-9]\d* of 500 test rows get another"
    with pytest.raises(ModelportError, match=refused):
        evaluate(mlp_copy, out=tmp_path / "eval")
    assert not (tmp_path / "eval" / "evaluation.json").exists()  # nothing for `registry publish` to take


def test_a_file_whose_weights_were_changed_is_refused(mlp_copy: Path, tmp_path: Path) -> None:
    weights = _weights(mlp_copy)
    bias = weights["B2"].copy()
    bias[3] += 0.01  # class 3's logit up by 0.01: classes stay, probabilities move by up to ~0.0025
    (mlp_copy / "model.onnx").write_bytes(
        mlp_onnx([weights["W1"], weights["W2"]], [weights["B1"], bias], 784, 10)
    )
    with pytest.raises(ModelportError, match=r"probabilities differ by up to 0\.00\d+ \(tolerance 0\.0001\)"):
        evaluate(mlp_copy, out=tmp_path / "eval")


def test_changed_framework_outputs_are_refused(mlp_copy: Path, tmp_path: Path) -> None:
    outputs = np.load(mlp_copy / "framework_outputs.npy")
    np.save(mlp_copy / "framework_outputs.npy", outputs[::-1])
    with pytest.raises(ModelportError, match=r"framework_outputs\.npy changed after training"):
        evaluate(mlp_copy, out=tmp_path / "eval")


def test_a_folder_without_framework_outputs_is_evaluated_and_says_it_was_not_checked(
    mlp_copy: Path, tmp_path: Path
) -> None:
    record = json.loads((mlp_copy / "training.json").read_text())
    del record["framework_outputs"]
    (mlp_copy / "training.json").write_text(json.dumps(record))
    report = evaluate(mlp_copy, out=tmp_path / "eval")
    assert report["export_check"] == {
        "checked": False,
        "reason": "training.json records no framework outputs to compare model.onnx with",
    }
    page = (tmp_path / "eval" / "report.html").read_text()
    assert "Served file against the framework model: not checked: training.json records no framework" in page


def test_publishing_what_was_evaluated_and_only_that(mlp_copy: Path, tmp_path: Path) -> None:
    report = evaluate(mlp_copy, out=tmp_path / "eval")
    registry = Registry.open(tmp_path / "home")
    version = registry.publish("mnist", mlp_copy, metrics=report["metrics"], expected_sha256=report["sha256"],
                               gates={"accuracy": ">= 0.9"}, profile=report["reference_profile"])  # fmt: skip
    assert version.metrics["accuracy"] == report["metrics"]["accuracy"]
    # The reference profile drift is measured against goes with the version, to the served folder.
    profile = json.loads((tmp_path / "eval" / PROFILE_FILE).read_text())
    assert profile == report["reference_profile"] and profile["rows"] == 500
    assert profile["accuracy"] == report["metrics"]["accuracy"] and sum(
        profile["predictions"]
    ) == pytest.approx(1)
    served = Path(registry.model("mnist").repository) / str(version.version) / PROFILE_FILE
    assert json.loads(served.read_text()) == profile and PROFILE_FILE in version.files
    assert parse(profile, "evaluation").inputs.keys() == {"pixels"}
    (mlp_copy / "model.yaml").write_text((mlp_copy / "model.yaml").read_text() + "\n")
    with pytest.raises(ModelportError, match="the files changed after they were evaluated"):
        registry.publish("mnist", mlp_copy, metrics=report["metrics"], expected_sha256=report["sha256"])


def test_a_model_that_does_not_fit_the_data_is_named(trained_mlp: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 255, (40, 32, 32), dtype=np.uint8)
    np.savez(tmp_path / "wide.npz", images=wide, labels=np.arange(40) % 10)
    mismatch = r"the model takes \['batch', 784\], the data gives \[\d+, 1024\]"
    with pytest.raises(ModelportError, match=mismatch):
        evaluate(trained_mlp, data_spec=f"npz:{tmp_path / 'wide.npz'}", out=tmp_path / "o")
    few = rng.integers(0, 255, (40, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "few.npz", images=few, labels=np.arange(40) % 3)
    with pytest.raises(ModelportError, match="the model has 10 classes, the data 3"):
        evaluate(trained_mlp, data_spec=f"npz:{tmp_path / 'few.npz'}", out=tmp_path / "o")


def test_on_other_data_the_file_is_still_checked_on_the_training_datas_test_split(
    trained_mlp: Path, tmp_path: Path
) -> None:
    data = load_dataset("mnist5k")
    keep = np.concatenate([np.flatnonzero(data.labels == d)[:20] for d in range(10)])
    np.savez(tmp_path / "other.npz", images=data.images[keep], labels=data.labels[keep])
    report = evaluate(trained_mlp, data_spec=f"npz:{tmp_path / 'other.npz'}", out=tmp_path / "eval")
    assert report["data"]["size"] == 20  # 10% of 200: the other data's own test split is measured
    check = report["export_check"]
    assert (check["checked"], check["agrees"], check["rows"]) == (True, True, 500)  # mnist5k's test split


def test_the_command_says_whether_the_file_agrees_and_exits_1_when_it_does_not(
    trained_mlp: Path, mlp_copy: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from modelport.cli import cli

    good = CliRunner().invoke(cli, ["evaluate", str(trained_mlp), "--out", str(tmp_path / "good")])
    assert good.exit_code == 0, good.output
    assert "model.onnx: agrees with the framework model on 500 test rows (same class 100%" in good.output
    weights = _weights(mlp_copy)
    (mlp_copy / "model.onnx").write_bytes(
        mlp_onnx([weights["W1"], weights["W2"] * 1.5], [weights["B1"], weights["B2"]], 784, 10)
    )
    bad = CliRunner().invoke(cli, ["evaluate", str(mlp_copy), "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "model.onnx disagrees with the framework model" in bad.output
