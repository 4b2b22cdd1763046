"""The batcher's logic with a model whose every call is recorded: what merges, what waits, what is
refused, and that every caller gets its own rows back. (The real server with a real model is
tested in tests/e2e/test_batching.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from modelport.errors import Code, ModelportError
from modelport.runtimes.base import TensorSpec
from modelport.server.batching import Batcher, BatchingParameters, parse_batching_parameters


class Recorder:
    """y = 2x + 1 row by row, recording the batch size of every call; can be made slow or held."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.inputs = (TensorSpec("x", "float32", (-1, -1)),)
        self.outputs = (TensorSpec("y", "float32", (-1, -1)),)
        self.calls: list[int] = []
        self.seconds = seconds
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a batch thread is inside `run` (held there if gated)
        self.lock = threading.Lock()

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        self.entered.set()
        self.gate.wait(30)
        with self.lock:
            self.calls.append(len(feeds["x"]))
        if self.seconds:
            time.sleep(self.seconds)
        x = feeds["x"]
        if np.isnan(x).any():
            raise RuntimeError("NaN reached the model")
        return {"y": 2 * x + 1}


def _hold(model: Recorder) -> None:
    """Wait until the batch thread has taken its batch and is held in the model: from here on,
    what is submitted queues, and the batches it forms no longer depend on timing."""
    assert model.entered.wait(30), "the batch thread never called the model"


def _x(rows: int, width: int = 3, start: float = 0.0) -> dict[str, np.ndarray]:
    return {"x": (np.arange(rows * width, dtype=np.float32) + start).reshape(rows, width)}


@pytest.fixture
def made() -> Iterator[list[Batcher]]:
    batchers: list[Batcher] = []
    yield batchers
    for b in batchers:
        b.close()


def _batcher(made: list[Batcher], model: Recorder, **params: object) -> Batcher:
    batcher = Batcher(model, BatchingParameters(**params))  # type: ignore[arg-type]
    made.append(batcher)
    return batcher


def test_concurrent_requests_share_calls_and_get_their_own_rows(made: list[Batcher]) -> None:
    model = Recorder()
    model.gate.clear()
    batcher = _batcher(made, model, max_batch_size=16, batch_timeout_micros=50_000, num_batch_threads=1)
    requests = [_x(1 + i % 3, start=100 * i) for i in range(24)]  # rows 1, 2, 3, 1, 2, 3, ...: 48
    first = batcher.submit(requests[0], ["y"])
    _hold(model)
    with ThreadPoolExecutor(23) as pool:  # 23 callers at once while the first call is held
        rest = list(pool.map(lambda feeds: batcher.submit(feeds, ["y"]), requests[1:]))
    model.gate.set()
    results = [f.result(30) for f in [first, *rest]]
    for feeds, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], 2 * feeds["x"] + 1)
    # The first alone (1 row), then the 47 queued rows in calls of at most 16. A call stops short
    # only when no waiting request fits, i.e. at 14 rows or more (requests are 1-3 rows), so
    # whatever order the 23 arrived in: three calls (two cannot hold 47; three of >= 14 leave <= 5).
    assert model.calls[0] == 1 and sum(model.calls) == 48 and max(model.calls) <= 16, model.calls
    assert len(model.calls) == 4, model.calls


def test_a_lone_request_does_not_wait_for_the_timeout(made: list[Batcher]) -> None:
    # The batcher's clock stands still, so a batch that waited for its 2 s timeout would wait
    # forever: an answer at all means it did not wait (nothing else was coming).
    model = Recorder()
    batcher = Batcher(model, BatchingParameters(batch_timeout_micros=2_000_000), clock=lambda: 0.0)
    made.append(batcher)
    assert batcher.submit(_x(1), ["y"]).result(30)["y"].shape == (1, 3)
    assert model.calls == [1]


def test_an_oversized_request_is_refused_with_tf_servings_message(made: list[Batcher]) -> None:
    batcher = _batcher(made, Recorder(), max_batch_size=4)
    with pytest.raises(
        ModelportError, match="Task size 5 is larger than maximum input batch size 4"
    ) as caught:
        batcher.submit(_x(5), ["y"])
    assert caught.value.code == Code.INVALID_ARGUMENT


def test_large_batch_splitting_splits_and_joins_in_order(made: list[Batcher]) -> None:
    model = Recorder()
    batcher = _batcher(made, model, max_batch_size=4, enable_large_batch_splitting=True, num_batch_threads=2)
    feeds = _x(10)
    np.testing.assert_array_equal(batcher.run(feeds, ["y"])["y"], 2 * feeds["x"] + 1)
    assert all(size <= 4 for size in model.calls) and sum(model.calls) == 10


def test_a_full_queue_answers_unavailable_at_once(made: list[Batcher]) -> None:
    model = Recorder()
    model.gate.clear()  # the model call in progress holds until we let it go
    batcher = _batcher(made, model, max_batch_size=2, max_enqueued_batches=1, num_batch_threads=1)
    running = batcher.submit(_x(2), ["y"])
    _hold(model)
    queued = batcher.submit(_x(2, start=10), ["y"])  # fills the one queued batch
    with pytest.raises(
        ModelportError, match="The batch scheduling queue to which this task was submitted is full"
    ) as caught:
        batcher.submit(_x(1), ["y"])
    assert caught.value.code == Code.UNAVAILABLE and caught.value.http_status == 503
    # At once: refused while the model was still held, so it did not wait for room.
    assert not running.done() and not queued.done()
    model.gate.set()
    assert running.result(5)["y"].shape == (2, 3)
    assert queued.result(5)["y"][0, 0] == 21.0


def test_different_shapes_are_not_merged_unless_padding_is_on(made: list[Batcher]) -> None:
    model = Recorder(seconds=0.02)
    batcher = _batcher(made, model, max_batch_size=8, batch_timeout_micros=100_000, num_batch_threads=1)
    narrow, wide = _x(1, width=2), _x(1, width=5)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda f: batcher.run(f, ["y"]), [narrow, wide] * 3))
    assert [r["y"].shape[1] for r in results] == [2, 5] * 3  # each got its own width back

    padded_model = Recorder(seconds=0.02)
    padded = _batcher(
        made, padded_model, max_batch_size=8, batch_timeout_micros=100_000, num_batch_threads=1,
        pad_variable_length_inputs=True,
    )  # fmt: skip
    padded_model.gate.clear()
    first = padded.submit(narrow, ["y"])
    _hold(padded_model)  # the first call is held; the next two wait in the queue together
    later = [padded.submit(narrow, ["y"]), padded.submit(wide, ["y"])]
    padded_model.gate.set()
    first.result(5)
    narrow_out, wide_out = (f.result(5)["y"] for f in later)
    assert padded_model.calls == [1, 2]  # narrow and wide went in one call
    assert narrow_out.shape == (1, 5)  # padded with zeros to the widest, as TF Serving does
    np.testing.assert_array_equal(narrow_out[0, :2], 2 * narrow["x"][0] + 1)
    np.testing.assert_array_equal(wide_out, 2 * wide["x"] + 1)


def test_allowed_batch_sizes_pad_with_filler_rows_that_are_dropped(made: list[Batcher]) -> None:
    model = Recorder()
    seen: list[tuple[int, int]] = []
    batcher = Batcher(
        model,
        BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1),
        observe=lambda rows, pad, _wait: seen.append((rows, pad)),
    )
    made.append(batcher)
    result = batcher.run(_x(3), ["y"])
    assert result["y"].shape == (3, 3)
    assert model.calls == [4] and seen == [(3, 1)]


def test_one_bad_request_does_not_fail_the_others_in_its_batch(made: list[Batcher]) -> None:
    model = Recorder()
    model.gate.clear()
    batcher = _batcher(made, model, max_batch_size=8, batch_timeout_micros=100_000, num_batch_threads=1)
    held = batcher.submit(_x(1), ["y"])
    _hold(model)
    bad = {"x": np.full((1, 3), np.nan, dtype=np.float32)}
    good = [batcher.submit(_x(1, start=s), ["y"]) for s in (10, 20)]
    poisoned = batcher.submit(bad, ["y"])
    model.gate.set()
    held.result(5)
    assert [g.result(5)["y"][0, 0] for g in good] == [21.0, 41.0]
    with pytest.raises(RuntimeError, match="NaN reached the model"):
        poisoned.result(5)


def test_a_request_whose_caller_gave_up_is_skipped(made: list[Batcher]) -> None:
    model = Recorder()
    model.gate.clear()
    batcher = _batcher(made, model, max_batch_size=8, num_batch_threads=1)
    held = batcher.submit(_x(1), ["y"])
    _hold(model)
    abandoned = batcher.submit(_x(2), ["y"])
    assert abandoned.cancel()
    kept = batcher.submit(_x(1), ["y"])
    model.gate.set()
    held.result(5), kept.result(5)
    assert model.calls == [1, 1]


# -- the parameters file --


def test_tf_serving_text_format_with_wrapper_types() -> None:
    params = parse_batching_parameters(
        """
        max_batch_size { value: 32 }
        batch_timeout_micros { value: 1000 }
        max_enqueued_batches { value: 100 }
        num_batch_threads { value: 4 }
        allowed_batch_sizes: 8
        allowed_batch_sizes: 32
        pad_variable_length_inputs: true
        enable_large_batch_splitting { value: true }
        """
    )
    assert params == BatchingParameters(
        max_batch_size=32, batch_timeout_micros=1000, max_enqueued_batches=100, num_batch_threads=4,
        allowed_batch_sizes=(8, 32), pad_variable_length_inputs=True, enable_large_batch_splitting=True,
    )  # fmt: skip


def test_yaml_of_the_same_content() -> None:
    params = parse_batching_parameters(
        "max_batch_size: 32\nbatch_timeout_micros: 1000\nallowed_batch_sizes: [8, 32]\nnum_batch_threads: 2\n"
    )
    assert (params.max_batch_size, params.batch_timeout_micros, params.allowed_batch_sizes) == (
        32,
        1000,
        (8, 32),
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("max_batch_size { value: 0 }", "max_batch_size: must be an integer >= 1, got 0"),
        ("max_batch_sise: 8", "max_batch_sise: unknown field"),
        (
            "max_batch_size: 32\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16",
            "must equal max_batch_size (32)",
        ),
        ("allowed_batch_sizes: 16\nallowed_batch_sizes: 8\nmax_batch_size: 16", "must be increasing"),
        ("pad_variable_length_inputs: 3", "pad_variable_length_inputs: must be true or false"),
        ("batch_timeout_micros { value: -1 }", "batch_timeout_micros: must be an integer >= 0"),
    ],
)
def test_mistakes_are_named(text: str, named: str) -> None:
    with pytest.raises(ModelportError) as caught:
        parse_batching_parameters(text, "batching.config")
    assert named in str(caught.value) and str(caught.value).startswith("batching.config")


def test_the_queue_depth_an_autoscaler_reads(made: list[Batcher]) -> None:
    """Rows waiting while the model is busy (held), none once it has caught up; as a gauge."""
    from modelport.server.metrics import ServerMetrics

    model = Recorder()
    model.gate.clear()  # the model holds its first batch
    batcher = _batcher(made, model, max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    metrics = ServerMetrics()
    metrics.batch_queue(lambda: batcher.queued_rows)
    futures = [
        batcher.submit(_x(2), ["y"]) for _ in range(5)
    ]  # 10 rows: one batch in the model, the rest wait
    _hold(model)
    waiting = batcher.queued_rows
    # The held batch took the first request, or the first two if both were queued by then.
    assert waiting in (6, 8), waiting
    assert f"modelport_batch_queue_rows {float(waiting)}" in metrics.render().decode()
    model.gate.set()
    for future in futures:
        future.result(10)
    assert batcher.queued_rows == 0
    assert "modelport_batch_queue_rows 0.0" in metrics.render().decode()
