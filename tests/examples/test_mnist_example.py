"""The shipped MNIST example: its accuracy on held-out digits, its samples, how it is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from modelport.errors import ModelportError
from modelport.examples import write_mnist_repository
from modelport.examples.mnist_data import load_mnist_5k, split_stratified
from modelport.pipeline.data import MNIST_CLASSES
from modelport.quality.profile import FILE as PROFILE_FILE
from modelport.quality.profile import profile_of
from modelport.repository import layout
from modelport.runtimes.metadata import read_metadata

SHIPPED = Path(__file__).parents[2] / "src" / "modelport" / "examples" / "mnist"


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(SHIPPED / "model.onnx"), providers=["CPUExecutionProvider"])


def _classify(session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    pixels = images.reshape(len(images), 784).astype(np.float32) / 255
    return session.run(["logits"], {"pixels": pixels})[0].argmax(axis=1)


def test_split_is_stratified_and_deterministic() -> None:
    _, labels = load_mnist_5k()
    train, val, test = split_stratified(labels, seed=0)
    assert (len(train), len(val), len(test)) == (4000, 500, 500)
    assert not set(train) & set(test) and not set(val) & set(test)
    assert np.bincount(labels[test]).tolist() == [50] * 10
    again = split_stratified(labels, seed=0)
    assert all((a == b).all() for a, b in zip((train, val, test), again, strict=True))
    assert not (split_stratified(labels, seed=1)[2] == test).all()


def test_held_out_accuracy(session: ort.InferenceSession) -> None:
    images, labels = load_mnist_5k()
    _, _, test = split_stratified(labels, seed=0)
    accuracy = float((_classify(session, images[test]) == labels[test]).mean())
    recorded = json.loads((SHIPPED / "training.json").read_text())["accuracy"]["test"]
    assert accuracy == pytest.approx(recorded, abs=1e-9)  # the record is true
    assert accuracy >= 0.95  # measured 0.960 on 500 held-out digits


def test_samples_are_held_out_digits_the_model_gets_right(session: ort.InferenceSession) -> None:
    images, labels = load_mnist_5k()
    _, _, test = split_stratified(labels, seed=0)
    held_out = {images[i].tobytes() for i in test}
    for digit in range(10):
        pixels = np.asarray(Image.open(SHIPPED / "samples" / f"digit-{digit}.png"))
        assert pixels.shape == (28, 28)
        assert pixels.tobytes() in held_out
        assert _classify(session, pixels[None]).tolist() == [digit]


def test_model_yaml_validates_and_declares_the_image() -> None:
    metadata = read_metadata(SHIPPED)
    image = metadata.signatures["serving_default"].inputs["image_bytes"].image  # type: ignore[index, union-attr]
    assert image is not None and (image.width, image.height, image.invert, image.fit) == (
        28,
        28,
        "auto",
        "mnist",
    )


def test_the_shipped_reference_profile_is_the_models_on_its_held_out_digits(
    session: ort.InferenceSession,
) -> None:
    """What the server measures drift against: the test split as the model sees it, its answers."""
    images, labels = load_mnist_5k()
    _, _, test = split_stratified(labels, seed=0)
    pixels = images[test].reshape(len(test), 784).astype(np.float32) / 255
    predicted = _classify(session, images[test])
    expected = profile_of({"pixels": pixels}, predicted, MNIST_CLASSES, accuracy=0.96)
    assert json.loads((SHIPPED / PROFILE_FILE).read_text()) == expected
    assert expected["thresholds"] == {"input": 0.2, "prediction": 0.2}


def test_write_repository_publishes_a_complete_version(tmp_path: Path) -> None:
    version_dir = write_mnist_repository(tmp_path / "mnist")
    assert version_dir == tmp_path / "mnist" / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "_COMPLETE",
        "model.onnx",
        "model.yaml",
        "reference_profile.json",
        "training.json",
    ]
    (found,) = layout.scan(tmp_path / "mnist")
    assert found.marked and found.mark_problem is None
    assert (tmp_path / "mnist" / "samples" / "request.json").exists()
    assert not [p for p in (tmp_path / "mnist").iterdir() if p.name.startswith(".")]
    with pytest.raises(ModelportError, match="already exists"):
        write_mnist_repository(tmp_path / "mnist")
    assert write_mnist_repository(tmp_path / "mnist", version=2).name == "2"


def test_the_example_objects_are_valid() -> None:
    """examples/mnist/deploy.yaml, hpa.yaml, analysis.yaml and rollout.yaml, as the README applies them."""
    from modelport.spec import load_objects

    root = Path(__file__).resolve().parents[2] / "examples" / "mnist"
    files = ("deploy.yaml", "hpa.yaml", "analysis.yaml", "rollout.yaml")
    kinds = [o.kind for name in files for o in load_objects((root / name).read_text(), name)]
    assert kinds == [
        "Deployment", "Service", "Deployment", "Service", "HorizontalPodAutoscaler",
        "AnalysisTemplate", "Rollout", "Service",
    ]  # fmt: skip
