"""`modelport train`: a digit classifier from a data set to a servable version folder.

    modelport train -f train.yaml
    modelport train --data mnist5k --model mlp --epochs 20 --out build/mnist

The folder it writes is what the registry publishes and the server serves: `model.onnx`,
`model.yaml` (its signature and image pre-processing declared), and `training.json` (the
environment record, the configuration, the data and its split, per-epoch curves, lineage).
Continued training (`--from DIR`, a version folder written by this command) starts from that
model's weights and records it as the parent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelport.errors import Code, ModelportError, invalid
from modelport.pipeline.data import Dataset, Splits, load_dataset, splits
from modelport.pipeline.train.environment import record as environment_record


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


def train(config: TrainConfig, progress: Progress | None = None, command: list[str] | None = None) -> Path:
    """Train, export to ONNX, check the export agrees, write the version folder; returns it."""
    started = time.perf_counter()
    data = load_dataset(config.data)
    parts = splits(data, seed=config.split_seed)
    env = environment_record({"init": config.seed, "split": config.split_seed},
                             config.model_dump(by_alias=True), command)  # fmt: skip
    parent = _parent(config, data)
    if config.model == "mlp":
        from modelport.pipeline.train.mlp import train_mlp

        onnx_model, history = train_mlp(config, data, parts, parent, progress or (lambda *_: None))
    else:
        from modelport.pipeline.train.cnn import train_cnn

        onnx_model, history = train_cnn(config, data, parts, parent, progress or (lambda *_: None))
    extras = {k: v for entry in history if "epoch" not in entry for k, v in entry.items()}
    history = [entry for entry in history if "epoch" in entry]
    export_check = extras.get("export_check")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if "checkpoint" in extras:  # the framework's weights, for continued training
        (out / "checkpoint.pt").write_bytes(extras["checkpoint"])
    (out / "model.onnx").write_bytes(onnx_model)
    height, width = data.shape
    digits = config.preprocess == "mnist" or (config.preprocess == "auto" and data.name == "mnist5k")
    description = f"{config.model.upper()} trained on {data.name} ({len(parts.train[1])} images)"
    (out / "model.yaml").write_text(model_yaml(description, data.classes, width, height, digits))
    record = {
        "environment": env,
        "config": config.model_dump(by_alias=True),
        "data": {
            "name": data.name,
            "source": data.source,
            "license": data.license,
            "split": parts.how,
            "sizes": {k: len(getattr(parts, k)[1]) for k in ("train", "val", "test")},
            "classes": list(data.classes),
        },
        "history": history,
        "export_check": export_check,  # the ONNX file against the framework model, validation split
        "parent": {"folder": config.from_, "version": config.parent_version} if config.from_ else None,
        "training_seconds": round(time.perf_counter() - started, 2),
    }
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return out


def _parent(config: TrainConfig, data: Dataset) -> Path | None:
    if config.from_ is None:
        return None
    folder = Path(config.from_)
    record_file = folder / "training.json"
    if not record_file.exists():
        raise invalid(
            f"from: {folder} has no training.json: continued training starts from a folder `train` wrote"
        )
    previous = json.loads(record_file.read_text())
    if previous["config"]["model"] != config.model:
        raise invalid(f"from: {folder} holds a {previous['config']['model']} model, not {config.model}")
    if previous["data"]["classes"] != list(data.classes):
        raise ModelportError(
            Code.FAILED_PRECONDITION,
            f"from: {folder} was trained on classes {previous['data']['classes']}, "
            f"the data has {list(data.classes)}",
        )
    return folder


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W] -> float32 [N, H*W] in [0, 1], what the exported models take."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


__all__ = ["Splits", "TrainConfig", "load_config", "pixels", "train"]
