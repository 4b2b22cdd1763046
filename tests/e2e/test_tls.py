"""TLS on the model server, judged by real TLS clients (requests, tritonclient http and grpc,
grpcio) against a real `modelport serve`: one server with --ssl_cert_file/--ssl_key_file (REST
and gRPC), one with mutual TLS (--ssl_client_ca_file for REST, TF Serving's --ssl_config_file with
client_verify for gRPC). The certificates come from a CA the test makes."""

from __future__ import annotations

import contextlib
import gc
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from support import PATIENCE, Server, half_and_mnist, running
from tls_support import Pki, make_pki, ssl_config_text

HALF = {"instances": [[1.0], [4.0]]}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tls-repo")
    half_and_mnist(root)
    return root


def _ready(srv: Server, **tls: object) -> None:
    srv.wait_until(lambda: requests.get(srv.url + "/readyz", timeout=5, **tls).status_code == 200)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tls_server(repo: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("tls-server")
    args = ["--model_config_file", str(repo / "models.yaml"),
            "--ssl_cert_file", str(pki.server_cert), "--ssl_key_file", str(pki.server_key)]  # fmt: skip
    with running(args, work) as srv:
        srv.url = srv.url.replace("http://", "https://")
        _ready(srv, verify=str(pki.ca))
        yield srv


@pytest.fixture(scope="module")
def mtls_server(repo: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("mtls-server")
    config = work / "ssl.config"
    config.write_text(ssl_config_text(pki, client_verify=True))
    args = ["--model_config_file", str(repo / "models.yaml"),
            "--ssl_cert_file", str(pki.server_cert), "--ssl_key_file", str(pki.server_key),
            "--ssl_client_ca_file", str(pki.ca), "--ssl_config_file", str(config)]  # fmt: skip
    with running(args, work) as srv:
        srv.url = srv.url.replace("http://", "https://")
        _ready(srv, verify=str(pki.ca), cert=(str(pki.client_cert), str(pki.client_key)))
        yield srv
        # A refused handshake's client socket lives on in the exception the test caught (a cycle,
        # freed by the collector): until it is closed, the server's graceful stop waits for it
        # (up to its 10 s). Close it now, as a client that goes away would.
        gc.collect()


def test_rest_answers_over_tls_to_a_client_that_trusts_the_ca(tls_server: Server, pki: Pki) -> None:
    r = requests.post(tls_server.url + "/v1/models/half:predict", json=HALF, verify=str(pki.ca), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [[2.5], [4.0]]}
    assert "REST API at https://" in tls_server.log()


def test_rest_refuses_plain_http_and_is_not_trusted_without_the_ca(tls_server: Server, pki: Pki) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(tls_server.url.replace("https://", "http://") + "/readyz", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_server.url + "/readyz", verify=str(pki.other_ca), timeout=5)


def test_tritonclient_http_with_ssl(tls_server: Server, pki: Pki) -> None:
    client = httpclient.InferenceServerClient(
        f"127.0.0.1:{tls_server.port}", ssl=True, ssl_options={"ca_certs": str(pki.ca)}
    )
    try:
        x = np.array([[1.0], [-2.0]], dtype=np.float32)
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("half", [tensor])
        np.testing.assert_allclose(result.as_numpy("y"), 0.5 * x + 2.0)
    finally:
        client.close()


def test_grpc_over_tls_with_tritonclient_and_grpcio(tls_server: Server, pki: Pki) -> None:
    address = f"127.0.0.1:{tls_server.grpc_port}"
    triton = grpcclient.InferenceServerClient(address, ssl=True, root_certificates=str(pki.ca))
    try:
        assert triton.is_model_ready("half")
    finally:
        triton.close()
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
    with grpc.insecure_channel(address) as channel:  # plain text to a TLS port: no answer
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_rest_needs_a_client_certificate(mtls_server: Server, pki: Pki) -> None:
    url = mtls_server.url + "/v1/models/half:predict"
    # Refused in the handshake: under TLS 1.3 the client may see the alert (SSLError) or only
    # the closed connection, both ConnectionErrors; never an answer.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(url, json=HALF, verify=str(pki.ca), timeout=10)
    mine = (str(pki.client_cert), str(pki.client_key))
    r = requests.post(url, json=HALF, verify=str(pki.ca), cert=mine, timeout=10)
    assert r.status_code == 200, r.text
    assert "TLS with client certificates" in mtls_server.log()


def test_mutual_tls_grpc_from_the_ssl_config_file(mtls_server: Server, pki: Pki) -> None:
    address = f"127.0.0.1:{mtls_server.grpc_port}"
    anonymous = grpcclient.InferenceServerClient(address, ssl=True, root_certificates=str(pki.ca))
    try:
        with pytest.raises(InferenceServerException):
            anonymous.is_server_live()
    finally:
        anonymous.close()
    known = grpcclient.InferenceServerClient(
        address, ssl=True, root_certificates=str(pki.ca),
        private_key=str(pki.client_key), certificate_chain=str(pki.client_cert),
    )  # fmt: skip
    try:
        assert known.is_model_ready("half")
    finally:
        known.close()


# --max_connections and --header_timeout_seconds of the `capped` server: a handshake must end
# within the header limit (long enough for a busy machine's handshakes to finish inside it).
CAP, HANDSHAKE = 4, 2 * PATIENCE


@pytest.fixture(scope="module")
def capped(repo: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("capped-tls-server")
    args = ["--model_name", "half", "--model_base_path", str(repo / "half"),
            "--ssl_cert_file", str(pki.server_cert), "--ssl_key_file", str(pki.server_key),
            "--max_connections", str(CAP), "--header_timeout_seconds", str(HANDSHAKE)]  # fmt: skip
    with running(args, work) as srv:
        srv.url = srv.url.replace("http://", "https://")
        _ready(srv, verify=str(pki.ca))
        yield srv


def _silent(server: Server) -> socket.socket:
    """A TCP connection that never starts its TLS handshake."""
    return socket.create_connection(("127.0.0.1", server.port), timeout=30 * PATIENCE)


def _closed_after(conn: socket.socket) -> float:
    """Seconds until the server closes `conn` (nothing sent before it)."""
    started = time.monotonic()
    with contextlib.suppress(ConnectionResetError):  # closed with a reset: closed too
        assert conn.recv(1024) == b""
    return time.monotonic() - started


def test_unfinished_tls_handshakes_count_against_the_cap_and_time_out(capped: Server, pki: Pki) -> None:
    """A client that opens TLS connections and never finishes the handshake costs what one that
    never finishes its header does: each counts as open (503 for others beyond --max_connections,
    closed at once beyond twice it) and is closed at --header_timeout_seconds, not 60 s later."""
    url, ca = capped.url + "/v1/models/half", str(pki.ca)
    silent = [_silent(capped) for _ in range(CAP)]
    opened = time.monotonic()
    try:
        over = requests.get(url, verify=ca, timeout=10 * PATIENCE)
        assert over.status_code == 503 and over.headers["retry-after"] == "1", over.text
        assert requests.get(capped.url + "/healthz", verify=ca, timeout=10 * PATIENCE).status_code == 200
        silent += [_silent(capped) for _ in range(CAP)]  # twice the cap, all in their handshakes
        with _silent(capped) as beyond:
            assert _closed_after(beyond) < HANDSHAKE / 2  # at once, not at the time limit
        waited = _closed_after(silent[0]) + time.monotonic() - opened
        assert time.monotonic() - opened >= HANDSHAKE * 0.9 and waited < HANDSHAKE + 10 * PATIENCE
        for conn in silent[1:]:
            _closed_after(conn)
    finally:
        for conn in silent:
            conn.close()
    capped.wait_until(
        lambda: requests.get(url, verify=ca, timeout=10).status_code == 200, what="served again"
    )
