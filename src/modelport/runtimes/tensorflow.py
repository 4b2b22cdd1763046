"""TensorFlow SavedModels and Keras files, served as they are (`pip install 'modelport[tensorflow]'`).

A SavedModel version folder (`<base_path>/<version>/saved_model.pb` + `variables/`) is loaded as
TF Serving loads it: the MetaGraph tagged `serve`, every signature with its own input and output
names, dtypes and shapes, `serving_default` the one used when a request names none. What the
graph does stays in the graph: a `string` input that the graph base64-decodes or `decode_png`s
takes the request's bytes unchanged. A `.keras` file serves its model's inputs and outputs as the
signature `serving_default`.

TensorFlow is imported on the first load of a TF model, never before: it takes seconds and
hundreds of megabytes, and a server without TF models does not pay for it. Without the extra
installed, loading a TF model fails with the command that installs it.

Threads: TensorFlow's thread pools belong to the process, not to a model, so they are set once,
from the server's --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism (the
same flags as ONNX Runtime's; 1 and 1 by default, so that requests, not one request's operators,
share the cores). Per-model runtime options are refused, with that explanation.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import Code, ModelportError, invalid
from modelport.runtimes.base import TensorSpec
from modelport.runtimes.metadata import DEFAULT_SIGNATURE, InputSpec, OutputSpec, SignatureSpec

INSTALL = "pip install 'modelport[tensorflow]'"
SAVED_MODEL_FILE = "saved_model.pb"
SERVE_TAG = "serve"
_METHODS = {
    "tensorflow/serving/predict": "predict",
    "tensorflow/serving/classify": "classify",
    "tensorflow/serving/regress": "regress",
}
# TF's DataType enum names -> modelport's dtype names (runtimes/dtypes.py).
_DTYPES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_INT8": "int8",
    "DT_INT16": "int16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_UINT8": "uint8",
    "DT_UINT16": "uint16",
    "DT_UINT32": "uint32",
    "DT_UINT64": "uint64",
    "DT_BOOL": "bool",
    "DT_STRING": "string",
}

log = logging.getLogger("modelport.runtimes")
_setup_lock = threading.Lock()
_threads_set: tuple[int, int] | None = None


def import_tensorflow(path: Path) -> Any:
    """TensorFlow, quiet, or a load error that says how to install it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING lines
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ModelportError(
            Code.FAILED_PRECONDITION,
            f"{path} is a TensorFlow model and TensorFlow is not installed: {INSTALL} ({exc})",
        ) from exc
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    return tf


def _set_threads(tf: Any, intra: int, inter: int) -> None:
    """Once per process, before TensorFlow's runtime starts (it cannot change them after); the
    log line says what TensorFlow then has."""
    global _threads_set
    with _setup_lock:
        if _threads_set is not None:
            return
        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        except RuntimeError:  # TensorFlow already ran in this process (a test, a notebook)
            pass
        _threads_set = (intra, inter)
        log.info(
            "TensorFlow %s loaded: intra-op threads %d, inter-op threads %d (0: TensorFlow's choice)",
            tf.__version__,
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        )


def _shape(proto: Any) -> tuple[int, ...]:
    if proto.unknown_rank:
        return (-1,)
    return tuple(int(d.size) if d.size >= 0 else -1 for d in proto.dim)


def _dtype(enum_value: int) -> str:
    """A DataType enum value as modelport names it; one it has no name for keeps TF's (DT_...)."""
    from tensorflow.core.framework import types_pb2

    name: str = types_pb2.DataType.Name(enum_value)
    return _DTYPES.get(name, name)


@dataclass(frozen=True)
class _Signature:
    """One callable signature: request keys -> the model's unique tensor names, and its function."""

    name: str
    method: str
    inputs: dict[str, TensorSpec]  # signature key -> spec named by a unique tensor name
    outputs: dict[str, TensorSpec]
    function: Any


class TensorflowModel:
    """Every signature of a SavedModel (or a Keras model's one) behind the Model protocol.

    Its calls run in the server's pool, never on the event loop (`call_on_the_loop`), even when
    they have been fast: a TensorFlow call goes through its own executor and thread pools, and
    its time varies more than ONNX Runtime's (allocations, the first call of a function).

    The model's tensors are those of all its signatures, each named by the graph's own tensor
    name (`serving_default_image_bytes:0`), which is unique, so a call's feeds say which
    signature it is for. `native_signatures` binds each signature's keys to them, and
    `signature_defs` is the SavedModel's signature map in TF Serving's metadata shape.
    """

    call_on_the_loop = False

    def __init__(
        self, tf: Any, signatures: Sequence[_Signature], signature_defs: dict[str, Any], keep: Any
    ) -> None:
        self._tf = tf
        self._keep = keep  # the loaded object owns the variables the functions read
        self._signatures = {s.name: s for s in signatures}
        self._owner: dict[str, tuple[_Signature, str]] = {}
        self._output_owner: dict[str, tuple[_Signature, str]] = {}
        for sig in signatures:
            for key, spec in sig.inputs.items():
                self._owner[spec.name] = (sig, key)
            for key, spec in sig.outputs.items():
                self._output_owner[spec.name] = (sig, key)
        self._inputs = tuple(spec for s in signatures for spec in s.inputs.values())
        self._outputs = tuple(spec for s in signatures for spec in s.outputs.values())
        self.signature_defs = signature_defs
        # Classify and regress signatures taking serialized tf.Example protos (one string input),
        # as TF Serving's are: :classify and :regress build the protos from the JSON examples.
        self.example_signatures = {
            s.name: next(iter(s.inputs))
            for s in signatures
            if s.method in ("classify", "regress")
            and len(s.inputs) == 1
            and next(iter(s.inputs.values())).dtype == "string"
        }
        self.native_signatures = {
            s.name: SignatureSpec(
                method=s.method,  # type: ignore[arg-type]
                inputs={k: InputSpec(tensor=v.name) for k, v in s.inputs.items()},
                outputs={k: OutputSpec.model_validate({"from": v.name}) for k, v in s.outputs.items()},
            )
            for s in signatures
        }

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    def serialize_examples(self, examples: Sequence[Mapping[str, Sequence[Any]]]) -> np.ndarray:
        """Serialized tf.Example protos, one per example: bytes features as bytes_list, all-int
        features as int64_list, other numbers as float_list."""
        from tensorflow.core.example import example_pb2

        rows = np.empty(len(examples), dtype=object)
        for i, features in enumerate(examples):
            proto = example_pb2.Example()
            for name, values in features.items():
                feature = proto.features.feature[name]
                try:
                    if values and isinstance(values[0], bytes):
                        feature.bytes_list.value.extend(values)
                    elif values and all(isinstance(v, int) for v in values):
                        feature.int64_list.value.extend(values)
                    else:
                        feature.float_list.value.extend(values)
                except (ValueError, TypeError) as exc:  # an int past int64
                    raise invalid(f"example {i}, feature '{name}': {exc}") from None
            rows[i] = proto.SerializeToString()
        return rows

    def signature_tensors(self, name: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
        sig = self._signatures[name]
        return list(sig.inputs.values()), list(sig.outputs.values())

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        sig = self._signature_of(feeds, output_names)
        tf = self._tf
        kwargs = {}
        for tensor, value in feeds.items():
            owner, key = self._owner[tensor]
            if owner is not sig:
                raise ModelportError(
                    Code.INVALID_ARGUMENT, f"inputs of signatures '{owner.name}' and '{sig.name}' in one call"
                )
            kwargs[key] = tf.constant(value) if value.dtype != object else tf.constant(value.tolist())
        try:
            results = sig.function(**kwargs)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise ModelportError(
                Code.INVALID_ARGUMENT, f"model rejected the input: {_first_line(exc)}"
            ) from exc
        names = output_names if output_names is not None else [s.name for s in sig.outputs.values()]
        out: dict[str, np.ndarray] = {}
        for name in names:
            owner, key = self._output_owner[name]
            if owner is not sig:
                raise ModelportError(Code.INVALID_ARGUMENT, f"output {name} is not of signature '{sig.name}'")
            value = results[key].numpy()
            out[name] = value.astype(object) if value.dtype.kind == "S" else value
        return out

    def _signature_of(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None
    ) -> _Signature:
        for tensor in feeds:
            if tensor in self._owner:
                return self._owner[tensor][0]
        for tensor in output_names or ():
            if tensor in self._output_owner:
                return self._output_owner[tensor][0]
        if DEFAULT_SIGNATURE in self._signatures:
            return self._signatures[DEFAULT_SIGNATURE]
        return next(iter(self._signatures.values()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_saved_model(tf: Any, folder: Path) -> TensorflowModel:
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    pb = folder / SAVED_MODEL_FILE
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(pb.read_bytes())
    except Exception as exc:  # DecodeError, or an OSError reading it
        raise ModelportError(Code.DATA_LOSS, f"{pb} is not a SavedModel: {exc}") from exc
    graphs = [g for g in proto.meta_graphs if set(g.meta_info_def.tags) == {SERVE_TAG}]
    if not graphs:
        tags = [sorted(g.meta_info_def.tags) for g in proto.meta_graphs]
        raise ModelportError(
            Code.NOT_FOUND, f"{pb} has no MetaGraph with the tag set ['{SERVE_TAG}'] (it has {tags})"
        )
    graph = graphs[0]
    try:
        loaded = tf.saved_model.load(str(folder), tags=[SERVE_TAG])
    except Exception as exc:  # TF raises its own error types for missing variables and such
        raise ModelportError(Code.DATA_LOSS, f"cannot load SavedModel {folder}: {_first_line(exc)}") from exc
    signature_defs: dict[str, Any] = {}
    signatures: list[_Signature] = []
    seen: set[str] = set()
    for name in sorted(graph.signature_def):
        sdef = graph.signature_def[name]
        signature_defs[name] = _signature_def_json(json_format, sdef)
        if name not in loaded.signatures:  # __saved_model_init_op: shown, not callable
            continue
        inputs = {k: _spec(tf, info, name, k, seen) for k, info in sorted(sdef.inputs.items())}
        outputs = {k: _spec(tf, info, name, k, seen) for k, info in sorted(sdef.outputs.items())}
        method = _METHODS.get(sdef.method_name, "predict")
        signatures.append(_Signature(name, method, inputs, outputs, loaded.signatures[name]))
    if not signatures:
        raise ModelportError(Code.NOT_FOUND, f"{pb}: the '{SERVE_TAG}' MetaGraph has no signatures to serve")
    return TensorflowModel(tf, signatures, signature_defs, loaded)


def _spec(tf: Any, info: Any, signature: str, key: str, seen: set[str]) -> TensorSpec:
    """The tensor under its graph name, or `signature/key` if another signature has that name."""
    name = info.name if info.name and info.name not in seen else f"{signature}/{key}"
    seen.add(name)
    return TensorSpec(name, _dtype(info.dtype), _shape(info.tensor_shape))


def _signature_def_json(json_format: Any, sdef: Any) -> dict[str, Any]:
    """TF Serving's JSON of a SignatureDef (what its GetModelMetadata answers)."""
    doc: dict[str, Any] = json_format.MessageToDict(
        sdef, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for side in ("inputs", "outputs"):
        for info in doc.setdefault(side, {}).values():
            shape = info.setdefault("tensor_shape", {})
            shape["unknown_rank"] = bool(shape.get("unknown_rank", False))
            for dim in shape.setdefault("dim", []):
                dim.setdefault("size", "0")
                dim.setdefault("name", "")
    doc.setdefault("method_name", "")
    doc.setdefault("defaults", {})
    return doc


def _load_keras(tf: Any, path: Path) -> TensorflowModel:
    try:
        import keras

        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors...
        raise ModelportError(Code.DATA_LOSS, f"cannot load Keras model {path}: {_first_line(exc)}") from exc
    seen: set[str] = set()
    names = [_keras_name(t, "input", i) for i, t in enumerate(model.inputs)]
    inputs = {n: _keras_spec(t, n, seen) for n, t in zip(names, model.inputs, strict=True)}
    out_names = getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))]
    outputs = {n: _keras_spec(t, n, seen) for n, t in zip(out_names, model.outputs, strict=True)}
    specs = [tf.TensorSpec([d if d is not None else None for d in t.shape], t.dtype) for t in model.inputs]

    @tf.function(input_signature=specs, reduce_retracing=True)  # type: ignore[untyped-decorator]
    def call(*tensors: Any) -> dict[str, Any]:
        result = model(list(tensors) if len(tensors) > 1 else tensors[0], training=False)
        results = result if isinstance(result, list | tuple) else [result]
        return dict(zip(out_names, results, strict=True))

    def function(**kwargs: Any) -> dict[str, Any]:
        return call(*(kwargs[n] for n in names))  # type: ignore[no-any-return]

    sig = _Signature(DEFAULT_SIGNATURE, "predict", inputs, outputs, function)
    signature_defs = {
        DEFAULT_SIGNATURE: {
            "inputs": {k: _keras_info(v) for k, v in inputs.items()},
            "outputs": {k: _keras_info(v) for k, v in outputs.items()},
            "method_name": "tensorflow/serving/predict",
            "defaults": {},
        }
    }
    return TensorflowModel(tf, [sig], signature_defs, model)


def _keras_name(tensor: Any, prefix: str, index: int) -> str:
    name = str(getattr(tensor, "name", "") or "")
    return name if name and not name.startswith("keras_tensor") else f"{prefix}_{index}"


def _keras_spec(tensor: Any, name: str, seen: set[str]) -> TensorSpec:
    unique = name if name not in seen else f"{name}_{len(seen)}"
    seen.add(unique)
    dtype = str(tensor.dtype)
    shape = tuple(-1 if d is None else int(d) for d in tensor.shape)
    return TensorSpec(unique, _DTYPES.get(dtype, dtype), shape)


def _keras_info(spec: TensorSpec) -> dict[str, Any]:
    from modelport.runtimes.dtypes import tf_name

    return {
        "dtype": tf_name(spec.dtype),
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in spec.shape], "unknown_rank": False},
        "name": spec.name,
    }


class TensorflowRuntime:
    platform = "tensorflow"
    # saved_model.pb names the SavedModel in its version folder; .keras is Keras 3's file.
    file_suffixes: tuple[str, ...] = (".pb", ".keras")

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        defaults = dict(defaults or {})
        self._intra = int(defaults.get("intra_op_threads", 1) or 0)
        self._inter = int(defaults.get("inter_op_threads", 1) or 0)

    def load(self, path: Path, options: Mapping[str, Any]) -> TensorflowModel:
        if options:
            raise ModelportError(
                Code.INVALID_ARGUMENT,
                f"TensorFlow models take no per-model runtime options ({sorted(options)}): TensorFlow's "
                "threads are the process's, set with --tensorflow_intra_op_parallelism and "
                "--tensorflow_inter_op_parallelism",
            )
        if path.suffix == ".pb" and path.name != SAVED_MODEL_FILE:
            raise ModelportError(
                Code.INVALID_ARGUMENT,
                f"{path}: a TensorFlow model is a SavedModel folder holding {SAVED_MODEL_FILE} "
                "(frozen GraphDefs are not served)",
            )
        tf = import_tensorflow(path)
        _set_threads(tf, self._intra, self._inter)
        if path.suffix == ".keras":
            return _load_keras(tf, path)
        return _load_saved_model(tf, path.parent)
