"""One control plane's security, end to end with real processes and clients.

TLS: a Service that serves TLS: HAProxy terminates it with a certificate from a secret folder
(`spec.tls.secretName`) or from files named in the spec, the replicas behind it stay plain; the
gateway calls that Service over TLS and serves its own page over TLS. Bad TLS settings are refused
by `apply`, naming the field. Real clients: requests with the test CA.

Tokens: a `services:get` token reads Services of its namespace and nothing else (403 naming what
is needed); a revoked one is refused (401); a gateway replica is given such a token, never the
admin token.

Allow-list: apply refuses a Deployment whose args would change where, as whom or what code a replica
runs, or whose basePath is outside the control plane's model roots, naming the field.

Audit: every write to the control plane and the registry and every refused credential (control
plane or model server) is a line of the home's audit log, read with `modelport audit`; no secret in it."""

from __future__ import annotations

import base64
import getpass
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from modelport.errors import Code, ModelportError
from support import PATIENCE, Plane, deployment_yaml
from tls_support import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, pki: Pki, models: Path) -> Iterator[Plane]:
    plane = Plane(tmp_path_factory.mktemp("home"))
    secret = plane.home / "secrets" / "default" / "mnist-tls"
    secret.mkdir(parents=True)
    shutil.copy(pki.server_cert, secret / "tls.crt")
    shutil.copy(pki.server_key, secret / "tls.key")
    plane.up("--model-root", str(models))
    yield plane
    plane.stop()


def _apply(plane: Plane, tmp: Path, docs: list[dict[str, object]], check: bool = True) -> str:
    path = tmp / f"objects-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    done = plane.cli("apply", "-f", str(path), check=check)
    return done.stdout + done.stderr


def _with_tls(name: str, base: Path, tls: dict[str, str]) -> list[dict[str, object]]:
    deployment, service = yaml.safe_load_all(deployment_yaml(name, base, replicas=1, model="mnist"))
    service["spec"]["tls"] = tls
    return [deployment, service]


@pytest.fixture(scope="module")
def mnist(models: Path) -> Path:
    from modelport.examples import write_mnist_repository

    write_mnist_repository(models / "mnist")
    return models / "mnist"


@pytest.fixture(scope="module")
def service_url(plane: Plane, mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    _apply(plane, tmp_path_factory.mktemp("apply"), _with_tls("mnist", mnist, {"secretName": "mnist-tls"}))
    plane.cli("rollout", "status", "deployment/mnist")
    assert plane.client().resolve("mnist").startswith("https://127.0.0.1:")
    url = plane.client().resolve("mnist")
    plane.wait(lambda: plane.get("Service", "mnist")["status"]["endpoints"], what="an endpoint")
    return url


def test_the_service_serves_tls_with_the_secrets_certificate(
    plane: Plane, service_url: str, pki: Pki, mnist: Path
) -> None:
    image = (mnist / "samples" / "digit-3.png").read_bytes()
    body = {"instances": [{"b64": base64.b64encode(image).decode()}]}
    answer = requests.post(
        service_url + "/v1/models/mnist:predict", json=body, verify=str(pki.ca), timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["classes"] == 3
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(service_url + "/readyz", verify=str(pki.other_ca), timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(service_url.replace("https://", "http://") + "/readyz", timeout=5)
    assert f"URL:               {service_url}" in plane.cli("describe", "service", "mnist").stdout


def test_apply_refuses_tls_settings_it_cannot_use_naming_the_field(
    plane: Plane, mnist: Path, pki: Pki, tmp_path: Path
) -> None:
    (service,) = _with_tls("other", mnist, {"secretName": "nope"})[1:]
    out = _apply(plane, tmp_path, [service], check=False)  # as a person sees it
    assert "spec.tls.secretName: " in out and "nope/tls.crt: cannot read it: No such file or directory" in out

    def refused(tls: dict[str, str]) -> str:
        with pytest.raises(ModelportError) as refusal:
            plane.client().create({**service, "spec": {**service["spec"], "tls": tls}})
        assert refusal.value.code == Code.INVALID_ARGUMENT
        return refusal.value.message

    assert "spec.tls.keyFile: needed with certFile" in refused({"certFile": str(pki.server_cert)})
    out = refused({"certFile": str(pki.server_cert), "keyFile": str(pki.client_key)})
    assert "is not the private key of the certificate in spec.tls.certFile" in out
    assert "spec.tls: give secretName, or certFile and keyFile" in refused(
        {"secretName": "mnist-tls", "certFile": str(pki.server_cert)}
    )
    assert "other" not in {s["metadata"]["name"] for s in plane.items("Service")}


def test_the_gateway_calls_the_tls_service_and_serves_tls(
    plane: Plane, service_url: str, pki: Pki, mnist: Path, tmp_path: Path
) -> None:
    port_file = tmp_path / "gateway.json"
    with open(tmp_path / "gateway.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelport", "gateway", "--service", "mnist", "--port", "0",
             "--port-file", str(port_file), "--model-ca-file", str(pki.ca),
             "--ssl-cert-file", str(pki.server_cert), "--ssl-key-file", str(pki.server_key)],
            env=plane.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20 * PATIENCE
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
            time.sleep(0.05)
        url = f"https://127.0.0.1:{json.loads(port_file.read_text())['port']}"
        with open(mnist / "samples" / "digit-7.png", "rb") as image:
            answer = requests.post(url + "/", files={"img": image}, verify=str(pki.ca), timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"result": [7]}
    finally:
        proc.terminate()
        proc.wait(10)


def _api(plane: Plane, token: str, method: str, path: str) -> requests.Response:
    url = plane.client().url
    return requests.request(method, url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_services_get_token_reads_services_of_its_namespace_and_nothing_else(
    plane: Plane, service_url: str
) -> None:
    token = plane.cli("tokens", "create", "reader", "--namespace", "default").stdout.strip()
    assert token.startswith("mpt_")
    services = "/apis/modelport/v1/namespaces/default/services"
    assert _api(plane, token, "GET", services + "/mnist").json()["spec"]["tls"] == {"secretName": "mnist-tls"}
    assert [s["metadata"]["name"] for s in _api(plane, token, "GET", services).json()["items"]] == ["mnist"]
    for method, path in [
        ("GET", "/apis/modelport/v1/namespaces/default/deployments"),
        ("GET", "/apis/modelport/v1/namespaces/other/services"),
        ("GET", "/apis/modelport/v1/services"),
        ("DELETE", services + "/mnist"),
        ("PUT", services + "/mnist"),
        ("POST", "/api/shutdown"),
    ]:
        refused = _api(plane, token, method, path)
        assert refused.status_code == 403, (method, path, refused.text)
        body = refused.json()
        assert body["reason"] == "Forbidden"
        assert (
            f"token reader ({token[4:12]}, scope services:get in namespace default) may not {method}"
            in (body["message"])
        )
        assert body["message"].endswith("that needs an admin token")
    listed = plane.json("tokens", "list")
    assert [(t["name"], t["scope"], t["namespace"]) for t in listed if t["name"] == "reader"] == [
        ("reader", "services:get", "default")
    ]
    assert (
        token not in json.dumps(listed)
        and token not in (plane.home / "controlplane" / "tokens.json").read_text()
    )
    plane.cli("tokens", "revoke", "reader")
    assert _api(plane, token, "GET", services + "/mnist").status_code == 401
    assert plane.get("Service", "mnist")  # the admin token still works


def test_a_gateway_replica_gets_a_services_get_token_never_the_admin_token(
    plane: Plane, service_url: str, pki: Pki, mnist: Path, tmp_path: Path
) -> None:
    front = {
        "apiVersion": "modelport/v1", "kind": "Deployment", "metadata": {"name": "front"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "front"}},
                 "template": {"metadata": {"labels": {"app": "front"}},
                              "spec": {"gateway": {"service": "mnist", "model": "mnist"},
                                       "args": ["--model-ca-file", str(pki.ca)]}}},
    }  # fmt: skip
    _apply(plane, tmp_path, [front])
    plane.cli("rollout", "status", "deployment/front")
    (pod,) = [p for p in plane.items("Pod") if p["metadata"]["labels"].get("app") == "front"]
    admin = (plane.home / "controlplane" / "token").read_text().strip()
    from modelport.dataplane.process import processes_with

    (gateway,) = [p for p in processes_with(" gateway ") if str(plane.home) in " ".join(p.cmdline())]
    command = " ".join(gateway.cmdline())
    assert "--token-file" in command and admin not in command
    token_file = command.split("--token-file ")[1].split()[0]
    assert Path(token_file).stat().st_mode & 0o077 == 0
    scoped = Path(token_file).read_text().strip()
    assert scoped.startswith("mpt_") and scoped != admin
    assert _api(plane, scoped, "GET", "/apis/modelport/v1/namespaces/default/deployments").status_code == 403
    url = f"http://127.0.0.1:{pod['status']['port']}"
    with open(mnist / "samples" / "digit-5.png", "rb") as image:
        answer = requests.post(url + "/", files={"img": image}, timeout=10)
    assert answer.json() == {"result": [5]}
    plane.cli("delete", "deployment", "front")


def test_apply_refuses_unsafe_args_and_a_base_path_outside_the_model_roots(
    plane: Plane, mnist: Path, models: Path, tmp_path: Path
) -> None:
    doc = yaml.safe_load(deployment_yaml("risky", mnist, replicas=1, model="mnist", service_port=None))
    doc["spec"]["template"]["spec"]["args"] = ["--enable_batching", "--allow_pickle", "--host=0.0.0.0"]
    out = _apply(plane, tmp_path, [doc], check=False)  # as a person sees it
    assert "Error from server (Invalid): error when creating" in out or "Invalid" in out, out
    assert "spec.template.spec.args[1]: --allow_pickle is not allowed: it runs the code inside pickled" in out
    assert "spec.template.spec.args[2]: --host is not allowed" in out
    assert "modelport up --allow-unsafe-args" in out
    for outside in (tmp_path, models / ".." / tmp_path.name):
        doc["spec"]["template"]["spec"]["args"] = []
        doc["spec"]["template"]["spec"]["model"]["basePath"] = str(outside)
        with pytest.raises(ModelportError) as refusal:
            plane.client().create(doc)
        assert refusal.value.message.startswith(
            f"spec.template.spec.model.basePath: '{outside}' is outside the model roots ({models})"
        )
    assert "risky" not in {d["metadata"]["name"] for d in plane.items("Deployment")}


def test_the_audit_log_has_writes_and_refusals_and_no_secret(
    plane: Plane, service_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelport.registry import Registry
    from support import half_plus_two, mark_complete, running

    half_plus_two(tmp_path / "half" / "1")
    mark_complete(tmp_path / "half" / "1")
    Registry.open(plane.home).publish("half", tmp_path / "half" / "1")
    services = "/apis/modelport/v1/namespaces/default/services"
    assert _api(plane, "mpt_0000abcd_" + "x" * 43, "GET", services).status_code == 401
    scoped = plane.cli("tokens", "create", "auditor").stdout.strip()
    assert _api(plane, scoped, "DELETE", services + "/mnist").status_code == 403
    plane.cli("tokens", "revoke", "auditor")
    monkeypatch.setenv("MODELPORT_HOME", str(plane.home))  # the model server's keys and audit log
    with running(
        ["--model_name", "half", "--model_base_path", str(tmp_path / "half"), "--auth=on"], tmp_path
    ) as srv:
        srv.wait_ready()
        assert srv.post("/v1/models/half:predict", {"instances": [[1.0]]}).status_code == 401
        bad_key = {"Authorization": "Bearer mpk_deadbeef_" + "y" * 43}
        assert srv.post("/v1/models/half:predict", {"instances": [[1.0]]}, headers=bad_key).status_code == 401
    events = plane.json("audit", "--since", "1h")
    seen = {(e["source"], e["actor"], e["action"], e["object"], e["result"]) for e in events}
    assert ("controlplane", "token:admin", "create", "/apis/modelport/v1/namespaces/default/deployments",
            201) in seen  # fmt: skip
    assert ("controlplane", "anonymous", "get", "/apis/modelport/v1/namespaces/default/services", 401) in seen
    assert ("registry", f"user:{getpass.getuser()}", "publish", "models/half/versions/1", "ok") in seen
    assert ("model-server", "anonymous", "predict", "models/half", 401) in seen
    assert ("model-server", "key:deadbeef", "predict", "models/half", 401) in seen
    assert ("controlplane", f"token:{scoped[4:12]}", "delete", services + "/mnist", 403) in seen
    assert ("cli", f"user:{getpass.getuser()}", "revoke-token", "tokens/auditor", "ok") in seen
    assert all(e["client"] in ("127.0.0.1", "local") for e in events)
    log = plane.home / "audit.log"
    assert log.stat().st_mode & 0o777 == 0o600
    text = log.read_text()
    admin = (plane.home / "controlplane" / "token").read_text().strip()
    assert admin not in text and "y" * 43 not in text and "x" * 43 not in text
    table = plane.cli("audit").stdout.splitlines()
    assert table[0].split() == ["TIME", "SOURCE", "ACTOR", "CLIENT", "ACTION", "OBJECT", "RESULT"]
    assert len(table) == len(events) + 1
