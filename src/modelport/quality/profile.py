"""A version's reference profile: what its inputs and answers looked like on held-out data, so
live traffic can be compared with it (drift.py).

`modelport evaluate` writes it (`profile_of`), `registry publish` stores it in the version folder
as `reference_profile.json`, and the server reads it when it loads the version (`parse`):

    {"format": 1, "rows": 500, "accuracy": 0.96, "window": 500,
     "classes": ["0", ..., "9"],
     "predictions": [0.098, 0.114, ...],                    # share of answers per class
     "inputs": {"pixels": {"range": [0.0, 1.0],
                           "intensity": [0.0, 0.01, ...],   # share of rows per bin
                           "ink": [...]}},
     "thresholds": {"input": 0.2, "prediction": 0.2}}

Input statistics, per row of a numeric model input (an image: its pixels as the model sees them):
`intensity`, the row's mean, in 20 equal bins over the reference's value range; `ink`, the share
of the row's values above the middle of that range (a digit's stroke, a garment's cloth), in 20
bins over [0, 1]. An MNIST digit through the MNIST example: intensity ~0.13, ink ~0.14; a
Fashion-MNIST garment: intensity ~0.45, ink ~0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import invalid
from modelport.quality.drift import js_distance

FILE = "reference_profile.json"
FORMAT = 1
BINS = 20
STATISTICS = ("intensity", "ink")
DEFAULT_WINDOW = 500
# The least a threshold may be: a window of 500 rows from the reference itself is ~0.03-0.06
# away from it by chance (see thresholds_for), held-out digits through the server's decoding
# ~0.1; a different kind of image (Fashion-MNIST into the MNIST example) 0.5 and more.
MIN_THRESHOLD = 0.2


@dataclass(frozen=True)
class InputProfile:
    lo: float
    hi: float
    histograms: Mapping[str, np.ndarray]  # statistic -> share of rows per bin

    def bins(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Each row's bin for each statistic (int64 [n])."""
        return self.bins_of(statistics(rows, self.lo, self.hi))

    def bins_of(self, stats: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The bins of statistics already computed (`statistics(rows, lo, hi)` with this range)."""
        return {
            name: _bin(stats[name], *_range(name, self.lo, self.hi)) for name in STATISTICS if name in stats
        }


@dataclass(frozen=True)
class Profile:
    classes: tuple[str, ...]
    predictions: np.ndarray  # share of answers per class
    inputs: Mapping[str, InputProfile]  # by model input tensor name
    thresholds: Mapping[str, float]  # "input", "prediction"
    window: int = DEFAULT_WINDOW
    rows: int = 0
    accuracy: float | None = None


def statistics(rows: np.ndarray, lo: float, hi: float) -> dict[str, np.ndarray]:
    """Per row: its mean (`intensity`) and its share of values above the middle of [lo, hi]."""
    flat = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    middle = lo + (hi - lo) / 2
    width = flat.shape[1]
    # The booleans as bytes summed into 16 bits: count_nonzero with an axis casts each to int64
    # first (a batch of 256 digits: 35-50 against 150 us; the same counts).
    above = (flat > middle).view(np.uint8)
    ink = above.sum(axis=1, dtype=np.uint16 if width < 2**16 else np.int64) / max(1, width)
    return {"intensity": flat.mean(axis=1), "ink": ink}


def _range(statistic: str, lo: float, hi: float) -> tuple[float, float]:
    return (lo, hi) if statistic == "intensity" else (0.0, 1.0)


def _bin(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    return np.clip(((values - lo) / span * BINS).astype(np.int64), 0, BINS - 1)


def _shares(indices: np.ndarray, bins: int) -> np.ndarray:
    counts = np.bincount(indices, minlength=bins).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def profile_of(
    inputs: Mapping[str, np.ndarray],
    predicted: np.ndarray,
    classes: Sequence[str],
    accuracy: float | None = None,
    window: int = DEFAULT_WINDOW,
    seed: int = 0,
) -> dict[str, Any]:
    """The profile (as JSON) of held-out `inputs` (model input name -> rows) and the model's
    answers on them (`predicted`: class indices)."""
    k = len(classes)
    doc_inputs: dict[str, Any] = {}
    input_bins: dict[str, dict[str, np.ndarray]] = {}
    for name, rows in inputs.items():
        array = np.asarray(rows, dtype=np.float32)
        lo, hi = float(array.min()), float(array.max())
        stats = statistics(array, lo, hi)
        input_bins[name] = {s: _bin(v, *_range(s, lo, hi)) for s, v in stats.items()}
        doc_inputs[name] = {
            "range": [lo, hi],
            **{s: _shares(b, BINS).round(6).tolist() for s, b in input_bins[name].items()},
        }
    predictions = _shares(np.asarray(predicted, dtype=np.int64), k)
    thresholds = thresholds_for(input_bins, np.asarray(predicted, dtype=np.int64), k, window, seed)
    return {
        "format": FORMAT,
        "rows": len(predicted),
        "accuracy": accuracy,
        "window": window,
        "classes": list(classes),
        "predictions": predictions.round(6).tolist(),
        "inputs": doc_inputs,
        "thresholds": thresholds,
    }


def thresholds_for(
    input_bins: Mapping[str, Mapping[str, np.ndarray]],
    predicted: np.ndarray,
    classes: int,
    window: int,
    seed: int = 0,
    draws: int = 200,
) -> dict[str, float]:
    """How far a window of `window` rows drawn from the reference itself lands from it by chance
    (the largest of `draws` such windows), doubled, and at least MIN_THRESHOLD. E.g. the MNIST
    example's 500 test digits: windows of 500 drawn from them are at most ~0.06 (inputs) and
    ~0.07 (answers) from the whole: the thresholds are 0.2."""
    rng = np.random.default_rng(seed)
    n = len(predicted)
    worst = {"input": 0.0, "prediction": 0.0}
    reference = _shares(predicted, classes)
    input_reference = {(i, s): _shares(b, BINS) for i, stats in input_bins.items() for s, b in stats.items()}
    for _ in range(draws):
        pick = rng.integers(0, n, size=window)
        worst["prediction"] = max(
            worst["prediction"], js_distance(reference, _shares(predicted[pick], classes))
        )
        for (i, s), shares in input_reference.items():
            worst["input"] = max(worst["input"], js_distance(shares, _shares(input_bins[i][s][pick], BINS)))
    return {kind: round(max(MIN_THRESHOLD, 2 * value), 4) for kind, value in worst.items()}


def parse(doc: Any, source: str) -> Profile:
    """A profile from its JSON; errors name the file and the field."""
    if not isinstance(doc, dict):
        raise invalid(f"{source}: a reference profile is a JSON object")
    if doc.get("format") != FORMAT:
        raise invalid(f"{source}: format: {doc.get('format')!r} is not {FORMAT}")
    classes = doc.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise invalid(f"{source}: classes: must be a non-empty list of class names")
    predictions = _distribution(doc.get("predictions"), len(classes), f"{source}: predictions")
    inputs_doc = doc.get("inputs", {})
    if not isinstance(inputs_doc, dict):
        raise invalid(f"{source}: inputs: must be an object keyed by model input name")
    inputs = {name: _input(entry, f"{source}: inputs.{name}") for name, entry in inputs_doc.items()}
    thresholds = doc.get("thresholds", {})
    if not isinstance(thresholds, dict) or not all(
        isinstance(thresholds.get(k, 0.0), int | float) and 0 < thresholds.get(k, MIN_THRESHOLD) <= 1
        for k in ("input", "prediction")
    ):
        raise invalid(f"{source}: thresholds: input and prediction must be numbers in (0, 1]")
    window = doc.get("window", DEFAULT_WINDOW)
    if not isinstance(window, int) or isinstance(window, bool) or not 10 <= window <= 100_000:
        raise invalid(f"{source}: window: {window!r} must be a whole number of rows from 10 to 100000")
    accuracy = doc.get("accuracy")
    if accuracy is not None and (not isinstance(accuracy, int | float) or not 0 <= accuracy <= 1):
        raise invalid(f"{source}: accuracy: {accuracy!r} must be a number from 0 to 1")
    return Profile(
        classes=tuple(classes),
        predictions=predictions,
        inputs=inputs,
        thresholds={k: float(thresholds.get(k, MIN_THRESHOLD)) for k in ("input", "prediction")},
        window=window,
        rows=int(doc.get("rows", 0)),
        accuracy=None if accuracy is None else float(accuracy),
    )


def _distribution(value: Any, size: int, where: str) -> np.ndarray:
    if (
        not isinstance(value, list)
        or len(value) != size
        or not all(isinstance(v, int | float) and v >= 0 for v in value)
        or sum(value) <= 0
    ):
        raise invalid(f"{where}: must be {size} shares (non-negative numbers, not all 0)")
    array = np.asarray(value, dtype=np.float64)
    shares: np.ndarray = array / array.sum()
    return shares


def _input(entry: Any, where: str) -> InputProfile:
    if not isinstance(entry, dict):
        raise invalid(f"{where}: must be an object")
    bounds = entry.get("range")
    if not (
        isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds)
    ):
        raise invalid(f"{where}.range: must be [low, high]")
    histograms = {s: _distribution(entry.get(s), BINS, f"{where}.{s}") for s in STATISTICS}
    return InputProfile(float(bounds[0]), float(bounds[1]), histograms)
