"""Signatures: the named inputs and outputs clients see, bound to a model's tensors.

A signature turns client values into model feeds (decoding images, checking dtype, shape and
finiteness) and model results into client outputs (argmax, softmax, labels). Transports give it
numpy arrays, or lists of bytes for image inputs, and get numpy arrays back.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from modelport.errors import Code, ModelportError, invalid
from modelport.runtimes import codecs
from modelport.runtimes.base import Model, TensorSpec
from modelport.runtimes.dtypes import is_float, numpy_dtype
from modelport.runtimes.limits import RequestLimits
from modelport.runtimes.metadata import (
    DEFAULT_SIGNATURE,
    ImageSpec,
    InputSpec,
    OutputSpec,
    SignatureSpec,
    VersionMetadata,
)

InputValue = np.ndarray | Sequence[bytes]


@dataclass(frozen=True)
class InputBinding:
    name: str
    tensor: TensorSpec
    image: ImageSpec | None
    allow_non_finite: bool

    @property
    def dtype(self) -> str:
        return "string" if self.image else self.tensor.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return (-1,) if self.image else self.tensor.shape

    def feed(self, value: InputValue) -> np.ndarray:
        if self.image is not None:
            return self.decode_images(self.open_images(value))
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        return self._check(array)

    @functools.cached_property
    def batched(self) -> bool:
        """Is the first dimension the rows of a batch? Images: one per row. A fixed first
        dimension ([1, 784], [3, 4]) is the model's own shape, not a number of rows."""
        return self.image is not None or (bool(self.tensor.shape) and self.tensor.shape[0] < 0)

    def open_images(self, value: InputValue) -> list[Image.Image]:
        """Each row's image with only its header read: sizes are known, nothing is decoded."""
        assert self.image is not None
        if isinstance(value, np.ndarray) and value.dtype != object:
            raise invalid(
                f'input \'{self.name}\' takes encoded image bytes (send {{"b64": "..."}}), '
                f"got numbers of dtype {value.dtype}"
            )
        images = []
        for i, data in enumerate(value):
            if type(data) is not bytes and not isinstance(data, bytes | bytearray):
                raise invalid(f"input '{self.name}' row {i}: expected image bytes, got {type(data).__name__}")
            try:
                images.append(codecs.open_image(bytes(data), self.image))
            except ModelportError as exc:
                raise invalid(f"input '{self.name}' row {i}: {exc.message}") from exc
        if not images:
            raise invalid(f"input '{self.name}' has no rows")
        return images

    def decode_images(self, images: list[Image.Image]) -> np.ndarray:
        assert self.image is not None
        rows = []
        for i, image in enumerate(images):
            try:
                rows.append(codecs.decode_opened(image, self.image))
            except ModelportError as exc:
                raise invalid(f"input '{self.name}' row {i}: {exc.message}") from exc
        per_row = self.tensor.shape[1:]
        stacked = rows[0][np.newaxis] if len(rows) == 1 else np.stack(rows)
        if -1 not in per_row and math.prod(per_row) == rows[0].size:
            stacked = stacked.reshape((len(rows), *per_row))
        stacked = stacked.astype(numpy_dtype(self.tensor.dtype), copy=False)
        # Decoded pixels are finite and of the model's dtype by construction: only the shape
        # can be wrong (an image spec that does not fit the model's input).
        if not self.tensor.accepts_shape(stacked.shape):
            raise invalid(
                f"input '{self.name}': decoded images have shape {list(stacked.shape)}, the model "
                f"wants {_shape_text(self.tensor.shape)}; check the image spec in model.yaml"
            )
        return stacked

    def _check(self, array: np.ndarray) -> np.ndarray:
        want = self.tensor.dtype
        if want != "string" and array.dtype != numpy_dtype(want):
            array = _cast(self.name, array, want)
        if (
            array.ndim == len(self.tensor.shape) - 1
            and self.tensor.shape[-1] == 1
            and self.tensor.accepts_shape((*array.shape, 1))
        ):
            # [1.0, 2.0] for a [-1, 1] input: the one feature per row is implied, as clients of
            # TF Serving's half_plus_two are used to.
            array = array[..., np.newaxis]
        if not self.tensor.accepts_shape(array.shape):
            raise invalid(
                f"input '{self.name}' expects shape {_shape_text(self.tensor.shape)}, got {list(array.shape)}"
            )
        if is_float(want) and not self.allow_non_finite and not np.isfinite(array).all():
            raise invalid(f"input '{self.name}' contains NaN or Infinity, which this model does not accept")
        return array


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("-1" if d < 0 else str(d) for d in shape) + "]"


def _cast(name: str, array: np.ndarray, want: str) -> np.ndarray:
    kind = array.dtype.kind
    target = numpy_dtype(want)
    if kind in "OUSV" or (kind == "b" and target.kind != "b"):
        got = "booleans" if kind == "b" else "strings or mixed values"
        raise invalid(f"input '{name}' expects {want}, got {got}")
    if kind == "f" and target.kind in "iu" and not np.all(np.isfinite(array) & (array == np.round(array))):
        raise invalid(f"input '{name}' expects {want}, got non-integer numbers")
    try:
        return array.astype(target)
    except (ValueError, OverflowError) as exc:
        raise invalid(f"input '{name}' expects {want}: {exc}") from exc


@dataclass(frozen=True)
class OutputBinding:
    name: str
    source: TensorSpec
    transform: str
    labels: tuple[str, ...] | None

    @property
    def dtype(self) -> str:
        if self.transform == "argmax":
            return "string" if self.labels else "int64"
        return self.source.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.source.shape[:-1] if self.transform == "argmax" else self.source.shape

    def compute(self, value: np.ndarray) -> np.ndarray:
        if self.transform == "argmax":
            indices = codecs.argmax(value)
            return codecs.label(indices, self.labels) if self.labels else indices
        if self.transform == "softmax":
            return codecs.softmax(value)
        if self.transform == "sigmoid":
            return codecs.sigmoid(value)
        return value


@dataclass(frozen=True)
class PreparedCall:
    """A request ready for the model: its feeds, the model outputs it needs, and how to turn
    them into the signature's outputs. Batching runs many of these in one model call."""

    feeds: dict[str, np.ndarray]
    sources: list[str]
    wanted: list[OutputBinding]

    def finish(self, results: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {b.name: b.compute(results[b.source.name]) for b in self.wanted}


@dataclass(frozen=True)
class Signature:
    name: str
    method: str
    inputs: Mapping[str, InputBinding]
    outputs: Mapping[str, OutputBinding]
    labels: tuple[str, ...] | None

    def run(
        self, model: Model, values: Mapping[str, InputValue], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        call = self.prepare(values, outputs)
        return call.finish(model.run(call.feeds, call.sources))

    def prepare(
        self,
        values: Mapping[str, InputValue],
        outputs: Sequence[str] | None = None,
        limits: RequestLimits | None = None,
    ) -> PreparedCall:
        """Validate and decode a request's inputs: everything before the model call. With
        `limits`, the request's images are measured from their headers, all of them, and
        refused over `max_request_pixels` before the first one is decoded."""
        feeds = self.feeds(values, limits)
        if outputs:
            wanted = [self._output(name) for name in outputs]
            sources = sorted({b.source.name for b in wanted})
        else:
            wanted, sources = self._all_outputs
        return PreparedCall(feeds, sources, wanted)

    @functools.cached_property
    def _all_outputs(self) -> tuple[list[OutputBinding], list[str]]:
        bindings = list(self.outputs.values())
        return bindings, sorted({b.source.name for b in bindings})

    def feeds(
        self, values: Mapping[str, InputValue], limits: RequestLimits | None = None
    ) -> dict[str, np.ndarray]:
        if values.keys() == self.inputs.keys():  # the usual case: skip the error bookkeeping
            if limits is not None and self._image_inputs:
                feeds = self._feeds_within(values, limits)
                return feeds if len(feeds) == 1 else self._same_rows(feeds)
            feeds = {b.tensor.name: b.feed(values[name]) for name, b in self.inputs.items()}
            if len(feeds) == 1:
                return feeds
            return self._same_rows(feeds)
        unknown = sorted(set(values) - set(self.inputs))
        if unknown:
            raise invalid(
                f"unknown input {unknown} for signature '{self.name}'; inputs are {sorted(self.inputs)}"
            )
        missing = sorted(set(self.inputs) - set(values))
        if missing:
            raise invalid(f"missing input {missing} for signature '{self.name}'")
        return self._same_rows({b.tensor.name: b.feed(values[name]) for name, b in self.inputs.items()})

    @functools.cached_property
    def _image_inputs(self) -> list[str]:
        return [name for name, b in self.inputs.items() if b.image is not None]

    def _feeds_within(self, values: Mapping[str, InputValue], limits: RequestLimits) -> dict[str, np.ndarray]:
        """Open every image's header, add up the pixels, and decode only within the limit."""
        opened: dict[str, list[Image.Image]] = {}
        count = pixels = 0
        for name in self._image_inputs:
            images = opened[name] = self.inputs[name].open_images(values[name])
            count += len(images)
            for image in images:
                width, height = image.size
                pixels += width * height
            limits.check_pixels(name, count, pixels)
        return {
            b.tensor.name: b.decode_images(opened[name]) if name in opened else b.feed(values[name])
            for name, b in self.inputs.items()
        }

    def _same_rows(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = {a.shape[0] for a in feeds.values() if a.ndim > 0}
        if len(rows) > 1:
            raise invalid(f"inputs of signature '{self.name}' have different batch sizes {sorted(rows)}")
        return feeds

    def _output(self, name: str) -> OutputBinding:
        if name not in self.outputs:
            raise invalid(f"unknown output '{name}'; outputs of '{self.name}' are {sorted(self.outputs)}")
        return self.outputs[name]


def _bind_inputs(
    model_inputs: Sequence[TensorSpec], spec: SignatureSpec, where: str
) -> dict[str, InputBinding]:
    tensors = {t.name: t for t in model_inputs}
    declared = spec.inputs if spec.inputs is not None else {n: InputSpec() for n in tensors}
    bound: dict[str, InputBinding] = {}
    for name, item in declared.items():
        target = item.tensor or name
        if target not in tensors:
            raise ModelportError(
                Code.INVALID_ARGUMENT,
                f"{where}.inputs.{name}.tensor: model has no input '{target}' (it has {sorted(tensors)})",
            )
        bound[name] = InputBinding(name, tensors[target], item.image, item.allow_non_finite)
    unfed = sorted(set(tensors) - {b.tensor.name for b in bound.values()})
    if unfed:
        raise ModelportError(Code.INVALID_ARGUMENT, f"{where}.inputs: model inputs {unfed} are not fed")
    return bound


def _bind_outputs(
    model_outputs: Sequence[TensorSpec], spec: SignatureSpec, where: str
) -> dict[str, OutputBinding]:
    tensors = {t.name: t for t in model_outputs}
    declared = spec.outputs if spec.outputs is not None else {n: OutputSpec() for n in tensors}
    labels = tuple(spec.labels) if spec.labels else None
    bound: dict[str, OutputBinding] = {}
    for name, item in declared.items():
        source = item.from_ or name
        if source not in tensors:
            raise ModelportError(
                Code.INVALID_ARGUMENT,
                f"{where}.outputs.{name}.from: model has no output '{source}' (it has {sorted(tensors)})",
            )
        bound[name] = OutputBinding(name, tensors[source], item.transform, labels)
    return bound


def build_signatures(model: Model, metadata: VersionMetadata) -> dict[str, Signature]:
    """Bind every declared signature (or one default signature) to the model; errors name fields.

    A model that brings its own signatures (a SavedModel: `native_signatures`, each over its own
    tensors, `signature_tensors(name)`) serves those unless model.yaml declares others."""
    native: dict[str, SignatureSpec] | None = getattr(model, "native_signatures", None)
    specs = metadata.signatures or native or {DEFAULT_SIGNATURE: SignatureSpec()}
    model_labels = getattr(model, "class_labels", None)
    signatures: dict[str, Signature] = {}
    for name, spec in specs.items():
        where = f"signatures.{name}"
        labels = tuple(spec.labels) if spec.labels else model_labels
        tensors_in, tensors_out = model.inputs, model.outputs
        if native and not metadata.signatures:
            tensors_in, tensors_out = model.signature_tensors(name)  # type: ignore[attr-defined]
        signatures[name] = Signature(
            name,
            spec.method,
            _bind_inputs(tensors_in, spec, where),
            _bind_outputs(tensors_out, spec, where),
            labels,
        )
    return signatures
