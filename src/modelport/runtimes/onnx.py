"""ONNX Runtime: the primary runtime.

Thread settings matter more than anything else for small models on CPU: ONNX Runtime's default
(one intra-op thread per core, spinning while idle) competes with the HTTP event loop for the same
cores. Options (model.yaml `runtime:`, the model config's `runtime_options`, or server flags):
`intra_op_threads`, `inter_op_threads`, `execution_mode` (sequential | parallel),
`graph_optimization_level` (disable | basic | extended | all), `allow_spinning` (bool).

A call made with a deadline (`run_until`) is stopped there: ONNX Runtime checks its RunOptions'
`terminate` flag between operators (and between a Loop's iterations), and one watcher thread sets
it on calls past due. A thread in the server's pool, or the event loop, is free again at the
deadline instead of computing an answer nobody waits for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modelport.errors import Code, ModelportError
from modelport.runtimes.base import TensorSpec
from modelport.runtimes.dtypes import from_onnx

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_KNOWN_OPTIONS = frozenset(
    {
        "intra_op_threads",
        "inter_op_threads",
        "execution_mode",
        "graph_optimization_level",
        "allow_spinning",
    }
)


def _dim(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else -1


def _specs(args: Sequence[Any]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(a.name, from_onnx(a.type), tuple(_dim(d) for d in (a.shape or ()))) for a in args)


def session_options(options: Mapping[str, Any]) -> ort.SessionOptions:
    unknown = sorted(set(options) - _KNOWN_OPTIONS)
    if unknown:
        raise ModelportError(
            Code.INVALID_ARGUMENT,
            f"runtime options {unknown} are not ONNX Runtime options; known: {sorted(_KNOWN_OPTIONS)}",
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(options.get("intra_op_threads", 0))
    so.inter_op_num_threads = int(options.get("inter_op_threads", 0))
    mode = options.get("execution_mode", "sequential")
    so.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    level = options.get("graph_optimization_level", "all")
    if level not in _OPT_LEVELS:
        raise ModelportError(
            Code.INVALID_ARGUMENT,
            f"runtime option graph_optimization_level: {level!r} is not one of {sorted(_OPT_LEVELS)}",
        )
    so.graph_optimization_level = _OPT_LEVELS[level]
    if not options.get("allow_spinning", False):
        # Spinning threads burn a core each while waiting for work; on a shared CPU they slow
        # down the event loop that feeds them.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


class Deadlines:
    """Stops ONNX Runtime calls that outlive their deadline.

    A call leaves its (deadline, RunOptions) under its thread's id for its duration: a dict write
    and a delete, no lock and no wake-up per call, because a small model's call takes ~50 us.
    One thread looks every 50 ms and sets `terminate` on those past due, so a call stops within
    50 ms after its deadline. It ends after a second without calls and starts again on the next.
    A thread's RunOptions serve its next call too (made anew, they cost a small call ~4%), unless
    the watcher may have stopped them: it stops only calls whose deadline had passed when it
    looked, and it looks before the call is taken out, so a call that ends before its deadline
    leaves options nobody will stop.
    """

    TICK_SECONDS = 0.05

    def __init__(self) -> None:
        self._running: dict[int, tuple[float, ort.RunOptions]] = {}
        self._spare: dict[int, ort.RunOptions] = {}  # per thread: its last call's, not stopped
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def watch(self, deadline: float) -> ort.RunOptions:
        """The RunOptions for the calling thread's call, which must stop at `deadline`
        (time.monotonic()); give them to `done` when the call ends."""
        key = threading.get_ident()
        options = self._spare.pop(key, None)
        if options is None:
            options = ort.RunOptions()
            options.log_severity_level = 4  # a stop is not an error worth a log line from ORT
        self._running[key] = (deadline, options)
        if self._watcher is None:
            with self._lock:
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name="onnx-deadlines", daemon=True)
                    self._watcher.start()
        return options

    def done(self, deadline: float, options: ort.RunOptions) -> None:
        key = threading.get_ident()
        self._running.pop(key, None)
        if time.monotonic() < deadline:  # the watcher has not stopped them, and will not
            self._spare[key] = options

    def _watch(self) -> None:
        idle = 0
        while True:
            time.sleep(self.TICK_SECONDS)
            now = time.monotonic()
            for deadline, options in list(self._running.values()):
                if deadline <= now:
                    options.terminate = True
            with self._lock:
                idle = 0 if self._running else idle + 1
                if idle * self.TICK_SECONDS >= 1.0:
                    self._watcher = None
                    return


class OnnxModel:
    def __init__(self, session: ort.InferenceSession, deadlines: Deadlines | None = None) -> None:
        self._session = session
        self._deadlines = deadlines or Deadlines()
        self._inputs = _specs(session.get_inputs())
        self._outputs = _specs(session.get_outputs())
        self._output_names = [o.name for o in self._outputs]

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        return self._run(feeds, output_names, None)

    def run_until(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None, deadline: float
    ) -> dict[str, np.ndarray]:
        """`run`, stopped at `deadline` (time.monotonic()) with DEADLINE_EXCEEDED."""
        options = self._deadlines.watch(deadline)
        try:
            return self._run(feeds, output_names, options)
        except ort.capi.onnxruntime_pybind11_state.Fail:
            if options.terminate:
                raise ModelportError(
                    Code.DEADLINE_EXCEEDED, "the model call was stopped at its deadline"
                ) from None
            raise
        finally:
            self._deadlines.done(deadline, options)

    def _run(
        self,
        feeds: Mapping[str, np.ndarray],
        output_names: Sequence[str] | None,
        options: ort.RunOptions | None,
    ) -> dict[str, np.ndarray]:
        names = output_names if output_names is not None else self._output_names
        try:
            values = self._session.run(names, feeds, options)
        except (ort.capi.onnxruntime_pybind11_state.InvalidArgument, ValueError) as exc:
            raise ModelportError(Code.INVALID_ARGUMENT, f"model rejected the input: {exc}") from exc
        return {name: _as_array(value) for name, value in zip(names, values, strict=True)}


def _as_array(value: Any) -> np.ndarray:
    """Tensors come back as arrays; sequences and maps (skl2onnx's ZipMap: one dict of class ->
    probability per row) as Python lists and dicts. Those become object arrays, one element
    per row, so every output has a shape and rows, and each protocol decides how to write it."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list):
        rows = np.empty(len(value), dtype=object)
        for i, item in enumerate(value):  # assigned one by one: numpy would broadcast equal arrays
            rows[i] = item
        return rows
    single = np.empty((), dtype=object)
    single[()] = value
    return single


class OnnxRuntime:
    platform = "onnx"
    file_suffixes: tuple[str, ...] = (".onnx",)

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        # Server-wide settings (--intra_op_parallelism, ...); a model's own options win.
        self._defaults = dict(defaults or {})
        session_options(self._defaults)  # refuse bad flags at start-up, not at first load
        self._deadlines = Deadlines()  # one watcher for every model this runtime loads

    def load(self, path: Path, options: Mapping[str, Any]) -> OnnxModel:
        so = session_options({**self._defaults, **options})
        try:
            session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own pybind types for every kind of bad file
            raise ModelportError(Code.DATA_LOSS, f"cannot load ONNX model {path}: {exc}") from exc
        return OnnxModel(session, self._deadlines)
