"""Versions come and go on disk while clients keep calling: no request may fail."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from support import Load, Server, half_plus_two, mark_complete, publish, running


def calls(server: Server) -> Load:
    """Clients calling :predict in a loop on four threads; each answer's value kept."""
    return Load(server.url + "/v1/models/half:predict", {"instances": [[2.0]]})


def test_new_version_replaces_old_under_load_without_a_failed_request(tmp_path: Path) -> None:
    base = tmp_path / "half"
    publish(base, 1, lambda d: half_plus_two(d, offset=2.0))
    with running(
        ["--model_name", "half", "--model_base_path", str(base), "--file_system_poll_wait_seconds", "0.1"],
        tmp_path,
    ) as server:
        server.wait_ready()
        with calls(server) as load:
            server.wait_until(lambda: len(load.outcomes) > 50, what="traffic")
            publish(base, 2, lambda d: half_plus_two(d, offset=3.0))
            server.wait_until(lambda: server.versions("half") == {2: "AVAILABLE", 1: "END"}, what="v2 only")
            publish(base, 3, lambda d: half_plus_two(d, offset=4.0))
            server.wait_until(
                lambda: 3 in server.versions("half") and server.versions("half")[2] == "END", what="v3"
            )
            before = load.values().count(5.0)
            server.wait_until(lambda: load.values().count(5.0) > before + 20, what="traffic on v3")
        assert load.failures() == [], load.failures()[:5]
        # every version answered while it was the latest: 2*0.5 + offset
        assert {3.0, 4.0, 5.0} <= set(load.values())


def test_broken_version_is_reported_and_the_old_one_keeps_serving(tmp_path: Path) -> None:
    base = tmp_path / "half"
    publish(base, 1, lambda d: half_plus_two(d, offset=2.0))
    with running(
        ["--model_name", "half", "--model_base_path", str(base), "--file_system_poll_wait_seconds", "0.1"],
        tmp_path,
    ) as server:
        server.wait_ready()
        with calls(server) as load:
            publish(base, 2, lambda d: (d / "model.onnx").write_bytes(b"\x08\x07garbage, not a model"))
            server.wait_until(lambda: server.versions("half").get(2) == "END", what="v2 failed")
            server.wait_until(lambda: len(load.outcomes) > 50, what="traffic")
        assert load.failures() == [], load.failures()[:5]
        assert set(load.values()) == {3.0}  # only version 1 answered
        status = {s["version"]: s for s in server.get("/v1/models/half").json()["model_version_status"]}
        assert status["1"]["state"] == "AVAILABLE"
        assert status["2"]["status"]["error_code"] == "DATA_LOSS"
        assert "cannot load ONNX model" in status["2"]["status"]["error_message"]
        assert (
            server.get("/readyz").json()["models"]["half"]["failed_versions"]["2"].startswith("cannot load")
        )
        assert server.post("/v1/models/half/versions/2:predict", {"instances": [[1.0]]}).status_code == 404

        # the publisher fixes version 2 in place: it is retried and served
        shutil.rmtree(base / "2")
        publish(base, 2, lambda d: half_plus_two(d, offset=7.0))
        server.wait_until(lambda: server.versions("half") == {2: "AVAILABLE", 1: "END"}, what="v2 fixed")
        assert server.post("/v1/models/half:predict", {"instances": [[2.0]]}).json() == {
            "predictions": [[8.0]]
        }


def test_half_copied_folder_is_not_loaded_half_way(tmp_path: Path) -> None:
    base = tmp_path / "half"
    publish(base, 1, lambda d: half_plus_two(d, offset=2.0))
    probe = tmp_path / "probe"  # a second model whose marked versions show each poll happening
    publish(probe, 1, lambda d: half_plus_two(d))
    config = tmp_path / "models.yaml"
    config.write_text(
        "model_config_list:\n  config:\n"
        f"    - {{name: half, base_path: {base}}}\n    - {{name: probe, base_path: {probe}}}\n"
    )
    model = half_plus_two(tmp_path / "src", offset=9.0).read_bytes()
    # Settle 3 s: longer than the two polls watched below take even on a busy machine, so a
    # plain copy paused that long would still be waited for.
    with running(
        ["--model_config_file", str(config), "--file_system_poll_wait_seconds", "0.1",
         "--version_settle_seconds", "3"],
        tmp_path,
    ) as server:  # fmt: skip
        server.wait_ready()
        # a plain copy, no mark: the first half of the file lands, then a pause, then the rest
        (base / "2").mkdir()
        with open(base / "2" / "model.onnx", "wb") as out:
            out.write(model[: len(model) // 2])
            out.flush()
            os.fsync(out.fileno())
            for version in (2, 3):  # two polls at least have seen the partial file
                publish(probe, version, lambda d: half_plus_two(d))
                server.wait_until(lambda v=version: v in server.versions("probe"), what=f"probe v{version}")
                assert 2 not in server.versions("half")
            out.write(model[len(model) // 2 :])
        server.wait_until(lambda: server.versions("half").get(2) == "AVAILABLE", what="v2 after the copy")
        assert server.post("/v1/models/half:predict", {"instances": [[2.0]]}).json() == {
            "predictions": [[10.0]]
        }
        assert "failed to load" not in server.log()


def test_resource_preserving_unloads_first(tmp_path: Path) -> None:
    base = tmp_path / "half"
    publish(base, 1, lambda d: half_plus_two(d, offset=2.0))
    with running(
        ["--model_name", "half", "--model_base_path", str(base), "--file_system_poll_wait_seconds", "0.1",
         "--version_transition_policy", "resource_preserving"],
        tmp_path,
    ) as server:  # fmt: skip
        server.wait_ready()
        publish(base, 2, lambda d: half_plus_two(d, offset=3.0))
        server.wait_until(lambda: server.versions("half") == {2: "AVAILABLE", 1: "END"}, what="v2")
        unload = server.log().index("version 1 unloaded")
        load = server.log().index("version 2 AVAILABLE")
        assert unload < load  # the old version left memory before the new one came in


def test_model_folder_with_garbage_is_reported_not_fatal(tmp_path: Path) -> None:
    good = tmp_path / "good"
    publish(good, 1, half_plus_two)
    junk = tmp_path / "junk"
    (junk / "1").mkdir(parents=True)
    (junk / "1" / "notes.txt").write_text("no model here")
    (junk / "1" / "model.yaml").write_text("signatures: [not, a, mapping]")
    mark_complete(junk / "1")
    (junk / "banana").mkdir()
    config = tmp_path / "models.yaml"
    config.write_text(
        f"model_config_list:\n  config:\n    - {{name: good, base_path: {good}}}\n"
        f"    - {{name: junk, base_path: {junk}}}\n    - {{name: missing, base_path: {tmp_path / 'nope'}}}\n"
    )
    with running(
        ["--model_config_file", str(config), "--file_system_poll_wait_seconds", "0.1"], tmp_path
    ) as server:
        server.wait_until(lambda: server.versions("junk").get(1) == "END", what="junk reported")
        assert server.post("/v1/models/good:predict", {"instances": [[2.0]]}).json() == {
            "predictions": [[3.0]]
        }
        (status,) = server.get("/v1/models/junk").json()["model_version_status"]
        assert "model.yaml" in status["status"]["error_message"]
        ready = server.get("/readyz")
        assert ready.status_code == 503  # not every configured model is AVAILABLE
        models = ready.json()["models"]
        assert models["good"]["ready"] is True
        assert models["junk"]["ready"] is False
        assert "cannot read base path" in models["missing"]["problem"]
        assert server.get("/v2/health/ready").status_code == 400
        assert server.proc.poll() is None
