"""`modelport registry publish --convert onnx`: a TensorFlow SavedModel converted with tf2onnx,
served as ONNX, kept beside it, and refused when the two answer differently.

The version folder published:

    model.onnx          <- tf2onnx's conversion of one signature (--signature, default serving_default)
    model.yaml          <- platform: onnx, model_file: model.onnx (+ the signatures --model-yaml declares)
    conversion.json     <- the check: data, rows, each output's largest difference, the tolerance
    saved_model/        <- the SavedModel as it was published (saved_model.pb, variables/)

The check: every signature the SavedModel serves and the converted version serves too is asked
the evaluation data (`--eval-data`, a TF Serving request body: `{"signature_name": ..., "instances":
[...]}` or `inputs`), through the same request decoding clients get, on both models. Float outputs
must agree within `atol + rtol * |value|`; other outputs (classes, labels) exactly. The served
signatures must also be the same names, dtypes and shapes, or clients of the SavedModel would break.

Graph operations ONNX has no counterpart for (`DecodePng`: images decoded in the graph) cannot
be converted: convert the signature over decoded tensors (`--signature pixels`) and declare in
`--model-yaml` how modelport decodes the images for it; the check then compares what clients get
from the SavedModel's in-graph decoding with modelport's.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import Code, ModelportError, invalid
from modelport.repository.layout import COMPLETE_MARK

ONNX_OPSET = 17
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
CONVERSION_FILE = "conversion.json"
ORIGINAL_FOLDER = "saved_model"
# TensorFlow operations with no ONNX counterpart that tf2onnx could map them to: image decoding.
NO_ONNX_OPS = frozenset(
    {"DecodePng", "DecodeJpeg", "DecodeImage", "DecodeGif", "DecodeBmp", "DecodeAndCropJpeg", "DecodeWebP"}
)
_UNSUPPORTED = re.compile(r"Unsupported ops: Counter\((\{.*?\})\)")


def convert_to_onnx(
    folder: Path,
    staging: Path,
    *,
    signature: str = "serving_default",
    model_yaml: Path | None = None,
    eval_data: Path | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> dict[str, Any]:
    """Write the converted version folder into `staging` (empty or absent); return the check's
    record (also written as conversion.json). Raises FAILED_PRECONDITION when the conversion is
    refused, naming why."""
    if not (folder / "saved_model.pb").is_file():
        raise invalid(f"--convert onnx takes a TensorFlow SavedModel folder; {folder} has no saved_model.pb")
    if eval_data is None:
        raise invalid(
            "--convert onnx needs --eval-data: a TF Serving request body (JSON) the SavedModel and "
            "its conversion must answer alike"
        )
    request, digest = _read_request(eval_data)  # a bad file is refused before the slow part
    _refuse_what_onnx_cannot_do(folder, signature)  # at once, rather than after tf2onnx's run
    staging.mkdir(parents=True, exist_ok=True)
    # Its _COMPLETE mark, if any, stays behind: the version gets its own.
    shutil.copytree(folder, staging / ORIGINAL_FOLDER, ignore=shutil.ignore_patterns(COMPLETE_MARK))
    _tf2onnx(staging / ORIGINAL_FOLDER, signature, staging / "model.onnx")
    metadata: dict[str, Any] = {}
    if model_yaml is not None:
        import yaml

        loaded = yaml.safe_load(model_yaml.read_text()) or {}
        if not isinstance(loaded, dict):
            raise invalid(f"--model-yaml {model_yaml}: must be a mapping of keys (a model.yaml)")
        metadata = loaded
    metadata.update({"platform": "onnx", "model_file": "model.onnx"})
    (staging / "model.yaml").write_text(_yaml(metadata))
    record = _check(staging, request, str(eval_data), digest, signature, atol, rtol)
    (staging / CONVERSION_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def check_conversion(
    version: Path, eval_data: Path, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL
) -> dict[str, Any]:
    """The check alone, on a converted version folder (its model.yaml as it is now): the record,
    or FAILED_PRECONDITION naming the outputs that disagree."""
    request, digest = _read_request(eval_data)
    converted = json.loads((version / CONVERSION_FILE).read_text())["converted_signature"]
    return _check(version, request, str(eval_data), digest, converted, atol, rtol)


def _read_request(eval_data: Path) -> tuple[dict[str, Any], str]:
    try:
        raw = eval_data.read_bytes()
        request = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise invalid(f"--eval-data {eval_data}: not a JSON request body ({exc})") from exc
    if not isinstance(request, dict):
        raise invalid(f"--eval-data {eval_data}: must be a JSON object (a TF Serving request body)")
    return request, hashlib.sha256(raw).hexdigest()


def _refuse_what_onnx_cannot_do(folder: Path, signature: str) -> None:
    """The operations the signature runs (its graph nodes and the functions they call, nested),
    read from saved_model.pb; refused when one has no ONNX counterpart."""
    from modelport.runtimes.tensorflow import import_tensorflow

    import_tensorflow(folder)
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((folder / "saved_model.pb").read_bytes())
    graphs = [g for g in proto.meta_graphs if set(g.meta_info_def.tags) == {"serve"}]
    if not graphs or signature not in graphs[0].signature_def:
        known = sorted(graphs[0].signature_def) if graphs else []
        raise invalid(f"{folder}: no signature '{signature}' to convert (signatures: {known})")
    graph = graphs[0]
    functions = {f.signature.name: f for f in graph.graph_def.library.function}
    nodes = {n.name: n for n in graph.graph_def.node}
    pending = [info.name.split(":")[0] for info in graph.signature_def[signature].outputs.values()]
    seen_nodes: set[str] = set()
    seen_functions: set[str] = set()
    ops: set[str] = set()

    def called(node: Any) -> list[str]:
        names = []
        for attr in node.attr.values():
            if attr.HasField("func"):
                names.append(attr.func.name)
            names.extend(f.name for f in attr.list.func)
        return names

    def visit_function(name: str) -> None:
        if name in seen_functions or name not in functions:
            return
        seen_functions.add(name)
        for node in functions[name].node_def:
            ops.add(node.op)
            if node.op in functions:
                visit_function(node.op)
            for callee in called(node):
                visit_function(callee)

    while pending:
        name = pending.pop()
        if name in seen_nodes or name not in nodes:
            continue
        seen_nodes.add(name)
        node = nodes[name]
        ops.add(node.op)
        for callee in called(node):
            visit_function(callee)
        pending.extend(i.lstrip("^").split(":")[0] for i in node.input)
    refused = sorted(ops & NO_ONNX_OPS)
    if refused:
        raise ModelportError(
            Code.FAILED_PRECONDITION,
            f"signature '{signature}' cannot be converted to ONNX: it runs {refused}, which ONNX has "
            "no counterpart for (images decoded in the graph). Convert a signature over decoded "
            "tensors (--signature) and declare in --model-yaml how modelport decodes its inputs "
            "(an image input: {tensor: ..., image: {...}})",
        )


def _yaml(doc: Mapping[str, Any]) -> str:
    import yaml

    text: str = yaml.safe_dump(dict(doc), sort_keys=False)
    return text


def _tf2onnx(saved_model: Path, signature: str, output: Path) -> None:
    """tf2onnx's command line, in a process of its own (it logs, and holds a TF graph, at length)."""
    try:
        importlib.metadata.version("tf2onnx")
    except importlib.metadata.PackageNotFoundError:
        raise ModelportError(
            Code.FAILED_PRECONDITION, "--convert onnx needs tf2onnx: pip install 'modelport[tensorflow]'"
        ) from None
    command = [
        sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model),
        "--signature_def", signature, "--tag", "serve", "--opset", str(ONNX_OPSET), "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=_quiet_env(), check=False)
    log = done.stdout + done.stderr
    unsupported = _UNSUPPORTED.search(log)
    if unsupported:
        output.unlink(missing_ok=True)
        raise ModelportError(
            Code.FAILED_PRECONDITION,
            f"signature '{signature}' cannot be converted to ONNX: TensorFlow operations "
            f"{unsupported.group(1)} have no ONNX counterpart. Convert a signature over decoded "
            "tensors (--signature) and declare in --model-yaml how modelport decodes its inputs "
            "(an image input: {tensor: ..., image: {...}})",
        )
    if done.returncode != 0 or not output.is_file():
        tail = "\n".join(log.strip().splitlines()[-5:])
        raise ModelportError(
            Code.FAILED_PRECONDITION, f"tf2onnx could not convert signature '{signature}':\n{tail}"
        )


def _quiet_env() -> dict[str, str]:
    import os

    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _served(folder: Path, platform: str) -> tuple[Any, dict[str, Any]]:
    from modelport.runtimes import default_runtimes, find_model_file
    from modelport.runtimes.metadata import VersionMetadata, read_metadata
    from modelport.runtimes.signature import build_signatures

    metadata = read_metadata(folder) if platform == "onnx" else VersionMetadata()
    runtimes = default_runtimes(False, (), {})
    runtime, model_file = find_model_file(folder, platform, metadata.model_file, runtimes)
    model = runtime.load(model_file, metadata.runtime if platform == "onnx" else {})
    return model, build_signatures(model, metadata)


def _described(signatures: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "inputs": {n: [b.dtype, list(b.shape)] for n, b in sig.inputs.items()},
            "outputs": {n: [b.dtype, list(b.shape)] for n, b in sig.outputs.items()},
        }
        for name, sig in signatures.items()
    }


def _check(
    staging: Path,
    request: Mapping[str, Any],
    data: str,
    data_sha256: str,
    converted: str,
    atol: float,
    rtol: float,
) -> dict[str, Any]:
    from modelport.registry.registry import signature_changes
    from modelport.runtimes.limits import RequestLimits
    from modelport.server import tfserving

    original_model, original = _served(staging / ORIGINAL_FOLDER, "tensorflow")
    onnx_model, served = _served(staging, "onnx")
    # Only the signatures the converted version serves: those it does not serve are reported.
    changes = signature_changes(
        {k: v for k, v in _described(original).items() if k in served}, _described(served)
    )
    if changes:
        raise ModelportError(
            Code.FAILED_PRECONDITION,
            "the ONNX conversion would not serve what the SavedModel serves: " + "; ".join(changes),
        )
    name = tfserving.signature_name(request) or "serving_default"
    if name not in original or name not in served:
        raise invalid(
            f"--eval-data asks signature '{name}', which the SavedModel and its conversion do not both serve"
        )
    limits = RequestLimits(max_batch_size=1 << 30, max_bytes_elements=1 << 30, max_request_pixels=1 << 40)
    answers = []
    for model, signature in ((original_model, original[name]), (onnx_model, served[name])):
        fmt = tfserving.request_format(request)
        decode = tfserving.decode_instances if fmt == "row" else tfserving.decode_inputs
        answers.append(signature.run(model, decode(request, signature, limits)))
    expected, got = answers
    outputs: dict[str, Any] = {}
    failures = []
    rows = 0
    for output in sorted(expected):
        want, have = np.asarray(expected[output]), np.asarray(got[output])
        rows = max(rows, int(want.shape[0]) if want.ndim else 1)
        if want.shape != have.shape:
            failures.append(
                f"output '{output}' has shape {list(have.shape)}, the SavedModel's {list(want.shape)}"
            )
            continue
        if want.dtype.kind == "f":
            diff = np.abs(want.astype(np.float64) - have.astype(np.float64))
            beyond = int(np.count_nonzero(diff > atol + rtol * np.abs(want)))
            outputs[output] = {
                "max_abs_diff": float(diff.max(initial=0.0)),
                "values_beyond_tolerance": beyond,
            }
            if beyond:
                failures.append(f"output '{output}': {beyond} values differ by more than the tolerance "
                                f"(largest difference {float(diff.max()):.3g})")  # fmt: skip
        else:
            differ = int(np.count_nonzero(want != have))
            outputs[output] = {"values_different": differ}
            if differ:
                failures.append(f"output '{output}': {differ} of {want.size} values differ")
    record = {
        "from": "tensorflow SavedModel",
        "to": "onnx",
        "converted_signature": converted,
        "tf2onnx": importlib.metadata.version("tf2onnx"),
        "opset": ONNX_OPSET,
        "checked_signature": name,
        "data": data,
        "data_sha256": data_sha256,
        "rows": rows,
        "tolerance": {"atol": atol, "rtol": rtol, "non_float": "exact"},
        "outputs": outputs,
        "agrees": not failures,
    }
    if failures:
        raise ModelportError(
            Code.FAILED_PRECONDITION,
            f"conversion refused: on {data} ({rows} rows) the ONNX model and the SavedModel disagree: "
            + "; ".join(failures),
        )
    return record
