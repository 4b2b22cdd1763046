"""API keys on a running model server: key x model x endpoint x protocol -> 200 / 401 / 403 / 429,
with real clients (requests, tritonclient's gRPC stubs), keys made with `modelport keys create`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from click.testing import CliRunner
from tritonclient.grpc import service_pb2, service_pb2_grpc

from modelport.cli import cli
from support import Server, half_and_mnist, poll, running

KEYS = {
    "predict-half": ["--model", "half", "--scope", "predict"],
    "read-half": ["--model", "half", "--scope", "read"],
    "metrics": ["--all-models", "--scope", "metrics"],
    "everything": ["--all-models", "--scope", "predict,read,metrics"],
    "limited": ["--model", "half", "--rate", "1/min", "--burst", "2"],
    "revoked": ["--model", "half", "--scope", "predict,read"],
    "brief": ["--model", "half", "--expires", "1s"],
    "rotated": ["--model", "half"],
}


def keys_cli(home: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["keys", *args], env={"MODELPORT_HOME": str(home)})
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keyhome")


@pytest.fixture(scope="module")
def secrets(home: Path) -> dict[str, str]:
    made = {name: keys_cli(home, "create", name, *flags) for name, flags in KEYS.items()}
    keys_cli(home, "revoke", "revoked")
    made["forged"] = made["predict-half"][:-4] + "AAAA"  # a real id, a wrong secret
    made["garbage"] = "not-a-key"
    return made


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, home: Path, secrets: dict[str, str]) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("repo")
    half_and_mnist(repo)
    args = ["--model_config_file", str(repo / "models.yaml"), "--auth=on",
            "--api_key_store", str(home / "registry.db")]  # fmt: skip
    with running(args, repo) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


HALF = {"instances": [[1.0]]}
V2_HALF = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
# (method, path, body) for each REST endpoint; {m} is the model.
REST = {
    "v1 predict": ("POST", "/v1/models/{m}:predict", HALF),
    "v1 status": ("GET", "/v1/models/{m}", None),
    "v1 metadata": ("GET", "/v1/models/{m}/metadata", None),
    "v2 infer": ("POST", "/v2/models/{m}/infer", V2_HALF),
    "v2 metadata": ("GET", "/v2/models/{m}", None),
    "v2 model ready": ("GET", "/v2/models/{m}/ready", None),
    "v2 server metadata": ("GET", "/v2", None),
    "metrics": ("GET", "/metrics", None),
    "healthz": ("GET", "/healthz", None),
    "readyz": ("GET", "/readyz", None),
    "v2 live": ("GET", "/v2/health/live", None),
    "v2 ready": ("GET", "/v2/health/ready", None),
}
REST_CASES = [
    # key, endpoint, model, status
    (None, "v1 predict", "half", 401),
    ("garbage", "v1 predict", "half", 401),
    ("forged", "v1 predict", "half", 401),
    ("revoked", "v1 predict", "half", 401),
    ("predict-half", "v1 predict", "half", 200),
    ("predict-half", "v1 predict", "mnist", 403),
    ("predict-half", "v1 predict", "nope", 403),  # the same answer as a model that exists
    ("read-half", "v1 predict", "half", 403),
    ("metrics", "v1 predict", "half", 403),
    ("everything", "v1 predict", "half", 200),
    ("everything", "v1 predict", "nope", 404),
    ("predict-half", "v1 status", "half", 403),
    ("read-half", "v1 status", "half", 200),
    ("read-half", "v1 status", "mnist", 403),
    (None, "v1 metadata", "half", 401),
    ("read-half", "v1 metadata", "half", 200),
    ("predict-half", "v2 infer", "half", 200),
    ("read-half", "v2 infer", "half", 403),
    (None, "v2 infer", "half", 401),
    ("read-half", "v2 metadata", "half", 200),
    ("predict-half", "v2 metadata", "half", 403),
    ("read-half", "v2 model ready", "half", 200),
    (None, "v2 model ready", "nope", 401),
    ("read-half", "v2 server metadata", "", 200),
    (None, "v2 server metadata", "", 401),
    ("metrics", "metrics", "", 200),
    ("read-half", "metrics", "", 403),
    (None, "metrics", "", 401),
    (None, "healthz", "", 200),
    (None, "readyz", "", 200),
    (None, "v2 live", "", 200),
    (None, "v2 ready", "", 200),
]


def _call(server: Server, endpoint: str, model: str, headers: dict[str, str]) -> requests.Response:
    method, path, body = REST[endpoint]
    return requests.request(method, server.url + path.format(m=model), json=body, headers=headers, timeout=10)


@pytest.mark.parametrize("key,endpoint,model,status", REST_CASES)
def test_rest(
    server: Server, secrets: dict[str, str], key: str | None, endpoint: str, model: str, status: int
) -> None:
    headers = {} if key is None else {"Authorization": f"Bearer {secrets[key]}"}
    answer = _call(server, endpoint, model, headers)
    assert answer.status_code == status, answer.text
    if status == 401:
        assert answer.headers["www-authenticate"] == 'Bearer realm="modelport"'
        assert "API key" in answer.json()["error"]
    if status == 403:
        assert answer.json()["error"] == f"API key {secrets[key][4:12]} does not grant " + (
            f"'{REST_NEED[endpoint]}' on model '{model}'" if model else f"'{REST_NEED[endpoint]}'"
        )


REST_NEED = {"v1 predict": "predict", "v2 infer": "predict", "metrics": "metrics"} | {
    e: "read" for e in ("v1 status", "v1 metadata", "v2 metadata", "v2 model ready", "v2 server metadata")
}


def test_the_key_may_come_as_x_api_key(server: Server, secrets: dict[str, str]) -> None:
    answer = server.post("/v1/models/half:predict", HALF, headers={"x-api-key": secrets["predict-half"]})
    assert answer.status_code == 200 and answer.json() == {"predictions": [[2.5]]}


def test_readiness_does_not_list_the_models_without_a_key(server: Server) -> None:
    assert server.get("/readyz").json().keys() == {"ready", "version"}


def test_the_openapi_document_is_open_and_names_the_key_schemes(server: Server) -> None:
    document = server.get("/openapi.json").json()
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert "401" in document["paths"]["/v1/models/{model_name}:predict"]["post"]["responses"]


def _infer(model: str) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 1])
    tensor.contents.fp32_contents.append(1.0)
    return request


GRPC_CASES = [
    (None, "ModelInfer", "half", grpc.StatusCode.UNAUTHENTICATED),
    ("forged", "ModelInfer", "half", grpc.StatusCode.UNAUTHENTICATED),
    ("predict-half", "ModelInfer", "half", grpc.StatusCode.OK),
    ("predict-half", "ModelInfer", "mnist", grpc.StatusCode.PERMISSION_DENIED),
    ("predict-half", "ModelInfer", "nope", grpc.StatusCode.PERMISSION_DENIED),
    ("read-half", "ModelInfer", "half", grpc.StatusCode.PERMISSION_DENIED),
    ("read-half", "ModelMetadata", "half", grpc.StatusCode.OK),
    ("predict-half", "ModelMetadata", "half", grpc.StatusCode.PERMISSION_DENIED),
    (None, "ModelMetadata", "half", grpc.StatusCode.UNAUTHENTICATED),
    ("read-half", "ModelReady", "half", grpc.StatusCode.OK),
    (None, "ModelReady", "half", grpc.StatusCode.UNAUTHENTICATED),
    ("read-half", "ServerMetadata", "", grpc.StatusCode.OK),
    (None, "ServerMetadata", "", grpc.StatusCode.UNAUTHENTICATED),
    (None, "ServerLive", "", grpc.StatusCode.OK),
    (None, "ServerReady", "", grpc.StatusCode.OK),
]
GRPC_REQUESTS = {
    "ModelInfer": _infer,
    "ModelMetadata": lambda m: service_pb2.ModelMetadataRequest(name=m),
    "ModelReady": lambda m: service_pb2.ModelReadyRequest(name=m),
    "ServerMetadata": lambda m: service_pb2.ServerMetadataRequest(),
    "ServerLive": lambda m: service_pb2.ServerLiveRequest(),
    "ServerReady": lambda m: service_pb2.ServerReadyRequest(),
}


@pytest.mark.parametrize("key,method,model,code", GRPC_CASES)
def test_grpc(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    secrets: dict[str, str],
    key: str | None,
    method: str,
    model: str,
    code: grpc.StatusCode,
) -> None:
    metadata = () if key is None else (("authorization", f"Bearer {secrets[key]}"),)
    try:
        getattr(stub, method)(GRPC_REQUESTS[method](model), metadata=metadata, timeout=10)
        got = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        got = exc.code()
    assert got == code


def test_over_its_rate_a_key_gets_429_with_retry_after_on_rest_and_resource_exhausted_on_grpc(
    server: Server, stub: service_pb2_grpc.GRPCInferenceServiceStub, secrets: dict[str, str]
) -> None:
    headers = {"x-api-key": secrets["limited"]}
    first = [server.post("/v1/models/half:predict", HALF, headers=headers).status_code for _ in range(2)]
    assert first == [200, 200]  # the burst
    over = server.post("/v1/models/half:predict", HALF, headers=headers)
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 60
    message = over.json()["error"]
    assert re.fullmatch(r"API key [0-9a-f]{8} is over its limit \(1/min\): retry in [0-9.]+ s", message)
    v2_over = server.post("/v2/models/half/infer", V2_HALF, headers=headers)  # the same bucket
    assert v2_over.status_code == 429 and v2_over.headers["retry-after"].isdigit()
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(_infer("half"), metadata=(("x-api-key", secrets["limited"]),), timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(refused.value.trailing_metadata())["retry-after"].isdigit()


def test_metrics_count_requests_per_key_id_and_the_log_holds_no_secret(
    server: Server, secrets: dict[str, str]
) -> None:
    server.post("/v1/models/half:predict", HALF, headers={"x-api-key": secrets["predict-half"]})
    text = server.get("/metrics", headers={"x-api-key": secrets["metrics"]}).text
    key_id = secrets["predict-half"][4:12]
    assert re.search(rf'modelport_api_key_requests_total{{key="{key_id}",status="200"}} [1-9]', text)
    assert re.search(r'modelport_api_key_requests_total{key="_none",status="401"} [1-9]', text)
    log = server.log()
    for secret in secrets.values():
        assert secret not in log and secret not in text


def test_an_expired_key_is_refused(server: Server, secrets: dict[str, str]) -> None:
    headers = {"x-api-key": secrets["brief"]}  # made with --expires 1s
    assert (
        poll(lambda: server.post("/v1/models/half:predict", HALF, headers=headers).status_code == 401, 5, 0.1)
        is None
    )
    assert (
        "not valid (unknown, revoked or expired)"
        in server.post("/v1/models/half:predict", HALF, headers=headers).text
    )


def test_a_rotated_key_works_with_its_new_secret_and_not_its_old_one(
    server: Server, home: Path, secrets: dict[str, str]
) -> None:
    old = secrets["rotated"]
    assert server.post("/v1/models/half:predict", HALF, headers={"x-api-key": old}).status_code == 200
    new = keys_cli(home, "rotate", "rotated")
    assert new[:13] == old[:13] and new != old

    def swapped() -> bool:
        statuses = [server.post("/v1/models/half:predict", HALF, headers={"x-api-key": k}).status_code
                    for k in (old, new)]  # fmt: skip
        return statuses == [401, 200]

    assert poll(swapped, 5, 0.1) is None


def test_a_key_made_while_the_server_runs_works_at_once(server: Server, home: Path) -> None:
    for n in range(3):  # at once each time, not after the server's next re-read of the keys
        key = keys_cli(home, "create", f"fresh-{n}", "--model", "half")
        assert server.post("/v1/models/half:predict", HALF, headers={"x-api-key": key}).status_code == 200


def test_tritonclient_sends_the_key_as_a_header_on_http_and_grpc(
    server: Server, secrets: dict[str, str]
) -> None:
    """Clients we did not write: tritonclient's `headers=` reaches the key check on both protocols."""
    import numpy as np
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    x = np.array([[1.0]], dtype=np.float32)
    headers = {"authorization": f"Bearer {secrets['predict-half']}"}
    for module, url in (
        (httpclient, f"127.0.0.1:{server.port}"),
        (grpcclient, f"127.0.0.1:{server.grpc_port}"),
    ):
        client = module.InferenceServerClient(url)
        try:
            tensor = module.InferInput("x", [1, 1], "FP32")
            tensor.set_data_from_numpy(x)
            answer = client.infer("half", [tensor], headers=dict(headers))  # http's client adds to it
            assert answer.as_numpy("y").tolist() == [[2.5]]
            with pytest.raises(InferenceServerException, match="API key"):
                client.infer("half", [tensor])
        finally:
            client.close()
