"""The gRPC floor: the least a Python gRPC server can do for the v2 ModelInfer call of an MLP.

    python bench/grpc_floor.py MODEL.onnx PORT aio|sync [--ready-port P] [--threads 4]

A generic handler (no servicer class, no metadata, no checks, no metrics, no error handling)
parses the ModelInferRequest, takes its first raw input with np.frombuffer, reshapes it to the
declared shape, runs ONNX Runtime on it (intra_op=1, inter_op=1, no spinning, as modelport) and
answers every output raw. `aio`: grpc.aio on asyncio's loop; `sync`: grpc.server with a thread
pool of --threads. `--ready-port` answers HTTP GET with 200 once the gRPC port is open (for the
benchmark's readiness poll). Whatever modelport's gRPC costs beyond this is its own; what this
costs is grpcio's.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import threading
from concurrent import futures
from typing import Any

import grpc
import numpy as np

from modelport.server.grpc_v2 import inference_pb2 as pb

SERVICE = "inference.GRPCInferenceService"


def _session(path: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _infer(session: Any, names: list[str]) -> Any:
    input_name = session.get_inputs()[0].name

    def infer(request: Any) -> Any:
        tensor = request.inputs[0]
        x = np.frombuffer(request.raw_input_contents[0], dtype=np.float32).reshape(tuple(tensor.shape))
        outputs = session.run(names, {input_name: x})
        response = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for name, array in zip(names, outputs, strict=True):
            response.outputs.add(name=name, datatype="FP32", shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response

    return infer


def _generic(handler: grpc.RpcMethodHandler) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": handler})


def _ready(port: int) -> None:
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("port", type=int)
    parser.add_argument("kind", choices=("aio", "sync"))
    parser.add_argument("--ready-port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    session = _session(args.model)
    infer = _infer(session, [o.name for o in session.get_outputs()])
    address = f"127.0.0.1:{args.port}"
    serialize = pb.ModelInferResponse.SerializeToString
    if args.kind == "sync":
        server = grpc.server(futures.ThreadPoolExecutor(args.threads))
        handler = grpc.unary_unary_rpc_method_handler(
            lambda request, context: infer(request), pb.ModelInferRequest.FromString, serialize
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": handler}),)
        )
        server.add_insecure_port(address)
        server.start()
        if args.ready_port:
            _ready(args.ready_port)
        server.wait_for_termination()
        return

    async def serve() -> None:
        async def handle(request: Any, context: Any) -> Any:
            return infer(request)

        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(handle, pb.ModelInferRequest.FromString, serialize)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": handler}),)
        )
        server.add_insecure_port(address)
        await server.start()
        if args.ready_port:
            _ready(args.ready_port)
        await server.wait_for_termination()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
