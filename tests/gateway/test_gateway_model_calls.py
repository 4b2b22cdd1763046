"""What the gateway sends the model service (README, "The gateway"): PNG and JPEG go through
untouched, other formats are converted to PNG; a failed connection is retried once (then 503).
The gateway's app in-process, the model service a recording stub on loopback."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from modelport.clock import SystemClock
from modelport.gateway.app import PNG_SIGNATURE, Gateway, GatewayConfig
from modelport.security.auth import Authenticator
from modelport.security.keys import ApiKey, SqliteKeyStore, new_token
from modelport.security.limits import Limits


@dataclass
class Stub:
    """A model service on loopback that records each request's images; the first `drop`
    connections are closed without an answer (a replica that died)."""

    drop: int = 0
    status: int = 200  # anything else: answered with {"error": "<status> from the stub"}
    connections: int = 0
    images: list[bytes] = field(default_factory=list)
    api_keys: list[str | None] = field(default_factory=list)  # each request's x-api-key

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.connections <= self.drop:
            writer.close()
            return
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))  # fmt: skip
                body = json.loads(await reader.readexactly(length))
                key = [line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"x-api-key:")]  # fmt: skip
                self.api_keys.append(key[0] if key else None)
                self.images += [base64.b64decode(i["image_bytes"]["b64"]) for i in body["instances"]]
                predictions = [{"classes": 7, "probabilities": [1.0]}] * len(body["instances"])
                answer = json.dumps(
                    {"predictions": predictions}
                    if self.status == 200
                    else {"error": f"{self.status} from the stub"}
                )
                head = f"HTTP/1.1 {self.status} X\r\ncontent-type: application/json\r\nx-model-version: 1\r\n"
                writer.write(f"{head}content-length: {len(answer)}\r\n\r\n{answer}".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the gateway closed its pooled connection
        finally:
            writer.close()


def _run(stub: Stub, test: Callable[[TestClient, Stub], Awaitable[None]], **config: Any) -> None:
    async def main() -> None:
        server = await asyncio.start_server(stub.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        gateway = Gateway(
            GatewayConfig(model_url=f"http://127.0.0.1:{port}", model="m", timeout_seconds=10, **config)
        )
        async with TestClient(TestServer(gateway.app())) as client:
            await test(client, stub)
        server.close()

    asyncio.run(main())


def _encoded(fmt: str, mode: str = "L") -> bytes:
    image = Image.fromarray((np.arange(28 * 28).reshape(28, 28) % 256).astype(np.uint8)).convert(mode)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


async def _post(client: TestClient, data: bytes, name: str) -> Any:
    form = aiohttp.FormData()
    form.add_field("img", data, filename=name)
    answer = await client.post("/", data=form)
    return answer.status, await answer.json()


def test_png_and_jpeg_go_through_untouched_and_other_formats_become_png() -> None:
    async def check(client: TestClient, stub: Stub) -> None:
        png, jpeg, gif, bmp = _encoded("PNG"), _encoded("JPEG"), _encoded("GIF", "P"), _encoded("BMP", "RGB")
        for data, name in ((png, "a.png"), (jpeg, "b.jpg"), (gif, "c.gif"), (bmp, "d.bmp")):
            assert await _post(client, data, name) == (200, {"result": [7]})
        sent_png, sent_jpeg, sent_gif, sent_bmp = stub.images
        assert sent_png == png and sent_jpeg == jpeg  # byte for byte
        for original, sent in ((gif, sent_gif), (bmp, sent_bmp)):
            assert sent.startswith(PNG_SIGNATURE)
            same = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"))
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(sent)).convert("RGB")), same)

    _run(Stub(), check)


def test_connections_to_the_model_service_are_pooled_and_kept_alive() -> None:
    async def check(client: TestClient, stub: Stub) -> None:
        for _ in range(5):
            assert await _post(client, _encoded("PNG"), "a.png") == (200, {"result": [7]})
        assert stub.connections == 1 and len(stub.images) == 5

    _run(Stub(), check)


def test_a_failed_connection_is_retried_once() -> None:
    async def check(client: TestClient, stub: Stub) -> None:
        assert await _post(client, _encoded("PNG"), "a.png") == (200, {"result": [7]})
        assert stub.connections == 2  # the first closed without an answer, the retry answered

    _run(Stub(drop=1), check)


def test_a_service_that_fails_twice_is_503() -> None:
    async def check(client: TestClient, stub: Stub) -> None:
        status, body = await _post(client, _encoded("PNG"), "a.png")
        assert status == 503 and body["error"].startswith("the model service at http://127.0.0.1:")
        assert "is unavailable" in body["error"]
        assert stub.connections == 2 and stub.images == []  # one try, one retry, no more

    _run(Stub(drop=10), check)


@pytest.mark.parametrize(
    ("upstream", "status", "error"),
    [
        (400, 400, "the model refused the request: 400 from the stub"),
        (413, 413, "the model refused the request: 413 from the stub"),
        (429, 429, "the model refused the request: 429 from the stub"),
        (422, 400, "the model refused the request (422): 422 from the stub"),
        (404, 502, "the model service answered 404: 404 from the stub"),
        (500, 502, "the model service answered 500: 500 from the stub"),
        (503, 503, "the model service answered 503: 503 from the stub"),
        (504, 504, "the model service answered 504: 504 from the stub"),
    ],
)
def test_the_model_services_errors_are_passed_on_or_are_the_gateways_502(
    upstream: int, status: int, error: str
) -> None:
    """What the client sent is at fault (400, 413, 429): the same status and the model's message.
    Not the client's doing (a 404 for the model the gateway was configured with, a 500): 502."""

    async def check(client: TestClient, stub: Stub) -> None:
        assert await _post(client, _encoded("PNG"), "a.png") == (status, {"error": error})

    _run(Stub(status=upstream), check)


def test_conversions_wait_in_a_bounded_queue() -> None:
    """One converter, no waiting room: while a big WebP is being converted, a second request that
    needs converting gets 503 at once; one that needs none (a PNG) is answered as usual."""
    image = Image.new("L", (5000, 5000), 128)
    out = io.BytesIO()
    image.save(out, "WEBP")
    big = out.getvalue()

    async def check(client: TestClient, stub: Stub) -> None:
        first = asyncio.create_task(_post(client, big, "big.webp"))
        deadline = asyncio.get_running_loop().time() + 20
        while "modelport_gateway_converting_requests 1.0" not in await (await client.get("/metrics")).text():
            assert asyncio.get_running_loop().time() < deadline and not first.done()
            await asyncio.sleep(0.01)
        assert await _post(client, _encoded("GIF", "P"), "c.gif") == (
            503, {"error": "the gateway is converting the images of 1 requests already; retry shortly"},
        )  # fmt: skip
        assert await _post(client, _encoded("PNG"), "a.png") == (200, {"result": [7]})
        assert await first == (200, {"result": [7]})

    _run(Stub(), check, converters=1, max_waiting_conversions=0)


def test_the_gateway_calls_the_model_service_with_its_own_key() -> None:
    async def check(client: TestClient, stub: Stub) -> None:
        assert await _post(client, _encoded("PNG"), "a.png") == (200, {"result": [7]})
        assert stub.api_keys == ["mpk_0123abcd_gateways-own"]

    _run(Stub(), check, api_key="mpk_0123abcd_gateways-own")


def test_one_client_address_over_its_limit_gets_429_with_retry_after() -> None:
    async def check(client: TestClient, stub: Stub) -> None:
        for _ in range(3):  # the burst
            assert await _post(client, _encoded("PNG"), "a.png") == (200, {"result": [7]})
        form = aiohttp.FormData()
        form.add_field("img", _encoded("PNG"), filename="a.png")
        over = await client.post("/", data=form)
        assert over.status == 429 and 1 <= int(over.headers["Retry-After"]) <= 60
        assert (await over.json())["error"].startswith("too many requests from 127.0.0.1: retry in ")
        assert len(stub.images) == 3  # the fourth never reached the model service
        assert (await client.get("/")).status == 200  # the page itself is not counted

    _run(Stub(), check, per_client=Limits(rate=1 / 60, burst=3))


def test_callers_need_a_key_when_the_operator_asks(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "registry.db")
    key_id, token, digest = new_token()
    store.create(ApiKey(key_id, "caller", digest, ("predict",), ("m",), created=time.time()))

    async def check(client: TestClient, stub: Stub) -> None:
        form = aiohttp.FormData()
        form.add_field("img", _encoded("PNG"), filename="a.png")
        refused = await client.post("/", data=form)
        assert refused.status == 401 and refused.headers["WWW-Authenticate"] == 'Bearer realm="modelport"'
        form = aiohttp.FormData()
        form.add_field("img", _encoded("PNG"), filename="a.png")
        answer = await client.post("/", data=form, headers={"Authorization": f"Bearer {token}"})
        assert answer.status == 200 and len(stub.images) == 1

    _run(Stub(), check, require_key=Authenticator(store, SystemClock()))
