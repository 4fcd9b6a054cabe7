"""Optional expression classifier for ``analyze_facial_expression``: HSEmotion (Savchenko's
EfficientNet models trained on AffectNet) exported to ONNX, as the ``hsemotion-onnx`` project ships
them (e.g. ``enet_b0_8_best_vgaf.onnx``, 224x224; ``enet_b2_8.onnx``, 260x260). No package here
bundles these weights: the user points the tool at the file (``hsemotion_onnx``) and we run it with
onnxruntime on RGB face crops, ImageNet-normalised.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import DeemoError

# HSEmotion's AffectNet class order (8-class models; the 7-class ones drop contempt)
LABELS_8 = ("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
LABELS_7 = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class HSEmotionONNX:
    """An HSEmotion ONNX file: ``labels``, ``size`` (input side) and ``predict(rgb_crops)``."""

    def __init__(self, path: str | Path):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise DeemoError(f"{self.path}: no such file; backend 'hsemotion' needs an HSEmotion ONNX model from the hsemotion-onnx project (e.g. enet_b0_8_best_vgaf.onnx), which no package here bundles")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise DeemoError(f"{self.path}: not a loadable ONNX model ({type(e).__name__}: {str(e)[:120]})") from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        shape = inp.shape  # [N, 3, S, S]; N (and sometimes S) symbolic
        if len(shape) != 4 or shape[1] != 3:
            raise DeemoError(f"{self.path}: expected an image input [N, 3, S, S], got {shape}")
        self.input_name = inp.name
        self.size = int(shape[2]) if isinstance(shape[2], int) else 224
        classes = out.shape[-1]
        if classes not in (7, 8):
            raise DeemoError(f"{self.path}: expected 7 or 8 expression classes (HSEmotion), the model outputs {classes}")
        self.labels = LABELS_8 if classes == 8 else LABELS_7

    def predict(self, rgb_crops: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """[F, S, S, 3] uint8 RGB face crops -> [F, K] softmax probabilities in ``labels`` order."""
        if len(rgb_crops) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        x = ((np.asarray(rgb_crops, np.float32) / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)
        logits = np.concatenate([self.session.run(None, {self.input_name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)])
        z = np.exp(logits - logits.max(1, keepdims=True))
        return (z / z.sum(1, keepdims=True)).astype(np.float32)


@lru_cache(maxsize=4)
def load_hsemotion(path: str) -> HSEmotionONNX:
    return HSEmotionONNX(path)
