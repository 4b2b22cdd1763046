"""A training run's configuration (`mlp.yaml`, `cnn.yaml`), the servable folder's model.yaml, and what
the trainers share."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelport.errors import invalid


def model_yaml(
    description: str,
    classes: tuple[str, ...],
    width: int = 28,
    height: int = 28,
    digits: bool = True,
    max_pixels: int | None = None,
) -> str:
    """The model.yaml of an image classifier exported with input `pixels` and output `logits`:
    clients send encoded images, get classes, probabilities and logits back. `digits`: prepare
    images as MNIST's (auto-invert, crop and centre the ink); else resize only."""
    image = (
        f"mode: L, width: {width}, height: {height}, invert: {'auto' if digits else 'never'}, "
        f"scale: [0.0, 1.0], fit: {'mnist' if digits else 'stretch'}"
        + (f", max_pixels: {max_pixels}" if max_pixels else "")
    )
    labels = "" if list(classes) == [str(i) for i in range(len(classes))] else (
        f"    labels: {json.dumps(list(classes))}\n"  # names; plain indices stay numbers
    )  # fmt: skip
    return f"""platform: onnx
model_file: model.onnx
description: {description}
signatures:
  serving_default:
    inputs:
      image_bytes:
        tensor: pixels
        image:
          {{{image}}}
    outputs:
      classes: {{from: logits, transform: argmax}}
      probabilities: {{from: logits, transform: softmax}}
      logits: {{from: logits}}
{labels}"""


class TrainConfig(BaseModel):
    """What `train.yaml` may say; unknown keys and wrong types are errors naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = "mnist5k"
    model: Literal["mlp", "cnn"] = "mlp"
    epochs: int = Field(default=20, ge=1, le=1000)
    batch_size: int = Field(default=128, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    hidden: int = Field(default=128, ge=1)
    seed: int = 0
    split_seed: int = 0
    out: str = "build/model"
    from_: str | None = Field(default=None, alias="from")  # continued training: a version folder
    parent_version: int | None = None  # the registry version `from` was, for the lineage record
    # How served images are prepared. mnist: handwritten digits (auto-invert dark-on-light
    # drawings, crop and centre the ink as MNIST did); plain: resize only (Fashion-MNIST, photos).
    # auto: mnist for the mnist5k data, plain otherwise.
    preprocess: Literal["auto", "mnist", "plain"] = "auto"


def load_config(path: Path, overrides: dict[str, Any]) -> TrainConfig:
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise invalid(f"{path}: cannot read the training config: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise invalid(f"{path}: must be a mapping of settings")
        doc = loaded or {}
    doc.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise invalid(f"{path or 'training config'}: {problems}") from None


Progress = Callable[[int, int, dict[str, float]], None]  # (epoch, epochs, figures of the epoch)


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W] -> float32 [N, H*W] in [0, 1], what the exported models take."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0
