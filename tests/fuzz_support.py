"""What the fuzz tests serve: half_plus_two (`x` FP32 [-1, 1], labelled `stable`), the MNIST
example (`image_bytes`, a BYTES image input) and `mixed`, a model of five inputs of five dtypes
(FP16, UINT8, INT64, BOOL, BYTES), each answered by an output of its own."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from support import half_plus_two, mark_complete

# name -> (ONNX type, v2 datatype, shape after the batch dimension)
MIXED_INPUTS = {
    "half": (TensorProto.FLOAT16, "FP16", [3]),
    "pixels": (TensorProto.UINT8, "UINT8", [4]),
    "ids": (TensorProto.INT64, "INT64", [2]),
    "flag": (TensorProto.BOOL, "BOOL", []),
    "text": (TensorProto.STRING, "BYTES", []),
}
_OPS = {"half": "Neg", "pixels": "BitwiseNot", "ids": "Neg", "flag": "Not", "text": "Identity"}


def mixed_model(path: Path) -> None:
    def info(name: str, suffix: str = "") -> onnx.ValueInfoProto:
        kind, _, dims = MIXED_INPUTS[name]
        return helper.make_tensor_value_info(name + suffix, kind, ["batch", *dims])

    graph = helper.make_graph(
        [helper.make_node(op, [name], [name + "_out"]) for name, op in _OPS.items()],
        "mixed",
        [info(name) for name in MIXED_INPUTS],
        [info(name, "_out") for name in MIXED_INPUTS],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def fuzz_repository(root: Path) -> Path:
    """The three models in version folders, and the config file that serves them."""
    half_plus_two(root / "half" / "1")
    mark_complete(root / "half" / "1")
    mixed_model(root / "mixed" / "1" / "model.onnx")
    mark_complete(root / "mixed" / "1")
    from modelport.examples import write_mnist_repository

    write_mnist_repository(root / "mnist")
    config = root / "models.yaml"
    config.write_text(
        "model_config_list:\n  config:\n"
        f"    - {{name: half, base_path: {root / 'half'}, version_labels: {{stable: 1}}}}\n"
        f"    - {{name: mnist, base_path: {root / 'mnist'}}}\n"
        f"    - {{name: mixed, base_path: {root / 'mixed'}}}\n"
    )
    return config
