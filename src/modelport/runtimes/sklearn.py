"""scikit-learn models saved with skops (`model.skops`) or joblib/pickle (`model.joblib`, `.pkl`).

Trust model. Unpickling runs code chosen by whoever wrote the file, so a pickle is as trusted as
a program. modelport therefore refuses `.joblib`/`.pkl` files unless the *operator* starts the
server with `--allow_pickle` (a model folder cannot grant itself that). `.skops` files are
loaded with skops' safe loader, which only builds types it knows (scikit-learn, numpy, scipy);
a file needing other types fails with their names, and the operator may trust them by name with
`--trusted_types`. Prefer skops; keep the model repository writable only by your publishers.

The model's tensors: input `X` (float64, [-1, n_features]); outputs `classes` (the predicted
label) and, for classifiers with `predict_proba`, `probabilities` ([-1, n_classes], columns in
the order of `class_labels`); regressors give `predictions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import Code, ModelportError
from modelport.runtimes.base import TensorSpec

_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


def _label_dtype(labels: np.ndarray) -> str:
    return "string" if labels.dtype.kind in "OUS" else str(labels.dtype)


class SklearnModel:
    def __init__(self, estimator: Any) -> None:
        if not hasattr(estimator, "predict"):
            raise ModelportError(Code.INVALID_ARGUMENT, "object has no predict(): not an estimator")
        self._estimator = estimator
        n_features = int(getattr(estimator, "n_features_in_", -1))
        self._inputs = (TensorSpec("X", "float64", (-1, n_features)),)
        labels = getattr(estimator, "classes_", None)
        self.class_labels: tuple[str, ...] | None = None
        self._outputs: tuple[TensorSpec, ...]
        if labels is not None and hasattr(estimator, "predict_proba"):
            labels = np.asarray(labels)
            self.class_labels = tuple(str(x) for x in labels)
            self._outputs = (
                TensorSpec("classes", _label_dtype(labels), (-1,)),
                TensorSpec("probabilities", "float64", (-1, len(labels))),
            )
        else:
            self._outputs = (TensorSpec("predictions", "float64", (-1,)),)

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        x = np.asarray(feeds["X"], dtype=np.float64)
        names = output_names or [o.name for o in self._outputs]
        result: dict[str, np.ndarray] = {}
        for name in names:
            if name == "probabilities":
                result[name] = self._estimator.predict_proba(x)
            else:
                out = np.asarray(self._estimator.predict(x))
                result[name] = out.astype(object) if out.dtype.kind == "U" else out
        return result


class SklearnRuntime:
    platform = "sklearn"
    file_suffixes: tuple[str, ...] = (".skops", *_PICKLE_SUFFIXES)

    def __init__(self, allow_pickle: bool = False, trusted_types: Sequence[str] = ()) -> None:
        self._allow_pickle = allow_pickle
        self._trusted_types = list(trusted_types)

    def load(self, path: Path, options: Mapping[str, Any]) -> SklearnModel:
        if options:
            raise ModelportError(
                Code.INVALID_ARGUMENT, f"scikit-learn models take no runtime options: {dict(options)}"
            )
        estimator = self._load_pickle(path) if path.suffix in _PICKLE_SUFFIXES else self._load_skops(path)
        return SklearnModel(estimator)

    def _load_pickle(self, path: Path) -> Any:
        if not self._allow_pickle:
            raise ModelportError(
                Code.PERMISSION_DENIED,
                f"refusing to load pickle file {path}: unpickling runs arbitrary code. Save the "
                "model with skops (model.skops), or start the server with --allow_pickle if "
                "everyone who can write to the model repository is trusted",
            )
        import joblib

        try:
            return joblib.load(path)
        except Exception as exc:  # a truncated or foreign file raises anything from pickle
            raise ModelportError(Code.DATA_LOSS, f"cannot load {path}: {exc!r}") from exc

    def _load_skops(self, path: Path) -> Any:
        import skops.io as sio

        try:
            untrusted = sio.get_untrusted_types(file=path)
            refused = sorted(set(untrusted) - set(self._trusted_types))
            if refused:
                raise ModelportError(
                    Code.PERMISSION_DENIED,
                    f"{path} needs types that are not trusted: {refused}; trust them by name "
                    "with --trusted_types if you trust the file's author",
                )
            return sio.load(path, trusted=list(untrusted))
        except ModelportError:
            raise
        except Exception as exc:
            raise ModelportError(Code.DATA_LOSS, f"cannot load {path}: {exc!r}") from exc
