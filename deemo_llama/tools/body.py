"""``analyze_body_language``: MediaPipe Pose on the raw frames -> DEEMO-NFBL body-language events.

Pose runs INSIDE the privacy boundary (it needs the raw, un-blurred frames); only event intervals,
rates and posture summary numbers leave the tool, never landmarks, crops or silhouettes.

Events follow DEEMO-NFBL's three top-level types (the fine class list is not published, so the
``kind`` names are ours):
- self_manipulation: hand_to_face, hand_to_neck, hand_to_head (hair), rubbing_hands;
- self_protection: arms_crossed, covering_torso, shrinking_posture, raised_shoulders (held > 2.5 s);
- manipulation_of_objects: not detectable from pose alone (no object detector); reported in quality;
plus posture (lean_forward / lean_back / lean_left / lean_right, relative to the clip's own
baseline) and movement (shrug) descriptors, and a hand-movement burst (fidget) rate.

The core is pure numpy (:func:`detect_body_language`: pose [T, 33, 4] + times -> events) so that the
rules can be tested on synthetic pose sequences. All geometry is in image-height units (x and z
scaled by the aspect ratio, y as is) and normalised by the shoulder width or head width, so it does
not depend on the frame size or how far the person sits from the camera. Landmarks below
``VIS_MIN`` visibility are ignored. Every per-frame signal goes through hysteresis (separate enter
and exit thresholds), gap merging and a minimum duration, so flicker around a threshold gives one
event. Baselines are the clip's medians: behaviour that lasts most of the window becomes the
baseline and is not reported as a change.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DeemoError, MediaError
from .base import Tool, ToolResult

# MediaPipe PoseLandmark indices (person's left/right).
NOSE = 0
EYE_INNER = (1, 4)
EYES = (1, 2, 3, 4, 5, 6)
EARS = (7, 8)  # left, right
MOUTH = (9, 10)
SHOULDERS = (11, 12)
ELBOWS = (13, 14)
HIPS = (23, 24)
HANDS = ((15, 17, 19, 21), (16, 18, 20, 22))  # (wrist, pinky, index, thumb) of the left, right hand
HAND_NAMES = ("left", "right")

VIS_MIN = 0.5  # MediaPipe visibility below this = landmark not usable
MAX_POSE_FRAMES = 1200  # longer windows are sampled more sparsely (about 1 min of pose on 2 cores)
BACKEND = "mediapipe 0.10.21 Pose (model_complexity=1) + rule-based event detection"
NOT_FROM_POSE = "not detectable from pose alone (no object detector)"

TYPES = ("self_manipulation", "manipulation_of_objects", "self_protection", "posture", "movement")
REGION_KINDS = ("hand_to_face", "hand_to_head", "hand_to_neck")


@dataclass(frozen=True)
class Hysteresis:
    """Enter/exit thresholds of one per-frame signal; ``min_s`` minimum event length, ``gap_s``
    longest below-exit gap bridged inside one event (both in seconds)."""

    enter: float
    exit: float
    min_s: float
    gap_s: float = 0.4


@dataclass(frozen=True)
class BodyThresholds:
    """Detector thresholds. Units: sw = shoulder widths (distances), ratios to the clip's baseline,
    degrees. Chosen from body proportions (shoulder width ~38 cm, head width ~0.4 sw) and MediaPipe's
    landmark jitter (~0.01-0.02 sw per frame); enter/exit gaps are several jitter SDs wide."""

    touch: Hysteresis = Hysteresis(0.25, 0.40, 0.4)  # hand point to face/head/neck anchor (sw, below)
    depth_gate_sw: float = 0.8  # a hand this far in front of the nose (z) is not touching the face
    rub_close: Hysteresis = Hysteresis(0.45, 0.60, 0.6)  # distance between hand centres (sw, below)
    rub_motion: Hysteresis = Hysteresis(0.04, 0.025, 0.6)  # 1 s SD of the hands' relative position (sw)
    crossed: Hysteresis = Hysteresis(0.05, -0.10, 1.0)  # both wrists past the midline (sw)
    covering: Hysteresis = Hysteresis(0.40, 0.55, 1.0)  # hand centre to the torso midline (sw, below)
    shrink: Hysteresis = Hysteresis(0.12, 0.07, 1.0)  # 1 - size ratio to baseline
    lean: Hysteresis = Hysteresis(0.30, 0.18, 1.0)  # shoulder depth change (sw), forward or back
    lean_size: Hysteresis = Hysteresis(0.05, 0.03, 1.0)  # ...together with a head size change (ratio - 1)
    lean_side_deg: Hysteresis = Hysteresis(10.0, 6.0, 1.0)  # torso axis change (degrees)
    shrug: Hysteresis = Hysteresis(0.08, 0.04, 0.3)  # shoulders' rise toward the ears (sw)
    shrug_max_s: float = 2.5  # longer raised shoulders = self-protective raised_shoulders
    fidget: Hysteresis = Hysteresis(0.06, 0.035, 0.2, gap_s=0.3)  # 0.5 s SD of hand position (sw)
    chest_band: tuple[float, float] = (0.10, 0.85)  # wrist height, fraction of shoulder->hip (enter)
    chest_band_stay: tuple[float, float] = (0.0, 0.95)
    torso_band: tuple[float, float] = (0.15, 0.75)  # covering hand height (enter), same fraction
    torso_band_stay: tuple[float, float] = (0.10, 0.85)


DEFAULT_THRESHOLDS = BodyThresholds()


@dataclass
class BodyAnalysis:
    """What the pure detector returns: JSON-ready events, estimates and quality (no landmarks)."""

    events: list[dict]
    estimates: dict
    quality: dict
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- generic signal -> interval steps


def hysteresis(enter: np.ndarray, stay: np.ndarray) -> np.ndarray:
    """bool [T]: on from a frame where ``enter`` holds, for as long as ``stay`` (or enter) holds."""
    out = np.zeros(len(enter), dtype=bool)
    on = False
    for t in range(len(enter)):
        on = bool(stay[t] or enter[t]) if on else bool(enter[t])
        out[t] = on
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [a, b) where ``mask`` is True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def frame_period(times: np.ndarray) -> float:
    """Mean spacing of the frame times (s; decoded frames at a sampling rate that does not divide
    the video's are unevenly spaced); 0.1 s for a single frame."""
    return float(times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 and times[-1] > times[0] else 0.1


def episodes(enter: np.ndarray, stay: np.ndarray, times: np.ndarray, h: Hysteresis) -> list[tuple[int, int]]:
    """Frame ranges [a, b) of events: hysteresis, then gaps up to ``h.gap_s`` bridged, then events
    shorter than ``h.min_s`` dropped. An event spans its frames +- half a frame period."""
    dt = frame_period(times)
    merged: list[list[int]] = []
    for a, b in _runs(hysteresis(enter, stay)):
        if merged and times[a] - times[merged[-1][1] - 1] - dt <= h.gap_s + 1e-9:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged if times[b - 1] - times[a] + dt >= h.min_s - 1e-9]


def signal_episodes(x: np.ndarray, times: np.ndarray, h: Hysteresis, below: bool = False) -> list[tuple[int, int]]:
    """Episodes of a scalar signal [T] above (or ``below``) the thresholds; NaN frames are off."""
    with np.errstate(invalid="ignore"):
        if below:
            return episodes(x < h.enter, x < h.exit, times, h)
        return episodes(x > h.enter, x > h.exit, times, h)


def rolling(x: np.ndarray, k: int, fn) -> np.ndarray:
    """Centred rolling ``fn`` (nan-aware, e.g. np.nanmedian) over ``k`` frames along axis 0; NaN
    where fewer than half the window is valid. x: [T] or [T, D] -> same shape."""
    if k <= 1 or len(x) == 0:
        return x.copy()
    half = k // 2
    pad = np.concatenate([np.full((half,) + x.shape[1:], np.nan), x, np.full((k - 1 - half,) + x.shape[1:], np.nan)])
    win = np.lib.stride_tricks.sliding_window_view(pad, k, axis=0)  # [T, (D,) k]
    valid = np.isfinite(win).sum(axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = fn(win, axis=-1)
    return np.where(valid * 2 >= k, out, np.nan)


def _frames(seconds: float, dt: float) -> int:
    """Odd window length in frames covering about ``seconds``."""
    n = max(1, int(round(seconds / dt)))
    return n + 1 - n % 2


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """np.nanmean without the warning for all-NaN slices (they stay NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _nanmedian(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else float("nan")


# ---------------------------------------------------------------- per-frame geometry


@dataclass
class Geometry:
    """Per-frame body geometry in image-height units; NaN where landmarks are not visible.

    P: [T, 33, 3] x, y, z (NaN if not visible). ms, mh: [T, 3] shoulder / hip midpoints. sw: [T]
    shoulder width (2D). scale: [T] shoulder width floored at half its median (a turned torso
    must not blow up normalised distances). side: [T] +1 when the person's left shoulder is at
    larger x (facing the camera). torso: [T] shoulder-hip midpoint distance, or 1.3 median sw when
    the hips are not visible. hands: [2, T, 4, 3] hand points; hand_ok: [2, T] wrist visible.
    """

    times: np.ndarray
    dt: float
    P: np.ndarray
    detected: np.ndarray
    body_ok: np.ndarray
    ms: np.ndarray
    mh: np.ndarray
    sw: np.ndarray
    scale: np.ndarray
    side: np.ndarray
    hips_ok: np.ndarray
    torso: np.ndarray
    head_w: np.ndarray
    hands: np.ndarray
    hand_ok: np.ndarray
    hand_centre: np.ndarray  # [2, T, 3]


def geometry(pose: np.ndarray, times: np.ndarray, aspect: float = 1.0, vis_min: float = VIS_MIN) -> Geometry:
    """Per-frame geometry from a pose sequence [T, 33, 4] (x, y, z, visibility; MediaPipe's
    normalised image coordinates; all-NaN or visibility 0 rows where no person was found)."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.ndim != 3 or pose.shape[1:] != (33, 4):
        raise ValueError(f"pose must be [T, 33, 4], got {list(pose.shape)}")
    times = np.asarray(times, dtype=np.float64)
    if len(times) != len(pose):
        raise ValueError(f"{len(times)} times for {len(pose)} pose frames")
    vis = np.nan_to_num(pose[..., 3], nan=0.0)
    P = pose[..., :3] * np.array([aspect, 1.0, aspect])  # MediaPipe's z is on x's scale
    P[vis < vis_min] = np.nan
    detected = np.isfinite(pose[..., :3]).all(axis=(1, 2)) & (vis.max(axis=1) > 0)

    ls, rs = P[:, SHOULDERS[0]], P[:, SHOULDERS[1]]
    body_ok = np.isfinite(ls).all(1) & np.isfinite(rs).all(1)
    ms = (ls + rs) / 2
    sw = np.linalg.norm(ls[:, :2] - rs[:, :2], axis=1)
    sw_med = _nanmedian(sw)
    scale = np.fmax(sw, 0.5 * sw_med) if np.isfinite(sw_med) else sw
    side = np.where(ls[:, 0] >= rs[:, 0], 1.0, -1.0)
    lh, rh = P[:, HIPS[0]], P[:, HIPS[1]]
    hips_ok = body_ok & np.isfinite(lh).all(1) & np.isfinite(rh).all(1)
    mh = (lh + rh) / 2
    torso = np.where(hips_ok, np.linalg.norm(ms[:, :2] - mh[:, :2], axis=1), 1.3 * sw_med)
    ears = P[:, list(EARS)]
    head_w = np.linalg.norm(ears[:, 0, :2] - ears[:, 1, :2], axis=1)

    hands = np.stack([P[:, list(idx)] for idx in HANDS])  # [2, T, 4, 3]
    hand_ok = np.isfinite(hands[:, :, 0]).all(-1) & body_ok[None]
    centre = _nanmean(hands, axis=2)  # [2, T, 3]
    centre[~hand_ok] = np.nan
    return Geometry(times, frame_period(times), P, detected, body_ok, ms, mh, sw, scale, side, hips_ok, torso, head_w, hands, hand_ok, centre)


# ---------------------------------------------------------------- self-manipulation


def region_anchors(g: Geometry) -> dict[str, np.ndarray]:
    """Anchor points [T, n, 2] of the face, head (hair) and neck regions, from the face landmarks.

    Face: nose, inner eyes, mouth corners, chin, cheeks, forehead. Head: ears, crown and the two
    sides above the ears. Neck: centre and sides between the chin and the shoulder line. Points
    that are not landmarks are extrapolated along the eye->mouth axis (the chin sits ~0.6 of that
    distance below the mouth, the crown ~1.6 above the eyes).
    """
    P = g.P[..., :2]
    eye_mid = _nanmean(P[:, list(EYES)], axis=1)
    eye_mid = np.where(np.isfinite(eye_mid), eye_mid, P[:, NOSE])
    mouth = P[:, list(MOUTH)]
    mouth_mid = mouth.mean(axis=1)
    axis = mouth_mid - eye_mid  # [T, 2], eyes -> mouth
    chin = mouth_mid + 0.6 * axis
    forehead = eye_mid - 0.7 * axis
    ears = P[:, list(EARS)]
    cheeks = (ears + mouth) / 2
    crown = eye_mid - 1.6 * axis
    ear_mid = _nanmean(ears, axis=1)
    upper_sides = ears + 0.6 * (crown - ear_mid)[:, None]
    neck_c = chin + 0.45 * (g.ms[:, :2] - chin)
    lateral = np.stack([0.18 * g.sw, np.zeros_like(g.sw)], axis=1)
    face = np.concatenate([P[:, [NOSE, *EYE_INNER]], mouth, chin[:, None], cheeks, forehead[:, None]], axis=1)
    head = np.concatenate([ears, crown[:, None], upper_sides], axis=1)
    neck = np.stack([neck_c, neck_c - lateral, neck_c + lateral], axis=1)
    return {"hand_to_face": face, "hand_to_head": head, "hand_to_neck": neck}


def contact_points(g: Geometry, h: int) -> np.ndarray:
    """[T, 3, 2] the points of hand ``h`` that touch: pinky, index and thumb (the wrist of a hand on
    the mouth rests at the chin or neck, so it would name the wrong region); the wrist stands in
    for them in frames where none of the three is visible."""
    fingers = g.hands[h][:, 1:, :2].copy()
    none = ~np.isfinite(fingers).all(-1).any(-1)
    fingers[none, 0] = g.hands[h][none, 0, :2]
    return fingers


def touch_distances(g: Geometry, depth_gate_sw: float) -> np.ndarray:
    """[2 hands, 3 regions (REGION_KINDS), T]: the smallest distance (sw) from a visible point of the
    hand to an anchor of the region; inf when the hand or region is not visible, or when the hand
    is far in front of the face (z), where it can overlap the face in the image without touching."""
    anchors = region_anchors(g)
    out = np.full((2, len(REGION_KINDS), len(g.times)), np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for h in range(2):
            pts = contact_points(g, h)  # [T, 3, 2]
            in_front = (g.hand_centre[h, :, 2] - g.P[:, NOSE, 2]) / g.scale < -depth_gate_sw
            for r, kind in enumerate(REGION_KINDS):
                d = np.linalg.norm(pts[:, :, None] - anchors[kind][:, None], axis=-1)  # [T, 4, n]
                best = np.nanmin(d.reshape(len(d), -1), axis=1) / g.scale
                ok = g.hand_ok[h] & np.isfinite(best) & ~in_front
                out[h, r] = np.where(ok, best, np.inf)
    return out


def touch_events(g: Geometry, th: BodyThresholds) -> tuple[list[dict], np.ndarray]:
    """Hand-to-face/head/neck events and the per-hand touching mask [2, T] (used to keep a touching
    hand out of covering_torso). One signal for both hands and all regions (the nearest), so a hand
    sliding from cheek to hair is one event; its kind is the region nearest in most of its frames."""
    d = touch_distances(g, th.depth_gate_sw)  # [2, 3, T]
    per_hand = d.min(axis=1)  # [2, T]
    nearest = d.min(axis=0).argmin(axis=0)  # [T] region index
    dist = per_hand.min(axis=0)
    events = []
    touching = np.zeros_like(per_hand, dtype=bool)
    for a, b in signal_episodes(np.where(np.isfinite(dist), dist, np.nan), g.times, th.touch, below=True):
        near = dist[a:b] < th.touch.exit
        kind = REGION_KINDS[int(np.bincount(nearest[a:b][near], minlength=3).argmax())] if near.any() else REGION_KINDS[0]
        hands_used = [HAND_NAMES[h] for h in range(2) if np.mean(per_hand[h, a:b] < th.touch.exit) >= 0.3]
        touching[:, a:b] = per_hand[:, a:b] < th.touch.exit
        events.append(_event(g, a, b, "self_manipulation", kind, hand=_hand_label(hands_used), closest_sw=float(np.min(dist[a:b]))))
    return events, touching


def rubbing_events(g: Geometry, th: BodyThresholds, crossed: np.ndarray) -> list[dict]:
    """Rubbing hands: the hand centres close together AND moving against each other (SD of their
    relative position over 1 s). Still, clasped hands are not rubbing, and frames with crossed
    arms (crossed [T]) are left out: the wrists pass close to each other while the arms cross."""
    rel = (g.hand_centre[0, :, :2] - g.hand_centre[1, :, :2]) / g.scale[:, None]  # [T, 2]
    close = np.linalg.norm(rel, axis=1)
    motion = np.sqrt(np.nansum(rolling(rel, _frames(1.0, g.dt), np.nanvar), axis=1))
    motion[~np.isfinite(close) | crossed] = np.nan
    with np.errstate(invalid="ignore"):
        enter = (close < th.rub_close.enter) & (motion > th.rub_motion.enter)
        stay = (close < th.rub_close.exit) & (motion > th.rub_motion.exit)
    h = Hysteresis(0, 0, max(th.rub_close.min_s, th.rub_motion.min_s), th.rub_close.gap_s)
    return [_event(g, a, b, "self_manipulation", "rubbing_hands", hand="both", motion_sw=float(np.nanmax(motion[a:b]))) for a, b in episodes(enter, stay, g.times, h)]


def hand_energy(g: Geometry) -> np.ndarray:
    """[2, T] hand movement energy: SD (sw) over 0.5 s of the hand centre relative to the shoulder
    midpoint (whole-body and camera motion cancel)."""
    k = _frames(0.5, g.dt)
    out = np.full((2, len(g.times)), np.nan)
    for h in range(2):
        rel = (g.hand_centre[h, :, :2] - g.ms[:, :2]) / g.scale[:, None]
        var = rolling(rel, k, np.nanvar)
        out[h] = np.where(g.hand_ok[h], np.sqrt(var.sum(axis=1)), np.nan)
    return out


# ---------------------------------------------------------------- self-protection


def _height_fraction(g: Geometry, y: np.ndarray) -> np.ndarray:
    """Vertical position of y [T] between the shoulder line (0) and the hips (1)."""
    return (y - g.ms[:, 1]) / g.torso


def _in_band(x: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (x >= band[0]) & (x <= band[1])


def crossed_amount(g: Geometry) -> np.ndarray:
    """[T] how far (sw) BOTH wrists are past the torso midline onto the opposite side (the smaller
    of the two); negative when at least one wrist is on its own side."""
    lw, rw = g.P[:, HANDS[0][0]], g.P[:, HANDS[1][0]]
    # lateral position in the person's frame: + toward their left
    lat_l = (lw[:, 0] - g.ms[:, 0]) * g.side / g.scale
    lat_r = (rw[:, 0] - g.ms[:, 0]) * g.side / g.scale
    return np.where(g.hand_ok.all(axis=0), np.fmin(-lat_l, lat_r), np.nan)


def crossed_events(g: Geometry, th: BodyThresholds) -> tuple[list[dict], np.ndarray]:
    """Arms crossed: both wrists past the midline at chest/belly height. Returns events and the
    per-frame mask [T] (covering_torso excludes it)."""
    amount = crossed_amount(g)
    heights = [_height_fraction(g, g.P[:, HANDS[h][0], 1]) for h in range(2)]
    h_enter = _in_band(heights[0], th.chest_band) & _in_band(heights[1], th.chest_band)
    h_stay = _in_band(heights[0], th.chest_band_stay) & _in_band(heights[1], th.chest_band_stay)
    with np.errstate(invalid="ignore"):
        enter, stay = (amount > th.crossed.enter) & h_enter, (amount > th.crossed.exit) & h_stay
    eps = episodes(enter, stay, g.times, th.crossed)
    mask = np.zeros(len(g.times), dtype=bool)
    for a, b in eps:
        mask[a:b] = True
    return [_event(g, a, b, "self_protection", "arms_crossed", hand="both") for a, b in eps], mask


def covering_events(g: Geometry, th: BodyThresholds, touching: np.ndarray, crossed: np.ndarray, energy: np.ndarray) -> list[dict]:
    """Covering the torso: a hand held (not moving) over the chest/belly, near the midline, that is
    neither touching the face/neck nor part of crossed arms."""
    enter = np.zeros(len(g.times), dtype=bool)
    stay = np.zeros(len(g.times), dtype=bool)
    for h in range(2):
        c = g.hand_centre[h]
        lat = np.abs(c[:, 0] - g.ms[:, 0]) / g.scale
        height = _height_fraction(g, c[:, 1])
        free = g.hand_ok[h] & ~touching[h] & ~crossed
        with np.errstate(invalid="ignore"):
            still = energy[h] < th.fidget.enter
            enter |= free & still & (lat < th.covering.enter) & _in_band(height, th.torso_band)
            stay |= free & (lat < th.covering.exit) & _in_band(height, th.torso_band_stay)
    return [_event(g, a, b, "self_protection", "covering_torso", hand=_covering_hands(g, a, b, th)) for a, b in episodes(enter, stay, g.times, th.covering)]


def _covering_hands(g: Geometry, a: int, b: int, th: BodyThresholds) -> str:
    used = []
    for h in range(2):
        lat = np.abs(g.hand_centre[h, a:b, 0] - g.ms[a:b, 0]) / g.scale[a:b]
        with np.errstate(invalid="ignore"):
            if np.mean(lat < th.covering.exit) >= 0.5:
                used.append(HAND_NAMES[h])
    return _hand_label(used)


def _baseline_ratio(x: np.ndarray, k: int) -> np.ndarray:
    """x [T] smoothed over k frames, divided by its clip median."""
    xs = rolling(x, k, np.nanmedian)
    med = _nanmedian(xs)
    return xs / med if np.isfinite(med) and med > 0 else np.full_like(xs, np.nan)


def head_size_change(g: Geometry) -> np.ndarray:
    """[T] apparent head size relative to the clip's median, minus 1 (ear-to-ear and outer
    eye-to-eye distances, averaged): + when the head comes toward the camera."""
    k = _frames(0.5, g.dt)
    eyes = np.linalg.norm(g.P[:, 3, :2] - g.P[:, 6, :2], axis=1)
    ratios = np.stack([_baseline_ratio(g.head_w, k), _baseline_ratio(eyes, k)])
    return _nanmean(ratios, axis=0) - 1.0


def shrink_signal(g: Geometry, head_change: np.ndarray, lean_exit: float) -> np.ndarray:
    """[T] 1 - (body size / baseline body size): shoulder width and torso height, each relative to
    the head width (ears) so that moving away from the camera is not read as shrinking; the
    smaller of the two ratios counts. Without visible ears, relative to the baseline shoulder width.
    Torso height is ignored while the head size changes (a forward or back lean foreshortens the
    torso in the image)."""
    k = _frames(0.5, g.dt)
    head_ok = np.isfinite(g.head_w) & (g.head_w > 0)
    use_head = head_ok[g.body_ok].mean() >= 0.5 if g.body_ok.any() else False
    ref = np.where(head_ok, g.head_w, np.nan) if use_head else np.ones_like(g.sw)
    r_sw = _baseline_ratio(np.where(g.body_ok, g.sw / ref, np.nan), k)
    r_torso = _baseline_ratio(np.where(g.hips_ok, g.torso / ref, np.nan), k)
    with np.errstate(invalid="ignore"):
        r_torso[~(np.abs(head_change) < lean_exit)] = np.nan
    return 1.0 - np.fmin(r_sw, r_torso)


def shrug_signal(g: Geometry) -> np.ndarray:
    """[T] rise (sw) of the shoulder line toward the ears, relative to the clip's median; ears sit
    near the head's nodding axis, so nods barely move them."""
    ears = g.P[:, list(EARS), 1]
    ear_y = _nanmean(ears, axis=1)
    ear_y = np.where(np.isfinite(ear_y), ear_y, g.P[:, NOSE, 1])
    neck = rolling((g.ms[:, 1] - ear_y) / g.scale, _frames(0.3, g.dt), np.nanmedian)
    return _nanmedian(neck) - neck


def depth_lean(g: Geometry) -> np.ndarray:
    """[T] forward lean (sw, + forward): the shoulders' depth z relative to the hips (the pose
    model's own estimate, its noisiest output), relative to the clip's median."""
    fwd = rolling(-g.ms[:, 2] / _nanmedian(g.sw), _frames(0.5, g.dt), np.nanmedian)
    return fwd - _nanmedian(fwd)


def torso_angle(g: Geometry) -> np.ndarray:
    """[T] angle (degrees) of the hip->shoulder axis from vertical, + toward the person's left;
    NaN without visible hips."""
    dx = (g.ms[:, 0] - g.mh[:, 0]) * g.side
    return np.where(g.hips_ok, np.degrees(np.arctan2(dx, g.mh[:, 1] - g.ms[:, 1])), np.nan)


def side_lean(g: Geometry) -> np.ndarray:
    """[T] sideways torso angle (degrees, + toward the person's left) relative to the clip's
    median."""
    angle = rolling(torso_angle(g), _frames(0.5, g.dt), np.nanmedian)
    return angle - _nanmedian(angle)


def lean_episodes(g: Geometry, th: BodyThresholds, head_change: np.ndarray) -> list[dict]:
    """Forward/back leans need two independent cues to agree: the depth of the shoulders (z)
    moves toward/away from the camera AND the head looks larger/smaller (it comes closer/goes
    farther). Either cue alone misleads: z jumps when the hips are out of view, and head size
    changes when the head turns or the whole person moves."""
    z = depth_lean(g)
    events = []
    for sign, kind in ((1.0, "lean_forward"), (-1.0, "lean_back")):
        zs, hs = sign * z, sign * head_change
        with np.errstate(invalid="ignore"):
            enter = (zs > th.lean.enter) & (hs > th.lean_size.enter)
            stay = (zs > th.lean.exit) & (hs > th.lean_size.exit)
        for a, b in episodes(enter, stay, g.times, th.lean):
            events.append(_event(g, a, b, "posture", kind, lean_sw=float(sign * np.nanmax(zs[a:b])), head_size_change=float(sign * np.nanmax(hs[a:b]))))
    side = side_lean(g)
    for sign, kind in ((1.0, "lean_left"), (-1.0, "lean_right")):
        for a, b in signal_episodes(sign * side, g.times, th.lean_side_deg):
            events.append(_event(g, a, b, "posture", kind, lean_deg=float(sign * np.nanmax(sign * side[a:b]))))
    return events


def posture_events(g: Geometry, th: BodyThresholds) -> list[dict]:
    """Shrinking, raised shoulders, shrugs and leans."""
    head_change = head_size_change(g)
    shrink = shrink_signal(g, head_change, th.lean_size.exit)
    events = [_event(g, a, b, "self_protection", "shrinking_posture", size_drop=float(np.nanmax(shrink[a:b]))) for a, b in signal_episodes(shrink, g.times, th.shrink)]
    rise = shrug_signal(g)
    for a, b in signal_episodes(rise, g.times, th.shrug):
        long = g.times[b - 1] - g.times[a] + g.dt > th.shrug_max_s
        kind, typ = ("raised_shoulders", "self_protection") if long else ("shrug", "movement")
        events.append(_event(g, a, b, typ, kind, rise_sw=float(np.nanmax(rise[a:b]))))
    return events + lean_episodes(g, th, head_change)


# ---------------------------------------------------------------- assembly


def _hand_label(used: list[str]) -> str:
    return "both" if len(used) == 2 else used[0] if used else "either"


def _event(g: Geometry, a: int, b: int, typ: str, kind: str, **extra) -> dict:
    """An event over frames [a, b): its span is the frames +- half a frame period, clipped to
    the sampled window."""
    lo, hi = g.times[0] - g.dt / 2, g.times[-1] + g.dt / 2
    start = max(lo, g.times[a] - g.dt / 2)
    end = min(hi, g.times[b - 1] + g.dt / 2)
    out = {"type": typ, "kind": kind, "start_s": round(float(start), 2), "end_s": round(float(end), 2), "duration_s": round(float(end - start), 2)}
    out.update({k: round(v, 3) if isinstance(v, float) else v for k, v in extra.items()})
    return out


def _stronger_hand(energy: np.ndarray) -> np.ndarray:
    """[2, T] -> [T] the larger of the two hands' energies (NaN where neither is usable)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(energy, axis=0)


def fidget_bursts(g: Geometry, energy: np.ndarray, th: BodyThresholds) -> tuple[int, float]:
    """(number of hand-movement bursts, minutes with a usable hand): bursts are episodes of the
    stronger hand's movement energy (they include gesturing and reaching: pose cannot tell them
    apart from fidgeting)."""
    n = len(signal_episodes(_stronger_hand(energy), g.times, th.fidget))
    minutes = g.hand_ok.any(axis=0).sum() * g.dt / 60
    return n, minutes


def detect_body_language(pose: np.ndarray, times: np.ndarray, aspect: float = 1.0, thresholds: BodyThresholds = DEFAULT_THRESHOLDS) -> BodyAnalysis:
    """Body-language events, rates and posture summary from a pose sequence.

    pose: [T, 33, 4] MediaPipe landmarks (x, y in [0, 1] of the width/height, z on x's scale,
    visibility), NaN (or visibility 0) rows where no person was found; times: [T] seconds;
    aspect: frame width / height. Returns only non-identifying descriptors.
    """
    g = geometry(pose, times, aspect)
    T = len(g.times)
    span = T * g.dt
    quality = {
        "frames": T,
        "pose_fps": round(1.0 / g.dt, 2),
        "pose_detected_share": round(float(g.detected.mean()), 3) if T else 0.0,
        "body_visible_share": round(float(g.body_ok.mean()), 3) if T else 0.0,
        "hands_usable_share": round(float(g.hand_ok.any(axis=0).mean()), 3) if T else 0.0,
        "hips_visible_share": round(float(g.hips_ok.mean()), 3) if T else 0.0,
        "manipulation_of_objects": NOT_FROM_POSE,
    }
    notes = []
    if g.body_ok.sum() < 3:
        return BodyAnalysis([], {}, quality, ["no person with visible shoulders in enough frames"])
    if quality["hands_usable_share"] < 0.5:
        notes.append("hands are out of view or occluded in most frames: hand events are incomplete")
    if quality["hips_visible_share"] < 0.5:
        notes.append("hips are mostly out of view: sideways lean is not assessed and torso height comes from shoulder width")
    energy = hand_energy(g)
    events, touching = touch_events(g, thresholds)
    crossed_ev, crossed = crossed_events(g, thresholds)
    events += crossed_ev + rubbing_events(g, thresholds, crossed)
    events += covering_events(g, thresholds, touching, crossed, energy)
    events += posture_events(g, thresholds)
    events.sort(key=lambda e: (e["start_s"], e["type"], e["kind"]))
    n_bursts, hand_minutes = fidget_bursts(g, energy, thresholds)
    estimates = _estimates(g, events, span, n_bursts, hand_minutes, energy)
    return BodyAnalysis(events, estimates, quality, notes)


def _estimates(g: Geometry, events: list[dict], span: float, n_bursts: int, hand_minutes: float, energy: np.ndarray) -> dict:
    """Counts and time shares per type, fidget rate, and absolute posture figures (medians)."""
    counts = {t: 0 for t in TYPES if t != "manipulation_of_objects"}
    kinds: dict[str, int] = {}
    seconds = dict.fromkeys(counts, 0.0)
    for e in events:
        counts[e["type"]] += 1
        seconds[e["type"]] += e["duration_s"]
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    roll = np.degrees(np.arctan2((g.P[:, SHOULDERS[0], 1] - g.P[:, SHOULDERS[1], 1]) * g.side, g.sw))
    wrist_gap = np.linalg.norm(g.P[:, HANDS[0][0], :2] - g.P[:, HANDS[1][0], :2], axis=1) / g.scale
    # Absolute figures, medians over the window. No absolute forward lean: the pose model's depth
    # alone is too unreliable (it swings by more than a shoulder width on a still photo).
    posture = {
        "shoulder_tilt_deg": _r(_nanmedian(np.where(g.body_ok, roll, np.nan))),  # + = left shoulder lower
        "torso_tilt_deg": _r(_nanmedian(torso_angle(g))),  # + = toward the person's left
        "arm_openness_sw": _r(_nanmedian(np.where(g.hand_ok.all(axis=0), wrist_gap, np.nan))),  # wrist to wrist
    }
    return {
        "event_counts": {**counts, "manipulation_of_objects": None},
        "kind_counts": kinds,
        "time_share": {t: round(min(1.0, s / span), 3) for t, s in seconds.items()} if span > 0 else {},
        "fidget_bursts_per_min": round(n_bursts / hand_minutes, 1) if hand_minutes > 0 else None,
        "hand_movement_energy_sw": _r(_nanmedian(_stronger_hand(energy))),  # median 0.5 s SD
        "posture": posture,
    }


def _r(x: float, nd: int = 3) -> float | None:
    return round(float(x), nd) if x is not None and math.isfinite(x) else None


def summarize(events: list[dict], estimates: dict, quality: dict) -> str:
    """At most two sentences for the LLM."""
    if not events and not estimates:
        return "No person with visible shoulders was found, so body language could not be read."
    groups = {"self_manipulation": "self-manipulation", "self_protection": "self-protection", "posture": "posture", "movement": "movement"}
    parts = []
    for typ, label in groups.items():
        kinds = [e["kind"].replace("_", " ") for e in events if e["type"] == typ]
        if kinds:
            uniq = {k: kinds.count(k) for k in kinds}
            parts.append(f"{label}: " + ", ".join(f"{k}" + (f" x{n}" if n > 1 else "") for k, n in uniq.items()))
    rate = estimates.get("fidget_bursts_per_min")
    fidget = f"{rate:.0f} hand-movement bursts per minute" if rate is not None else "hands not visible"
    first = ("Body language: " + "; ".join(parts) + f"; {fidget}.") if parts else f"No marked body-language events; {fidget}."
    if events:
        e = max(events, key=lambda e: e["duration_s"])
        second = f" Longest: {e['kind'].replace('_', ' ')} at {e['start_s']:.1f}-{e['end_s']:.1f} s (object handling is not visible to pose)."
    else:
        second = f" Pose found in {100 * quality['pose_detected_share']:.0f}% of frames (object handling is not visible to pose)."
    return first + second


# ---------------------------------------------------------------- MediaPipe (inside the boundary)


def run_pose(frames: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] uint8 RGB -> [T, 33, 4] landmarks (x, y, z, visibility), NaN where no person.

    Tracking mode (static_image_mode=False) follows the person across frames, as in a video.
    Only model_complexity=1 ships inside the mediapipe wheel (0 and 2 download their models).
    """
    import mediapipe as mp

    out = np.full((len(frames), 33, 4), np.nan, dtype=np.float32)
    with mp.solutions.pose.Pose(model_complexity=1, static_image_mode=False, enable_segmentation=False) as pose:
        for i, frame in enumerate(frames):
            res = pose.process(np.ascontiguousarray(frame))
            if res.pose_landmarks is not None:
                out[i] = [(p.x, p.y, p.z, p.visibility) for p in res.pose_landmarks.landmark]
    return out


class AnalyzeBodyLanguage(Tool):
    name = "analyze_body_language"
    version = "1.0"
    description = (
        "Non-facial body language in a video clip (DEEMO-NFBL types) from body pose: self-manipulation "
        "(hand to face, neck or hair; rubbing hands), self-protection (arms crossed, covering the torso, "
        "shrinking posture), leans and shrugs relative to the person's own baseline, and a hand-movement "
        "(fidget) rate, each event with start and end times. Object handling cannot be seen from pose."
    )
    parameters = {
        "type": "object",
        "properties": {
            "clip": {"type": "string", "description": "Path of the video clip."},
            "start_s": {"type": "number", "minimum": 0, "description": "Start of the window to analyse (s)."},
            "end_s": {"type": "number", "minimum": 0, "description": "End of the window to analyse (s)."},
            "fps": {"type": "number", "minimum": 2, "maximum": 30, "description": "Pose frames per second (default 10; more is slower, fewer misses brief movements)."},
        },
        "required": ["clip"],
    }
    privacy = "Pose runs inside the privacy boundary on the raw frames; only event times, rates and posture summary numbers are returned (no landmarks, crops or silhouettes)."

    def __init__(self, thresholds: BodyThresholds = DEFAULT_THRESHOLDS):
        self.thresholds = thresholds

    def run(self, clip: str, start_s: float | None = None, end_s: float | None = None, fps: float = 10.0) -> ToolResult:
        from ..media import load_clip

        if not 2 <= fps <= 30:
            raise DeemoError(f"{self.name}: fps must be between 2 and 30, got {fps}")
        c = load_clip(Path(clip), num_frames=MAX_POSE_FRAMES, sampling="fps", fps=fps, audio=False)
        if not c.has_video:
            raise MediaError(f"{clip}: has no decodable video frames ({'; '.join(c.notes) or 'empty video stream'})")
        t = c.frame_times
        lo = start_s or 0.0
        hi = end_s if end_s is not None else math.inf
        keep = (t >= lo) & (t < hi)
        if keep.sum() < 2:
            raise MediaError(f"{clip}: the window {lo:g}-{hi:g} s holds {int(keep.sum())} sampled frame(s); the clip is {c.duration:.1f} s")
        frames, times = c.frames[keep], t[keep]
        aspect = frames.shape[2] / frames.shape[1]
        window = (lo, min(hi, max(c.duration, float(times[-1]))))
        pose = run_pose(frames)
        del frames, c  # raw frames and landmarks stay inside this call
        return self.from_pose(pose, times, aspect, window)

    def from_pose(self, pose: np.ndarray, times: np.ndarray, aspect: float = 1.0, window: tuple[float, float] | None = None) -> ToolResult:
        """The envelope from a pose sequence [T, 33, 4] at ``times`` [T] (s) of a frame with the given
        width/height ratio; used by :meth:`run` after MediaPipe, and by tests on synthetic poses.
        ``window`` (s) defaults to the span of the frames +- half a frame period."""
        res = detect_body_language(pose, times, aspect, self.thresholds)
        if window is None:
            dt = frame_period(np.asarray(times, dtype=float))
            window = (max(0.0, float(times[0]) - dt / 2), float(times[-1]) + dt / 2)
        window = (round(window[0], 3), round(window[1], 3))
        status = "ok" if res.estimates else "no_signal"
        details = {"notes": res.notes, "baseline": "leans, shrugs and shrinking are relative to this window's median posture", "thresholds": "enter/exit hysteresis, see deemo_llama.tools.body.BodyThresholds"}
        return self.result(status, window, res.quality, res.events, res.estimates, summarize(res.events, res.estimates, res.quality), BACKEND, details)
