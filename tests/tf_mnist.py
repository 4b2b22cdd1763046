"""A small Keras MNIST model trained on the bundled digits and exported as the article's model is:
a SavedModel whose `serving_default` takes `image_bytes` (PNG bytes, which a TF Serving client
sends base64-encoded in `{"b64": ...}`), decodes, resizes and scales them inside the graph, and
returns `classes` and `probabilities`. A second signature, `pixels`, takes the 784 scaled pixels;
`classify` and `regress` are TF Serving's kind, over serialized tf.Example protos (a `pixels`
feature): class names and scores, and the expected digit.

Training and exporting it take ~13 s on a busy machine (and importing TensorFlow as long again):
`cached_model` builds it once per content of this file, the data and the libraries, seeded (the
same digits give the same model), and keeps it in build/test-cache/.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from modelport.examples import mnist_data
from modelport.examples.mnist_data import load_mnist_5k, split_stratified
from support import cached_build

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def held_out() -> tuple[np.ndarray, np.ndarray]:
    """The test split of the bundled digits (uint8 [N, 28, 28], labels [N]): 500 digits."""
    images, labels = load_mnist_5k()
    _, _, test = split_stratified(labels)
    return images[test], labels[test]


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG")
    return out.getvalue()


def train(epochs: int = 5, hidden: int = 64, seed: int = 0) -> Any:
    """A Keras MLP on the training split: logits [N, 10] from pixels [N, 28, 28] scaled to 0..1."""
    import keras
    import tensorflow as tf

    images, labels = load_mnist_5k()
    train_idx, _, _ = split_stratified(labels)
    tf.keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28), name="pixels"),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images[train_idx] / 255.0, labels[train_idx], epochs=epochs, batch_size=64, verbose=0)
    return model


def export_saved_model(model: Any, version_dir: Path) -> Path:
    """The article's export: tf.saved_model.save with `serving_default` over image bytes."""
    import tensorflow as tf

    class Exported(tf.Module):  # type: ignore[misc]
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])  # type: ignore[untyped-decorator]
        def serve(self, image_bytes: Any) -> dict[str, Any]:
            def one(data: Any) -> Any:
                image = tf.io.decode_png(data, channels=1)
                image = tf.image.resize(image, [28, 28])
                return tf.reshape(image, [28, 28]) / 255.0

            pixels = tf.map_fn(one, image_bytes, fn_output_signature=tf.float32)
            logits = self.model(pixels, training=False)
            return {"classes": tf.argmax(logits, axis=1), "probabilities": tf.nn.softmax(logits)}

        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="pixels")])  # type: ignore[untyped-decorator]
        def pixels(self, pixels: Any) -> dict[str, Any]:
            logits = self.model(tf.reshape(pixels, [-1, 28, 28]), training=False)
            return {"probabilities": tf.nn.softmax(logits)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])  # type: ignore[untyped-decorator]
        def classify(self, inputs: Any) -> dict[str, Any]:
            scores = self._scores(inputs)
            names = tf.constant([str(i) for i in range(10)])
            return {"classes": tf.tile(names[tf.newaxis], [tf.shape(inputs)[0], 1]), "scores": scores}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])  # type: ignore[untyped-decorator]
        def regress(self, inputs: Any) -> dict[str, Any]:
            expected = tf.reduce_sum(self._scores(inputs) * tf.range(10, dtype=tf.float32), axis=1)
            return {"outputs": expected}

        def _scores(self, serialized: Any) -> Any:
            """Softmax over serialized tf.Example protos with a `pixels` feature (784 floats)."""
            features = tf.io.parse_example(serialized, {"pixels": tf.io.FixedLenFeature([784], tf.float32)})
            return tf.nn.softmax(self.model(tf.reshape(features["pixels"], [-1, 28, 28]), training=False))

    exported = Exported(model)
    signatures = {
        "serving_default": exported.serve,
        "pixels": exported.pixels,
        "classify": exported.classify,
        "regress": exported.regress,
    }
    tf.saved_model.save(exported, str(version_dir), signatures=signatures)
    _set_method_names(version_dir, {"classify": "classify", "regress": "regress"})
    return version_dir


def _set_method_names(version_dir: Path, methods: dict[str, str]) -> None:
    """TF Serving's classify and regress signatures: TF 2 saves every signature as a predict
    one, so the method names are set in saved_model.pb as TF 1's signature builders set them."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = version_dir / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(path.read_bytes())
    for graph in proto.meta_graphs:
        for name, method in methods.items():
            graph.signature_def[name].method_name = f"tensorflow/serving/{method}"
    path.write_bytes(proto.SerializeToString())


def cached_model() -> Path:
    """A folder with the model as the article exports it (saved_model/1) and as Keras saves it
    (keras/1/model.keras), trained once per content of what it is trained from (this file, the
    data loader, the data, the libraries): copy it before publishing beside it."""

    def build(folder: Path) -> None:
        model = train()
        export_saved_model(model, folder / "saved_model" / "1")
        (folder / "keras" / "1").mkdir(parents=True)
        model.save(folder / "keras" / "1" / "model.keras")

    inputs = [Path(__file__), Path(mnist_data.__file__), mnist_data.mnist_5k_path()]
    return cached_build("tf-mnist", inputs, ("numpy", "tensorflow-cpu", "keras"), build)
