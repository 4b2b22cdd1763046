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
from pathlib import Path

from modelport.errors import Code, ModelportError, invalid
from modelport.pipeline.data import Dataset, load_dataset, splits
from modelport.pipeline.reference import write_reference
from modelport.pipeline.train.config import Progress, TrainConfig, model_yaml, pixels
from modelport.pipeline.train.environment import record as environment_record


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
    reference = extras["reference"]
    framework_outputs = write_reference(
        out, reference["outputs"], pixels(parts.test[0]), reference["output"], reference["tolerance"]
    )
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
        "framework_outputs": framework_outputs,  # the framework model's answers on the test split
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
