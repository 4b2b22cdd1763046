"""Data sets for training, read from disk (`datasets.py`)."""

from modelport.pipeline.data.datasets import (
    MNIST_CLASSES,
    Dataset,
    Splits,
    load_dataset,
    read_idx,
    splits,
)

__all__ = ["MNIST_CLASSES", "Dataset", "Splits", "load_dataset", "read_idx", "splits"]
