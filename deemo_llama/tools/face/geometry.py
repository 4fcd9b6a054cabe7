"""Face-mesh geometry of ``analyze_facial_expression``: the head frame, landmark features and the
AU-proxy channels they feed.

AU proxies (geometry, in a per-frame head frame): landmarks are expressed in a frame centred
between the eyes, x along the eye line, y towards the nose tip, in units of the inter-ocular
distance (IOD), so head translation, in-plane and (through MediaPipe's depth) out-of-plane rotation
and distance to the camera cancel. Channels: brow height (AU1+2 up / AU4 down), inner-brow gap
(AU4), eye opening (AU5 / AU43), lip-corner height (AU12 / AU15), mouth width (AU20 / AU18), lip
gap (AU25), nose-chin distance (AU26). Each is taken RELATIVE to the clip's own neutral baseline:
the median over the least deformed half of the frames (neutral_baseline says why not the stillest).
It assumes the face rests for most of the clip; a clip-long smile reads as neutral in the proxies
(FER still sees it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MediaPipe face mesh indices (canonical topology; the subject's right eye is on the image left)
R_EYE, L_EYE = (33, 133), (263, 362)  # outer, inner corner
R_LID, L_LID = (159, 145), (386, 374)  # upper, lower lid centre
R_BROW, L_BROW = (70, 63, 105, 66, 107), (300, 293, 334, 296, 336)  # upper contour, outer -> inner
INNER_BROWS = (107, 336)
MOUTH_CORNERS = (61, 291)
INNER_LIPS = (13, 14)
NOSE_TIP, CHIN = 1, 152


@dataclass(frozen=True)
class Channel:
    """One baseline-relative signal: the AU it reads when it rises / falls, and whether it spots."""

    name: str
    rise: str | None
    fall: str | None
    spot: bool


LANDMARK_CHANNELS = (
    Channel("brow_height", "AU1+2", "AU4", True),
    Channel("inner_brow_gap", None, "AU4", True),
    Channel("eye_opening", "AU5", "AU43", False),
    Channel("lip_corner_height", "AU12", "AU15", True),
    Channel("mouth_width", "AU20", "AU18", True),
    Channel("lip_gap", "AU25", None, False),
    Channel("jaw_open", "AU26", None, False),
)


def head_frame(landmarks: np.ndarray) -> np.ndarray:
    """[T, N, 3] landmarks (pixel-like units, any pose) -> [T, N, 3] in a per-frame head frame:
    origin between the eye centres, x towards the subject's left eye, y towards the nose tip
    (orthogonalised), z = x cross y; unit = inter-ocular distance. NaN frames stay NaN."""
    lm = np.asarray(landmarks, dtype=np.float64)
    r_eye, l_eye = lm[:, R_EYE].mean(1), lm[:, L_EYE].mean(1)  # [T, 3]
    origin = (r_eye + l_eye) / 2
    x = l_eye - r_eye
    iod = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / iod
    down = lm[:, NOSE_TIP] - origin
    y = down - np.sum(down * x, axis=1, keepdims=True) * x
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    z = np.cross(x, y)
    rot = np.stack([x, y, z], axis=1)  # [T, 3, 3], rows = axes
    return np.einsum("tij,tnj->tni", rot, lm - origin[:, None]) / iod[:, :, None]


def landmark_features(landmarks: np.ndarray) -> np.ndarray:
    """[T, 478 (or 468), 3] -> [T, len(LANDMARK_CHANNELS)] raw channel values in IOD units."""
    p = head_frame(landmarks)

    def dist(i: int, j: int) -> np.ndarray:
        return np.linalg.norm(p[:, i] - p[:, j], axis=1)

    eye_y_r, eye_y_l = p[:, R_EYE, 1].mean(1), p[:, L_EYE, 1].mean(1)
    brow_height = ((eye_y_r - p[:, R_BROW, 1].mean(1)) + (eye_y_l - p[:, L_BROW, 1].mean(1))) / 2  # y points down
    columns = {
        "brow_height": brow_height,
        "inner_brow_gap": dist(*INNER_BROWS),
        "eye_opening": (dist(*R_LID) + dist(*L_LID)) / 2,
        "lip_corner_height": -p[:, MOUTH_CORNERS, 1].mean(1),
        "mouth_width": dist(*MOUTH_CORNERS),
        "lip_gap": dist(*INNER_LIPS),
        "jaw_open": dist(NOSE_TIP, CHIN),
    }
    return np.stack([columns[c.name] for c in LANDMARK_CHANNELS], axis=1)

