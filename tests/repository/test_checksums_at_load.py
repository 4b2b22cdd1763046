"""`_COMPLETE` may list sha256 checksums: they are verified when the version loads. A file changed
after publishing (same size, so the mark still counts it complete) is refused with both checksums
named, and the version already serving keeps serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelport.repository.config import single_model_config
from modelport.repository.layout import file_sha256, write_version
from modelport.repository.manager import ModelManager
from modelport.repository.policy import State
from modelport.runtimes import default_runtimes
from modelport.testing.clock import FakeClock
from support import half_plus_two


def _predict(manager: ModelManager, x: float) -> float:
    servable = manager.model("half").resolve()
    out = servable.signature(None).run(servable.model, {"x": np.array([[x]], np.float32)})
    return float(out["y"][0, 0])


def test_a_file_changed_after_publishing_is_refused_and_the_previous_version_keeps_serving(
    tmp_path: Path,
) -> None:
    base = tmp_path / "half"
    write_version(base / "1", lambda d: half_plus_two(d, offset=2.0))
    manager = ModelManager(single_model_config("half", str(base)), default_runtimes(), FakeClock())
    manager.poll()
    assert _predict(manager, 2.0) == 3.0
    listed = write_version(base / "2", lambda d: half_plus_two(d, offset=3.0))
    half_plus_two(tmp_path / "other", offset=7.0)  # another model, same size: the sizes still match
    (base / "2" / "model.onnx").write_bytes((tmp_path / "other" / "model.onnx").read_bytes())
    assert (base / "2" / "model.onnx").stat().st_size == listed["model.onnx"]["size"]
    manager.poll()
    statuses = {s.version: s for s in manager.model("half").statuses}
    assert statuses[2].state == State.END and statuses[2].error_code == "DATA_LOSS"
    assert statuses[2].error_message == (
        f"{base / '2' / 'model.onnx'}: sha256 {file_sha256(base / '2' / 'model.onnx')} does not match "
        f"{listed['model.onnx']['sha256']} in _COMPLETE"
    )
    assert statuses[1].state == State.AVAILABLE and _predict(manager, 2.0) == 3.0  # version 1 answers


def test_a_version_whose_files_match_their_checksums_loads(tmp_path: Path) -> None:
    base = tmp_path / "half"
    write_version(base / "1", lambda d: half_plus_two(d, offset=2.0))
    write_version(base / "2", lambda d: half_plus_two(d, offset=3.0))
    manager = ModelManager(single_model_config("half", str(base)), default_runtimes(), FakeClock())
    manager.poll()
    assert manager.model("half").resolve().version == 2 and _predict(manager, 2.0) == 4.0
