"""The accurate model: a small convolutional network in PyTorch (CPU), trained with random shifts
of the digits, exported to ONNX and checked against PyTorch's own answers.

    pixels [N, H*W] -> [N, 1, H, W] -> conv 5x5x32 -> ReLU -> max-pool 2 -> conv 5x5x64 -> ReLU
        -> max-pool 2 -> dropout -> dense `hidden` -> ReLU -> dropout -> dense (classes) -> logits

The folder also keeps `checkpoint.pt` (the weights), which continued training starts from.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import Code, ModelportError
from modelport.pipeline.data import Dataset, Splits
from modelport.pipeline.train.config import Progress, TrainConfig, pixels

CHECKPOINT = "checkpoint.pt"


def _network(height: int, width: int, classes: int, hidden: int) -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.height, self.width = height, width
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            )  # fmt: skip
            flat = 64 * (height // 4) * (width // 4)
            self.head = nn.Sequential(
                nn.Flatten(), nn.Dropout(0.3), nn.Linear(flat, hidden), nn.ReLU(), nn.Dropout(0.3),
                nn.Linear(hidden, classes),
            )  # fmt: skip

        def forward(self, x: torch.Tensor) -> Any:
            return self.head(self.features(x.reshape(-1, 1, self.height, self.width)))

    return Net()


def _shifted(images: np.ndarray, rng: np.random.Generator, most: int = 2) -> np.ndarray:
    """Each image moved by up to `most` pixels each way: digits are not always centred."""
    out = np.zeros_like(images)
    height, width = images.shape[1:]
    dy, dx = rng.integers(-most, most + 1, size=(2, len(images)))
    for i, (y, x) in enumerate(zip(dy, dx, strict=True)):
        src = images[i, max(0, -y) : height - max(0, y), max(0, -x) : width - max(0, x)]
        out[i, max(0, y) : max(0, y) + src.shape[0], max(0, x) : max(0, x) + src.shape[1]] = src
    return out


def train_cnn(
    config: TrainConfig, data: Dataset, parts: Splits, parent: Path | None, progress: Progress
) -> tuple[bytes, list[dict[str, Any]]]:
    try:
        import torch
        from torch import nn
    except ImportError:
        raise ModelportError(
            Code.FAILED_PRECONDITION, "the CNN needs PyTorch: pip install torch==2.13.0 (the CPU build)"
        ) from None
    torch.manual_seed(config.seed)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    height, width = data.shape
    classes = len(data.classes)
    net = _network(height, width, classes, config.hidden)
    if parent is not None:
        state = torch.load(parent / CHECKPOINT, weights_only=True)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelportError(
                Code.FAILED_PRECONDITION, f"from: {parent}: the weights do not fit: {exc}"
            ) from None
    optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    # The step size falls smoothly to nothing by the last epoch: the last epochs settle, not jump.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(config.seed)
    train_images, y = parts.train
    xv, yv = torch.from_numpy(pixels(parts.val[0])), torch.from_numpy(parts.val[1])
    history: list[dict[str, Any]] = []
    for epoch in range(1, config.epochs + 1):
        net.train()
        started = time.perf_counter()
        x = torch.from_numpy(pixels(_shifted(train_images, rng)))
        labels = torch.from_numpy(y)
        order = torch.from_numpy(rng.permutation(len(y)))
        total, right, loss_sum = 0, 0, 0.0
        for start in range(0, len(y), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimiser.zero_grad()
            logits = net(x[batch])
            loss = loss_fn(logits, labels[batch])
            loss.backward()
            optimiser.step()
            loss_sum += loss.item() * len(batch)
            right += int((logits.argmax(1) == labels[batch]).sum())
            total += len(batch)
        schedule.step()
        seconds = time.perf_counter() - started
        net.eval()
        with torch.no_grad():
            val_logits = net(xv)
        figures = {
            "epoch": epoch,
            "train_loss": loss_sum / total,
            "val_loss": float(loss_fn(val_logits, yv)),
            "train_accuracy": right / total,
            "val_accuracy": float((val_logits.argmax(1) == yv).float().mean()),
            "images_per_second": total / seconds,
        }
        history.append(figures)
        progress(epoch, config.epochs, figures)
    net.eval()
    exported = _export(net, height * width)
    with torch.no_grad():
        expected = net(xv).numpy()
        test_logits = net(torch.from_numpy(pixels(parts.test[0]))).numpy()
    history.append({"export_check": _check(exported, expected, xv.numpy())})
    # PyTorch's own answers on the test split, for `evaluate` to hold the served file against.
    history.append({"reference": {"outputs": test_logits, "output": "logits", "tolerance": 1e-3}})
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    history.append({"checkpoint": buffer.getvalue()})
    return exported, history


def _export(net: Any, features: int) -> bytes:
    import torch

    buffer: Any = io.BytesIO()
    # The TorchScript exporter: it needs nothing beyond torch (the dynamo one wants onnxscript).
    # torch 2.13 marks it deprecated; the export is checked against PyTorch's answers below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net, (torch.zeros(1, features),), buffer, input_names=["pixels"], output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
    return bytes(buffer.getvalue())


def _check(model: bytes, expected: np.ndarray, x: np.ndarray) -> dict[str, float]:
    import onnxruntime as ort

    logits = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(["logits"], {"pixels": x})[0]
    worst = float(np.abs(logits - expected).max())
    same = float((logits.argmax(1) == expected.argmax(1)).mean())
    if same < 1.0 or worst > 1e-3:
        raise ModelportError(
            Code.INTERNAL, f"the ONNX export disagrees with PyTorch (logits differ by up to {worst:.2g})"
        )
    return {"images": len(x), "max_abs_logit_difference": worst, "same_class": same}
