"""`--enable_batching` means TF Serving's defaults, and a real `modelport serve` with allowed batch
sizes pads each batch up to one and counts the filler rows in `modelport_batch_padding_rows_total`
(the answers themselves never include them)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from claims_support import serve_config
from modelport.server.batching import BatchingParameters
from support import half_plus_two, mark_complete, running


def test_enable_batching_means_tf_servings_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = ["--model_name", "m", "--model_base_path", str(tmp_path)]
    assert serve_config(monkeypatch, *model).batching is None  # off by default
    batching = serve_config(monkeypatch, *model, "--enable_batching").batching
    # SharedBatchScheduler's QueueOptions and Options, which TF Serving keeps for unset fields
    assert batching == BatchingParameters(
        max_batch_size=1000, batch_timeout_micros=0, max_enqueued_batches=10,
        num_batch_threads=os.cpu_count() or 1, allowed_batch_sizes=(), pad_variable_length_inputs=False,
        enable_large_batch_splitting=False,
    )  # fmt: skip


def _padding_rows(metrics: str) -> float:
    found = re.findall(
        r'^modelport_batch_padding_rows_total\{model="half",version="1"\} (\S+)$', metrics, re.M
    )
    return float(found[0]) if found else 0.0


def test_padding_to_an_allowed_batch_size_is_counted(tmp_path: Path) -> None:
    half_plus_two(tmp_path / "half" / "1")
    mark_complete(tmp_path / "half" / "1")
    (tmp_path / "batching.yaml").write_text(
        "max_batch_size: 8\nallowed_batch_sizes: [4, 8]\nnum_batch_threads: 1\n"
    )
    args = ["--model_name", "half", "--model_base_path", str(tmp_path / "half"),
            "--batching_parameters_file", str(tmp_path / "batching.yaml")]  # fmt: skip
    with running(args, tmp_path) as server:
        server.wait_ready()
        assert _padding_rows(server.get("/metrics").text) == 0.0
        three = server.post("/v1/models/half:predict", {"instances": [1.0, 2.0, 3.0]})
        assert three.json() == {"predictions": [[2.5], [3.0], [3.5]]}  # 3 rows padded to 4, 1 filler
        assert _padding_rows(server.get("/metrics").text) == 1.0
        five = server.post("/v1/models/half:predict", {"instances": [0.0, 2.0, 4.0, 6.0, 8.0]})
        assert five.json() == {"predictions": [[2.0], [3.0], [4.0], [5.0], [6.0]]}  # 5 padded to 8
        assert _padding_rows(server.get("/metrics").text) == 4.0
        four = server.post("/v1/models/half:predict", {"instances": [0.0, 0.0, 0.0, 0.0]})
        assert four.status_code == 200 and _padding_rows(server.get("/metrics").text) == 4.0  # a fit
