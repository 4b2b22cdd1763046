"""The floor: the least a server can do for the same :predict request, with no framework.

A raw ASGI app (no routing, no validation, no metrics, no error handling: a bad request just
breaks its connection) that, for each POST, reads the body, parses it with orjson, base64-decodes
``instances[i]["image_bytes"]["b64"]``, decodes each PNG with Pillow to 28x28 grayscale, scales to
float32 / 255, runs ONNX Runtime on the same model.onnx with the same session options as
modelport (intra_op=1, inter_op=1, no spinning), computes argmax and softmax and answers
``{"predictions": [{"classes", "probabilities", "logits"}]}`` with orjson. Any GET answers 200
``{}`` (the readiness probe). Whatever modelport costs beyond this is the price of being a server
people can run in production.

``--app hello`` serves a trivial endpoint instead (reads the body, answers ``{"ok":true}``): pure
HTTP-stack overhead, no JSON parsing, no image decode, no model.

    python bench/floor.py MODEL.onnx PORT [--intra 1] [--inter 1] [--spin] [--http httptools|h11]
    python bench/floor.py - PORT --app hello

Runs one process under uvicorn (uvloop, httptools unless --http h11), access log off, on a socket
bound here with TCP_NODELAY, like modelport's. Other servers (granian, uvicorn's CLI) import the
factory ``floor:from_env`` with FLOOR_MODEL, FLOOR_APP, FLOOR_INTRA, FLOOR_INTER, FLOOR_SPIN set.
"""

from __future__ import annotations

import argparse
import base64
import gc
import io
import os
import socket
from typing import Any

import numpy as np
import orjson
from PIL import Image

JSON_HEADERS = [(b"content-type", b"application/json")]


def _session(model_path: str, intra: int, inter: int, spin: bool) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra
    options.inter_op_num_threads = inter
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def _pixels(b64: str) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    if image.mode != "L":
        image = image.convert("L")
    if image.size != (28, 28):
        image = image.resize((28, 28))
    return np.asarray(image)


async def _read_body(receive: Any) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def _lifespan(scope: Any, receive: Any, send: Any) -> None:
    """Servers that speak the lifespan protocol (granian --interface asgi) get a plain yes."""
    if scope["type"] != "lifespan":
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Any, body: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def make_predict_app(model_path: str, intra: int = 1, inter: int = 1, spin: bool = False) -> Any:
    session = _session(model_path, intra, inter, spin)

    def predict(body: bytes) -> bytes:
        doc = orjson.loads(body)
        pixels = np.stack([_pixels(i["image_bytes"]["b64"]) for i in doc["instances"]])
        x = pixels.reshape(len(pixels), 784).astype(np.float32) / np.float32(255)
        logits = session.run(["logits"], {"pixels": x})[0]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        rows = [
            {"classes": c, "probabilities": p, "logits": lg}
            for c, p, lg in zip(logits.argmax(axis=1).tolist(), probs.tolist(), logits.tolist(), strict=True)
        ]
        return orjson.dumps({"predictions": rows})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await _lifespan(scope, receive, send)
            return
        if scope["method"] == "GET":
            await _answer(send, b"{}")
            return
        await _answer(send, predict(await _read_body(receive)))

    return app


def make_hello_app() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await _lifespan(scope, receive, send)
            return
        if scope["method"] != "GET":
            await _read_body(receive)
        await _answer(send, b'{"ok":true}')

    return app


def make_app(kind: str, model_path: str | None, intra: int = 1, inter: int = 1, spin: bool = False) -> Any:
    if kind == "hello":
        return make_hello_app()
    if not model_path:
        raise SystemExit("floor: the predict app needs a model path")
    return make_predict_app(model_path, intra, inter, spin)


def from_env() -> Any:
    """App factory for servers that import it (granian --factory, uvicorn --factory)."""
    app = make_app(
        os.environ.get("FLOOR_APP", "predict"),
        os.environ.get("FLOOR_MODEL"),
        int(os.environ.get("FLOOR_INTRA", "1")),
        int(os.environ.get("FLOOR_INTER", "1")),
        os.environ.get("FLOOR_SPIN", "0") == "1",
    )
    gc.collect()
    gc.freeze()
    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="model.onnx ('-' with --app hello)")
    parser.add_argument("port", type=int, help="0 picks a free one (printed on stdout)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--app", choices=("predict", "hello"), default="predict")
    parser.add_argument(
        "--intra", type=int, default=1, help="ONNX Runtime intra_op_num_threads (0: per core)"
    )
    parser.add_argument("--inter", type=int, default=1, help="ONNX Runtime inter_op_num_threads")
    parser.add_argument("--spin", action="store_true", help="let ONNX Runtime threads spin (its default)")
    parser.add_argument("--http", choices=("httptools", "h11"), default="httptools")
    args = parser.parse_args()
    import uvicorn

    app = make_app(args.app, None if args.model == "-" else args.model, args.intra, args.inter, args.spin)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    print(
        f"floor ({args.app}, uvicorn+{args.http}) on http://{args.host}:{sock.getsockname()[1]}", flush=True
    )
    gc.collect()
    gc.freeze()
    server = uvicorn.Server(
        uvicorn.Config(
            app, loop="uvloop", http=args.http, lifespan="off", access_log=False, log_level="warning",
            proxy_headers=False, server_header=False, backlog=2048,
        )
    )  # fmt: skip
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
