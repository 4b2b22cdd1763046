"""TensorFlow Serving's REST JSON <-> signature values. Pure: bytes and dicts in, arrays out.

Request and response shapes, and the error texts, follow TF Serving's `json_tensor.cc` so that
clients written for it (and people who grep its messages) see what they expect.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from modelport.errors import invalid
from modelport.runtimes.dtypes import tf_name
from modelport.runtimes.limits import RequestLimits
from modelport.runtimes.signature import InputValue, Signature
from modelport.server import json_depth

_METHOD_NAMES = {
    "predict": "tensorflow/serving/predict",
    "classify": "tensorflow/serving/classify",
    "regress": "tensorflow/serving/regress",
}
SCORE_OUTPUTS = ("scores", "probabilities")
REGRESS_OUTPUTS = ("outputs", "predictions")


def parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # TF Serving's parser takes NaN / Infinity tokens; orjson does not. The standard
        # library does, so a request that uses them still parses (and is then judged by the
        # signature's allow_non_finite). It recurses once per level: the depth is checked first.
        json_depth.check(body)
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise invalid(f"JSON Parse error: {exc}") from None
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {_short(doc)} Is not an object")
    return doc


def signature_name(doc: Mapping[str, Any]) -> str | None:
    name = doc.get("signature_name")
    if name is not None and not isinstance(name, str):
        raise invalid(f"JSON Value: {_short(name)} 'signature_name' must be a string")
    return name


def _short(value: Any) -> str:
    try:
        text = orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels)
        text = f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= 200 else text[:197] + "..."


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and "b64" in value


def _b64(value: dict[str, Any]) -> bytes:
    if len(value) != 1 or not isinstance(value["b64"], str):
        raise invalid(f"JSON Value: {_short(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"JSON Value: {_short(value)} Unable to base64 decode") from None


def _string_rows(name: str, rows: Sequence[Any]) -> list[bytes]:
    out: list[bytes] = []
    for value in rows:
        if _is_b64(value):
            out.append(_b64(value))
        elif isinstance(value, str):
            out.append(value.encode())
        else:
            raise invalid(
                f"JSON Value: {_short(value)} Type: {type(value).__name__} is not of expected "
                f"type: DT_STRING (input '{name}' takes {{\"b64\": ...}} or a string)"
            )
    return out


def _column(signature: Signature, name: str, rows: Sequence[Any], limits: RequestLimits) -> InputValue:
    binding = signature.inputs[name]  # its rows were checked by the caller
    if binding.dtype == "string":
        limits.check_bytes_elements(name, len(rows))
        if binding.image is None:
            return np.asarray(_string_rows(name, rows), dtype=object)
        return _string_rows(name, rows)
    try:
        return np.asarray(rows)
    except ValueError as exc:
        raise invalid(f"input '{name}': rows have different shapes ({exc})") from None


def _single_input(signature: Signature) -> str | None:
    return next(iter(signature.inputs)) if len(signature.inputs) == 1 else None


def decode_instances(
    doc: Mapping[str, Any], signature: Signature, limits: RequestLimits
) -> dict[str, InputValue]:
    """Row format: `instances` is a list, one entry per example."""
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise invalid(f"JSON Value: {_short(instances)} Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid(f"JSON Value: {_short(doc)} No values in 'instances' array")
    for name, binding in signature.inputs.items():  # before any row is looked at
        if binding.batched:
            limits.check_rows(name, len(instances))
    only = _single_input(signature)
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if only is not None and not named:
        return {only: _column(signature, only, instances, limits)}
    keys = sorted(signature.inputs)
    columns: dict[str, list[Any]] = {k: [] for k in keys}
    for i, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item) or sorted(item) != keys:
            raise invalid(
                f"Failed to process element: {i} of 'instances' list. JSON object: {_short(item)} "
                f"keys must be equal to: {','.join(keys)}"
            )
        for k in keys:
            columns[k].append(item[k])
    return {k: _column(signature, k, rows, limits) for k, rows in columns.items()}


def _columnar_value(signature: Signature, name: str, value: Any, limits: RequestLimits) -> InputValue:
    binding = signature.inputs[name]
    if binding.batched and isinstance(value, list):
        limits.check_rows(name, len(value))
    if binding.dtype == "string":
        return _column(signature, name, value if isinstance(value, list) else [value], limits)
    try:
        return np.asarray(value)
    except ValueError as exc:
        raise invalid(f"input '{name}': not a rectangular tensor ({exc})") from None


def decode_inputs(
    doc: Mapping[str, Any], signature: Signature, limits: RequestLimits
) -> dict[str, InputValue]:
    """Columnar format: `inputs` is one tensor, or an object of named tensors."""
    value = doc["inputs"]
    only = _single_input(signature)
    if isinstance(value, dict) and not _is_b64(value):
        unknown = sorted(set(value) - set(signature.inputs))
        if unknown:
            raise invalid(
                f"unknown input {unknown}; inputs of '{signature.name}' are {sorted(signature.inputs)}"
            )
        return {k: _columnar_value(signature, k, v, limits) for k, v in value.items()}
    if only is None:
        raise invalid(
            f"JSON Value: {_short(value)} signature '{signature.name}' has several inputs "
            f"{sorted(signature.inputs)}: 'inputs' must be an object keyed by input name"
        )
    return {only: _columnar_value(signature, only, value, limits)}


def request_format(doc: Mapping[str, Any]) -> str:
    """'row' or 'columnar', with TF Serving's errors for neither or both."""
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid(
            f"JSON Value: {_short(doc)} Not formatted correctly expecting only one of 'inputs' "
            "or 'instances' keys to exist"
        )
    if not (has_instances or has_inputs):
        raise invalid("Missing 'inputs' or 'instances' key")
    return "row" if has_instances else "columnar"


# Dtype characters orjson writes as numbers: bool, [u]int8..64, float16/32/64. (A dtype's char
# costs 0.1 us to read; its name 4.6 us, a tenth of a small request's encoding.)
_ORJSON_CHARS = frozenset("?bBhHiIlLefd")
# ONNX Runtime hands back int64 as numpy's `longlong` (char "q"), a type of its own beside
# `int64` ("l") on Linux: orjson writes whole arrays of it but not its scalars, which a row of
# the row format is. Asking for the equal dtype relabels the array without a copy.
_RELABEL = {"q": np.dtype(np.int64), "Q": np.dtype(np.uint64)}


def _jsonable(name: str, array: np.ndarray) -> Any:
    """One output as orjson writes it: numbers stay numpy (float32 prints in its shortest form),
    strings and bytes become Python objects (bytes as {"b64": ...}, as TF Serving writes them)."""
    dtype = array.dtype
    if dtype.kind in "OSU" or name.endswith("_bytes"):
        return _objects(array.tolist())
    if dtype.char in _RELABEL:
        array = np.asarray(array, dtype=_RELABEL[dtype.char])
    elif dtype.char not in _ORJSON_CHARS:  # float128, complex, datetime
        raise invalid(f"output '{name}' has dtype {dtype}, which JSON cannot express")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 0:  # orjson writes no 0-d arrays
        return array[()]
    return np.ascontiguousarray(array)  # and C-contiguous ones only


def _objects(value: Any) -> Any:
    """Elements of an object array: strings, bytes, and what a non-tensor output holds (a
    ZipMap's one map of class -> probability per row; JSON keys are strings)."""
    if isinstance(value, list | tuple):
        return [_objects(v) for v in value]
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): _objects(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _objects(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode_predict(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    columns = {k: _jsonable(k, v) for k, v in outputs.items()}
    if fmt == "columnar":
        body = next(iter(columns.values())) if len(columns) == 1 else columns
        return orjson.dumps({"outputs": body}, option=orjson.OPT_SERIALIZE_NUMPY)
    rows = _row_count(outputs)
    if len(columns) == 1:
        return orjson.dumps({"predictions": next(iter(columns.values()))}, option=orjson.OPT_SERIALIZE_NUMPY)
    # Rows of numpy arrays straight to orjson: float32 prints in its shortest form (about 40%
    # fewer bytes than going through Python floats) and nothing is copied into lists first.
    return orjson.dumps(
        {"predictions": [{k: v[i] for k, v in columns.items()} for i in range(rows)]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _row_count(outputs: Mapping[str, np.ndarray]) -> int:
    """Every output's rows: the row format has one entry per row, holding each output's row."""
    for name, array in outputs.items():
        if array.ndim == 0:
            raise invalid(
                f"output '{name}' is a scalar (shape []), which the row format cannot express; "
                "send the request in columnar format ('inputs')"
            )
    sizes = {int(a.shape[0]) for a in outputs.values()}
    if len(sizes) != 1:
        raise invalid(
            f"outputs have different batch sizes {sorted(sizes)}, which the row format cannot "
            "express; send the request in columnar format ('inputs')"
        )
    return sizes.pop()


def decode_examples(
    doc: Mapping[str, Any], signature: Signature, limits: RequestLimits
) -> dict[str, InputValue]:
    """Classify/regress: `examples` (plus optional `context` features shared by all)."""
    return decode_instances({"instances": _merged_examples(doc, signature, limits)}, signature, limits)


def _merged_examples(
    doc: Mapping[str, Any], signature: Signature, limits: RequestLimits
) -> list[dict[str, Any]]:
    examples = doc.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid(f"JSON Value: {_short(doc)} Expecting 'examples' to be a non-empty list/array")
    context = doc.get("context") or {}
    if not isinstance(context, dict):
        raise invalid(f"JSON Value: {_short(context)} Expecting 'context' to be an object")
    for name, binding in signature.inputs.items():
        if binding.batched:
            limits.check_rows(name, len(examples))
    merged = []
    for example in examples:
        if not isinstance(example, dict):
            raise invalid(f"JSON Value: {_short(example)} Expecting each example to be an object")
        merged.append({**context, **example})
    return merged


def example_features(
    doc: Mapping[str, Any], signature: Signature, limits: RequestLimits
) -> list[dict[str, list[Any]]]:
    """Classify/regress on a signature that takes serialized tf.Example protos (TF Serving's own
    classify and regress signatures): each example's features as lists of one kind each, bytes
    (a string or {"b64": ...}), int or float, as TF Serving turns JSON into a tf.Example."""
    out: list[dict[str, list[Any]]] = []
    strings = 0
    for i, example in enumerate(_merged_examples(doc, signature, limits)):
        features: dict[str, list[Any]] = {}
        for name, value in example.items():
            values = value if isinstance(value, list) else [value]
            kinds = set()
            clean: list[Any] = []
            for v in values:
                if _is_b64(v):
                    clean.append(_b64(v))
                    kinds.add("bytes")
                elif isinstance(v, str):
                    clean.append(v.encode())
                    kinds.add("bytes")
                elif isinstance(v, bool) or not isinstance(v, int | float):
                    raise invalid(
                        f"example {i}, feature '{name}': {_short(v)} is not a number, a string or "
                        '{"b64": ...} (a tf.Example feature is a list of one of those)'
                    )
                else:
                    clean.append(v)
                    kinds.add("int" if isinstance(v, int) else "float")
            if "bytes" in kinds and len(kinds) > 1:
                raise invalid(f"example {i}, feature '{name}': mixes strings and numbers")
            strings += len(clean) if "bytes" in kinds else 0
            features[name] = clean
        out.append(features)
    limits.check_bytes_elements("examples", strings)
    return out


def encode_classify_named(classes: np.ndarray, scores: np.ndarray) -> bytes:
    """A classify signature's own `classes` (names per row) and `scores`, as TF Serving answers."""
    if scores.ndim != 2 or classes.shape != scores.shape:
        raise invalid(
            f":classify needs classes and scores of one shape [examples, classes], got "
            f"{list(classes.shape)} and {list(scores.shape)}"
        )
    results = [
        [[c.decode() if isinstance(c, bytes) else str(c), float(s)] for c, s in zip(crow, srow, strict=True)]
        for crow, srow in zip(classes.tolist(), scores.tolist(), strict=True)
    ]
    return orjson.dumps({"results": results})


def pick_output(signature: Signature, preferred: Sequence[str], api: str) -> str:
    for name in preferred:
        if name in signature.outputs:
            return name
    if len(signature.outputs) == 1:
        return next(iter(signature.outputs))
    raise invalid(
        f"signature '{signature.name}' cannot serve :{api}: it needs an output named one of "
        f"{list(preferred)}, and has {sorted(signature.outputs)}"
    )


def encode_classify(scores: np.ndarray, labels: Sequence[str] | None) -> bytes:
    if scores.ndim != 2:
        raise invalid(f":classify needs one score per class per example, got shape {list(scores.shape)}")
    names = list(labels) if labels else [str(i) for i in range(scores.shape[1])]
    if len(names) != scores.shape[1]:
        raise invalid(f"{len(names)} labels for {scores.shape[1]} scores")
    results = [[[n, float(s)] for n, s in zip(names, row, strict=True)] for row in scores.tolist()]
    return orjson.dumps({"results": results})


def encode_regress(values: np.ndarray) -> bytes:
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise invalid(f":regress needs one value per example, got shape {list(values.shape)}")
    return orjson.dumps({"results": values.astype(np.float64).tolist()})


def _tensor_info(tensor_name: str, dtype: str, shape: Sequence[int]) -> dict[str, Any]:
    return {
        "dtype": tf_name(dtype),
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in shape], "unknown_rank": False},
        "name": tensor_name,
    }


def signature_def(signature: Signature) -> dict[str, Any]:
    return {
        "inputs": {n: _tensor_info(b.tensor.name, b.dtype, b.shape) for n, b in signature.inputs.items()},
        "outputs": {n: _tensor_info(b.source.name, b.dtype, b.shape) for n, b in signature.outputs.items()},
        "method_name": _METHOD_NAMES[signature.method],
        "defaults": {},
    }
