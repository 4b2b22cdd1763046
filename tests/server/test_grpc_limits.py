"""The gRPC server's own limits (README, "Connection limits"): beyond `--max_connections` calls
at once, a call is told RESOURCE_EXHAUSTED at once instead of queueing without bound, and the
calls within the limit finish. A real gRPC server on loopback, built as `modelport serve`
builds it, with a servicer whose calls wait on a gate the test opens."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from modelport.server.grpc_service import GrpcServer, server_options
from modelport.server.grpc_v2 import inference_pb2 as pb
from modelport.server.grpc_v2 import inference_pb2_grpc as pb_grpc
from support import poll

CAP = 4


class Gated(pb_grpc.GRPCInferenceServiceServicer):
    """ModelInfer waits for the gate; `waiting` counts the calls that have reached it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def ModelInfer(self, request: Any, context: Any) -> Any:
        with self._lock:
            self.waiting += 1
        self.gate.wait(30)
        return pb.ModelInferResponse(model_name=request.model_name)


@pytest.fixture
def gated() -> Iterator[tuple[Gated, int]]:
    servicer = Gated()
    server = GrpcServer(servicer, "127.0.0.1", 0, 1 << 20, max_concurrent_rpcs=CAP)  # type: ignore[arg-type]
    try:
        yield servicer, server.port
    finally:
        servicer.gate.set()
        server.stop(grace=1)


def test_calls_beyond_the_cap_are_resource_exhausted(gated: tuple[Gated, int]) -> None:
    servicer, port = gated
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        held = [
            stub.ModelInfer.future(service_pb2.ModelInferRequest(model_name=f"m{i}"), timeout=30)
            for i in range(CAP)
        ]
        assert poll(lambda: servicer.waiting == CAP, 10, 0.01) is None
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(service_pb2.ModelInferRequest(model_name="one-more"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert servicer.waiting == CAP  # refused before it reached the servicer
        servicer.gate.set()
        assert [call.result().model_name for call in held] == [f"m{i}" for i in range(CAP)]
        # With the calls done, the next one is served.
        assert (
            stub.ModelInfer(service_pb2.ModelInferRequest(model_name="after"), timeout=10).model_name
            == "after"
        )


def test_the_grpc_keepalive_settings_are_the_documented_ones() -> None:
    """README: an idle connection is pinged after a minute, dropped 20 s after an unanswered ping,
    closed after 10 minutes with no call; client pings are taken every 10 s. (Waiting minutes for
    them is not a test: the channel arguments the server is built with are checked instead.)"""
    options = dict(server_options(2_000_000))
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.keepalive_timeout_ms"] == 20_000
    assert options["grpc.max_connection_idle_ms"] == 600_000
    assert options["grpc.http2.min_recv_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.max_receive_message_length"] == options["grpc.max_send_message_length"] == 2_000_000


def test_calls_within_the_cap_beyond_the_threads_wait_for_a_thread() -> None:
    """README: calls run in the server's threads and the others wait for one (not refused)."""
    servicer = Gated()
    server = GrpcServer(servicer, "127.0.0.1", 0, 1 << 20, max_concurrent_rpcs=CAP, threads=2)  # type: ignore[arg-type]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            calls = [
                stub.ModelInfer.future(service_pb2.ModelInferRequest(model_name=f"m{i}"), timeout=30)
                for i in range(3)
            ]
            assert poll(lambda: servicer.waiting == 2, 10, 0.01) is None
            # The third holds no thread while both are taken: it waits, neither run nor refused.
            assert poll(lambda: servicer.waiting == 3 or calls[2].done(), 0.5, 0.01) is not None
            servicer.gate.set()
            assert sorted(call.result().model_name for call in calls) == ["m0", "m1", "m2"]
            assert servicer.waiting == 3
    finally:
        servicer.gate.set()
        server.stop(grace=1)
