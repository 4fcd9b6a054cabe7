"""The optional HSEmotion backend of analyze_facial_expression. No package ships HSEmotion weights, so
the tests build a small ONNX classifier with the same interface ([N, 3, 224, 224] ImageNet-normalised
RGB -> 8 AffectNet logits) whose answer is known: it scores 'happy' by the crop's mean red channel."""

from __future__ import annotations

import numpy as np
import pytest

from deemo_llama.errors import DeemoError
from deemo_llama.tools.face.hsemotion import LABELS_8, HSEmotionONNX


def _toy_model(path, classes=8, size=224):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((3, classes), np.float32)
    bias = np.zeros(classes, np.float32)
    if classes == 8:
        w[0, LABELS_8.index("happy")] = 20.0  # redder crops -> happier
        bias[LABELS_8.index("neutral")] = 1.0
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),  # [N, 3]
        helper.make_node("MatMul", ["pooled", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "toy_hsemotion",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes"), numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_classifier_reads_the_model_interface(tmp_path):
    clf = HSEmotionONNX(_toy_model(tmp_path / "toy.onnx"))
    assert clf.labels == LABELS_8 and clf.size == 224
    red = np.zeros((2, 224, 224, 3), np.uint8)
    red[0, ..., 0] = 255  # a red crop and a black one
    p = clf.predict(red)
    assert p.shape == (2, 8) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert LABELS_8[int(p[0].argmax())] == "happy" and LABELS_8[int(p[1].argmax())] == "neutral"


def test_missing_or_wrong_weights_are_clear_errors(tmp_path):
    from deemo_llama.tools import get_tool

    with pytest.raises(DeemoError, match="hsemotion-onnx project"):
        HSEmotionONNX(tmp_path / "absent.onnx")
    with pytest.raises(DeemoError, match="7 or 8 expression classes"):
        HSEmotionONNX(_toy_model(tmp_path / "five.onnx", classes=5))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(DeemoError, match="not a loadable ONNX model"):
        HSEmotionONNX(tmp_path / "junk.onnx")
    with pytest.raises(DeemoError, match="needs hsemotion_onnx"):
        get_tool("analyze_facial_expression").run(clip=str(tmp_path / "c.mp4"), backend="hsemotion")


@pytest.mark.weights
def test_tool_with_the_hsemotion_backend_on_a_real_face(tmp_path):
    """The astronaut's crops through the whole tool: mesh AUs as usual, probabilities from the ONNX
    model (8 classes, contempt included), named in the envelope."""
    from deemo_llama.sample import moving_face_frames, write_clip
    from deemo_llama.tools import get_tool

    clip = write_clip(tmp_path / "face.mp4", moving_face_frames(30), None, fps=15)
    r = get_tool("analyze_facial_expression").run(clip=str(clip), backend="hsemotion", hsemotion_onnx=str(_toy_model(tmp_path / "toy.onnx"))).to_dict()
    assert r["status"] == "ok" and "HSEmotion" in r["backend"] and "toy.onnx" in r["estimates"]["method"]
    assert set(r["estimates"]["mean_probabilities"]) == set(LABELS_8)
    assert r["quality"]["face_detected_share"] > 0.9
