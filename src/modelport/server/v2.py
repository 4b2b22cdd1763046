"""The Open Inference Protocol v2 (KServe, Triton, MLServer clients) over REST: typed tensors in
and out, and the binary tensor data extension.

A request is JSON, optionally followed by raw tensor bytes: `Inference-Header-Content-Length`
says where the JSON ends, and each binary input says its `binary_data_size`, in declared order.
Binary values are little-endian and row-major; a BYTES element is a 4-byte length and its bytes.
Pure functions on bytes and arrays, like tfserving.py: HTTP lives in app.py.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelport import __version__
from modelport.errors import invalid
from modelport.runtimes.dtypes import known, v2_name
from modelport.runtimes.limits import RequestLimits
from modelport.runtimes.signature import InputBinding, InputValue, Signature

# What the server implements beyond the core protocol. (It listed `model_repository_index` too,
# with no /v2/repository/index behind it: a client that trusted the list got a 404.)
EXTENSIONS = ("binary_tensor_data",)

_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_LENGTH = struct.Struct("<I")
# numpy's maximum number of dimensions; Triton's is 64 too.
MAX_DIMS = 64
# At least one byte per element on any wire, so 2**31 elements would be a 2 GiB request: more
# than gRPC carries and 64 times the default --max_request_bytes (32 MiB).
MAX_ELEMENTS = 2**31


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, InputValue]
    outputs: tuple[RequestedOutput, ...] | None  # None: every output of the signature
    binary_output: bool  # the request's `binary_data_output`, for outputs not named


def split_body(body: bytes, header_length: bytes | None) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part of a request body."""
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(body):
        raise invalid(
            f"Inference-Header-Content-Length {header_length.decode(errors='replace')!r} must be a "
            f"number of bytes no larger than the body ({len(body)} bytes)"
        )
    size = int(header_length)
    return body[:size], memoryview(body)[size:]


def parse_infer(
    body: bytes, header_length: bytes | None, signature: Signature, limits: RequestLimits
) -> InferRequest:
    text, binary = split_body(body, header_length)
    limits.check_json_strings(text)
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise invalid("request body must be a JSON object with 'inputs'")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise invalid(f"'id' must be a string, got {_short(request_id)}")
    parameters = _parameters(doc, "parameters")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise invalid("'inputs' must be a non-empty list of tensors")
    inputs: dict[str, InputValue] = {}
    offset = 0
    for i, raw in enumerate(raw_inputs):
        name, value, offset = _input(raw, f"inputs[{i}]", binary, offset, signature, limits)
        if name in inputs:
            raise invalid(f"input '{name}' is given twice")
        inputs[name] = value
    if offset != len(binary):
        raise invalid(
            f"{len(binary) - offset} bytes of binary data follow the JSON but no input claims them "
            "(check each input's binary_data_size)"
        )
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise invalid("'outputs' must be a list of {\"name\": ...}")
        outputs = tuple(_requested(raw, f"outputs[{i}]", signature) for i, raw in enumerate(doc["outputs"]))
    return InferRequest(request_id, inputs, outputs, parameters.get("binary_data_output") is True)


def _parameters(doc: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    value = doc.get("parameters")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{path} must be an object")
    return value


def _requested(raw: Any, path: str, signature: Signature) -> RequestedOutput:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise invalid(f"{path} must be an object with a 'name'")
    # An unknown name is refused by Signature.prepare, with the outputs it has.
    return RequestedOutput(raw["name"], _parameters(raw, f"{path}.parameters").get("binary_data") is True)


def _input(
    raw: Any, path: str, binary: memoryview, offset: int, signature: Signature, limits: RequestLimits
) -> tuple[str, InputValue, int]:
    if not isinstance(raw, dict):
        raise invalid(f"{path} must be an object with name, shape, datatype and data")
    name = raw.get("name")
    if not isinstance(name, str):
        raise invalid(f"{path}.name must be a string")
    datatype: str = raw.get("datatype")  # type: ignore[assignment]  # checked just below
    shape: list[int] = raw.get("shape")  # type: ignore[assignment]
    binding = check_input(signature, name, datatype, shape, limits)
    count = math.prod(shape)
    size = _parameters(raw, f"{path}.parameters").get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise invalid(f"input '{name}': binary_data_size must be a non-negative integer")
        if offset + size > len(binary):
            raise invalid(
                f"input '{name}': binary_data_size is {size} bytes but only {len(binary) - offset} "
                "remain in the body (truncated payload?)"
            )
        chunk = binary[offset : offset + size]
        value = _from_binary(name, datatype, shape, count, chunk)
        return name, _for_binding(value, binding.image is not None), offset + size
    if "data" not in raw:
        raise invalid(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
    value = _from_json(name, datatype, shape, count, raw["data"], binding.image is not None)
    return name, _for_binding(value, binding.image is not None), offset


def parse_version(text: str | None) -> int | None:
    """A version in a v2 path or message: text, which must be a positive integer ("" = none)."""
    if not text:
        return None
    # ASCII digits only: str.isdigit() also takes "²" and "١", which int() then refuses (a
    # ValueError, answered 500 / gRPC UNKNOWN until the fuzzer tried a version "²").
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise invalid(f"version must be a positive integer, got '{text}'")
    return int(text)


def check_input(
    signature: Signature, name: str, datatype: Any, shape: Any, limits: RequestLimits
) -> InputBinding:
    """The input's binding, once its name, datatype and shape are known to be acceptable and
    within the request limits (rows, BYTES elements): before any element is read."""
    binding = signature.inputs.get(name)
    if binding is None:
        known = sorted(signature.inputs)
        raise invalid(f"unknown input '{name}' for signature '{signature.name}'; inputs are {known}")
    if datatype not in _DTYPES:
        raise invalid(f"input '{name}': datatype {_short(datatype)} is not one of {', '.join(_DTYPES)}")
    wanted = v2_name(binding.dtype)
    if datatype != wanted:
        raise invalid(f"input '{name}' has datatype {datatype}, but the model expects {wanted}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise invalid(f"input '{name}': shape must be a list of non-negative integers, got {_short(shape)}")
    if len(shape) > MAX_DIMS:
        raise invalid(f"input '{name}': shape has {len(shape)} dimensions, more than the limit of {MAX_DIMS}")
    # Python ints, so no overflow; a 0 counts as 1 so that [0, 2**62] is refused too (no array
    # of that shape can be made even empty).
    if math.prod(d or 1 for d in shape) > MAX_ELEMENTS:
        raise invalid(f"input '{name}': shape {_short(shape)} describes more than {MAX_ELEMENTS} elements")
    if binding.batched and shape:
        limits.check_rows(name, shape[0])
    if datatype == "BYTES":
        limits.check_bytes_elements(name, math.prod(shape))
    return binding


def _b64(name: str, row: int, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error: bad padding or a character outside the alphabet
        raise invalid(f"input '{name}' row {row}: {{\"b64\": ...}} is not valid base64") from None


def from_raw(name: str, datatype: str, shape: list[int], chunk: memoryview, image: bool) -> InputValue:
    """A tensor from its raw little-endian bytes (binary extension, gRPC raw_input_contents)."""
    return _for_binding(_from_binary(name, datatype, shape, math.prod(shape), chunk), image)


def from_values(name: str, datatype: str, shape: list[int], values: Sequence[Any], image: bool) -> InputValue:
    """A tensor from already typed flat values (gRPC contents)."""
    count = math.prod(shape)
    if len(values) != count:
        raise invalid(
            f"input '{name}': shape {shape} holds {count} elements, the contents have {len(values)}"
        )
    if datatype == "BYTES":
        return _for_binding(_bytes_value(list(values), shape), image)
    return np.asarray(values, dtype=_DTYPES[datatype].newbyteorder("=")).reshape(shape)


def datatype_of(name: str, array: np.ndarray) -> str:
    return _datatype(name, array)


def raw_of(name: str, array: np.ndarray) -> bytes:
    return _binary_data(name, array)


def _for_binding(value: InputValue, image: bool) -> InputValue:
    """An image input takes one encoded image per row: [N] or [N, 1] both mean N images."""
    return value.reshape(-1) if image and isinstance(value, np.ndarray) else value


def _from_binary(name: str, datatype: str, shape: list[int], count: int, chunk: memoryview) -> InputValue:
    if datatype == "BYTES":
        items = _unpack_bytes(name, chunk, count)
        if len(items) != count:
            raise invalid(
                f"input '{name}': shape {shape} holds {count} elements, the binary data has {len(items)}"
            )
        return _bytes_value(items, shape)
    dtype = _DTYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise invalid(
            f"input '{name}': shape {shape} of {datatype} takes {count * dtype.itemsize} bytes, "
            f"binary_data_size is {len(chunk)}"
        )
    array = np.frombuffer(chunk, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _unpack_bytes(name: str, chunk: memoryview, count: int) -> list[bytes]:
    """The elements of a BYTES tensor's raw data; no more than the `count` its shape declares
    are built (the shape was checked against --max_bytes_elements)."""
    items: list[bytes] = []
    at, end = 0, len(chunk)
    while at < end:
        if len(items) == count:
            raise invalid(
                f"input '{name}': its shape holds {count} elements, the binary data holds more "
                f"({end - at} bytes follow the last one)"
            )
        if at + 4 > end:
            raise invalid(f"input '{name}': BYTES data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(chunk, at)
        at += 4
        if at + length > end:
            raise invalid(f"input '{name}': a BYTES element of {length} bytes runs past the end of its data")
        items.append(bytes(chunk[at : at + length]))
        at += length
    return items


def _from_json(name: str, datatype: str, shape: list[int], count: int, data: Any, image: bool) -> InputValue:
    if datatype == "BYTES":
        flat = _flatten(name, data)
        if len(flat) != count:
            raise invalid(f"input '{name}': shape {shape} holds {count} elements, 'data' has {len(flat)}")
        items = []
        for row, value in enumerate(flat):
            if isinstance(value, str) and image:
                # Encoded images are not UTF-8 text, so in JSON they can only travel as base64.
                try:
                    items.append(base64.b64decode(value, validate=True))
                except ValueError:
                    raise invalid(
                        f"input '{name}' row {row}: an image in JSON must be base64 text "
                        "(or send it raw with the binary data extension)"
                    ) from None
            elif isinstance(value, str):
                items.append(value.encode())
            elif isinstance(value, dict) and isinstance(value.get("b64"), str):
                items.append(_b64(name, row, value["b64"]))
            else:
                raise invalid(f"input '{name}': BYTES elements must be strings, got {_short(value)}")
        return _bytes_value(items, shape)
    try:
        array = np.asarray(data)
    except ValueError as exc:
        # numpy says which: "inhomogeneous shape after 1 dimensions", or "would exceed the
        # maximum number of dimension of 64"
        raise invalid(f"input '{name}': 'data' is a ragged nested list ({exc})") from None
    if array.size != count:
        raise invalid(f"input '{name}': shape {shape} holds {count} elements, 'data' has {array.size}")
    kind = array.dtype.kind
    dtype = _DTYPES[datatype]
    if count and (
        kind not in "biuf"
        or (kind == "b") != (datatype == "BOOL")
        or (kind == "f" and dtype.kind in "iu" and not np.all(array == np.round(array)))
    ):
        raise invalid(f"input '{name}': 'data' does not hold {datatype} values (got {_short(data)})")
    try:
        return array.astype(dtype.newbyteorder("=")).reshape(shape)
    except (ValueError, OverflowError) as exc:
        raise invalid(f"input '{name}': 'data' does not fit {datatype}: {exc}") from None


def _flatten(name: str, data: Any, levels: int = 1) -> list[Any]:
    """Nested lists -> their leaves in order. orjson hands over up to 1024 levels, past Python's
    recursion limit (990 was a RecursionError, a 500); no tensor has more than MAX_DIMS."""
    if not isinstance(data, list):
        return [data]
    if levels > MAX_DIMS:
        raise invalid(f"input '{name}': 'data' nests deeper than {MAX_DIMS} levels")
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(name, item, levels + 1))
        else:
            flat.append(item)
    return flat


def _bytes_value(items: list[bytes], shape: list[int]) -> InputValue:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def _short(value: Any) -> str:
    try:
        text = orjson.dumps(value, default=str).decode() if value is not None else "null"
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels)
        text = f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= 60 else text[:57] + "..."


# -- responses --


def _datatype(name: str, array: np.ndarray) -> str:
    if array.dtype == object or array.dtype.kind in "SU":
        return "BYTES"
    dtype = array.dtype.name
    if not known(dtype):
        raise invalid(f"output '{name}' has dtype {dtype}, which no v2 datatype expresses")
    return v2_name(dtype)


def _element(name: str, value: Any) -> bytes | str:
    """One element of a BYTES output: bytes, or text. A dict (skl2onnx's ZipMap: one map of class
    -> probability per row), a list or an array is no tensor element in v2; the client learns
    which output and how to get the others rather than a 500."""
    if isinstance(value, bytes | str):
        return value
    if isinstance(value, dict | list | tuple | np.ndarray):
        raise invalid(
            f"output '{name}' holds {type(value).__name__} values (a sequence or map, such as "
            "skl2onnx's ZipMap makes), which the v2 protocol cannot express: request the other "
            "outputs by name in 'outputs', or convert the model without it (skl2onnx option "
            "zipmap=False)"
        )
    return str(value)  # numbers among scikit-learn's object labels


def _json_data(name: str, array: np.ndarray) -> Any:
    if array.dtype == object or array.dtype.kind in "SU":
        elements = (_element(name, v) for v in array.ravel().tolist())
        return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in elements]
    return np.ascontiguousarray(array).ravel()


def _binary_data(name: str, array: np.ndarray) -> bytes:
    if array.dtype == object or array.dtype.kind in "SU":
        parts = []
        for v in array.ravel().tolist():
            element = _element(name, v)
            raw = element if isinstance(element, bytes) else element.encode()
            parts.append(_LENGTH.pack(len(raw)))
            parts.append(raw)
        return b"".join(parts)
    little = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=little).tobytes()


def encode_infer(
    model_name: str, version: int, request: InferRequest, outputs: Mapping[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The response body and, when binary outputs follow the JSON, the JSON's length."""
    wanted: Sequence[RequestedOutput] = request.outputs or [
        RequestedOutput(name, request.binary_output) for name in outputs
    ]
    tensors = []
    blobs = []
    for item in wanted:
        array = outputs[item.name]
        tensor: dict[str, Any] = {
            "name": item.name,
            "datatype": _datatype(item.name, array),
            "shape": list(array.shape),
        }
        if item.binary:
            blob = _binary_data(item.name, array)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = _json_data(item.name, array)
        tensors.append(tensor)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    if request.id is not None:
        doc["id"] = request.id
    doc["outputs"] = tensors
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def server_metadata() -> dict[str, Any]:
    return {"name": "modelport", "version": __version__, "extensions": list(EXTENSIONS)}


def model_metadata(name: str, versions: Sequence[int], platform: str, signature: Signature) -> dict[str, Any]:
    def spec(tensor_name: str, dtype: str, shape: Sequence[int]) -> dict[str, Any]:
        # A type v2 has no name for (ONNX's `seq(map(string,tensor(float)))`, a ZipMap's) keeps
        # its own name: "BYTES" would promise an output that inference refuses with a 400.
        datatype = v2_name(dtype) if known(dtype) else dtype
        return {"name": tensor_name, "datatype": datatype, "shape": [int(d) for d in shape]}

    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": _PLATFORMS.get(platform, platform),
        "inputs": [spec(n, b.dtype, b.shape) for n, b in signature.inputs.items()],
        "outputs": [spec(n, b.dtype, b.shape) for n, b in signature.outputs.items()],
    }


_PLATFORMS = {"onnx": "onnxruntime_onnx", "sklearn": "sklearn"}
