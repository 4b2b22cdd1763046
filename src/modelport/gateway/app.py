"""The gateway: the web front end end users touch. It takes an uploaded (or drawn) image, asks the
model service, and answers.

    POST /              multipart field `img` (one or more)  ->  {"result": [7]}  (the article's contract)
    POST /api/predict   multipart field `img` (one or more) -> classes, probabilities, model, version, latency
    GET  /              the page: drop, choose or draw a digit; the class and a chart of probabilities
    GET  /healthz /readyz (with the model's availability) /metrics

The model service is any TF-Serving-compatible server (a modelport Service, one `modelport serve`,
TensorFlow Serving itself), called with `{"instances": [{"image_bytes": {"b64": ...}}]}` over a
pooled keep-alive connection, with a deadline and one retry when the connection fails. Images are
checked before they are decoded: bytes first, then the pixel count from the header; PNG and JPEG
pass through untouched (the model server decodes them), GIF, BMP and WebP are converted to PNG
(in a small pool of threads, never on the event loop, so health checks and other requests are
answered meanwhile), and any other format is refused with 415. The pixels of all a request's
images together are limited too, from the headers, before any conversion.

The model service's answers: a client error in what was sent (400, 413, 415, 422, 429) goes back
as the same status with the model service's message; 503 and 504 stay themselves; any other
error (a 5xx, or a 404 for a model the gateway was configured to call) is the gateway's 502.
"""

from __future__ import annotations

import asyncio
import base64
import io
import signal
import socket
import ssl
import struct
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from PIL import Image, UnidentifiedImageError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from modelport.errors import Code, ModelportError
from modelport.runtimes.codecs import IMAGE_FORMATS, unreadable
from modelport.security.auth import REALM, Authenticator, Refused, retry_after_header, token_of
from modelport.security.limits import Limits, Usage, compute_take

PASS_THROUGH = {"PNG", "JPEG"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# What one address may send the public page by default: a person clicking, a script at a steady
# 20 a second; not a flood from one place.
PER_CLIENT = Limits(rate=20.0, burst=40)


@dataclass(frozen=True)
class GatewayConfig:
    model_url: str  # base URL of the model service, e.g. http://127.0.0.1:8501
    model: str = "mnist"
    timeout_seconds: float = 10.0
    max_bytes: int = 10 * 2**20  # per request
    max_pixels: int = 25_000_000  # per image, read from its header before decoding
    max_request_pixels: int = 100_000_000  # all of a request's images together
    max_images: int = 64
    connections: int = 64
    converters: int = 2  # threads converting images (GIF, BMP, WebP -> PNG)
    max_waiting_conversions: int = 64  # requests waiting for a converter; beyond: 503 at once
    # An https model URL (a Service that serves TLS) is verified with this (None: the system's CAs).
    model_tls: ssl.SSLContext | None = None
    api_key: str | None = field(default=None, repr=False)  # the gateway's own key to the model service
    per_client: Limits | None = PER_CLIENT  # POSTs per client address; None: no limit
    require_key: Authenticator | None = None  # callers need a key of their own (scope predict)


class ClientLimiter:
    """A token bucket per client address (security.limits' arithmetic, in memory): the public
    page's POSTs. The addresses remembered are bounded: past `max_clients` the least recently
    seen is forgotten (it starts again with a full bucket)."""

    def __init__(self, limits: Limits, max_clients: int = 10_000) -> None:
        self._limits = limits
        self._max = max_clients
        self._usage: OrderedDict[str, Usage] = OrderedDict()

    def admit(self, client: str, now: float) -> float | None:
        """None: go ahead; else seconds until the next request would be let in."""
        usage, granted, retry = compute_take(self._usage.pop(client, None), self._limits, 1, now)
        self._usage[client] = usage
        if len(self._usage) > self._max:
            self._usage.popitem(last=False)
        return None if granted else retry


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True)
class Checked:
    """An upload whose header was read: its size, and the image object to convert (None: PNG or
    JPEG, sent as they are)."""

    upload: Upload
    pixels: int
    image: Image.Image | None


def check_image(upload: Upload, max_pixels: int) -> Checked:
    """Read the header only (cheap: fine on the event loop): refused (4xx, with the file named)
    if empty, not an image, or too many pixels."""
    name = upload.filename or "img"
    if not upload.data:
        raise ModelportError(Code.INVALID_ARGUMENT, f"{name}: the upload is empty")
    if upload.data[:8] == PNG_SIGNATURE and upload.data[12:16] == b"IHDR" and len(upload.data) > 24:
        width, height = struct.unpack(">II", upload.data[16:24])  # PNG's header, without PIL: the common case
        _check_pixels(name, width, height, max_pixels)
        return Checked(upload, width * height, None)
    try:
        image = Image.open(io.BytesIO(upload.data), formats=IMAGE_FORMATS)  # reads the header only
    except (UnidentifiedImageError, OSError):
        raise ModelportError(Code.UNSUPPORTED_MEDIA_TYPE, f"{name}: {unreadable(upload.data)}") from None
    width, height = image.size
    _check_pixels(name, width, height, max_pixels)
    return Checked(upload, width * height, None if image.format in PASS_THROUGH else image)


def _check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ModelportError(
            Code.PAYLOAD_TOO_LARGE,
            f"{name}: {width} x {height} pixels is more than the limit of {max_pixels:,}",
        )


def check_request_pixels(checked: list[Checked], max_request_pixels: int) -> None:
    total = sum(c.pixels for c in checked)
    if total > max_request_pixels:
        raise ModelportError(
            Code.PAYLOAD_TOO_LARGE,
            f"the {len(checked)} images hold {total:,} pixels in all; the limit per request is "
            f"{max_request_pixels:,}",
        )


def converted(checked: Checked) -> bytes:
    """The bytes to send: PNG/JPEG as they are, GIF/BMP/WebP decoded and encoded as PNG (the slow
    part: seconds for a big image, so it runs in the converters' threads)."""
    image = checked.image
    if image is None:
        return checked.upload.data
    try:
        image.seek(0)
        out = io.BytesIO()
        image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(out, format="PNG")
    except (OSError, ValueError) as exc:
        raise ModelportError(
            Code.UNSUPPORTED_MEDIA_TYPE,
            f"{checked.upload.filename or 'img'}: the image could not be decoded: {exc}",
        ) from None
    return out.getvalue()


def checked_image(upload: Upload, max_pixels: int) -> bytes:
    """One upload, checked and converted, in the caller's thread."""
    return converted(check_image(upload, max_pixels))


def parse_multipart(content_type: str, body: bytes) -> list[Upload]:
    """The `img` file fields of a multipart/form-data body (python-multipart's parser: aiohttp's
    reader spends a fifth of the gateway's time parsing Content-Disposition)."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise ModelportError(Code.INVALID_ARGUMENT, "the multipart Content-Type has no boundary")
    uploads: list[Upload] = []
    state: dict[str, Any] = {"header": b"", "headers": {}, "data": []}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        key = state["header"].lower()
        state["headers"][key] = state["headers"].get(key, b"") + data[start:end]

    def on_header_end() -> None:
        state["header"] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        if disposition.get(b"name") == b"img":
            filename = disposition.get(b"filename", b"").decode(errors="replace")
            uploads.append(Upload(filename, b"".join(state["data"])))
        state["headers"], state["data"] = {}, []

    callbacks: Any = {
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data, "on_part_end": on_part_end,
    }  # fmt: skip
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise ModelportError(Code.INVALID_ARGUMENT, f"the multipart body is malformed: {exc}") from None
    return uploads


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "modelport_gateway_requests",
            "Requests answered, by endpoint and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "modelport_gateway_request_duration_seconds",
            "Time to answer, by endpoint.",
            ["endpoint"],
            registry=self.registry,
        )
        self._model_latency = Histogram(
            "modelport_gateway_model_duration_seconds", "Time the model service took.", registry=self.registry
        )
        self._converting = Gauge(
            "modelport_gateway_converting_requests",
            "Requests whose images are being converted or wait for a converter.",
            registry=self.registry,
        )
        self._session: aiohttp.ClientSession | None = None
        self._converters: ThreadPoolExecutor | None = None
        self._waiting = 0  # requests whose images are being converted or wait for a converter
        self._page = resources.files("modelport.gateway").joinpath("page.html").read_bytes()
        self._limiter = ClientLimiter(config.per_client) if config.per_client is not None else None
        self._key_header = {"x-api-key": config.api_key} if config.api_key else {}
        self._predict_url = f"{config.model_url.rstrip('/')}/v1/models/{config.model}:predict"
        self._status_url = f"{config.model_url.rstrip('/')}/v1/models/{config.model}"

    # -- the model service --

    async def start(self, _app: web.Application) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.config.connections, keepalive_timeout=30, ssl=self.config.model_tls or True
            ),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )
        self._converters = ThreadPoolExecutor(self.config.converters, thread_name_prefix="convert")

    async def stop(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
        if self._converters is not None:
            self._converters.shutdown(wait=False, cancel_futures=True)

    async def images(self, uploads: list[Upload]) -> list[bytes]:
        """Each upload checked from its header (on the loop: cheap), the pixels of all of them
        against the request's limit, then converted where needed off the loop. At most
        `converters` requests convert at once; `max_waiting_conversions` more may wait, and
        beyond that a request is refused with 503 at once rather than queued without bound."""
        checked = [check_image(u, self.config.max_pixels) for u in uploads]
        check_request_pixels(checked, self.config.max_request_pixels)
        if all(c.image is None for c in checked):
            return [c.upload.data for c in checked]  # PNG and JPEG: nothing to convert
        if self._waiting >= self.config.converters + self.config.max_waiting_conversions:
            raise ModelportError(
                Code.UNAVAILABLE,
                f"the gateway is converting the images of {self._waiting} requests already; retry shortly",
            )
        self._waiting += 1
        self._converting.set(self._waiting)
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._converters, lambda: [converted(c) for c in checked])
        finally:
            self._waiting -= 1
            self._converting.set(self._waiting)

    async def predict(self, images: list[bytes]) -> tuple[list[dict[str, Any]], str, float]:
        """(predictions, version that answered, seconds the model service took)."""
        assert self._session is not None
        body = orjson.dumps(
            {
                "signature_name": "serving_default",
                "instances": [{"image_bytes": {"b64": base64.b64encode(i).decode()}} for i in images],
            }
        )
        headers = {"content-type": "application/json", **self._key_header}
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                async with self._session.post(self._predict_url, data=body, headers=headers) as answer:
                    payload = await answer.read()
                    version = answer.headers.get("x-model-version", "")
                    status = answer.status
                break
            except (aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError) as exc:
                if attempt == 2:  # the connection failed twice: the service is down
                    raise ModelportError(
                        Code.UNAVAILABLE,
                        f"the model service at {self.config.model_url} is unavailable: {exc}",
                    ) from None
            except TimeoutError:
                raise ModelportError(
                    Code.DEADLINE_EXCEEDED,
                    f"the model service did not answer within {self.config.timeout_seconds:g} s",
                ) from None
        took = time.perf_counter() - started
        self._model_latency.observe(took)
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if status == 503:  # a load balancer with no ready replica behind it
                raise ModelportError(
                    Code.UNAVAILABLE,
                    f"the model service at {self.config.model_url} is unavailable: it has no ready replica",
                ) from None
            raise ModelportError(
                Code.BAD_GATEWAY, f"the model service answered {status} with something not JSON"
            ) from None
        if status != 200:
            raise upstream_error(status, data.get("error", data) if isinstance(data, dict) else data)
        return list(data["predictions"]), version, took

    # -- HTTP --

    async def _uploads(self, request: web.Request) -> list[Upload]:
        if request.content_type != "multipart/form-data":
            raise ModelportError(
                Code.UNSUPPORTED_MEDIA_TYPE,
                "send the image as multipart/form-data in the field 'img' "
                f"(got Content-Type {request.content_type or 'none'})",
            )
        limit = self.config.max_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ModelportError(
                Code.PAYLOAD_TOO_LARGE,
                f"the request is {request.content_length:,} bytes; the limit is {limit:,}",
            )
        body = bytearray()
        async for chunk in request.content.iter_chunked(65536):
            body += chunk
            if len(body) > limit:
                raise ModelportError(
                    Code.PAYLOAD_TOO_LARGE, f"the upload is larger than the limit of {limit:,} bytes"
                )
        uploads = parse_multipart(request.headers.get("Content-Type", ""), bytes(body))
        if not uploads:
            raise ModelportError(Code.INVALID_ARGUMENT, "missing the file field 'img'")
        if len(uploads) > self.config.max_images:
            raise ModelportError(
                Code.PAYLOAD_TOO_LARGE, f"at most {self.config.max_images} images per request"
            )
        return uploads

    async def _answer(self, request: web.Request, endpoint: str) -> web.Response:
        started = time.perf_counter()
        status = 500
        try:
            self._admit(request)
            uploads = await self._uploads(request)
            images = await self.images(uploads)
            predictions, version, took = await self.predict(images)
            status = 200
            if endpoint == "/":
                return _json(200, {"result": [p.get("classes") for p in predictions]})
            return _json(
                200,
                {
                    "model": {"name": self.config.model, "version": version},
                    "latencyMs": {
                        "total": round((time.perf_counter() - started) * 1000, 2),
                        "model": round(took * 1000, 2),
                    },
                    "predictions": [
                        {
                            "filename": u.filename,
                            "class": p.get("classes"),
                            "probabilities": p.get("probabilities"),
                        }
                        for u, p in zip(uploads, predictions, strict=False)
                    ],
                },
            )
        except Refused as exc:
            status = exc.http_status
            return _json(status, {"error": exc.message}, _refusal_headers(exc))
        except ModelportError as exc:
            status = exc.http_status
            return _json(exc.http_status, {"error": exc.message})
        finally:
            self._requests.labels(endpoint, str(status)).inc()
            self._latency.labels(endpoint).observe(time.perf_counter() - started)

    def _admit(self, request: web.Request) -> None:
        """The caller's key, if the operator asks for one; then the caller address's limit."""
        client = request.remote or ""
        if self.config.require_key is not None:
            headers = [(k.lower(), v) for k, v in request.headers.items()]
            self.config.require_key.check(token_of(headers), "predict", self.config.model, client)
        if self._limiter is not None:
            retry = self._limiter.admit(client, time.time())
            if retry is not None:
                message = f"too many requests from {client}: retry in {retry:.2g} s"
                raise Refused(Code.RESOURCE_EXHAUSTED, message, None, retry)

    async def index_post(self, request: web.Request) -> web.Response:
        return await self._answer(request, "/")

    async def api_predict(self, request: web.Request) -> web.Response:
        return await self._answer(request, "/api/predict")

    async def page(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def healthz(self, _request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        """Ready to take traffic: the gateway answers (and says, in its answers and here, whether
        the model is reachable). It stays ready while the model service is down, so a load
        balancer keeps sending people to it and they get the gateway's message and page, not a
        load balancer's bare 503."""
        assert self._session is not None
        try:
            async with self._session.get(
                self._status_url, timeout=aiohttp.ClientTimeout(total=2), headers=self._key_header
            ) as answer:
                data = await answer.json(content_type=None)
            states = [v.get("state") for v in data.get("model_version_status", [])]
            available = answer.status == 200 and "AVAILABLE" in states
            reason = f"model {self.config.model}: {states or data}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            available, reason = False, f"the model service at {self.config.model_url} is unavailable: {exc}"
        return _json(200, {"ready": True, "model": {"available": available, "reason": reason}})

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain", charset="utf-8")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_bytes + 65536)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        app.router.add_get("/", self.page)
        app.router.add_post("/", self.index_post)
        app.router.add_post("/api/predict", self.api_predict)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        return app


# The model service's statuses that mean "what was sent is at fault" (an image over its pixel
# limit, too many rows, a body too large, a rate limit): the client can act on them, so they go
# back as they are. A 404 or 401/403 is not the client's doing (the gateway calls the model it was
# configured with), so it is a 502 like any other error it cannot use.
_PASSED_ON = {
    400: Code.INVALID_ARGUMENT, 413: Code.PAYLOAD_TOO_LARGE, 415: Code.UNSUPPORTED_MEDIA_TYPE,
    422: Code.INVALID_ARGUMENT, 429: Code.RESOURCE_EXHAUSTED,
    503: Code.UNAVAILABLE, 504: Code.DEADLINE_EXCEEDED,
}  # fmt: skip


def upstream_error(status: int, message: object) -> ModelportError:
    """The gateway's error for a model service's non-200 answer (see `_PASSED_ON`)."""
    code = _PASSED_ON.get(status)
    if code is None:
        return ModelportError(Code.BAD_GATEWAY, f"the model service answered {status}: {message}")
    if status >= 500:
        return ModelportError(code, f"the model service answered {status}: {message}")
    if code.http_status != status:  # 422 (FastAPI-based servers): the 400 it is to TF Serving
        return ModelportError(code, f"the model refused the request ({status}): {message}")
    return ModelportError(code, f"the model refused the request: {message}")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    body_bytes = orjson.dumps(body)
    return web.Response(status=status, body=body_bytes, content_type="application/json", headers=headers)


def _refusal_headers(exc: Refused) -> dict[str, str]:
    if exc.http_status == 401:
        return {"WWW-Authenticate": REALM}
    if exc.http_status == 429:
        return {"Retry-After": retry_after_header(exc)}
    return {}


# On SIGTERM, how long the requests under way may take to finish (the rendered Pods' grace
# period, 25 s, covers it after their 5 s preStop wait).
DRAIN_SECONDS = 10.0


async def serve(
    config: GatewayConfig, host: str, port: int, on_bound: Any = None, tls: ssl.SSLContext | None = None
) -> None:
    """Run until cancelled, or until SIGTERM or SIGINT: then stop listening, let the requests under
    way finish (DRAIN_SECONDS at most) and return. The handler matters most as a container's PID 1
    (`modelport build`'s image), which has no default action for SIGTERM: without it `docker stop`
    and the kubelet wait out the grace period and SIGKILL the gateway, cutting what is under way.
    `on_bound(port)` is called once the socket is listening (port 0 works); with `tls` the page
    and the API are served over HTTPS."""
    runner = web.AppRunner(Gateway(config).app(), access_log=None, shutdown_timeout=DRAIN_SECONDS)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    site = web.SockSite(runner, sock, ssl_context=tls)
    await site.start()
    bound = int(sock.getsockname()[1])
    if on_bound is not None:
        on_bound(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await runner.cleanup()
