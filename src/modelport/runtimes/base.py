"""The Runtime protocol: what a framework module provides so modelport can serve its models.

A runtime is small on purpose. Adding one (PyTorch TorchScript, say) is one module that defines a
`Runtime` with `load()` returning a `Model`, and one line in `modelport.runtimes.RUNTIMES`.
Everything else (signatures, image decoding, argmax/softmax, batching, protocols) is shared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# A tensor dtype as modelport names it: a numpy dtype name ("float32", "int64", "bool", ...)
# or "string" for variable-length bytes.
DType = str


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of a model input or output; -1 marks a dimension of any size."""

    name: str
    dtype: DType
    shape: tuple[int, ...]

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        wanted = self.shape
        if len(shape) != len(wanted):
            return False
        # A loop, not all() over a generator (0.63 -> 0.38 us): this runs on every request.
        for want, got in zip(wanted, shape, strict=True):  # noqa: SIM110
            if want >= 0 and want != got:
                return False
        return True


class Model(Protocol):
    """A loaded model version: named tensors in, named tensors out.

    Contract for callers: `run` may be called from several threads at once; it returns every
    output when `output_names` is None; the arrays it receives have already been checked against
    `inputs` (dtype and shape). There is no close(): an unloaded model is dropped, and the last
    request still using it frees it (Python's reference counting), so unloading never fails a
    request in flight.
    """

    @property
    def inputs(self) -> Sequence[TensorSpec]: ...

    @property
    def outputs(self) -> Sequence[TensorSpec]: ...

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]: ...


class Runtime(Protocol):
    """A framework: which files it loads and how."""

    platform: str  # "onnx", "sklearn": the value of model_platform in the model config
    file_suffixes: tuple[str, ...]  # model files it recognises in a version folder, e.g. (".onnx",)

    def load(self, path: Path, options: Mapping[str, Any]) -> Model:
        """Load the model file at `path`. Raise ModelportError naming the file on failure."""
        ...
