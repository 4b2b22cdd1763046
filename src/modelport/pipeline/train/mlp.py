"""The fast model: a one-hidden-layer perceptron (scikit-learn), one epoch per partial_fit, exported
to ONNX (Gemm, Relu, Gemm) and checked against scikit-learn's own answers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import Code, ModelportError
from modelport.pipeline.data import Dataset, Splits
from modelport.pipeline.train.config import Progress, TrainConfig, pixels


def mlp_onnx(coefs: list[np.ndarray], intercepts: list[np.ndarray], features: int, classes: int) -> bytes:
    """A one-hidden-layer perceptron's weights as ONNX: pixels -> Gemm, Relu, Gemm -> logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (w1, w2), (b1, b2) = coefs, intercepts
    weights = [
        numpy_helper.from_array(a.astype(np.float32), n)
        for a, n in [(w1, "W1"), (b1, "B1"), (w2, "W2"), (b2, "B2")]
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["pixels", "W1", "B1"], ["hidden"]),
            helper.make_node("Relu", ["hidden"], ["activated"]),
            helper.make_node("Gemm", ["activated", "W2", "B2"], ["logits"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelport")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _parent_weights(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(folder / "model.onnx")).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return [arrays["W1"], arrays["W2"]], [arrays["B1"], arrays["B2"]]


def train_mlp(
    config: TrainConfig, data: Dataset, parts: Splits, parent: Path | None, progress: Progress
) -> tuple[bytes, list[dict[str, Any]]]:
    from sklearn.metrics import log_loss
    from sklearn.neural_network import MLPClassifier

    x, y = pixels(parts.train[0]), parts.train[1]
    xv, yv = pixels(parts.val[0]), parts.val[1]
    classes = np.arange(len(data.classes))
    mlp = MLPClassifier(
        hidden_layer_sizes=(config.hidden,), batch_size=min(config.batch_size, len(y)),
        learning_rate_init=config.learning_rate, alpha=1e-4, random_state=config.seed,
    )  # fmt: skip
    first = slice(0, min(config.batch_size, len(y)))
    mlp.partial_fit(x[first], y[first], classes=classes)  # builds the layers (one first step)
    if parent is not None:
        coefs, intercepts = _parent_weights(parent)
        if [c.shape for c in coefs] != [c.shape for c in mlp.coefs_]:
            raise ModelportError(
                Code.FAILED_PRECONDITION,
                f"from: {parent} has layers {[c.shape for c in coefs]}, this config makes "
                f"{[c.shape for c in mlp.coefs_]} (check hidden)",
            )
        mlp.coefs_, mlp.intercepts_ = (
            [c.astype(np.float64) for c in coefs],
            [b.astype(np.float64) for b in intercepts],
        )
    rng = np.random.default_rng(config.seed)
    history: list[dict[str, Any]] = []
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(y))
        started = time.perf_counter()
        mlp.partial_fit(x[order], y[order])
        seconds = time.perf_counter() - started
        train_p, val_p = mlp.predict_proba(x), mlp.predict_proba(xv)
        figures = {
            "epoch": epoch,
            "train_loss": float(log_loss(y, train_p, labels=classes)),
            "val_loss": float(log_loss(yv, val_p, labels=classes)),
            "train_accuracy": float((train_p.argmax(1) == y).mean()),
            "val_accuracy": float((val_p.argmax(1) == yv).mean()),
            "images_per_second": len(y) / seconds,
        }
        history.append(figures)
        progress(epoch, config.epochs, figures)
    exported = mlp_onnx(mlp.coefs_, mlp.intercepts_, x.shape[1], len(classes))
    history.append({"export_check": _check_export(exported, mlp.predict_proba(xv), xv)})
    # scikit-learn's own answers on the test split, for `evaluate` to hold the served file against.
    test_outputs = mlp.predict_proba(pixels(parts.test[0]))
    history.append({"reference": {"outputs": test_outputs, "output": "probabilities", "tolerance": 1e-4}})
    return exported, history


def _check_export(model: bytes, expected: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """The file that will be served must give the framework's answers."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"pixels": x})[0]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    if (
        not np.allclose(probabilities, expected, atol=1e-4)
        or (probabilities.argmax(1) != expected.argmax(1)).any()
    ):
        worst = float(np.abs(probabilities - expected).max())
        raise ModelportError(
            Code.INTERNAL, f"the ONNX export disagrees with the trained model (by up to {worst:.2g})"
        )
    return {
        "images": len(x),
        "max_abs_probability_difference": float(np.abs(probabilities - expected).max()),
        "same_class": float((probabilities.argmax(1) == expected.argmax(1)).mean()),
    }
