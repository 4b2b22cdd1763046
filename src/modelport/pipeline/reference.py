"""The framework model's own answers on the held-out rows, kept beside the ONNX file it was exported
to, so that `evaluate` can check the file that will be served against the model that was trained.

`train` writes `framework_outputs.npy` (scikit-learn's probabilities or PyTorch's logits, one row
per test image, in split order) and names it in training.json:

    "framework_outputs": {"file": "framework_outputs.npy", "sha256": "…", "split": "test",
                          "rows": 500, "rows_sha256": "…", "output": "probabilities",
                          "tolerance": 0.0001}

`evaluate` runs model.onnx on those rows (checked by `rows_sha256`), turns its logits into the
recorded `output`, and compares: the file agrees when every row gets the same class and no value
differs by more than `tolerance`. Another model's file with the same signature, or changed
weights, gives other answers and is refused (`compare` below, worked numbers there).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import Code, ModelportError

FILE = "framework_outputs.npy"


def rows_sha256(rows: np.ndarray) -> str:
    """The checksum of the exact input rows (float32, C order): the same images in the same order."""
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.float32).tobytes()).hexdigest()


def write_reference(
    folder: Path, outputs: np.ndarray, rows: np.ndarray, output: str, tolerance: float
) -> dict[str, Any]:
    """Write the framework's outputs on `rows` (the test split) and return training.json's entry."""
    path = folder / FILE
    np.save(path, outputs)
    return {
        "file": FILE,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "split": "test",
        "rows": len(rows),
        "rows_sha256": rows_sha256(rows),
        "output": output,
        "tolerance": tolerance,
    }


def read_reference(folder: Path, entry: dict[str, Any]) -> np.ndarray:
    """The recorded outputs, refused if the file is not the one training wrote."""
    path = folder / entry["file"]
    if not path.exists():
        raise ModelportError(
            Code.FAILED_PRECONDITION, f"{folder}: {entry['file']} is missing (training.json names it)"
        )
    if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        raise ModelportError(
            Code.FAILED_PRECONDITION, f"{folder}: {entry['file']} changed after training (its sha256 differs)"
        )
    outputs: np.ndarray = np.load(path, allow_pickle=False)
    return outputs


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return result


def compare(served_logits: np.ndarray, expected: np.ndarray, output: str, tolerance: float) -> dict[str, Any]:
    """The served file's answers against the framework's, on the same rows.

    Agreement needs both: every row the same class, and no value further apart than `tolerance`.
    An export of the same weights differs only by float rounding (an MLP: ~1e-7 in probability,
    against a tolerance of 1e-4); a model trained one epoch less already moves some probabilities
    by 0.1 and changes a few of 500 classes, so either test alone would catch it, and together
    they also catch a file whose classes agree but whose confidences do not.
    """
    served = softmax(served_logits) if output == "probabilities" else served_logits
    if served.shape != expected.shape:
        return {
            "agrees": False,
            "reason": f"the file answers {list(served.shape)}, the framework {list(expected.shape)}",
        }
    difference = float(np.abs(served - expected).max())
    same_class = float((served.argmax(1) == expected.argmax(1)).mean())
    return {
        "agrees": same_class == 1.0 and difference <= tolerance,
        "compared": output,
        "same_class": same_class,
        "max_abs_difference": difference,
        "tolerance": tolerance,
    }


def disagreement(folder: Path, check: dict[str, Any]) -> ModelportError:
    if "reason" in check:
        detail = check["reason"]
    else:
        rows = check["rows"]
        other = round((1 - check["same_class"]) * rows)
        detail = (
            f"{other} of {rows} test rows get another class, {check['compared']} differ by up to "
            f"{check['max_abs_difference']:.2g} (tolerance {check['tolerance']:g})"
        )
    return ModelportError(
        Code.FAILED_PRECONDITION,
        f"{folder}: model.onnx disagrees with the framework model training recorded: {detail}; "
        "it is not the file that was trained",
    )


def describe(check: dict[str, Any]) -> str:
    """One line for people: what the check found, or why it did not run."""
    if not check.get("checked"):
        return f"not checked: {check.get('reason', '')}"
    return (
        f"agrees with the framework model on {check['rows']} test rows (same class "
        f"{check['same_class']:.0%}, {check['compared']} within {check['max_abs_difference']:.2g})"
    )
