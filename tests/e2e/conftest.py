"""Fixtures of the progressive-delivery modules (test_canary.py, test_progressive.py), one of each
per module: a control plane, the MNIST model with versions of it changed in their last layer, and
the digits clients send. A module defining a fixture of the same name uses its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from canary_support import UNSAFE, digit_bodies, mnist_models
from support import Plane


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return mnist_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    plane = Plane(tmp_path_factory.mktemp("home"))
    plane.up(*UNSAFE)
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def digits() -> list[dict[str, Any]]:
    return digit_bodies()
