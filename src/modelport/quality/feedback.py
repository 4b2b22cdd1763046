"""Live accuracy from feedback: true labels that arrive after the answers, per version.

`Confusion` keeps the last `size` (true, predicted) pairs and their confusion matrix, updated in
place (a pair in, the oldest out): accuracy, and precision and recall per class, over a sliding
window of the most recent feedback. E.g. 3 classes, pairs (0,0) (1,1) (1,2) (2,2): accuracy
3/4; class 1 precision 1/1, recall 1/2; class 2 precision 1/2, recall 1/1.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Confusion:
    def __init__(self, classes: int, size: int) -> None:
        self.size = size
        self.matrix = np.zeros((classes, classes), dtype=np.int64)  # [true, predicted]
        self._pairs = np.zeros((size, 2), dtype=np.int64)
        self._next = 0
        self.filled = 0
        self.total = 0  # every pair ever added

    def add(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        for t, p in zip(truth.tolist(), predicted.tolist(), strict=True):
            if self.filled == self.size:
                old_t, old_p = self._pairs[self._next]
                self.matrix[old_t, old_p] -= 1
            else:
                self.filled += 1
            self._pairs[self._next] = (t, p)
            self.matrix[t, p] += 1
            self._next = (self._next + 1) % self.size
            self.total += 1

    @property
    def accuracy(self) -> float | None:
        return float(np.trace(self.matrix) / self.filled) if self.filled else None

    def per_class(self, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Precision and recall per class (None where the window has nothing to divide by)."""
        hits = np.diag(self.matrix)
        answered = self.matrix.sum(axis=0)
        actual = self.matrix.sum(axis=1)
        return {
            name: {
                "precision": float(hits[i] / answered[i]) if answered[i] else None,
                "recall": float(hits[i] / actual[i]) if actual[i] else None,
                "support": int(actual[i]),
            }
            for i, name in enumerate(names)
        }
