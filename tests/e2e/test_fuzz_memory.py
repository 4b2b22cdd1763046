"""Fuzzed input does not grow a replica's memory (README, "Errors"): a live `modelport serve`'s
RSS after 10,000 fuzzed requests is under twice its RSS at start.

The requests: 400 cases drawn from the fuzzer's grammars (tests/fuzz_grammars.py: v1 JSON, v2
JSON and binary, gRPC ModelInfer; about half answered 200, half refused), sent 25 times over in
turn; every tenth case, when it is a REST one, goes to a model name never seen before (each
name once: the cardinality an attacker controls, about 650 names)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import grpc
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2_grpc

from fuzz_grammars import grpc_request, v1_request, v2_request
from fuzz_support import fuzz_repository
from support import Server, running

CASES = 400
ROUNDS = 25


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzz_memory")
    with running(["--model_config_file", str(fuzz_repository(root))], root) as srv:
        srv.wait_ready()
        yield srv


def _cases() -> list[tuple[str, Any]]:
    """CASES requests from the grammars, the same ones every run."""
    drawn: list[tuple[str, Any]] = []
    strategy = st.one_of(
        v1_request().map(lambda c: ("rest", c)),
        v2_request().map(lambda c: ("rest", c)),
        grpc_request().map(lambda r: ("grpc", r)),
    )

    @settings(
        max_examples=CASES, derandomize=True, database=None, deadline=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(case=strategy)
    def collect(case: tuple[str, Any]) -> None:
        drawn.append(case)

    collect()
    return drawn


def test_rss_after_10000_fuzzed_requests_is_under_twice_the_rss_at_start(server: Server) -> None:
    cases = _cases()
    process = psutil.Process(server.proc.pid)
    start = process.memory_info().rss
    sent = 0
    rest = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)  # lighter than requests
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for round_ in range(ROUNDS):
            for i, (kind, case) in enumerate(cases):
                if kind == "grpc":
                    try:
                        stub.ModelInfer(case, timeout=10)
                    except grpc.RpcError as exc:
                        assert exc.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
                else:
                    path, body, headers = case
                    if i % 10 == 0:  # a model name never seen before
                        path = f"/v1/models/fuzz-{round_}-{i}:predict"
                    rest.request("POST", path, body, headers)
                    answer = rest.getresponse()
                    text = answer.read()
                    assert answer.status < 500, (answer.status, text[:300], case)
                    if answer.getheader("connection") == "close":
                        rest.close()
                sent += 1
    rest.close()
    end = process.memory_info().rss
    assert sent == ROUNDS * CASES == 10_000
    print(f"RSS {start / 2**20:.0f} MiB at start, {end / 2**20:.0f} MiB after {sent} requests")
    assert end < 2 * start, (
        f"RSS {start / 2**20:.0f} MiB at start, {end / 2**20:.0f} MiB after {sent} requests"
    )
    assert server.get("/healthz").status_code == 200
