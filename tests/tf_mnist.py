"""A small Keras MNIST model trained on the bundled digits and exported as the article's model is:
a SavedModel whose `serving_default` takes `image_bytes` (PNG bytes, which a TF Serving client
sends base64-encoded in `{"b64": ...}`), decodes, resizes and scales them inside the graph, and
returns `classes` and `probabilities`. A second signature, `pixels`, takes the 784 scaled pixels.

Building it takes a few seconds (most of it importing TensorFlow), so tests build it in their
session, seeded: the same digits give the same model.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from modelport.examples.mnist_data import load_mnist_5k, split_stratified

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

    exported = Exported(model)
    tf.saved_model.save(
        exported, str(version_dir), signatures={"serving_default": exported.serve, "pixels": exported.pixels}
    )
    return version_dir
