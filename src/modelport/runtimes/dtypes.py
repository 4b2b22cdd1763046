"""Names of tensor dtypes in the vocabularies our users' clients speak.

modelport's own name is the numpy dtype name, or "string" for bytes. TF Serving metadata says
`DT_FLOAT`; the v2 protocol says `FP32`; ONNX Runtime says `tensor(float)`.
"""

from __future__ import annotations

import functools

import numpy as np

# modelport name -> (TF Serving DataType, v2 datatype, ONNX Runtime type string)
_TABLE: dict[str, tuple[str, str, str]] = {
    "bool": ("DT_BOOL", "BOOL", "tensor(bool)"),
    "uint8": ("DT_UINT8", "UINT8", "tensor(uint8)"),
    "uint16": ("DT_UINT16", "UINT16", "tensor(uint16)"),
    "uint32": ("DT_UINT32", "UINT32", "tensor(uint32)"),
    "uint64": ("DT_UINT64", "UINT64", "tensor(uint64)"),
    "int8": ("DT_INT8", "INT8", "tensor(int8)"),
    "int16": ("DT_INT16", "INT16", "tensor(int16)"),
    "int32": ("DT_INT32", "INT32", "tensor(int32)"),
    "int64": ("DT_INT64", "INT64", "tensor(int64)"),
    "float16": ("DT_HALF", "FP16", "tensor(float16)"),
    "float32": ("DT_FLOAT", "FP32", "tensor(float)"),
    "float64": ("DT_DOUBLE", "FP64", "tensor(double)"),
    "string": ("DT_STRING", "BYTES", "tensor(string)"),
}

_FROM_ONNX = {onnx: name for name, (_, _, onnx) in _TABLE.items()}


def known(dtype: str) -> bool:
    """A dtype every protocol can name (the ONNX `seq(...)` and `map(...)` types are not)."""
    return dtype in _TABLE


def tf_name(dtype: str) -> str:
    return _TABLE[dtype][0] if dtype in _TABLE else "DT_INVALID"


def v2_name(dtype: str) -> str:
    return _TABLE[dtype][1] if dtype in _TABLE else "BYTES"


def from_onnx(onnx_type: str) -> str:
    """ONNX Runtime's `tensor(float)` -> `float32`; unknown types keep their ONNX name."""
    return _FROM_ONNX.get(onnx_type, onnx_type)


@functools.cache  # a bounded set of names; parsing one costs more than the lookup
def numpy_dtype(dtype: str) -> np.dtype:
    return np.dtype(object) if dtype == "string" else np.dtype(dtype)


def is_float(dtype: str) -> bool:
    return dtype in ("float16", "float32", "float64")
