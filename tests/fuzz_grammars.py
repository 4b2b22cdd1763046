"""Hypothesis strategies for the request grammars a model server takes: TF Serving's v1 JSON
(row and columnar, b64, classify/regress examples), v2 JSON (typed tensors, parameters, outputs),
the v2 binary extension (JSON header, binary_data_size, raw bytes) and gRPC ModelInfer (shape,
datatype, typed contents or raw_input_contents).

Each strategy mostly follows the grammar, with the served models' real input names, dtypes and
shapes, and bends it at every level: a wrong name, datatype, shape, count, nesting, value type,
byte count or header length. Requests therefore reach every check, and some get all the way to
the model."""

from __future__ import annotations

import base64
import gzip
import json
import math
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from fuzz_support import MIXED_INPUTS

HUGE = 2**62
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"]  # fmt: skip
# v2 datatype -> its little-endian numpy dtype (BYTES has none: a length before each element)
DTYPES = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
          "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
          "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}  # fmt: skip
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
             "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
             "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
             "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}  # fmt: skip


@dataclass(frozen=True)
class Input:
    name: str
    datatype: str
    dims: tuple[int, ...]  # after the batch dimension


# What is served (tests/fuzz_support.py): every model's inputs, with the batch dimension free.
MODELS: dict[str, tuple[Input, ...]] = {
    "half": (Input("x", "FP32", (1,)),),
    "mnist": (Input("image_bytes", "BYTES", ()),),
    "mixed": tuple(Input(name, dt, tuple(dims)) for name, (_, dt, dims) in MIXED_INPUTS.items()),
}
_PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
)


# -- leaves --

_NUMBERS = st.one_of(
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e3, 1e3, width=32),
    st.sampled_from([0, 1, -1, 255, 256, 2**53 + 1, 65504.0, 1e39]),
)
_TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["", "abc", "=", "iVBORw0KGgo="]))
_B64 = st.one_of(
    st.binary(max_size=12).map(lambda b: {"b64": base64.b64encode(b).decode()}),
    st.just({"b64": base64.b64encode(_PNG_1X1).decode()}),
    _TEXT.map(lambda t: {"b64": t}),  # often not base64
    st.just({"b64": 1}),
    st.just({"b64": "AA==", "extra": 1}),
)
LEAVES = st.one_of(_NUMBERS, st.booleans(), _TEXT, st.none(), _B64)


def _fitting(item: Input) -> st.SearchStrategy[Any]:
    """A value the input takes: its dtype's range, an image for an image input."""
    datatype = item.datatype
    if datatype == "BOOL":
        return st.booleans()
    if item.name == "image_bytes":
        return st.just({"b64": base64.b64encode(_PNG_1X1).decode()})
    if datatype == "BYTES":
        return st.one_of(
            st.text(max_size=8), st.binary(max_size=8).map(lambda b: {"b64": base64.b64encode(b).decode()})
        )
    if datatype.startswith("FP"):
        return st.floats(-1e3, 1e3, width=16 if datatype == "FP16" else 32)
    limits = np.iinfo(DTYPES[datatype])
    return st.integers(int(limits.min), int(limits.max))


def _nest(flat: list[Any], shape: list[int]) -> Any:
    """Flat values as nested lists of `shape` (row-major), or the flat list if they do not fit."""
    if math.prod(shape) != len(flat) or not shape:
        return flat
    for size in reversed(shape[1:]):
        flat = [flat[i : i + size] for i in range(0, len(flat), size)] if size else []
    return flat


@st.composite
def tensor(draw: st.DrawFn, item: Input, exact: bool, rows: int | None = None) -> tuple[list[int], Any]:
    """A shape and values for it as nested lists: exactly what the input takes (`rows` of them,
    if given), or (not `exact`) bent: another shape, one value too many or too few, a value of
    any type, ragged nesting."""
    if rows is None:
        rows = draw(st.integers(1, 3) if exact else st.integers(0, 3))
    shape = [rows, *item.dims] if exact else draw(st.one_of(st.just([rows, *item.dims]), _SHAPES))
    count = math.prod(shape) if 0 < math.prod(d or 1 for d in shape) <= 16 else 0
    leaf = _fitting(item)
    if not exact:
        count = draw(st.sampled_from([count, count, count + 1, max(count - 1, 0)]))
        leaf = st.one_of(leaf, leaf, leaf, LEAVES)
    flat = draw(st.lists(leaf, min_size=count, max_size=count))
    if exact:
        return shape, _nest(flat, shape)
    value = draw(st.sampled_from([_nest(flat, shape), flat, _nest(flat, shape)]))
    if draw(st.integers(0, 9)) == 0:  # ragged or deeper than it should be
        value = [value, [value]] if draw(st.booleans()) else [[[value]]]
    return shape, value


_SHAPES = st.one_of(
    st.lists(st.integers(0, 4), max_size=4),
    st.lists(st.integers(-2, 2**63), max_size=3),
    st.sampled_from([[0, HUGE], [1] * 65, [HUGE, HUGE], [-1], [], [2**31 + 1]]),
)


# -- TF Serving v1 --


def _names(model: str) -> st.SearchStrategy[str]:
    real = [i.name for i in MODELS[model]]
    return st.one_of(st.sampled_from(real), st.sampled_from(real), st.text(max_size=6))


def _row(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


@st.composite
def _instance(draw: st.DrawFn, model: str, exact: bool) -> Any:
    """One row: the value of the only input, or an object of named inputs."""
    inputs = MODELS[model]
    if len(inputs) == 1 and draw(st.booleans()):
        return _row(draw(tensor(inputs[0], exact))[1])
    chosen = list(inputs)
    if not exact and draw(st.integers(0, 3)) == 0:
        chosen = draw(st.lists(st.sampled_from(inputs), max_size=len(inputs), unique=True))
    row = {item.name: _row(draw(tensor(item, exact))[1]) for item in chosen}
    if not exact and draw(st.integers(0, 5)) == 0:
        row[draw(st.text(max_size=4))] = draw(LEAVES)
    return row


@st.composite
def _columns(draw: st.DrawFn, model: str, exact: bool) -> Any:
    inputs = MODELS[model]
    rows = draw(st.integers(1, 3))
    if len(inputs) == 1 and draw(st.booleans()):
        return draw(tensor(inputs[0], exact))[1]
    names = (lambda i: st.just(i.name)) if exact else (lambda i: _names(model))
    # Every input with the same number of rows, when exact.
    return {
        draw(names(i)): _nest([_row(draw(tensor(i, exact))[1]) for _ in range(rows)], [rows]) for i in inputs
    }


@st.composite
def v1_request(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) for :predict, :classify or :regress on a served model; the body
    sometimes gzipped (or only said to be)."""
    exact = draw(st.booleans())
    model = draw(st.sampled_from(sorted(MODELS)))
    verb = draw(st.sampled_from(["predict", "predict", "classify", "regress"]))
    where = draw(st.sampled_from(["", "", "/versions/1", "/labels/stable", "/versions/2"]))
    doc: dict[str, Any] = {}
    if draw(st.integers(0, 4)) == 0:
        names = ["serving_default", ""] if exact else ["serving_default", "", "nope"]
        doc["signature_name"] = draw(
            st.sampled_from(names) if exact else st.one_of(st.sampled_from(names), LEAVES)
        )
    rows = st.lists(_instance(model, exact), min_size=1 if exact else 0, max_size=3)
    if not exact:
        rows = st.one_of(rows, rows, rows, LEAVES)
    if verb == "predict":
        forms = ["instances", "inputs"] + ([] if exact else ["both", "neither"])
        form = draw(st.sampled_from(forms))
        if form in ("instances", "both"):
            doc["instances"] = draw(rows)
        if form in ("inputs", "both"):
            doc["inputs"] = draw(_columns(model, exact))
    else:
        doc["examples"] = draw(rows)
        if not exact and draw(st.booleans()):
            doc["context"] = draw(st.one_of(_instance(model, exact), LEAVES))
    body = json.dumps(doc).encode()  # NaN and Infinity as TF Serving's tokens
    if not exact and draw(st.integers(0, 9)) == 0:
        body = draw(st.sampled_from([body[: len(body) // 2], b"[" * 100 + body, body + b"}", b""]))
    headers = {"content-type": "application/json"}
    encoding = draw(st.sampled_from(["", "", "", "gzip", "gzip", "gzip-claimed"]))
    if encoding:
        headers["content-encoding"] = "gzip"
        body = gzip.compress(body) if encoding == "gzip" else body
        if not exact and draw(st.booleans()):
            body = body[: len(body) // 2]
    return f"/v1/models/{model}{where}:{verb}", body, headers


# -- Open Inference Protocol v2: JSON and binary --


def _raw(datatype: str, values: Any) -> bytes:
    """Values as little-endian bytes of `datatype` (BYTES: a 4-byte length before each)."""
    flat = values if isinstance(values, list) else [values]
    flat = _flatten(flat)
    if datatype == "BYTES":
        parts = [str(v).encode() if not isinstance(v, dict) else _PNG_1X1 for v in flat]
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)
    numbers = [float(v) if isinstance(v, int | float) else 0.0 for v in flat]
    with np.errstate(all="ignore"):
        try:
            return np.asarray(numbers, dtype=np.float64).astype(DTYPES[datatype]).tobytes()
        except (OverflowError, ValueError):
            return b"\0" * len(numbers)


def _flatten(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    return [leaf for item in value for leaf in _flatten(item)]


@st.composite
def v2_tensor(
    draw: st.DrawFn, model: str, item: Input, binary: bool, exact: bool, rows: int
) -> tuple[dict[str, Any], bytes]:
    """One entry of `inputs`, and its bytes in the binary part (b"" if it has none)."""
    shape, data = draw(tensor(item, exact, rows if exact else None))
    datatype, name = item.datatype, item.name
    if not exact:
        datatype = draw(st.one_of(st.just(datatype), st.just(datatype), st.sampled_from(DATATYPES)))
        name = draw(st.one_of(st.just(name), _names(model)))
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if not exact:
        entry["shape"] = draw(st.one_of(st.just(shape), st.just(shape), st.just(shape), LEAVES))
    if not binary:
        entry["data"] = draw(
            st.sampled_from([data, _flatten(data)]) if exact else st.one_of(st.just(data), LEAVES)
        )
        return entry, b""
    raw = _raw(datatype, data)
    size: Any = len(raw)
    if not exact:
        raw = draw(st.sampled_from([raw, raw, raw, raw[:-1], raw + b"\x01", b"\xff\xff\xff\x7f" + raw]))
        size = draw(st.sampled_from([len(raw), len(raw), len(raw), len(raw) + 1, 2**40, -1, "8"]))
    entry["parameters"] = {"binary_data_size": size}
    return entry, raw


@st.composite
def v2_request(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) for /infer: JSON, or JSON and binary tensor data."""
    exact = draw(st.booleans())
    model = draw(st.sampled_from(sorted(MODELS)))
    binary = draw(st.booleans())
    inputs = list(MODELS[model])
    if exact:
        where = draw(st.sampled_from(["", "/versions/1"]))
    else:
        wheres = st.sampled_from(["", "", "/versions/1", "/versions/x", "/versions/0"])
        where = draw(st.one_of(wheres, wheres, _TEXT.map(lambda t: "/versions/" + quote(t or "1", safe=""))))
        inputs = draw(st.lists(st.sampled_from(inputs), max_size=len(inputs) + 1))
    rows = draw(st.integers(1, 3))  # every input's, when exact: the model takes one batch
    tensors = [draw(v2_tensor(model, item, binary, exact, rows)) for item in inputs]
    doc: dict[str, Any] = {"inputs": [entry for entry, _ in tensors]}
    if draw(st.booleans()):
        doc["id"] = draw(st.text(max_size=6) if exact else st.one_of(st.text(max_size=6), LEAVES))
    binary_output = st.fixed_dictionaries({"binary_data_output": st.booleans()})
    if draw(st.booleans()):
        doc["parameters"] = draw(binary_output if exact else st.one_of(binary_output, LEAVES))
    if draw(st.booleans()):
        names = [i.name + "_out" for i in MODELS[model]] if model == "mixed" else []
        names += ["y"] if model == "half" else ["classes", "probabilities"] if model == "mnist" else []
        choice = st.sampled_from(names) if exact else st.one_of(st.sampled_from(names), st.text(max_size=4))
        outputs = st.fixed_dictionaries(
            {"name": choice}, optional={"parameters": st.fixed_dictionaries({"binary_data": st.booleans()})}
        )
        doc["outputs"] = draw(st.lists(outputs, max_size=2, unique_by=lambda o: o["name"]))
    text = json.dumps(doc).encode()
    blob = b"".join(raw for _, raw in tensors)
    headers = {"content-type": "application/json"}
    if binary:
        length: Any = len(text)
        if not exact:
            length = draw(st.sampled_from([length, length, length, length + 3, 0, -1, 10**12]))
        headers = {"inference-header-content-length": str(length), "content-type": "application/octet-stream"}
    return f"/v2/models/{model}{where}/infer", text + blob, headers


# -- gRPC ModelInfer --


def _typed(datatype: str, values: list[Any]) -> list[Any]:
    """Values coerced into what the datatype's contents field holds."""
    out: list[Any] = []
    for v in values:
        number = v if isinstance(v, int | float) and math.isfinite(v) else 0
        if datatype == "BYTES":
            out.append(_PNG_1X1 if isinstance(v, dict) else str(v).encode())
        elif datatype == "BOOL":
            out.append(bool(v))
        elif datatype.startswith("FP"):
            out.append(float(number) if abs(number) < 1e300 else 0.0)
        else:
            limits = np.iinfo(DTYPES[datatype])
            out.append(min(max(int(number), int(limits.min)), int(limits.max)) if abs(number) < 1e300 else 0)
    return out


@st.composite
def grpc_request(draw: st.DrawFn) -> Any:
    exact = draw(st.booleans())
    model = draw(st.sampled_from(sorted(MODELS)))
    versions = st.sampled_from(["", "1"] if exact else ["", "", "1", "2", "x", "-1", "0"])
    if not exact:
        versions = st.one_of(versions, versions, _TEXT)
    request = service_pb2.ModelInferRequest(model_name=model, model_version=draw(versions))
    raw = draw(st.booleans())
    rows = draw(st.integers(1, 3))  # every input's, when exact: the model takes one batch
    inputs = list(MODELS[model])
    if not exact:
        inputs = draw(st.lists(st.sampled_from(inputs), max_size=len(inputs) + 1))
    for item in inputs:
        shape, data = draw(tensor(item, exact, rows if exact else None))
        datatype, name = item.datatype, item.name
        if not exact:
            datatype = draw(st.one_of(st.just(datatype), st.just(datatype), st.sampled_from(DATATYPES)))
            name = draw(st.one_of(st.just(name), _names(model)))
        shape = [d if -(2**63) <= d < 2**63 else 1 for d in shape]
        tensor_pb = request.inputs.add(name=name, datatype=datatype)
        tensor_pb.shape.extend(shape)
        values = _flatten(data)
        if raw or datatype == "FP16":  # FP16 has no typed contents: raw only
            chunk = _raw(datatype, values)
            if not exact:
                chunk = draw(st.sampled_from([chunk, chunk, chunk[:-1], chunk + b"\0"]))
            request.raw_input_contents.append(chunk)
            raw = True
            continue
        field = _CONTENTS[datatype]
        if not exact:
            field = draw(st.one_of(st.just(field), st.sampled_from(sorted(set(_CONTENTS.values())))))
        kind = next(dt for dt, f in _CONTENTS.items() if f == field)
        getattr(tensor_pb.contents, field).extend(_typed(kind, values))
    if raw and not exact and draw(st.integers(0, 5)) == 0:
        request.raw_input_contents.append(b"\0\0\0\0")  # one more than the inputs
    if draw(st.booleans()):
        names = {"half": ["y"], "mnist": ["classes"], "mixed": ["text_out", "ids_out"]}[model]
        for name in draw(
            st.lists(st.sampled_from(names if exact else [*names, "nope"]), max_size=2, unique=True)
        ):
            request.outputs.add(name=name)
    return request
