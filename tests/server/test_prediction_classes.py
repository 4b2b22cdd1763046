"""modelport_predictions_total{model,version,class}: a classifier's rows by predicted class (its
scores' argmax, or its integer labels), bounded by the output's width; other outputs count none."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from modelport.server.metrics import MAX_CLASSES, ServerMetrics, predicted_classes


def test_scores_count_their_argmax_and_labels_themselves() -> None:
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], dtype=np.float32)
    assert predicted_classes({"logits": scores}) == {"1": 2, "0": 1}
    assert predicted_classes({"classes": np.array([3, 3, 7])}) == {"3": 2, "7": 1}


def test_outputs_that_are_no_classifiers_count_nothing_and_labels_are_bounded() -> None:
    assert predicted_classes({"y": np.zeros((4, 1), dtype=np.float32)}) == {}  # a regression
    assert predicted_classes({"emb": np.zeros((2, MAX_CLASSES + 1), dtype=np.float32)}) == {}
    assert predicted_classes({"classes": np.array([5, MAX_CLASSES, -1])}) == {"5": 1}


def test_the_counter_is_exported_by_model_version_and_class() -> None:
    metrics = ServerMetrics()
    servable = SimpleNamespace(model_name="mnist", version=2)
    metrics.predicted(servable, {"logits": np.eye(3, dtype=np.float32)[[2, 2, 0]]})
    found = {
        (s.labels["model"], s.labels["version"], s.labels["class"]): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name == "modelport_predictions_total"
    }
    assert found == {("mnist", "2", "2"): 2.0, ("mnist", "2", "0"): 1.0}
