"""What an ONNX model returns that is not a tensor (a sequence, such as skl2onnx's ZipMap makes)
reaches the protocols as an array with one element per item, like every other output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from modelport.runtimes.onnx import OnnxRuntime


def _sequence_model(path: Path) -> Path:
    """pieces = [x, x + x]: a sequence of two tensors of the same shape."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "x"], ["twice"]),
            helper.make_node("SequenceConstruct", ["x", "twice"], ["pieces"]),
        ],
        "sequence",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_sequence_value_info("pieces", TensorProto.FLOAT, ["batch", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_a_sequence_of_equal_tensors_is_one_element_per_item_not_a_broadcast(tmp_path: Path) -> None:
    model = OnnxRuntime().load(_sequence_model(tmp_path / "model.onnx"), {})
    assert [(o.name, o.dtype) for o in model.outputs] == [("pieces", "seq(tensor(float))")]
    x = np.array([[1.0, -2.0], [0.5, 3.0], [0.0, 4.0]], np.float32)
    pieces = model.run({"x": x})["pieces"]
    # Two items of shape [3, 2]: numpy would have made a [2, 3, 2] float array or refused.
    assert (pieces.dtype, pieces.shape) == (np.dtype(object), (2,))
    np.testing.assert_array_equal(pieces[0], x)
    np.testing.assert_array_equal(pieces[1], 2 * x)
