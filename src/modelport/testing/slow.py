"""A slow new version of a scikit-learn model, for tests of canary analysis: the same answers as
the estimator it wraps, each `seconds` late (pickled, it needs `modelport serve --allow_pickle`)."""

from __future__ import annotations

import time
from typing import Any


class Slowed:
    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds

    def predict(self, x: Any) -> Any:
        time.sleep(self.seconds)
        return self.inner.predict(x)

    def __getattr__(self, name: str) -> Any:
        """Everything else (classes_, n_features_in_, predict_proba) is the wrapped estimator's."""
        if name == "inner" or name.startswith("__"):  # unpickling asks before `inner` is set
            raise AttributeError(name)
        return getattr(self.inner, name)
