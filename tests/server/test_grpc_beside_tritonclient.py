"""modelport's v2 gRPC messages load in a process that also uses tritonclient.grpc (or another
package generated from the same `inference` proto), in either import order: both register
`inference.ModelInferRequest` and friends, which the process-wide default descriptor pool refuses
twice ("duplicate symbol"), so modelport keeps its own pool."""

from __future__ import annotations

import subprocess
import sys

import pytest

ROUND_TRIP = """
from modelport.server.grpc_v2 import inference_pb2 as pb
request = pb.ModelInferRequest(model_name="mnist", inputs=[{"name": "x", "datatype": "FP32", "shape": [1]}])
again = pb.ModelInferRequest.FromString(request.SerializeToString())
print(again.model_name, again.inputs[0].datatype)
"""


@pytest.mark.parametrize(
    "first",
    ["import tritonclient.grpc", "import modelport.server.grpc_service"],
    ids=["triton-first", "ours-first"],
)
def test_our_messages_and_tritonclients_load_in_one_process(first: str) -> None:
    code = f"{first}\nimport tritonclient.grpc\nimport modelport.server.grpc_service\n{ROUND_TRIP}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["mnist", "FP32"]
