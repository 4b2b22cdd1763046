"""The control plane's API over HTTP, on loopback: a route table over `Api` (see api.py's
docstring for the routes), bearer-token checked, errors answered as Kubernetes `Status` objects.

    server = make_server(api, token, port=0)    # then server.serve_forever()

One handler class serves every request: it checks the token, finds the route for the method and
path in `ROUTES`, calls it, and writes its answer as JSON (or, for a watch, one JSON line per
change until the watch ends).
"""

from __future__ import annotations

import hmac
import http.cookies
import json
import math
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelport.controlplane.api import PREFIX, Api, Obj, Objs, status_body
from modelport.controlplane.meta import KINDS
from modelport.controlplane.state_metrics import METRICS_TYPE
from modelport.errors import Code, ModelportError
from modelport.security.audit import AuditEvent, AuditLog
from modelport.security.tokens import ADMIN_PRINCIPAL, Principal, TokenFile


@dataclass(frozen=True)
class Call:
    """One request as a route sees it: its path's parts, the query, and the body on demand."""

    kind: str  # the path's plural as a kind ("" on /api/ paths)
    namespace: str  # "" on a path of every namespace
    name: str
    query: dict[str, str]
    body: Callable[[], Obj]
    version: str = ""  # a dashboard version page's


@dataclass(frozen=True)
class Reply:
    status: int
    body: Obj | Objs | None = None
    stream: Iterator[Obj] | None = None  # a watch: one JSON line per item, then the connection closes
    then: Callable[[], None] | None = None  # run once the answer is sent
    raw: tuple[str, bytes] | None = None  # (content type, body): an answer that is not JSON


Route = Callable[[Api, Call], Obj | Objs | Reply]


# Go's strconv.ParseBool, which Kubernetes' `?watch=` goes through: anything else is a 400.
_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "true", "TRUE", "True"), True),
    **dict.fromkeys(("0", "f", "F", "false", "FALSE", "False"), False),
}
COOKIE = "modelport_token"
_DIGITS = re.compile("[0-9]+")  # str.isdigit() would take "²" and int() "+1", " 1" and "1_0"


def bad_request(message: str) -> ModelportError:
    """A 400 with reason BadRequest, as Kubernetes answers a header or parameter it cannot parse."""
    return ModelportError(Code.FAILED_PRECONDITION, message)


def checked_query(query: dict[str, str]) -> dict[str, str]:
    """The query, once every parameter a route reads parses; the first that does not is a 400 naming it."""
    if query.get("watch", "false") not in _BOOLS:
        raise bad_request(f"watch: {query['watch']!r} is not a boolean (true or false)")
    version = query.get("resourceVersion", "")
    if version and not _DIGITS.fullmatch(version):
        raise bad_request(f"resourceVersion: {version!r} is not a non-negative integer")
    if "timeoutSeconds" in query:
        try:
            timeout = float(query["timeoutSeconds"])
        except ValueError:
            timeout = math.nan
        if not 0 <= timeout < math.inf:  # also false for nan
            raise bad_request(f"timeoutSeconds: {query['timeoutSeconds']!r} is not a non-negative number")
    selector = query.get("fieldSelector", "")
    if selector and not selector.startswith("metadata.name="):
        raise bad_request(f"fieldSelector: {selector!r} is not supported; only metadata.name=NAME is")
    return query


def content_length(values: list[str]) -> int:
    """The body's length from the Content-Length header(s): absent is 0; anything but one
    non-negative integer is a 400 (`abc` or `-1` would otherwise drop or hang the connection)."""
    if not values:
        return 0
    if len(set(values)) > 1 or not _DIGITS.fullmatch(values[0]):
        raise bad_request(f"Content-Length: {', '.join(values)!r} is not a non-negative integer")
    return int(values[0])


def _list(api: Api, call: Call) -> Obj | Reply:
    if _BOOLS[call.query.get("watch", "false")]:
        return Reply(200, stream=_changes(api, call.kind, call.namespace or None, call.query))
    return api.list(call.kind, call.namespace or None)


def _changes(api: Api, kind: str, namespace: str | None, query: dict[str, str]) -> Iterator[Obj]:
    """Every change after resourceVersion (read now, before the headers go out), until timeoutSeconds idle."""
    since = int(query.get("resourceVersion") or api.store.resource_version())
    timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
    name = query.get("fieldSelector", "").removeprefix("metadata.name=") or None
    changes = api.store.watch(since, (kind,), timeout=timeout)
    return (
        {"type": change.type, "object": change.object}
        for change in changes
        if (not namespace or change.object["metadata"]["namespace"] == namespace)
        and (not name or change.object["metadata"]["name"] == name)
    )


def _html(page: str) -> Reply:
    return Reply(200, raw=("text/html; charset=utf-8", page.encode()))


def _rollback(api: Api, call: Call) -> Obj:
    to = call.body().get("toRevision", 0)
    if not isinstance(to, int) or to < 0:
        raise ModelportError(Code.INVALID_ARGUMENT, "toRevision: must be a non-negative integer")
    return api.rollback(call.namespace, call.name, to)


def _shutdown(api: Api, call: Call) -> Reply:
    keep = bool(call.body().get("keepReplicas", False))
    stop = threading.Thread(target=api.shutdown, args=(keep,), daemon=True)
    return Reply(200, {"status": "stopping", "keepReplicas": keep}, then=stop.start)


_NS, _PLURAL, _NAME = "(?P<namespace>[^/]+)", "(?P<plural>[^/]+)", "(?P<name>[^/]+)"
_COLLECTION = f"{PREFIX}/namespaces/{_NS}/{_PLURAL}"
_OBJECT = f"{_COLLECTION}/{_NAME}"
# (method, path pattern) -> route: api.py's table of routes; the first full match answers.
# A route returns the answer's body (200), or a Reply.
_TABLE: list[tuple[str, str, Route]] = [
    ("GET", "/api/top", lambda api, c: api.top()),
    ("GET", "/api/prometheus/targets", lambda api, c: api.prometheus_targets()),
    ("GET", "/metrics", lambda api, c: Reply(200, raw=(METRICS_TYPE, api.metrics()))),
    ("GET", "/dashboard", lambda api, c: _html(api.dashboard.index())),
    ("GET", f"/dashboard/{_NS}/{_NAME}", lambda api, c: _html(api.dashboard.deployment(c.namespace, c.name))),
    ("GET", f"/dashboard/{_NS}/{_NAME}/versions/(?P<version>[^/]+)",
     lambda api, c: _html(api.dashboard.version(c.namespace, c.name, c.version))),
    ("GET", f"/api/history/{_NS}/{_NAME}", lambda api, c: api.history(c.namespace, c.name)),
    ("POST", "/api/shutdown", _shutdown),
    ("POST", f"{PREFIX}/namespaces/{_NS}/(?P<plural>deployments)/{_NAME}/rollback", _rollback),
    ("GET", f"{PREFIX}(?:/namespaces/{_NS})?/{_PLURAL}", _list),
    ("POST", _COLLECTION, lambda api, c: Reply(201, api.create(c.kind, c.namespace, c.body()))),
    ("GET", _OBJECT, lambda api, c: api.get(c.kind, c.namespace, c.name)),
    ("PUT", _OBJECT, lambda api, c: api.replace(c.kind, c.namespace, c.name, c.body())),
    ("DELETE", _OBJECT, lambda api, c: api.delete(c.kind, c.namespace, c.name)),
]  # fmt: skip
ROUTES = [(method, re.compile(pattern), found) for method, pattern, found in _TABLE]
# Any object path, namespaced or not: what a request no route takes was aiming at.
_ANY_OBJECT = re.compile(f"{PREFIX}(?:/namespaces/{_NS})?/{_PLURAL}(?:/{_NAME})?")


def route(method: str, path: str, query: dict[str, str], body: Callable[[], Obj]) -> tuple[Route, Call]:
    """The route for a request and the call it makes, or the error that says why there is none."""
    for wanted, pattern, found in ROUTES:
        match = pattern.fullmatch(path)
        if match and wanted == method:
            parts = match.groupdict()
            kind = _kind(parts["plural"]) if "plural" in parts else ""
            namespace, name = parts.get("namespace") or "", parts.get("name") or ""
            return found, Call(kind, namespace, name, query, body, parts.get("version") or "")
    match = _ANY_OBJECT.fullmatch(path)
    if match is None:
        raise ModelportError(Code.NOT_FOUND, f"no such path: {path}")
    _kind(match["plural"])  # an unknown kind is named as such
    if match["namespace"] is None:
        raise ModelportError(Code.NOT_FOUND, f"{method} {path}: a namespace is needed")
    raise ModelportError(Code.UNIMPLEMENTED, f"{method} is not allowed on {path}")


def _kind(plural: str) -> str:
    kind = KINDS.get(plural)
    if kind is None:
        raise ModelportError(Code.NOT_FOUND, f'the server doesn\'t have a resource type "{plural}"')
    return kind


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    api: Api
    token: str  # the admin token
    tokens: TokenFile | None  # the scoped ones (None: admin only)
    audit: AuditLog | None  # where writes and refused credentials are recorded

    def principal(self, authorization: str) -> Principal:
        """Who `Authorization: Bearer <token>` is; UNAUTHENTICATED (401) when no one."""
        given = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        who = None
        if given:
            if self.tokens is None:
                who = ADMIN_PRINCIPAL if hmac.compare_digest(given.encode(), self.token.encode()) else None
            else:
                who = self.tokens.authenticate(given, self.token)
        if who is None:
            raise ModelportError(Code.UNAUTHENTICATED, "a valid bearer token is needed (see `modelport up`)")
        return who


class _Handler(BaseHTTPRequestHandler):
    """HTTP in and out: the token check, JSON bodies, errors as Status objects; routing is ROUTES'."""

    protocol_version = "HTTP/1.1"
    server: ApiServer
    _length = 0  # the request's Content-Length, checked before anything else
    _cookie: str | None = None  # the dashboard's, to set with this answer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        self._who: Principal | None = None
        self._cookie = None  # one handler serves every request of a kept-alive connection
        self._status = 0
        try:
            self._answer(url)
        finally:
            self._audit(url.path)

    def _audit(self, path: str) -> None:
        """A write, or a refused credential, as one line in the audit log (security/audit.py)."""
        write = self.command in ("POST", "PUT", "DELETE")
        if self.server.audit is None or not (write or self._status in (401, 403)):
            return
        who = self._who
        self.server.audit.record(
            AuditEvent(
                "controlplane", f"token:{who.id}" if who else "anonymous", self.client_address[0],
                _action(self.command, path), path, self._status,
            )
        )  # fmt: skip

    def _answer(self, url: urllib.parse.SplitResult) -> None:
        try:
            try:
                self._length = content_length(self.headers.get_all("Content-Length") or [])
            except ModelportError:
                self.close_connection = True  # where this request's body ends is unknown
                raise
            if url.path == "/healthz":
                self._send(200, {"status": "ok"})
                return
            raw = dict(urllib.parse.parse_qsl(url.query))
            who, self._cookie = self._authenticate(url.path, raw)
            self._who = who
            query = checked_query(raw)
            found, call = route(self.command, url.path, query, self._body)
            if not who.allows(self.command, call.kind, call.namespace or None):
                raise ModelportError(
                    Code.PERMISSION_DENIED, who.needs(self.command, call.kind, call.namespace or None)
                )
            answer = found(self.server.api, call)
            reply = answer if isinstance(answer, Reply) else Reply(200, answer)
            if reply.stream is not None:
                self._stream(reply.stream)
            elif reply.raw is not None:
                self._send_raw(reply.status, *reply.raw)
            else:
                self._send(reply.status, reply.body)
            if reply.then is not None:
                reply.then()
        except ModelportError as exc:
            self._send(exc.http_status, status_body(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _authenticate(self, path: str, query: dict[str, str]) -> tuple[Principal, str | None]:
        """Who sends the request, by its bearer token; for the dashboard's pages (GET, read-only)
        also by the token a browser was given in the URL (`modelport dashboard` prints it),
        answered with a cookie so the pages' links need not carry it, or by that cookie.
        Returns the principal and the cookie to set, if any."""
        given = self.headers.get("Authorization", "")
        if given or self.command != "GET" or not (path == "/dashboard" or path.startswith("/dashboard/")):
            return self.server.principal(given), None
        if "token" in query:
            who = self.server.principal(f"Bearer {query['token']}")
            return who, f"{COOKIE}={query['token']}; Path=/dashboard; HttpOnly; SameSite=Strict"
        cookies = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
        return self.server.principal(f"Bearer {cookies[COOKIE].value}" if COOKIE in cookies else ""), None

    def _send(self, code: int, body: Obj | Objs | None) -> None:
        self._send_raw(code, "application/json", json.dumps(body).encode())

    def _send_raw(self, code: int, content_type: str, data: bytes) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(data))}
        if self._cookie:
            headers["Set-Cookie"] = self._cookie
        if self.close_connection:  # the client asked, or the request's framing is broken: say so
            headers["Connection"] = "close"
        self._head(code, headers)
        self.wfile.write(data)

    def _stream(self, lines: Iterator[Obj]) -> None:
        self._head(200, {"Content-Type": "application/json", "Connection": "close"})
        self.close_connection = True
        for line in lines:
            self.wfile.write(json.dumps(line).encode() + b"\n")
            self.wfile.flush()

    def _head(self, code: int, headers: dict[str, str]) -> None:
        self._status = code
        self.send_response(code)
        for header, value in headers.items():
            self.send_header(header, value)
        self.end_headers()

    def _body(self) -> Obj:
        raw = self.rfile.read(self._length) if self._length else b"{}"
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ModelportError(Code.INVALID_ARGUMENT, f"the request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ModelportError(Code.INVALID_ARGUMENT, "the request body must be a JSON object")
        return body

    do_GET = do_POST = do_PUT = do_DELETE = _handle  # the method is in self.command


def make_server(
    api: Api, token: str, port: int = 0, tokens: TokenFile | None = None, audit: AuditLog | None = None
) -> ApiServer:
    server = ApiServer(("127.0.0.1", port), _Handler)
    server.api, server.token, server.tokens, server.audit = api, token, tokens, audit
    return server


def _action(method: str, path: str) -> str:
    """The audit log's word for a request: create, replace, delete, rollback, shutdown, or (a
    refused read) get."""
    if path.endswith("/rollback"):
        return "rollback"
    if path == "/api/shutdown":
        return "shutdown"
    return {"POST": "create", "PUT": "replace", "DELETE": "delete"}.get(method, "get")
