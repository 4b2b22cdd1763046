"""Framework runtimes behind one small protocol (see base.py), and how a version folder picks one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelport.errors import Code, ModelportError
from modelport.runtimes.base import Model, Runtime, TensorSpec

__all__ = ["Model", "Runtime", "TensorSpec", "default_runtimes", "find_model_file"]

# Platforms a TF Serving config may name that we map onto what the folder actually holds:
# "tensorflow" takes a SavedModel (or .keras file) when the folder has one, and else whatever
# model file it holds (configs written for TF Serving name it for models converted to ONNX too).
_DETECT = ("", "tensorflow")


def default_runtimes(
    allow_pickle: bool = False,
    trusted_types: Sequence[str] = (),
    onnx_defaults: Mapping[str, Any] | None = None,
) -> dict[str, Runtime]:
    from modelport.runtimes.onnx import OnnxRuntime
    from modelport.runtimes.sklearn import SklearnRuntime
    from modelport.runtimes.tensorflow import TensorflowRuntime  # imports TensorFlow only to load

    runtimes: list[Runtime] = [
        OnnxRuntime(onnx_defaults),
        SklearnRuntime(allow_pickle, trusted_types),
        TensorflowRuntime(onnx_defaults),
    ]
    return {r.platform: r for r in runtimes}


def _inside(version_dir: Path, model_file: str) -> Path:
    """The file model.yaml names, which must be in its own version folder: `_COMPLETE`'s checksums
    cover only that folder, so `../2/model.onnx`, `/tmp/model.onnx` or a symlink out of it would
    load bytes nobody verified."""
    path = version_dir / model_file
    if Path(model_file).is_absolute() or not path.resolve().is_relative_to(version_dir.resolve()):
        raise ModelportError(
            Code.INVALID_ARGUMENT,
            f"{version_dir}/model.yaml: model_file '{model_file}' must be a file inside the version folder",
        )
    return path


def find_model_file(
    version_dir: Path, platform: str, model_file: str | None, runtimes: Mapping[str, Runtime]
) -> tuple[Runtime, Path]:
    """Which runtime loads which file of a version folder.

    `platform` comes from model.yaml or the model config; "" and "tensorflow" (from configs
    written for TF Serving) mean "detect from the files".
    """
    if platform not in _DETECT and platform not in runtimes:
        raise ModelportError(
            Code.INVALID_ARGUMENT, f"model_platform '{platform}' is not one of {sorted(runtimes)}"
        )
    candidates = [runtimes[platform]] if platform not in _DETECT else list(runtimes.values())
    if platform == "tensorflow" and "tensorflow" in runtimes and not model_file:
        tf_files = _model_files(version_dir, [runtimes["tensorflow"]])
        if len(tf_files) == 1:
            return tf_files[0]
    if model_file:
        path = _inside(version_dir, model_file)
        for runtime in candidates:
            if path.suffix in runtime.file_suffixes:
                return runtime, path
        raise ModelportError(Code.INVALID_ARGUMENT, f"no runtime loads '{model_file}' in {version_dir}")
    found = _model_files(version_dir, candidates)
    if len(found) != 1:
        names = [p.name for _, p in found]
        what = "no model file" if not found else f"several model files {names}"
        suffixes = sorted({s for r in candidates for s in r.file_suffixes})
        raise ModelportError(
            Code.NOT_FOUND if not found else Code.INVALID_ARGUMENT,
            f"{version_dir}: {what} (looked for {suffixes}); name one with model_file in model.yaml",
        )
    return found[0]


def _model_files(version_dir: Path, candidates: Sequence[Runtime]) -> list[tuple[Runtime, Path]]:
    """The files of the folder a runtime loads (of `.pb` files, only a SavedModel's)."""
    return [
        (runtime, child)
        for child in sorted(version_dir.iterdir())
        for runtime in candidates
        if child.is_file()
        and child.suffix in runtime.file_suffixes
        and (child.suffix != ".pb" or child.name == "saved_model.pb")
    ]
