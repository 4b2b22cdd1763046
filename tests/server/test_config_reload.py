"""A real `modelport serve --model_config_file F --model_config_file_poll_wait_seconds S` re-reads F:
a model added to it gets served, and a bad edit is logged and ignored, the last good config
serving on."""

from __future__ import annotations

import json
from pathlib import Path

from support import half_plus_two, mark_complete, running


def _model(root: Path, name: str, slope: float) -> Path:
    half_plus_two(root / name / "1", slope=slope)
    mark_complete(root / name / "1")
    return root / name


def _config(path: Path, models: dict[str, Path]) -> None:
    entries = "".join(f"    - {{name: {name}, base_path: {base}}}\n" for name, base in models.items())
    partial = path.with_suffix(".partial")  # written whole, then renamed: never read half-written
    partial.write_text("model_config_list:\n  config:\n" + entries)
    partial.replace(path)


def test_the_config_file_is_reread_and_a_bad_edit_keeps_the_last_good_one(tmp_path: Path) -> None:
    half, double = _model(tmp_path, "half", 0.5), _model(tmp_path, "double", 2.0)
    config = tmp_path / "models.yaml"
    _config(config, {"half": half})
    args = ["--model_config_file", str(config), "--model_config_file_poll_wait_seconds", "0.2"]
    with running(args, tmp_path) as server:
        server.wait_ready()
        assert server.post("/v1/models/double:predict", {"instances": [1.0]}).status_code == 404
        _config(config, {"half": half, "double": double})
        server.wait_until(lambda: server.versions("double") == {1: "AVAILABLE"}, what="double served")
        assert server.post("/v1/models/double:predict", {"instances": [1.0]}).json() == {
            "predictions": [[4.0]]
        }
        assert "not reloaded" not in server.log()
        config.write_text("model_config_list:\n  config:\n    - {name: broken}\n")  # no base_path
        server.wait_until(
            lambda: "not reloaded, keeping the previous one" in server.log(), what="the refusal"
        )
        assert f"model config {config} not reloaded, keeping the previous one: " in server.log()
        for name, answer in (("half", 2.5), ("double", 4.0)):
            reply = server.post(f"/v1/models/{name}:predict", {"instances": [1.0]})
            assert reply.json() == {"predictions": [[answer]]}
        assert json.loads(server.get("/readyz").text)["ready"] is True
