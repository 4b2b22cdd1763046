"""The model server's HTTP interface: plain ASGI, no framework on the hot path.

Routes (TF Serving's, matched case-insensitively like its RE2 patterns):
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict|:classify|:regress
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            status
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signatures
    GET  /healthz /readyz /v2/health/live /v2/health/ready /metrics
    GET  /openapi.json    all of the above as an OpenAPI 3 document (openapi.py)

Where a request's work runs (the event loop for small requests to fast models, the inference
thread pool otherwise) and its deadline are decided in server/inference.py, shared with gRPC.
Every answer carries `x-request-id`: the client's own when sane, else a new one (request_ids.py).
"""

from __future__ import annotations

import functools
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from modelport.errors import Code, ModelportError, invalid
from modelport.repository.manager import ModelManager, ModelView, Servable
from modelport.runtimes.limits import RequestLimits
from modelport.security.auth import REALM, Refused, retry_after_header, token_of
from modelport.server import openapi, request_ids, tfserving, v2
from modelport.server.batching import Batchers
from modelport.server.guard import Guard
from modelport.server.inference import Deadline, InferencePath, Job
from modelport.server.metrics import ServerMetrics, model_label, version_label
from modelport.server.mirror import Copy, Mirror
from modelport.server.monitor_process import MonitorClient
from modelport.server.readiness import Readiness

log = logging.getLogger("modelport.server")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_MODEL_ROUTE = re.compile(
    r"/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>-?[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|(?P<quality>/quality)|:(?P<verb>predict|classify|regress|feedback))?/?",
    re.IGNORECASE,
)
_V2_ROUTE = re.compile(
    r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<tail>/ready|/infer|/feedback|/quality)?/?"
)
_JSON = [(b"content-type", b"application/json")]
_V2_HEADER_LENGTH = b"inference-header-content-length"
_REQUEST_ID = "modelport.request_id"  # where __call__ leaves the request's id in the ASGI scope
# The request's `x-request-id` header for its answer: set by __call__ in the request's task (each
# ASGI request runs in a task of its own, with its own copy of the context), read by _respond.
# Cheaper than wrapping `send` in a closure per request that looks at every message.
_ANSWER_ID: ContextVar[tuple[bytes, bytes]] = ContextVar("modelport_answer_id")
# What a request answers: the body, and the length of its JSON part when binary tensors follow.
Reply = tuple[bytes, int | None]
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, GET"),
    (b"access-control-allow-headers", b"Content-Type"),
]


@dataclass(frozen=True)
class ServerOptions:
    max_request_bytes: int = 32 * 1024 * 1024
    request_timeout_seconds: float = 30.0
    enable_cors: bool = False
    limits: RequestLimits = field(default_factory=RequestLimits)


class _Route(NamedTuple):
    name: str
    version: int | None
    label: str | None
    verb: str | None  # predict | classify | regress | feedback | None
    metadata: bool
    quality: bool


@functools.lru_cache(maxsize=1024)
def _parse_route(path: str) -> _Route | None:
    """Clients call the same few paths over and over: parse each once."""
    match = _MODEL_ROUTE.fullmatch(path)
    if match is None:
        return None
    return _Route(
        name=match["name"],
        version=_version(match["version"]),
        label=match["label"],
        verb=match["verb"].lower() if match["verb"] else None,
        metadata=bool(match["metadata"]),
        quality=bool(match["quality"]),
    )


class RestApp:
    def __init__(
        self,
        manager: ModelManager,
        metrics: ServerMetrics,
        options: ServerOptions,
        pool: ThreadPoolExecutor,
        batchers: Batchers | None = None,
        inference: InferencePath | None = None,
        guard: Guard | None = None,
        monitor: MonitorClient | None = None,
        mirror: Mirror | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        """`inference`: the path shared with gRPC; by default one of this app's own.
        `guard`: API keys required (None: anyone who reaches the port may call). `monitor`: the
        quality monitor (request memory for feedback, drift, the prediction log); None: off.
        `mirror`: copies of answered predictions to a canary (server/mirror.py); None: off.
        `readiness`: what the ready endpoints answer (server/readiness.py; default: this process's
        models)."""
        self._readiness = readiness or Readiness(manager)
        self._guard = guard
        self._mirror = mirror
        self._manager = manager
        self._monitor = monitor
        self._metrics = metrics
        self._options = options
        self._inference = inference or InferencePath(
            pool, batchers, options.limits, metrics.expired, metrics.predicted
        )
        self._extra_headers = _CORS if options.enable_cors else []
        self._openapi = orjson.dumps(openapi.document(options.enable_cors, api_keys=guard is not None))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        # Every answer carries the request's id: the client's own when sane, else a new one.
        request_id = request_ids.from_headers(scope["headers"])
        scope[_REQUEST_ID] = request_id
        _ANSWER_ID.set((request_ids.HEADER, request_id))  # _respond adds it (this task's own context)
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path.startswith("/v1/"):
                await self._v1(scope, receive, send, path, method)
            elif path.startswith("/v2/models/") or path in ("/v2", "/v2/"):
                await self._v2(scope, receive, send, path, method)
            else:
                await self._plain(scope, send, path, method)
        except Refused as exc:
            await self._respond(send, exc.http_status, orjson.dumps({"error": exc.message}), _refused(exc))
        except ModelportError as exc:
            await self._respond(send, exc.http_status, orjson.dumps({"error": exc.message}))

    def _admit(self, scope: Scope, need: str, model: str | None) -> None:
        if self._guard is None:
            return
        headers = [(k.decode(), v.decode("latin-1")) for k, v in scope["headers"] if k in _KEY_HEADERS]
        client = scope.get("client")
        self._guard.admit(token_of(headers), need, model, client[0] if client else "")

    # -- /v1 --

    async def _v1(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        route = _parse_route(path)
        if route is None:
            raise ModelportError(Code.NOT_FOUND, f"Malformed request: {method} {path}")
        if method == "OPTIONS" and self._options.enable_cors:
            await self._respond(send, 200, b"")
            return
        want = "POST" if route.verb else "GET"
        if method != want:
            raise ModelportError(Code.NOT_FOUND, f"Malformed request: {method} {path} (use {want})")
        self._admit(scope, "predict" if route.verb else "read", route.name)
        if route.verb == "feedback":
            body = await self._read_body(scope, receive)
            version = self._labelled(route.name, route.version, route.label)
            await self._feedback(send, route.name, version, body)
        elif route.verb:
            body = await self._read_body(scope, receive)
            rid = scope[_REQUEST_ID]
            answered = await self._infer(
                send, route.name, route.version, route.label, route.verb, body, None, rid
            )
            self._copy(scope, answered, route.name, f"/v1/models/{route.name}:{route.verb}", body)
        elif route.quality:
            await self._quality(send, route.name, self._labelled(route.name, route.version, route.label))
        elif route.metadata:
            await self._timed(send, route, "metadata", self._metadata_body)
        else:
            await self._timed(send, route, "status", self._status_body)

    # -- /v2: the Open Inference Protocol --

    async def _v2(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        if path in ("/v2", "/v2/"):
            if method not in ("GET", "HEAD"):
                raise ModelportError(Code.NOT_FOUND, f"Malformed request: {method} {path} (use GET)")
            self._admit(scope, "read", None)
            await self._respond(send, 200, orjson.dumps(v2.server_metadata()))
            return
        match = _V2_ROUTE.fullmatch(path)
        if match is None:
            raise ModelportError(Code.NOT_FOUND, f"Malformed request: {method} {path}")
        name, tail = match["name"], match["tail"]
        version = v2.parse_version(match["version"])
        want = "POST" if tail in ("/infer", "/feedback") else "GET"
        if method != want and not (want == "GET" and method == "HEAD"):
            raise ModelportError(Code.NOT_FOUND, f"Malformed request: {method} {path} (use {want})")
        self._admit(scope, "predict" if want == "POST" else "read", name)  # feedback: who may predict
        if tail == "/infer":
            body = await self._read_body(scope, receive)
            header_length = next((v for k, v in scope["headers"] if k == _V2_HEADER_LENGTH), None)
            answered = await self._infer(
                send, name, version, None, "infer", body, header_length, scope[_REQUEST_ID]
            )
            if header_length is None:  # binary tensors are not copied
                self._copy(scope, answered, name, f"/v2/models/{name}/infer", body)
        elif tail == "/feedback":
            await self._feedback(send, name, version, await self._read_body(scope, receive))
        elif tail == "/quality":
            await self._quality(send, name, version)
        elif tail == "/ready":
            # 200 means ready; a 4xx means not (Triton answers 400), here with the reason.
            if self._readiness.model_ready(name, version):
                await self._respond(send, 200, b"")
            else:
                which = f"version {version} of model '{name}'" if version else f"model '{name}'"
                reason = "is not available" if name in self._manager.view else "is not served here"
                await self._respond(send, 400, orjson.dumps({"error": f"{which} {reason}"}))
        else:
            view = self._manager.model(name)
            servable = view.resolve(version)
            meta = v2.model_metadata(name, sorted(view.versions), servable.platform, servable.signature(None))
            await self._respond(send, 200, orjson.dumps(meta))

    async def _infer(
        self,
        send: Send,
        name: str,
        version_wanted: int | None,
        label: str | None,
        verb: str,
        body: bytes,
        header_length: bytes | None,
        request_id: bytes,
    ) -> tuple[str, bytes] | None:
        """Answer a prediction; the version that answered and its JSON answer (None: not a 200)."""
        started = time.perf_counter()
        deadline = Deadline.after(self._options.request_timeout_seconds)
        version: str | None = None
        watch = None
        status = 500
        answered = None
        model = model_label(name, self._manager.view)
        gauge = self._metrics.in_flight(model)
        gauge.inc()
        try:
            servable = self._manager.model(name).resolve(version_wanted, label)
            version = str(servable.version)
            prepare = functools.partial(_prepare, servable, verb, body, header_length)
            if self._monitor is not None:
                watch = self._monitor.observe(servable, request_id.decode(), verb)
            payload, json_length = await self._inference.run(servable, prepare, len(body), deadline, watch)
            status = 200
            if json_length is None:  # which version answered, for gateways and canaries behind a Service
                await self._respond(send, 200, payload, [*_JSON, (b"x-model-version", version.encode())])
                answered = (version, payload)
            else:
                await self._respond(send, 200, payload, _binary_headers(json_length))
        except ModelportError as exc:
            status = exc.http_status
            await self._respond(send, status, orjson.dumps({"error": exc.message}))
        except Exception as exc:  # a bug or a runtime crash: answer, log, keep serving
            log.exception("%s %s failed", verb, name)
            await self._respond(send, 500, orjson.dumps({"error": f"Internal error: {exc!r}"}))
        finally:
            gauge.dec()
            if version is None:  # not resolved: the version asked for, if the model has it
                version = self._version_label(name, version_wanted)
            seconds = time.perf_counter() - started
            self._metrics.observe(model, version, verb, status, seconds)
            if watch is not None and status == 200:
                self._monitor.done(watch, seconds)  # type: ignore[union-attr]
        return answered

    def _copy(
        self, scope: Scope, answered: tuple[str, bytes] | None, name: str, path: str, body: bytes
    ) -> None:
        """After the answer has gone: a copy of the request to the canary, if it is one of those
        mirrored (server/mirror.py)."""
        if self._mirror is None or answered is None or not self._mirror.wants(name, scope["headers"]):
            return
        kept = tuple((k.decode(), v.decode("latin-1")) for k, v in scope["headers"] if k in _KEY_HEADERS)
        headers = (*kept, (request_ids.HEADER.decode(), scope[_REQUEST_ID].decode()))
        self._mirror.offer(Copy(name, answered[0], path, body, headers, answered[1]))

    async def _feedback(self, send: Send, name: str, version: int | None, body: bytes) -> None:
        """True labels for answered requests (server/monitor.py says what is remembered)."""
        if self._monitor is None:
            raise ModelportError(Code.FAILED_PRECONDITION, "model monitoring is off on this server")
        self._manager.model(name)  # a model not served here: 404
        result = await self._monitor.feedback(name, version, body)
        await self._respond(send, 200, orjson.dumps(result))

    async def _quality(self, send: Send, name: str, version: int | None) -> None:
        """Live figures per version: drift, live accuracy, the confusion matrix, the published accuracy."""
        if self._monitor is None:
            raise ModelportError(Code.FAILED_PRECONDITION, "model monitoring is off on this server")
        report = await self._monitor.report(self._manager.model(name), version)
        await self._respond(send, 200, orjson.dumps(report))

    def _labelled(self, name: str, version: int | None, label: str | None) -> int | None:
        """The version a /labels/{l} route names (the version itself otherwise)."""
        if label is None:
            return version
        return self._manager.model(name).resolve(version, label).version

    async def _timed(
        self, send: Send, route: _Route, api: str, build: Callable[[_Route], dict[str, Any]]
    ) -> None:
        started = time.perf_counter()
        status = 500
        try:
            payload = orjson.dumps(build(route))
            status = 200
            await self._respond(send, 200, payload)
        except ModelportError as exc:
            status = exc.http_status
            raise
        finally:
            model = model_label(route.name, self._manager.view)
            version = self._version_label(route.name, route.version)
            self._metrics.observe(model, version, api, status, time.perf_counter() - started)

    def _version_label(self, name: str, version: int | None) -> str:
        view = self._manager.view.get(name)
        known = {s.version for s in view.statuses} if view is not None else set()
        return version_label(version, known)

    def _status_body(self, route: _Route) -> dict[str, Any]:
        view = self._manager.view.get(route.name)
        if view is None or not view.statuses:
            raise ModelportError(Code.NOT_FOUND, f"Could not find any versions of model {route.name}")
        version = _status_version(view, route)
        statuses = [s for s in view.statuses if version is None or s.version == version]
        if not statuses:
            raise ModelportError(Code.NOT_FOUND, f"Could not find version {version} of model {route.name}")
        return {
            "model_version_status": [
                {
                    "version": str(s.version),
                    "state": s.state.name,
                    "status": {"error_code": s.error_code, "error_message": s.error_message},
                }
                for s in statuses
            ]
        }

    def _metadata_body(self, route: _Route) -> dict[str, Any]:
        servable = self._manager.model(route.name).resolve(route.version, route.label)
        signatures = {n: tfserving.signature_def(s) for n, s in servable.signatures.items()}
        # A SavedModel's own signature map, as TF Serving answers it (its tensor names, and the
        # init op's entry), unless model.yaml declared signatures of its own.
        native: dict[str, Any] | None = getattr(servable.model, "signature_defs", None)
        if native and set(signatures) <= set(native):
            signatures = native
        return {
            "model_spec": {"name": route.name, "signature_name": "", "version": str(servable.version)},
            "metadata": {
                "signature_def": {"signature_def": signatures},
                "modelport": {
                    "platform": servable.platform,
                    "labels": {
                        n: list(s.labels) if s.labels else None for n, s in servable.signatures.items()
                    },
                    "images": {
                        f"{sn}.{i}": b.image.model_dump() if b.image else None
                        for sn, s in servable.signatures.items()
                        for i, b in s.inputs.items()
                        if b.image
                    },
                },
            },
        }

    # -- health and metrics --

    async def _plain(self, scope: Scope, send: Send, path: str, method: str) -> None:
        if method not in ("GET", "HEAD"):
            raise ModelportError(Code.NOT_FOUND, f"Malformed request: {method} {path}")
        if path == "/healthz":
            await self._respond(send, 200, b'{"status":"ok"}')
        elif path == "/readyz":
            # Open to all: which models are served is for keys with `read`.
            ready, report = self._readiness.report(details=self._guard is None)
            await self._respond(send, 200 if ready else 503, orjson.dumps(report))
        elif path == "/v2/health/live":
            await self._respond(send, 200, b"")
        elif path == "/v2/health/ready":
            # The v2 protocol: 200 means ready, a 4xx means not (Triton answers 400).
            await self._respond(send, 200 if self._readiness.is_ready() else 400, b"")
        elif path == "/openapi.json":
            await self._respond(send, 200, self._openapi)
        elif path == "/metrics":
            self._admit(scope, "metrics", None)
            await self._respond(
                send, 200, await self._metrics.exposition(), [(b"content-type", b"text/plain; version=0.0.4")]
            )
        else:
            raise ModelportError(Code.NOT_FOUND, f"Malformed request: {method} {path}")

    # -- plumbing --

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self._options.max_request_bytes
        gzipped = False
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise _too_large(int(value), limit)
            if key == b"content-encoding":
                gzipped = value.lower() == b"gzip"
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ModelportError(Code.CANCELLED, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if gzipped:
            body = _gunzip(body, limit)
        return body

    async def _respond(
        self, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        if headers is None:  # an empty body is no JSON document: no content type then
            headers = _JSON if body else []
        all_headers = [
            *headers,
            (b"content-length", str(len(body)).encode()),
            _ANSWER_ID.get(),
            *self._extra_headers,
        ]
        await send({"type": "http.response.start", "status": status, "headers": all_headers})
        await send({"type": "http.response.body", "body": body})


_KEY_HEADERS = (b"authorization", b"x-api-key")


def _refused(exc: Refused) -> list[tuple[bytes, bytes]]:
    """401 says how to authenticate (RFC 9110); 429 says when to come back."""
    if exc.http_status == 401:
        return [*_JSON, (b"www-authenticate", REALM.encode())]
    if exc.http_status == 429:
        return [*_JSON, (b"retry-after", retry_after_header(exc).encode())]
    return _JSON


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    version = int(text)
    if version <= 0:
        raise invalid(f"version must be a positive integer, got {text}")
    return version


def _status_version(view: ModelView, route: _Route) -> int | None:
    if route.label is None:
        return route.version
    if route.version is not None:
        raise invalid(
            f"Both model version ({route.version}) and model version label ({route.label}) "
            "cannot be supplied."
        )
    if route.label not in view.labels:
        raise invalid(f"Unrecognized servable version label: {route.label}")
    return view.labels[route.label]


def _too_large(size: int, limit: int) -> ModelportError:
    return ModelportError(
        Code.PAYLOAD_TOO_LARGE,
        f"request body of {size} bytes is larger than the limit of {limit} bytes (--max_request_bytes)",
    )


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise invalid(f"request body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise _too_large(len(out), limit)
    return out


def _prepare(
    servable: Servable, verb: str, body: bytes, header_length: bytes | None, limits: RequestLimits
) -> Job[Reply]:
    """Parse, check and decode one request (everything before the model call), with the way to
    encode its answer."""
    if verb == "infer":
        signature = servable.signature(None)
        request = v2.parse_infer(body, header_length, signature, limits)
        names = [o.name for o in request.outputs] if request.outputs else None
        encode = functools.partial(v2.encode_infer, servable.model_name, servable.version, request)
        return Job(signature.prepare(request.inputs, names, limits), encode)
    limits.check_json_strings(body)
    doc = tfserving.parse_json(body)
    signature = servable.signature(tfserving.signature_name(doc))
    if verb == "predict":
        fmt = tfserving.request_format(doc)
        values = (
            tfserving.decode_instances(doc, signature, limits)
            if fmt == "row"
            else tfserving.decode_inputs(doc, signature, limits)
        )
        return Job(
            signature.prepare(values, None, limits), lambda out: (tfserving.encode_predict(out, fmt), None)
        )
    example_input = _example_input(servable, signature.name)
    if example_input is not None:
        return _prepare_on_examples(servable, verb, doc, signature, example_input, limits)
    values = tfserving.decode_examples(doc, signature, limits)
    if verb == "classify":
        name = tfserving.pick_output(signature, tfserving.SCORE_OUTPUTS, verb)
        labels = signature.labels
        return Job(
            signature.prepare(values, [name], limits),
            lambda out: (tfserving.encode_classify(out[name], labels), None),
        )
    name = tfserving.pick_output(signature, tfserving.REGRESS_OUTPUTS, verb)
    return Job(
        signature.prepare(values, [name], limits), lambda out: (tfserving.encode_regress(out[name]), None)
    )


def _example_input(servable: Servable, signature: str) -> str | None:
    """The input of a signature that takes serialized tf.Example protos (a SavedModel's classify
    or regress signature), or None."""
    inputs: Mapping[str, str] = getattr(servable.model, "example_signatures", {})
    return inputs.get(signature)


def _prepare_on_examples(
    servable: Servable, verb: str, doc: Mapping[str, Any], signature: Any, name: str, limits: RequestLimits
) -> Job[Reply]:
    features = tfserving.example_features(doc, signature, limits)
    values = {name: servable.model.serialize_examples(features)}  # type: ignore[attr-defined]
    if verb == "classify":
        score = tfserving.pick_output(signature, ("scores",), verb)
        if "classes" in signature.outputs:
            return Job(
                signature.prepare(values, ["classes", score], limits),
                lambda out: (tfserving.encode_classify_named(out["classes"], out[score]), None),
            )
        return Job(
            signature.prepare(values, [score], limits),
            lambda out: (tfserving.encode_classify(out[score], signature.labels), None),
        )
    output = tfserving.pick_output(signature, ("outputs",), verb)
    return Job(
        signature.prepare(values, [output], limits), lambda out: (tfserving.encode_regress(out[output]), None)
    )


def _binary_headers(json_length: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", str(json_length).encode()),
    ]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
