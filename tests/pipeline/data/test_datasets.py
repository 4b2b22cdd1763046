"""Data sets from every source load the same way; corrupt or mislabelled files are named."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelport.errors import ModelportError
from modelport.pipeline.data import load_dataset, read_idx, splits


def _idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset("mnist5k")
    return data.images[::16][:300], data.labels[::16][:300]  # every class, whatever the file's order


def test_mnist5k_is_the_real_digits() -> None:
    data = load_dataset("mnist5k")
    assert data.images.shape == (5000, 28, 28) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [500] * 10
    assert data.classes == tuple("0123456789")
    assert "BSD-3-Clause" in data.license and data.source.endswith("mnist_5k.csv.gz")
    parts = splits(data, seed=0)
    assert [len(p[1]) for p in (parts.train, parts.val, parts.test)] == [4000, 500, 500]


@pytest.mark.parametrize("compress", [False, True])
def test_idx_directory_with_its_own_test_set(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], compress: bool
) -> None:
    images, labels = digits
    suffix = ".gz" if compress else ""
    _idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images[:200], compress)
    _idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels[:200], compress)
    _idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images[200:], compress)
    _idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[200:], compress)
    data = load_dataset(f"idx:{tmp_path}")
    assert np.array_equal(data.images, images[:200]) and np.array_equal(data.labels, labels[:200])
    parts = splits(data, seed=3)
    assert np.array_equal(parts.test[0], images[200:])  # the data set's own test set is kept
    assert len(parts.train[1]) + len(parts.val[1]) == 200
    assert "own test set" in parts.how


def test_corrupt_idx_files_are_named(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    _idx(tmp_path / "train-images-idx3-ubyte", images[:50], False)
    _idx(tmp_path / "train-labels-idx1-ubyte", labels[:50], False)
    whole = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(whole[:-100])
    with pytest.raises(
        ModelportError, match=r"train-images-idx3-ubyte: the header says 50 x 28 x 28 = 39200"
    ):
        load_dataset(f"idx:{tmp_path}")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x12\x34" + whole[2:])
    with pytest.raises(ModelportError, match="bad magic number"):
        read_idx(tmp_path / "train-images-idx3-ubyte")
    _idx(tmp_path / "train-images-idx3-ubyte", images[:40], False)
    with pytest.raises(ModelportError, match="40 train images but 50 labels"):
        load_dataset(f"idx:{tmp_path}")
    _idx(tmp_path / "train-images-idx3-ubyte", images[:50], False)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(ModelportError, match=r"train-labels-idx1-ubyte\[\.gz\] is missing"):
        load_dataset(f"idx:{tmp_path}")


def test_mislabelled_npz_is_named(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    np.savez(tmp_path / "ok.npz", images=images, labels=labels, classes=np.array(list("0123456789")))
    data = load_dataset(f"npz:{tmp_path / 'ok.npz'}")
    assert len(data.labels) == 300 and data.classes[3] == "3"
    bad = labels.copy()
    bad[17] = 12
    np.savez(tmp_path / "bad.npz", images=images, labels=bad, classes=np.array(list("0123456789")))
    with pytest.raises(ModelportError, match=r"label 12 at row 17 is not a class 0\.\.9"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")
    np.savez(tmp_path / "floats.npz", images=images.astype(np.float32), labels=labels)
    with pytest.raises(ModelportError, match="images must be uint8"):
        load_dataset(f"npz:{tmp_path / 'floats.npz'}")
    np.savez(tmp_path / "nolabels.npz", images=images)
    with pytest.raises(ModelportError, match=r"arrays \['labels'\] are missing"):
        load_dataset(f"npz:{tmp_path / 'nolabels.npz'}")


def test_folder_of_labelled_images(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    for name, digit in (("three", 3), ("seven", 7)):
        (tmp_path / name).mkdir()
        for i in np.flatnonzero(labels == digit)[:5]:
            Image.fromarray(images[i]).save(tmp_path / name / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}")
    assert data.classes == ("seven", "three")
    assert data.images.shape == (10, 28, 28) and sorted(np.bincount(data.labels).tolist()) == [5, 5]
    (tmp_path / "seven" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ModelportError, match=r"seven/broken.png: not a readable image"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "seven" / "broken.png").unlink()
    Image.new("L", (32, 32)).save(tmp_path / "three" / "big.png")
    with pytest.raises(ModelportError, match=r"three/big.png: is 32x32, the others are 28x28"):
        load_dataset(f"folder:{tmp_path}")


def test_unknown_source_is_named() -> None:
    with pytest.raises(ModelportError, match="give mnist5k, idx:DIR, folder:DIR or npz:FILE"):
        load_dataset("s3://bucket/mnist")
