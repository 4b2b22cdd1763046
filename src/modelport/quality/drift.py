"""How far live traffic is from a version's reference profile: the Jensen-Shannon distance
between two distributions over the same bins, over a sliding window of the last rows.

Jensen-Shannon distance (base 2): the square root of the mean of the Kullback-Leibler
divergences of P and Q from their average M = (P + Q) / 2. It is 0 for equal distributions, 1
for ones with no bin in common, and, unlike PSI, defined when a bin is empty on one side (a
class the model never answered on the reference). E.g. P = [0.5, 0.5], Q = [0.9, 0.1]:
M = [0.7, 0.3], KL(P||M) = 0.126, KL(Q||M) = 0.168 bits, distance = sqrt(0.147) = 0.38.

A window holds the last `size` rows' bins per statistic and their counts, updated in place: a
batch of m rows costs O(m), a score O(bins), whatever the window's size.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max(0.0, (kl_p + kl_q) / 2)))


class Window:
    """The last `size` values (bin indices in [0, bins)) and how many fall in each bin."""

    def __init__(self, size: int, bins: int) -> None:
        self.size = size
        self.counts = np.zeros(bins, dtype=np.int64)
        self._values = np.zeros(size, dtype=np.int64)
        self._next = 0  # where the next value goes
        self.filled = 0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.int64)[-self.size :]
        m = len(values)
        if not m:
            return
        slots = (self._next + np.arange(m)) % self.size
        if self.filled == self.size:
            self.counts -= np.bincount(self._values[slots], minlength=len(self.counts))
        else:
            overwritten = slots[slots < self.filled]  # once the ring wraps within this batch
            self.counts -= np.bincount(self._values[overwritten], minlength=len(self.counts))
        self._values[slots] = values
        self.counts += np.bincount(values, minlength=len(self.counts))
        self._next = int((self._next + m) % self.size)
        self.filled = min(self.size, self.filled + m)

    def distance(self, reference: np.ndarray) -> float | None:
        """The window's distance from `reference` (shares per bin); None while it is empty."""
        if not self.filled:
            return None
        return js_distance(reference, self.counts)


class DriftWindows:
    """One version's windows: its answers' classes, and each input statistic's bins."""

    def __init__(self, predictions: np.ndarray, inputs: Mapping[str, np.ndarray], size: int) -> None:
        self._predictions_reference = predictions
        self._inputs_reference = dict(inputs)  # (input.statistic) -> shares
        self.predictions = Window(size, len(predictions))
        self.inputs = {key: Window(size, len(shares)) for key, shares in inputs.items()}

    def scores(self, least_rows: int) -> dict[str, float]:
        """{"input": the largest statistic's distance, "prediction": ...}, for the windows
        holding at least `least_rows` rows (a handful of rows is far from anything by chance)."""
        out: dict[str, float] = {}
        if self.predictions.filled >= least_rows:
            out["prediction"] = self.predictions.distance(self._predictions_reference) or 0.0
        distances = [
            window.distance(self._inputs_reference[key]) or 0.0
            for key, window in self.inputs.items()
            if window.filled >= least_rows
        ]
        if distances:
            out["input"] = max(distances)
        return out
