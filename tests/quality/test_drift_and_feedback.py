"""The pure parts of model quality: the distance, the windows, the confusion matrix, profiles."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.errors import ModelportError
from modelport.quality.drift import DriftWindows, Window, js_distance
from modelport.quality.feedback import Confusion
from modelport.quality.profile import parse, profile_of


def test_js_distance_is_the_worked_example_and_bounded() -> None:
    assert js_distance(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(0.383, abs=1e-3)
    assert js_distance(np.array([1, 2, 3]), np.array([2, 4, 6])) == pytest.approx(0.0, abs=1e-9)
    assert js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_a_window_keeps_the_last_rows_counts_in_batches_of_any_size() -> None:
    window = Window(5, 3)
    window.add(np.array([0, 1, 2]))
    window.add(np.array([2, 2, 2, 2]))  # wraps: the 0 and the 1 go
    assert window.counts.tolist() == [0, 0, 5] and window.filled == 5
    window.add(np.array([1] * 12))  # more than the window: its last 5
    assert window.counts.tolist() == [0, 5, 0]
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 3, 1000)
    window = Window(100, 3)
    for chunk in np.array_split(stream, 37):
        window.add(chunk)
    assert window.counts.tolist() == np.bincount(stream[-100:], minlength=3).tolist()


def test_drift_scores_wait_for_enough_rows() -> None:
    windows = DriftWindows(np.array([0.5, 0.5]), {"x.ink": np.array([0.5, 0.5])}, size=50)
    windows.predictions.add(np.array([0] * 10))
    assert windows.scores(least_rows=20) == {}
    windows.predictions.add(np.array([0] * 10))
    windows.inputs["x.ink"].add(np.array([0, 1] * 10))
    scores = windows.scores(least_rows=20)
    assert scores["prediction"] == pytest.approx(js_distance(np.array([0.5, 0.5]), np.array([1.0, 0.0])))
    assert scores["input"] == pytest.approx(0.0, abs=1e-9)


def test_confusion_is_the_worked_example_and_slides() -> None:
    confusion = Confusion(3, size=4)
    confusion.add(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    assert confusion.accuracy == 0.75
    figures = confusion.per_class(("a", "b", "c"))
    assert figures["b"] == {"precision": 1.0, "recall": 0.5, "support": 2}
    assert figures["c"] == {"precision": 0.5, "recall": 1.0, "support": 1}
    confusion.add(np.array([2, 2]), np.array([0, 0]))  # the two oldest pairs leave the window
    assert confusion.matrix.sum() == 4 and confusion.accuracy == 0.25 and confusion.total == 6


def test_a_profile_round_trips_and_a_broken_one_names_its_field() -> None:
    rng = np.random.default_rng(0)
    rows = rng.random((300, 16)).astype(np.float32)
    doc = profile_of({"x": rows}, rng.integers(0, 3, 300), ["a", "b", "c"], accuracy=0.9, window=100)
    profile = parse(doc, "p.json")
    assert profile.classes == ("a", "b", "c") and profile.window == 100 and profile.accuracy == 0.9
    assert profile.thresholds["input"] >= 0.2 and profile.inputs["x"].bins(rows)["ink"].max() < 20
    for field, value, words in [
        ("predictions", [1, 2], "predictions: must be 3 shares"),
        ("window", 3, "window: 3 must be"),
        ("thresholds", {"input": 2}, "thresholds: input and prediction"),
        ("format", 9, "format: 9 is not 1"),
    ]:
        with pytest.raises(ModelportError, match=words):
            parse({**doc, field: value}, "p.json")
