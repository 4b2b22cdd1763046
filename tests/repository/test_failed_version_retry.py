"""A version that fails to load is shown with its error, never disturbs the version being served,
is not retried while its folder stays the same, and is retried once its folder changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelport.repository.config import single_model_config
from modelport.repository.manager import ModelManager
from modelport.repository.policy import State
from modelport.runtimes import default_runtimes
from modelport.testing.clock import FakeClock
from support import half_plus_two, mark_complete


def _predict(manager: ModelManager, x: float) -> float:
    servable = manager.model("half").resolve()
    out = servable.signature(None).run(servable.model, {"x": np.array([[x]], np.float32)})
    return float(out["y"][0, 0])


def test_a_failed_version_is_retried_when_its_folder_changes_and_only_then(tmp_path: Path) -> None:
    base = tmp_path / "half"
    half_plus_two(base / "1", offset=2.0)
    mark_complete(base / "1")
    loads: list[tuple[int, State]] = []
    manager = ModelManager(
        single_model_config("half", str(base)), default_runtimes(), FakeClock(),
        listener=lambda m, v, s, t: loads.append((v, s)),
    )  # fmt: skip
    manager.poll()
    (base / "2").mkdir()
    (base / "2" / "model.onnx").write_bytes(b"not an onnx file")
    mark_complete(base / "2")
    manager.poll()
    status = {s.version: s for s in manager.model("half").statuses}
    assert (
        status[2].state == State.END
        and status[2].error_code != "OK"
        and "model.onnx" in status[2].error_message
    )
    assert status[1].state == State.AVAILABLE and _predict(manager, 2.0) == 3.0
    tries = loads.count((2, State.LOADING))
    for _ in range(3):
        manager.poll()
    assert loads.count((2, State.LOADING)) == tries == 1  # the same broken folder is not reloaded
    half_plus_two(base / "2", offset=3.0)  # the publisher fixes it in place
    manager.poll()
    assert loads.count((2, State.LOADING)) == 2
    status = {s.version: s for s in manager.model("half").statuses}
    assert status[2].state == State.AVAILABLE and status[2].error_code == "OK"
    assert _predict(manager, 2.0) == 4.0
