"""The per-version metadata file, `<base_path>/<version>/model.yaml`, parsed at the edge.

Every key is optional; a version folder with only `model.onnx` serves the model's own tensors
under the signature `serving_default`. Example (the MNIST example ships this):

    platform: onnx                 # onnx | sklearn; default: from the model file's suffix
    model_file: model.onnx         # default: the one model file in the folder
    runtime: {intra_op_threads: 1} # passed to the runtime (ONNX Runtime session options)
    max_batch_size: 64             # rows per request; default: the server's --max_batch_size
    logging: {sampleRate: 0.1, maxBytes: 67108864}   # the prediction log (opt-in; server/monitor.py)
    signatures:
      serving_default:
        inputs:
          image_bytes:             # the name clients send
            tensor: pixels         # the model input it feeds (default: same name)
            image: {mode: L, width: 28, height: 28, invert: auto, scale: [0.0, 1.0]}
        outputs:
          classes: {from: logits, transform: argmax}
          probabilities: {from: logits, transform: softmax}
        labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]   # optional class names

Validation errors name the field path (`signatures.serving_default.inputs.image_bytes.image.mode`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelport.errors import Code, ModelportError

METADATA_FILE = "model.yaml"
DEFAULT_SIGNATURE = "serving_default"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSpec(_Strict):
    """How encoded image bytes (PNG, JPEG, ...) become the model's input tensor."""

    mode: Literal["L", "RGB"] = "L"
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    # auto: invert when the image has a light background (MNIST digits are white on black, a
    # drawing or a photo of paper is dark on light). always / never force it.
    invert: Literal["auto", "always", "never"] = "never"
    scale: tuple[float, float] = (0.0, 1.0)  # 0..255 maps linearly onto this range
    channels_first: bool = False  # RGB only: CHW instead of HWC
    # stretch: resize the whole image to width x height. mnist: crop to the ink's bounding box,
    # fit it into 20x20 keeping its aspect ratio and centre it by centre of mass in 28x28, the way
    # the MNIST digits were made, so a drawing or a photo looks like what the model was trained on.
    fit: Literal["stretch", "mnist"] = "stretch"
    # Refuse images whose decoded size exceeds this many pixels, before decoding them.
    max_pixels: int = Field(default=40_000_000, gt=0)


class InputSpec(_Strict):
    tensor: str | None = None  # model input fed by this signature input; default: same name
    image: ImageSpec | None = None
    allow_non_finite: bool = False  # accept NaN / Infinity in float inputs


class OutputSpec(_Strict):
    from_: str | None = Field(default=None, alias="from")  # model output; default: same name
    transform: Literal["identity", "argmax", "softmax", "sigmoid"] = "identity"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SignatureSpec(_Strict):
    method: Literal["predict", "classify", "regress"] = "predict"
    inputs: dict[str, InputSpec] | None = None  # None: the model's own inputs
    outputs: dict[str, OutputSpec] | None = None  # None: the model's own outputs
    labels: list[str] | None = None  # class names for argmax outputs and :classify


class LoggingSpec(_Strict):
    """The prediction log (server/monitor.py): the share of requests written, and the most bytes
    its files may take on disk (the current file and its rotated ones together)."""

    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0, alias="sampleRate")
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=4096, alias="maxBytes")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class VersionMetadata(_Strict):
    platform: str | None = None
    model_file: str | None = None
    runtime: dict[str, Any] = Field(default_factory=dict)
    signatures: dict[str, SignatureSpec] = Field(default_factory=dict)
    description: str | None = None
    # Rows a request may have (Triton's config.pbtxt and TF Serving's batcher use this name);
    # None: the server's --max_batch_size. Checked before any work (runtimes/limits.py).
    max_batch_size: int | None = Field(default=None, gt=0)
    # The prediction log, opt-in per version (or for every model: serve --prediction_log_sample_rate).
    logging: LoggingSpec | None = None


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join("from" if part == "from_" else str(part) for part in loc)


def parse_metadata(text: str, source: str) -> VersionMetadata:
    """Parse model.yaml text; errors name the file and every offending field path."""
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ModelportError(Code.INVALID_ARGUMENT, f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelportError(Code.INVALID_ARGUMENT, f"{source}: must be a mapping of keys")
    try:
        return VersionMetadata.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ModelportError(Code.INVALID_ARGUMENT, f"{source}: {problems}") from exc


def read_metadata(version_dir: Path) -> VersionMetadata:
    path = version_dir / METADATA_FILE
    if not path.exists():
        return VersionMetadata()
    return parse_metadata(path.read_text(encoding="utf-8"), str(path))
