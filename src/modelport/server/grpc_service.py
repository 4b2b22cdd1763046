"""The Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`).

grpcio's server and its own threads, beside the REST event loop. Requests go through the same
code as REST: the same limits, signature checks, pre/post-processing, inference path
(server/inference.py: in the call's thread when small and fast, else the pool or the batcher;
the deadline) and metrics (`api="grpc_infer"`). A call's deadline is the server's request
timeout, or the client's own deadline when that is sooner. Tensor data comes either in typed
`contents` or in `raw_input_contents` (never both); answers carry `raw_output_contents`, as
Triton's do.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc
import numpy as np

from modelport.errors import Code, ModelportError, invalid
from modelport.repository.manager import ModelManager, Servable
from modelport.runtimes.limits import RequestLimits
from modelport.runtimes.signature import InputValue, Signature
from modelport.security.auth import Refused, retry_after_header, token_of
from modelport.security.tls import TlsIdentity
from modelport.server import request_ids, v2
from modelport.server.grpc_v2 import inference_pb2 as pb
from modelport.server.grpc_v2 import inference_pb2_grpc as pb_grpc
from modelport.server.guard import Guard
from modelport.server.inference import Deadline, InferencePath, Job
from modelport.server.metrics import UNKNOWN, ServerMetrics, model_label
from modelport.server.monitor_process import MonitorClient
from modelport.server.readiness import Readiness

log = logging.getLogger("modelport.grpc")

# Which typed field of InferTensorContents carries each datatype (FP16 travels raw only).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}  # fmt: skip
_ALL_CONTENTS = sorted(set(_CONTENTS.values()))
_DATATYPES: dict[np.dtype[Any], str] = {}  # numeric dtypes met in outputs, and their v2 names
_STATUS = {
    Code.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.UNSUPPORTED_MEDIA_TYPE: grpc.StatusCode.INVALID_ARGUMENT,
}


def _decode_inputs(request: Any, signature: Signature, limits: RequestLimits) -> dict[str, InputValue]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise invalid(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: "
            "give every input's data there, or none"
        )
    inputs: dict[str, InputValue] = {}
    for i, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        binding = v2.check_input(signature, name, datatype, shape, limits)
        image = binding.image is not None
        has_contents = tensor.HasField("contents") and any(
            len(getattr(tensor.contents, f)) for f in _ALL_CONTENTS
        )
        if raw:
            if has_contents:
                raise invalid(f"input '{name}' has both contents and raw_input_contents: send one")
            value = v2.from_raw(name, datatype, shape, memoryview(raw[i]), image)
        else:
            field = _CONTENTS.get(datatype)
            if field is None:
                raise invalid(f"input '{name}': {datatype} data must be sent in raw_input_contents")
            others = [f for f in _ALL_CONTENTS if f != field and len(getattr(tensor.contents, f))]
            if others:
                raise invalid(f"input '{name}' is {datatype}, whose data goes in {field}, not {others[0]}")
            value = v2.from_values(name, datatype, shape, getattr(tensor.contents, field), image)
        if name in inputs:
            raise invalid(f"input '{name}' is given twice")
        inputs[name] = value
    return inputs


def _requested(request: Any) -> list[str] | None:
    """Output names asked for (an unknown one is refused by Signature.prepare)."""
    return [o.name for o in request.outputs] or None


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Handlers run by the gRPC server's threads. Where a call's work runs is the shared
    inference path's choice (`run_here`): in that thread when small and fast, else in the pool."""

    def __init__(
        self,
        manager: ModelManager,
        metrics: ServerMetrics,
        inference: InferencePath,
        timeout_seconds: float,
        guard: Guard | None = None,
        monitor: MonitorClient | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        self._readiness = readiness or Readiness(manager)
        self._guard = guard
        self._manager = manager
        self._monitor = monitor
        self._metrics = metrics
        self._inference = inference
        self._timeout = timeout_seconds

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self._readiness.is_ready())

    def _admit(
        self,
        context: grpc.ServicerContext,
        need: str,
        model: str | None,
        trailer: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """The call's key (metadata `authorization: Bearer K` or `x-api-key: K`) may do `need`."""
        if self._guard is None:
            return
        metadata = [(k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str)]
        try:
            self._guard.admit(token_of(metadata), need, model, context.peer())
        except Refused as exc:
            if exc.http_status == 429:
                trailer = (*trailer, ("retry-after", retry_after_header(exc)))
            context.set_trailing_metadata(trailer)
            context.abort(_grpc_status(exc), exc.message)

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._admit(context, "read", request.name)
        try:
            version = v2.parse_version(request.version)
        except ModelportError:
            version = -1
        return pb.ModelReadyResponse(ready=self._readiness.model_ready(request.name, version))

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._admit(context, "read", None)
        meta = v2.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._admit(context, "read", request.name)
        try:
            view = self._manager.model(request.name)
            servable = view.resolve(v2.parse_version(request.version))
        except ModelportError as exc:
            _abort(context, exc)
        meta = v2.model_metadata(
            request.name, sorted(view.versions), servable.platform, servable.signature(None)
        )
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        version, status, watch, error = "", 500, None, None
        # The call's id in its trailing metadata, as REST's x-request-id (on errors too).
        request_id = request_ids.from_metadata(context.invocation_metadata(), request.id)
        trailer = ((request_ids.METADATA_KEY, request_id),)
        context.set_trailing_metadata(trailer)
        if self._guard is not None:
            self._admit(context, "predict", request.model_name, trailer)
        model = model_label(request.model_name, self._manager.view)
        gauge = self._metrics.in_flight(model)
        gauge.inc()
        try:
            servable = self._manager.model(request.model_name).resolve(
                v2.parse_version(request.model_version)
            )
            version = str(servable.version)
            remaining = context.time_remaining()
            seconds = self._timeout if remaining is None else min(self._timeout, remaining)
            prepare = functools.partial(_prepare, servable, request)
            if self._monitor is not None:
                watch = self._monitor.observe(servable, request_id, "grpc_infer")
            response = self._inference.run_here(
                servable, prepare, request.ByteSize(), Deadline.after(seconds), watch
            )
            status = 200
            return response
        except ModelportError as exc:
            status, error = exc.http_status, (_grpc_status(exc), exc.message)
        except Exception as exc:
            log.exception("ModelInfer %s failed", request.model_name)
            error = (grpc.StatusCode.INTERNAL, f"Internal error: {exc!r}")
        finally:
            gauge.dec()
            if not version and request.model_version:  # not resolved: unknown, or a bad version
                view = self._manager.view.get(request.model_name)
                known = {str(s.version) for s in view.statuses} if view is not None else set()
                version = request.model_version if request.model_version in known else UNKNOWN
            seconds = time.perf_counter() - started
            self._metrics.observe(model, version, "grpc_infer", status, seconds)
            if watch is not None and status == 200:
                self._monitor.done(watch, seconds)  # type: ignore[union-attr]
        context.abort(*error)  # after the metrics: abort raises


def _prepare(servable: Servable, request: Any, limits: RequestLimits) -> Job[Any]:
    """Check and decode a call's inputs (everything before the model call), and how to answer."""
    signature = servable.signature(None)
    call = signature.prepare(_decode_inputs(request, signature, limits), _requested(request), limits)
    return Job(call, functools.partial(_response, servable, request))


def _response(servable: Servable, request: Any, outputs: dict[str, np.ndarray]) -> Any:
    names: Sequence[str] = [o.name for o in request.outputs] or list(outputs)
    response = pb.ModelInferResponse(
        model_name=servable.model_name, model_version=str(servable.version), id=request.id
    )
    add, raw = response.outputs.add, response.raw_output_contents
    for name in names:
        array = outputs[name]
        add(name=name, datatype=_datatype(name, array), shape=array.shape)
        raw.append(v2.raw_of(name, array))
    return response


def _datatype(name: str, array: np.ndarray) -> str:
    """v2's name for an output's dtype (numpy's dtype.name is slow: known ones are remembered)."""
    datatype = _DATATYPES.get(array.dtype)
    if datatype is None:
        datatype = v2.datatype_of(name, array)  # raises when none fits
        if array.dtype.kind in "biuf":  # numbers: a few dtypes (strings' vary with their length)
            _DATATYPES[array.dtype] = datatype
    return datatype


def _grpc_status(exc: ModelportError) -> grpc.StatusCode:
    return _STATUS.get(exc.code) or getattr(grpc.StatusCode, exc.code.name, grpc.StatusCode.UNKNOWN)


def _abort(context: grpc.ServicerContext, exc: ModelportError) -> NoReturn:
    context.abort(_grpc_status(exc), exc.message)
    raise AssertionError("grpc's abort raises")


def server_options(max_message_bytes: int, shared_port: bool = False) -> list[tuple[str, int]]:
    """The gRPC server's channel arguments: what one client may send, hold open and ask for.

    A message over `max_message_bytes` (REST's `--max_request_bytes`) is refused by gRPC itself
    with RESOURCE_EXHAUSTED before it is decoded. Beyond `maximum_concurrent_rpcs` calls at once
    (given to the server, not here) a call gets RESOURCE_EXHAUSTED too. Streams per connection
    are not capped: a client that opens more than a cap before it has read the server's settings
    gets its extra calls refused (UNAVAILABLE, measured with 3,000 calls at once on one channel
    and a cap of 100), where a call over `maximum_concurrent_rpcs` is told to back off.

    `shared_port`: several workers (`--workers`) listen on the port, SO_REUSEPORT; else a
    second server given the same port fails to start instead of sharing it unnoticed."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", int(shared_port)),
        # Metadata (gRPC's headers) capped as REST's header block is: RESOURCE_EXHAUSTED beyond
        # 64 KiB. Both limits: with the soft one alone, gRPC refuses some calls between it and a
        # hard limit 1.25x over it, at random.
        ("grpc.max_metadata_size", 64 * 1024),
        ("grpc.absolute_max_metadata_size", 64 * 1024),
        # A peer that vanished without closing (a dead node, a dropped NAT entry) is found by a ping
        # every minute on an idle connection, unanswered for 20 s; a connection with no call for
        # 10 minutes is closed (clients reconnect on their next call).
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.max_connection_idle_ms", 600_000),
        # Clients may ping to keep a connection up, but not more than every 10 s (gRPC's default
        # refuses pings more often than every 5 minutes, which closes clients that keep alive).
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_credentials(tls: TlsIdentity) -> grpc.ServerCredentials:
    """TLS for the gRPC port; with a client CA, a client without a certificate it signed is
    refused in the handshake (TF Serving's `client_verify`)."""
    ca = tls.client_ca.data if tls.client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(tls.key.data, tls.cert.data)], root_certificates=ca, require_client_auth=ca is not None
    )


class GrpcServer:
    """grpcio's server with a pool of `threads` beside the REST loop: each call's handler runs
    in one of them. (Measured against grpc.aio on its own thread and loop: 1.09-1.27x fewer CPU
    per call, bench/grpc_bench.py and RESULTS.md.) Health and metadata calls wait for a thread
    when every one is taken by a heavy call."""

    def __init__(
        self,
        servicer: InferenceServicer,
        host: str,
        port: int,
        max_message_bytes: int,
        max_concurrent_rpcs: int = 1024,
        tls: TlsIdentity | None = None,
        shared_port: bool = False,
        threads: int = 5,
    ) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="grpc")
        options = server_options(max_message_bytes, shared_port)
        server = grpc.server(self._pool, options=options, maximum_concurrent_rpcs=max_concurrent_rpcs)
        try:
            pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                if tls is None:
                    bound = server.add_insecure_port(address)
                else:
                    bound = server.add_secure_port(address, server_credentials(tls))
            except RuntimeError as exc:  # grpcio's own words for a port it could not bind
                raise OSError(f"cannot listen for gRPC on {address} (in use?): {exc}") from None
            if bound == 0:
                raise OSError(f"cannot listen for gRPC on {address} (in use?)")
            server.start()
        except BaseException:
            server.stop(None)
            self._pool.shutdown(wait=False)
            raise
        self._server, self.port = server, bound

    def stop(self, grace: float = 5.0) -> None:
        self._server.stop(grace).wait(grace + 1)
        self._pool.shutdown(wait=False, cancel_futures=True)
