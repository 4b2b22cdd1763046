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


def _column(signature: Signature, name: str, rows: Sequence[Any]) -> InputValue:
    binding = signature.inputs[name]
    if binding.dtype == "string":
        if binding.image is None:
            return np.asarray(_string_rows(name, rows), dtype=object)
        return _string_rows(name, rows)
    try:
        return np.asarray(rows)
    except ValueError as exc:
        raise invalid(f"input '{name}': rows have different shapes ({exc})") from None


def _single_input(signature: Signature) -> str | None:
    return next(iter(signature.inputs)) if len(signature.inputs) == 1 else None


def decode_instances(doc: Mapping[str, Any], signature: Signature) -> dict[str, InputValue]:
    """Row format: `instances` is a list, one entry per example."""
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise invalid(f"JSON Value: {_short(instances)} Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid(f"JSON Value: {_short(doc)} No values in 'instances' array")
    only = _single_input(signature)
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if only is not None and not named:
        return {only: _column(signature, only, instances)}
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
    return {k: _column(signature, k, rows) for k, rows in columns.items()}


def _columnar_value(signature: Signature, name: str, value: Any) -> InputValue:
    binding = signature.inputs[name]
    if binding.dtype == "string":
        rows = value if isinstance(value, list) else [value]
        return _column(signature, name, rows)
    try:
        return np.asarray(value)
    except ValueError as exc:
        raise invalid(f"input '{name}': not a rectangular tensor ({exc})") from None


def decode_inputs(doc: Mapping[str, Any], signature: Signature) -> dict[str, InputValue]:
    """Columnar format: `inputs` is one tensor, or an object of named tensors."""
    value = doc["inputs"]
    only = _single_input(signature)
    if isinstance(value, dict) and not _is_b64(value):
        unknown = sorted(set(value) - set(signature.inputs))
        if unknown:
            raise invalid(
                f"unknown input {unknown}; inputs of '{signature.name}' are {sorted(signature.inputs)}"
            )
        return {k: _columnar_value(signature, k, v) for k, v in value.items()}
    if only is None:
        raise invalid(
            f"JSON Value: {_short(value)} signature '{signature.name}' has several inputs "
            f"{sorted(signature.inputs)}: 'inputs' must be an object keyed by input name"
        )
    return {only: _columnar_value(signature, only, value)}


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


def _jsonable(name: str, array: np.ndarray) -> Any:
    if array.dtype == object or array.dtype.kind == "S" or name.endswith("_bytes"):
        return _objects(array.tolist())
    return np.ascontiguousarray(array)  # orjson serialises C-contiguous arrays only


def _objects(value: Any) -> Any:
    if isinstance(value, list):
        return [_objects(v) for v in value]
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    return value


def encode_predict(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    if fmt == "columnar":
        if len(outputs) == 1:
            body: Any = {"outputs": _jsonable(*next(iter(outputs.items())))}
        else:
            body = {"outputs": {k: _jsonable(k, v) for k, v in outputs.items()}}
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return orjson.dumps({"predictions": _jsonable(name, array)}, option=orjson.OPT_SERIALIZE_NUMPY)
    sizes = {a.shape[0] if a.ndim else None for a in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise invalid(
            "outputs have different batch sizes, which the row format cannot express; "
            "send the request in columnar format ('inputs')"
        )
    rows = sizes.pop()
    assert rows is not None  # excluded just above
    # Rows of numpy arrays straight to orjson: float32 prints in its shortest form (about 40%
    # fewer bytes than going through Python floats) and nothing is copied into lists first.
    columns = {k: _jsonable(k, v) for k, v in outputs.items()}
    return orjson.dumps(
        {"predictions": [{k: v[i] for k, v in columns.items()} for i in range(rows)]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def decode_examples(doc: Mapping[str, Any], signature: Signature) -> dict[str, InputValue]:
    """Classify/regress: `examples` (plus optional `context` features shared by all)."""
    examples = doc.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid(f"JSON Value: {_short(doc)} Expecting 'examples' to be a non-empty list/array")
    context = doc.get("context") or {}
    if not isinstance(context, dict):
        raise invalid(f"JSON Value: {_short(context)} Expecting 'context' to be an object")
    merged = []
    for example in examples:
        if not isinstance(example, dict):
            raise invalid(f"JSON Value: {_short(example)} Expecting each example to be an object")
        merged.append({**context, **example})
    return decode_instances({"instances": merged}, signature)


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
