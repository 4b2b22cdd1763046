"""The floor: the least a server can do for the same :predict request, with no framework.

Raw ASGI under the same HTTP server as modelport (uvicorn, uvloop, httptools, one process). It
reads the body, parses it with orjson, base64-decodes each image, decodes the PNG with Pillow to
28x28 grayscale, scales to [0, 1], runs the same ONNX Runtime session with the same thread
settings, and answers classes, probabilities and logits with orjson. No routing, no validation,
no metrics, no error handling: a bad request crashes its connection. Whatever modelport costs
beyond this is the price of being a server people can run in production.

    python bench/floor.py MODEL.onnx PORT [--intra 1] [--inter 1] [--server uvicorn|granian]
"""

from __future__ import annotations

import argparse
import base64
import io
import os

import numpy as np
import onnxruntime as ort
import orjson
from PIL import Image


def make_app(model_path: str, intra: int, inter: int):  # type: ignore[no-untyped-def]
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra
    options.inter_op_num_threads = inter
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])

    def predict(body: bytes) -> bytes:
        doc = orjson.loads(body)
        pixels = np.stack(
            [
                np.asarray(Image.open(io.BytesIO(base64.b64decode(i["image_bytes"]["b64"]))).convert("L"))
                for i in doc["instances"]
            ]
        )
        logits = session.run(
            ["logits"], {"pixels": pixels.reshape(len(pixels), 784).astype(np.float32) / 255}
        )[0]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        classes = logits.argmax(axis=1).tolist()
        rows = [
            {"classes": c, "probabilities": p, "logits": lg}
            for c, p, lg in zip(classes, probs.tolist(), logits.tolist(), strict=True)
        ]
        return orjson.dumps({"predictions": rows})

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            body = b"{}"
        else:
            chunks = []
            more = True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = predict(b"".join(chunks))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def from_env():  # type: ignore[no-untyped-def]
    """For servers that import an app factory (granian, uvicorn --factory): FLOOR_MODEL, FLOOR_INTRA."""
    return make_app(os.environ["FLOOR_MODEL"], int(os.environ.get("FLOOR_INTRA", "1")), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("port", type=int)
    parser.add_argument("--intra", type=int, default=1)
    parser.add_argument("--inter", type=int, default=1)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(
        make_app(args.model, args.intra, args.inter),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
