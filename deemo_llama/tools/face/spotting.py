"""Series analysis of ``analyze_facial_expression``: neutral baseline, robust spread, MEGC-style
spotting, blinks, the expression timeline, EMFACS prototype scores and the coarse series.

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

Pure numpy/scipy: no media, no models (the OpenFace backend feeds the same functions AU intensities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .geometry import LANDMARK_CHANNELS, Channel, landmark_features

SERIES_STEP_S, SERIES_MAX_POINTS = 0.5, 120  # the coarse series the UI plots
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

