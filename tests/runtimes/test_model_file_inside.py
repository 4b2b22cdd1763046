"""`model_file` in a version's model.yaml must name a file inside that version folder (README,
"model.yaml"): `_COMPLETE`'s checksums cover only the folder, so a path out of it would load bytes
nobody verified. Each way out is refused when the version loads, with `model_file` named; the
version goes to END with the reason and the one already serving keeps serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.repository.config import single_model_config
from modelport.repository.layout import write_version
from modelport.repository.manager import ModelManager
from modelport.repository.policy import State
from modelport.runtimes import default_runtimes
from modelport.testing.clock import FakeClock
from support import half_plus_two


def _predict(manager: ModelManager, x: float) -> float:
    servable = manager.model("half").resolve()
    out = servable.signature(None).run(servable.model, {"x": np.array([[x]], np.float32)})
    return float(out["y"][0, 0])


def _version_naming(folder: Path, model_file: str, outside: Path) -> None:
    """A complete, checksummed version whose model.yaml names `model_file`; the model it would load
    (offset 7) lives outside, in `outside`."""
    half_plus_two(outside, offset=7.0)

    def build(d: Path) -> None:
        half_plus_two(d, offset=3.0)  # what the checksums vouch for
        (d / "model.yaml").write_text(f"model_file: {model_file}\n")
        if model_file == "linked.onnx":
            (d / "linked.onnx").symlink_to(outside / "model.onnx")

    write_version(folder, build)


@pytest.mark.parametrize("model_file", ["../../other/model.onnx", "ABSOLUTE", "linked.onnx"])
def test_a_model_file_outside_its_version_folder_is_refused_at_load(tmp_path: Path, model_file: str) -> None:
    base, outside = tmp_path / "half", tmp_path / "other"
    write_version(base / "1", lambda d: half_plus_two(d, offset=2.0))
    manager = ModelManager(single_model_config("half", str(base)), default_runtimes(), FakeClock())
    manager.poll()
    named = str(outside / "model.onnx") if model_file == "ABSOLUTE" else model_file
    _version_naming(base / "2", named, outside)
    manager.poll()
    statuses = {s.version: s for s in manager.model("half").statuses}
    assert statuses[2].state == State.END and statuses[2].error_code == "INVALID_ARGUMENT"
    assert statuses[2].error_message == (
        f"{base / '2'}/model.yaml: model_file '{named}' must be a file inside the version folder"
    )
    assert statuses[1].state == State.AVAILABLE and _predict(manager, 2.0) == 3.0  # never 8.0


def test_a_model_file_in_a_subfolder_of_the_version_loads(tmp_path: Path) -> None:
    base = tmp_path / "half"

    def build(d: Path) -> None:
        half_plus_two(d / "onnx", offset=3.0)
        (d / "model.yaml").write_text("model_file: onnx/./model.onnx\n")

    write_version(base / "1", build)
    manager = ModelManager(single_model_config("half", str(base)), default_runtimes(), FakeClock())
    manager.poll()
    assert _predict(manager, 2.0) == 4.0
