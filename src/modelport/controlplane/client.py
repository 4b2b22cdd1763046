"""A client of the control plane's API, for the CLI, the gateway and tests: finds the running
control plane through its home (api.json and the token file) and turns error answers back into
`ModelportError`s with the server's message.

    client = Client.from_home()
    client.get("Service", "mnist")["spec"]["ports"][0]["port"]
    client.resolve("mnist")    # "http://127.0.0.1:41234": a Service name, resolved
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelport.controlplane.home import default_home, read_token, state_dir
from modelport.controlplane.meta import PLURALS
from modelport.errors import Code, ModelportError, code_of

Obj = dict[str, Any]
NOT_RUNNING = "the control plane is not running (start it with `modelport up --detach`)"


class Client:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.url = url
        self._token = token
        self._timeout = timeout

    @classmethod
    def from_home(cls, home: Path | None = None, token_file: Path | None = None) -> Client:
        """The control plane of `home`, called with its admin token, or with the (scoped) token
        in `token_file`."""
        home = home or default_home()
        try:
            info = json.loads((state_dir(home) / "api.json").read_text())
        except (OSError, ValueError):
            raise ModelportError(Code.UNAVAILABLE, NOT_RUNNING) from None
        if token_file is None:
            return cls(info["url"], read_token(home))
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ModelportError(
                Code.FAILED_PRECONDITION, f"--token-file {token_file}: {exc.strerror}"
            ) from None
        return cls(info["url"], token)

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method: str, path: str, body: Obj | None = None) -> Any:
        conn = self._connect(self._timeout)
        try:
            conn.request(
                method, path, body=json.dumps(body) if body is not None else None, headers=self._headers()
            )
            answer = conn.getresponse()
            data = answer.read()
        except (ConnectionRefusedError, ConnectionResetError):
            raise ModelportError(Code.UNAVAILABLE, NOT_RUNNING) from None
        finally:
            conn.close()
        payload = json.loads(data) if data else {}
        if answer.status >= 400:
            raise ModelportError(code_of(str(payload.get("reason"))), payload.get("message", str(payload)))
        return payload

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}

    @staticmethod
    def path(kind: str, namespace: str | None, name: str | None = None) -> str:
        base = "/apis/modelport/v1" + (f"/namespaces/{namespace}" if namespace else "") + f"/{PLURALS[kind]}"
        return base + (f"/{name}" if name else "")

    # -- objects --

    def get(self, kind: str, name: str, namespace: str = "default") -> Obj:
        return dict(self.request("GET", self.path(kind, namespace, name)))

    def list(self, kind: str, namespace: str | None = "default") -> Obj:
        return dict(self.request("GET", self.path(kind, namespace)))

    def create(self, obj: Obj) -> Obj:
        ns = obj.get("metadata", {}).get("namespace", "default")
        return dict(self.request("POST", self.path(obj["kind"], ns), obj))

    def replace(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return dict(
            self.request("PUT", self.path(obj["kind"], meta.get("namespace", "default"), meta["name"]), obj)
        )

    def delete(self, kind: str, name: str, namespace: str = "default") -> Obj:
        return dict(self.request("DELETE", self.path(kind, namespace, name)))

    def rollback(self, name: str, to_revision: int = 0, namespace: str = "default") -> Obj:
        path = self.path("Deployment", namespace, name) + "/rollback"
        return dict(self.request("POST", path, {"toRevision": to_revision}))

    def watch(
        self,
        kind: str,
        namespace: str | None,
        since: str,
        name: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Obj]:
        query = {"watch": "true", "resourceVersion": since}
        if name:
            query["fieldSelector"] = f"metadata.name={name}"
        if timeout is not None:
            query["timeoutSeconds"] = str(timeout)
        conn = self._connect(None)
        try:
            conn.request(
                "GET",
                self.path(kind, namespace) + "?" + urllib.parse.urlencode(query),
                headers=self._headers(),
            )
            answer = conn.getresponse()
            while line := answer.readline():
                yield json.loads(line)
        except (ConnectionRefusedError, ConnectionResetError):
            raise ModelportError(Code.UNAVAILABLE, NOT_RUNNING) from None
        finally:
            conn.close()

    def resolve(self, service: str, namespace: str = "default") -> str:
        """A Service's address for clients: http://127.0.0.1:<spec.ports[0].port> (https:// when
        its load balancer serves TLS)."""
        obj = self.get("Service", service, namespace)
        scheme = "https" if obj["spec"].get("tls") else "http"
        return f"{scheme}://{obj['spec']['clusterIP']}:{obj['spec']['ports'][0]['port']}"

    def healthy(self) -> bool:
        try:
            conn = self._connect(2)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
