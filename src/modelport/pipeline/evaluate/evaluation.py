"""`modelport evaluate`: the ONNX file that will be served, measured on held-out data.

Accuracy; precision, recall, F1 and support per class; macro and weighted averages; the confusion
matrix; and a diagnosis of over- or under-fitting from the training curves, with the numbers
that led to it. Written as evaluation.json (for machines, and for `registry publish`, which
checks the folder's checksum against the one evaluated) and report.html (self-contained, the
confusion matrix and learning curves drawn as inline SVG), and reference_profile.json (the test
inputs' statistics and the model's answers on them, quality/profile.py: `registry publish` stores
it with the version, the server measures drift against it). Before measuring, the file is run on
the rows training recorded the framework model's answers for (`pipeline/reference.py`): a file
that is not the trained model is refused.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.charts import line_chart
from modelport.errors import ModelportError, invalid
from modelport.pipeline.data import load_dataset, splits
from modelport.pipeline.reference import compare, describe, disagreement, read_reference, rows_sha256
from modelport.pipeline.train import pixels
from modelport.quality.profile import FILE as PROFILE_FILE
from modelport.quality.profile import profile_of
from modelport.registry import manifest, manifest_sha256

# The figures evaluation.json's `metrics` holds: what a publish gate or a pipeline's gate may name.
METRICS = ("accuracy", "macro_f1", "weighted_f1")


def classification_metrics(
    truth: np.ndarray, predicted: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1).astype(float)
    predicted_count = confusion.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_count > 0, tp / predicted_count, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    weights = support / support.sum()
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(support[i])}
        for i, name in enumerate(classes)
    }  # fmt: skip
    return {
        "accuracy": float(tp.sum() / support.sum()),
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "weighted": {
            "precision": float(precision @ weights),
            "recall": float(recall @ weights),
            "f1": float(f1 @ weights),
        },
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def diagnose(history: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Over- or under-fitting, from the last epoch and the validation loss curve."""
    if not history:
        return {"verdict": "unknown", "reason": "no training curves recorded"}
    last = history[-1]
    gap = last["train_accuracy"] - last["val_accuracy"]
    losses = [h["val_loss"] for h in history]
    best = int(np.argmin(losses))
    rise = (losses[-1] - losses[best]) / losses[best] if losses[best] > 0 else 0.0
    evidence = {
        "train_accuracy": last["train_accuracy"], "val_accuracy": last["val_accuracy"], "gap": gap,
        "best_val_loss_epoch": history[best]["epoch"], "val_loss_rise_since_best": rise,
    }  # fmt: skip
    if last["train_accuracy"] < 0.9:
        verdict, reason = (
            "underfitting",
            (
                f"training accuracy is only {last['train_accuracy']:.3f}: the model does not fit the data it "
                "learns from; train longer or use a larger model"
            ),
        )
    elif gap > 0.03 and rise > 0.1:
        verdict, reason = (
            "overfitting",
            (
                f"training accuracy {last['train_accuracy']:.3f} exceeds validation {last['val_accuracy']:.3f} "
                f"by {gap:.3f}, and validation loss has risen {rise:.0%} since epoch {history[best]['epoch']}; "
                "stop earlier, regularise, or add data"
            ),
        )
    else:
        verdict, reason = (
            "good fit",
            (
                f"validation accuracy {last['val_accuracy']:.3f} is within {gap:.3f} of training, and validation "
                f"loss is {rise:.0%} above its best"
            ),
        )
    return {"verdict": verdict, "reason": reason, "evidence": evidence}


def evaluate(folder: Path, data_spec: str | None = None, out: Path | None = None) -> dict[str, Any]:
    """Measure model.onnx on the test split, after checking it against the framework model.

    Raises if the file disagrees with the framework's recorded answers (`reference.compare`): a
    report for a file that is not the trained model would vouch for the wrong thing.
    """
    import onnxruntime as ort

    record_file = folder / "training.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    spec = data_spec or record.get("config", {}).get("data")
    if not spec:
        raise invalid(f"{folder}: no training.json to say which data; give --data")
    data = load_dataset(spec)
    split_seed = record.get("config", {}).get("split_seed", 0)
    images, labels = splits(data, seed=split_seed).test
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = _run(session, folder, images)
    if logits.shape[1] != len(data.classes):
        raise invalid(f"{folder}: the model has {logits.shape[1]} classes, the data {len(data.classes)}")
    same_data = spec == record.get("config", {}).get("data")
    export_check = check_export(folder, record, session, images if same_data else None)
    metrics = classification_metrics(labels, logits.argmax(axis=1), data.classes)
    # What the served version's live traffic is compared with (drift): these inputs, as the
    # model saw them, and its answers on them.
    profile = profile_of(
        {session.get_inputs()[0].name: _feed(session, images)}, logits.argmax(axis=1), data.classes,
        metrics["accuracy"],
    )  # fmt: skip
    report = {
        "model": str(folder),
        "sha256": manifest_sha256(manifest(folder)),
        "data": {"name": data.name, "split": "test", "size": len(labels)},
        "metrics": {
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro"]["f1"],
            "weighted_f1": metrics["weighted"]["f1"],
        },
        "details": metrics,
        "diagnosis": diagnose(record.get("history", [])),
        "history": record.get("history", []),
        "export_check": export_check,
        "environment": record.get("environment", {}),
        "parent": (record.get("parent") or {}).get("version"),
        "reference_profile": profile,
    }
    out = out or folder.parent / f"{folder.name}-evaluation"
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.html").write_text(render_html(report, data.classes))
    (out / PROFILE_FILE).write_text(json.dumps(profile, indent=1) + "\n")
    return report


def _feed(session: Any, images: np.ndarray) -> np.ndarray:
    """uint8 images [N, H, W] as the model's one input takes them (float32 in [0, 1])."""
    (feed,) = session.get_inputs()
    x = pixels(images)
    if len(feed.shape) == 4:
        x = x.reshape(len(images), 1, *images.shape[1:])
    return x


def _run(session: Any, folder: Path, images: np.ndarray) -> np.ndarray:
    """The model's logits for uint8 images [N, H, W], shaped as its one input wants them."""
    (feed,) = session.get_inputs()
    x = _feed(session, images)
    if feed.shape[-1] not in (x.shape[-1], None) and isinstance(feed.shape[-1], int):
        raise invalid(f"{folder}: the model takes {feed.shape}, the data gives {list(x.shape)}")
    logits: np.ndarray = session.run(["logits"], {feed.name: x})[0]
    return logits


def check_export(
    folder: Path, record: dict[str, Any], session: Any, images: np.ndarray | None
) -> dict[str, Any]:
    """model.onnx against the framework model's recorded answers on the training data's test split.

    `images` is that split when evaluate already loaded it (None: load it from the record). Returns
    `{"checked": False, "reason": ...}` when there is nothing to compare with (a folder not written
    by `train`, or the data gone); raises when the file disagrees.
    """
    entry = record.get("framework_outputs")
    if not entry:
        return {
            "checked": False,
            "reason": "training.json records no framework outputs to compare model.onnx with",
        }
    expected = read_reference(folder, entry)
    if images is None:
        try:
            data = load_dataset(record["config"]["data"])
        except ModelportError as exc:
            return {"checked": False, "reason": f"the training data cannot be read: {exc.message}"}
        images = splits(data, seed=record["config"].get("split_seed", 0)).test[0]
    if rows_sha256(pixels(images)) != entry["rows_sha256"]:
        return {"checked": False, "reason": "the training data's test split is not the one training recorded"}
    check = {
        "checked": True,
        "split": entry["split"],
        "rows": len(images),
        **compare(_run(session, folder, images), expected, entry["output"], entry["tolerance"]),
    }
    if not check["agrees"]:
        raise disagreement(folder, check)
    return check


# -- the report --


def _confusion_svg(matrix: list[list[int]], classes: Sequence[str]) -> str:
    k, cell, pad = len(classes), 34, 60
    top = max(max(row) for row in matrix) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{pad + k * cell + 10}" height="{pad + k * cell + 10}" '
             'font-family="sans-serif" font-size="11" role="img" aria-label="confusion matrix">']  # fmt: skip
    for i, row in enumerate(matrix):
        parts.append(
            f'<text x="{pad - 6}" y="{pad + i * cell + cell / 2 + 4}" text-anchor="end">{html.escape(classes[i])}</text>'
        )
        for j, count in enumerate(row):
            shade = int(255 - 215 * count / top)
            color = f"rgb({shade},{shade},255)" if i == j else f"rgb(255,{shade},{shade})"
            parts.append(f'<rect x="{pad + j * cell}" y="{pad + i * cell}" width="{cell}" height="{cell}" '
                         f'fill="{color}" stroke="#ccc"><title>true {html.escape(classes[i])}, predicted '
                         f'{html.escape(classes[j])}: {count}</title></rect>')  # fmt: skip
            if count:
                parts.append(f'<text x="{pad + j * cell + cell / 2}" y="{pad + i * cell + cell / 2 + 4}" '
                             f'text-anchor="middle">{count}</text>')  # fmt: skip
    for j, name in enumerate(classes):
        parts.append(
            f'<text x="{pad + j * cell + cell / 2}" y="{pad - 8}" text-anchor="middle">{html.escape(name)}</text>'
        )
    parts.append(f'<text x="{pad + k * cell / 2}" y="14" text-anchor="middle">predicted</text>')
    parts.append(f'<text x="12" y="{pad + k * cell / 2}" transform="rotate(-90 12 {pad + k * cell / 2})" '
                 'text-anchor="middle">true</text></svg>')  # fmt: skip
    return "".join(parts)


def _curve_svg(history: Sequence[dict[str, float]], keys: Sequence[str], title: str) -> str:
    if not history:
        return "<p>no training curves recorded</p>"
    series = {key: [(h["epoch"], h[key]) for h in history] for key in keys}
    return line_chart(series, title, "epoch")


def render_html(report: dict[str, Any], classes: Sequence[str]) -> str:
    details = report["details"]
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
        f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
        for n, m in details["per_class"].items()
    )
    for label in ("macro", "weighted"):
        m = details[label]
        rows += f"<tr><th>{label} avg</th><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td><td>{m['f1']:.3f}</td><td></td></tr>"
    diagnosis = report["diagnosis"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation of {html.escape(report["model"])}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}}
.figures{{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}}</style></head><body>
<h1>Evaluation: {html.escape(report["model"])}</h1>
<p>Held-out <b>{html.escape(report["data"]["name"])}</b> test split, {report["data"]["size"]} images, evaluated
on the ONNX file that will be served (sha256 {report["sha256"][:16]}…).</p>
<h2>Accuracy {details["accuracy"]:.4f} · macro F1 {details["macro"]["f1"]:.4f}</h2>
<p>Served file against the framework model: {html.escape(describe(report["export_check"]))}.</p>
<p><b>Diagnosis: {html.escape(diagnosis["verdict"])}</b>: {html.escape(diagnosis.get("reason", ""))}</p>
<div class="figures">
<figure>{_confusion_svg(details["confusion_matrix"], classes)}<figcaption>Confusion matrix</figcaption></figure>
<figure>{_curve_svg(report["history"], ["train_accuracy", "val_accuracy"], "accuracy")}
{_curve_svg(report["history"], ["train_loss", "val_loss"], "loss")}<figcaption>Learning curves</figcaption></figure>
</div>
<h2>Per class</h2>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>
</body></html>
"""
