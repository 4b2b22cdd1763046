"""ONNX Runtime's threads (README, "Runtimes"): `--intra_op_parallelism`/`--inter_op_parallelism`
(also with TF Serving's `--tensorflow_` prefix) default to 1 each; a model's `runtime_options` in
the model config outrank its own model.yaml, which outranks the flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from claims_support import serve_config
from modelport.repository.config import parse_yaml_config
from modelport.repository.manager import ModelManager
from modelport.runtimes import default_runtimes
from modelport.testing.clock import FakeClock
from support import half_plus_two, mark_complete


def test_the_thread_flags_their_tf_serving_aliases_and_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = ["--model_name", "m", "--model_base_path", str(tmp_path)]
    assert serve_config(monkeypatch, *model).onnx_options == {"intra_op_threads": 1, "inter_op_threads": 1}
    given = serve_config(monkeypatch, *model, "--intra_op_parallelism", "2", "--inter_op_parallelism", "3")
    assert given.onnx_options == {"intra_op_threads": 2, "inter_op_threads": 3}
    tf = serve_config(
        monkeypatch, *model, "--tensorflow_intra_op_parallelism=4", "--tensorflow_inter_op_parallelism=5"
    )
    assert tf.onnx_options == {"intra_op_threads": 4, "inter_op_threads": 5}


def _threads(tmp_path: Path, model_yaml: str | None, runtime_options: str) -> tuple[int, int]:
    """The intra- and inter-op threads of the ONNX Runtime session the server loaded."""
    version = tmp_path / "half" / "1"
    half_plus_two(version)
    if model_yaml is not None:
        (version / "model.yaml").write_text(model_yaml)
    mark_complete(version)
    entry = f"    - name: half\n      base_path: {version.parent}\n{runtime_options}"
    config = parse_yaml_config("model_config_list:\n  config:\n" + entry)
    runtimes = default_runtimes(onnx_defaults={"intra_op_threads": 1, "inter_op_threads": 1})
    manager = ModelManager(config, runtimes, FakeClock())
    manager.poll()
    options = manager.model("half").resolve().model._session.get_session_options()  # type: ignore[attr-defined]
    return options.intra_op_num_threads, options.inter_op_num_threads


def test_the_flags_apply_to_every_model(tmp_path: Path) -> None:
    assert _threads(tmp_path, None, "") == (1, 1)


def test_model_yaml_outranks_the_flags(tmp_path: Path) -> None:
    assert _threads(tmp_path, "runtime: {intra_op_threads: 3}\n", "") == (3, 1)


def test_the_operators_runtime_options_outrank_model_yaml(tmp_path: Path) -> None:
    options = "      runtime_options: {intra_op_threads: 2, inter_op_threads: 2}\n"
    assert _threads(tmp_path, "runtime: {intra_op_threads: 3}\n", options) == (2, 2)
