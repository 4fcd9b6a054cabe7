"""Per-frame body geometry and signals of ``analyze_body_language``, from a MediaPipe pose sequence.

All geometry is in image-height units (x and z scaled by the aspect ratio, y as is) and normalised
by the shoulder width or head width; landmarks below ``VIS_MIN`` visibility are ignored. Signals
are relative to the clip's own medians where the docstrings say so. Pure numpy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

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
REGION_KINDS = ("hand_to_face", "hand_to_head", "hand_to_neck")


# ---------------------------------------------------------------- generic helpers


def frame_period(times: np.ndarray) -> float:
    """Mean spacing of the frame times (s; decoded frames at a sampling rate that does not divide
    the video's are unevenly spaced); 0.1 s for a single frame."""
    return float(times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 and times[-1] > times[0] else 0.1


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


def window_frames(seconds: float, dt: float) -> int:
    """Odd window length in frames covering about ``seconds``."""
    n = max(1, int(round(seconds / dt)))
    return n + 1 - n % 2


def nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """np.nanmean without the warning for all-NaN slices (they stay NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def nanmedian(x: np.ndarray) -> float:
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
    sw_med = nanmedian(sw)
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
    centre = nanmean(hands, axis=2)  # [2, T, 3]
    centre[~hand_ok] = np.nan
    return Geometry(times, frame_period(times), P, detected, body_ok, ms, mh, sw, scale, side, hips_ok, torso, head_w, hands, hand_ok, centre)


# ---------------------------------------------------------------- hands and regions


def region_anchors(g: Geometry) -> dict[str, np.ndarray]:
    """Anchor points [T, n, 2] of the face, head (hair) and neck regions, from the face landmarks.

    Face: nose, inner eyes, mouth corners, chin, cheeks, forehead. Head: ears, crown and the two
    sides above the ears. Neck: centre and sides between the chin and the shoulder line. Points
    that are not landmarks are extrapolated along the eye->mouth axis (the chin sits ~0.6 of that
    distance below the mouth, the crown ~1.6 above the eyes).
    """
    P = g.P[..., :2]
    eye_mid = nanmean(P[:, list(EYES)], axis=1)
    eye_mid = np.where(np.isfinite(eye_mid), eye_mid, P[:, NOSE])
    mouth = P[:, list(MOUTH)]
    mouth_mid = mouth.mean(axis=1)
    axis = mouth_mid - eye_mid  # [T, 2], eyes -> mouth
    chin = mouth_mid + 0.6 * axis
    forehead = eye_mid - 0.7 * axis
    ears = P[:, list(EARS)]
    cheeks = (ears + mouth) / 2
    crown = eye_mid - 1.6 * axis
    ear_mid = nanmean(ears, axis=1)
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


def hand_energy(g: Geometry) -> np.ndarray:
    """[2, T] hand movement energy: SD (sw) over 0.5 s of the hand centre relative to the shoulder
    midpoint (whole-body and camera motion cancel)."""
    k = window_frames(0.5, g.dt)
    out = np.full((2, len(g.times)), np.nan)
    for h in range(2):
        rel = (g.hand_centre[h, :, :2] - g.ms[:, :2]) / g.scale[:, None]
        var = rolling(rel, k, np.nanvar)
        out[h] = np.where(g.hand_ok[h], np.sqrt(var.sum(axis=1)), np.nan)
    return out


def crossed_amount(g: Geometry) -> np.ndarray:
    """[T] how far (sw) BOTH wrists are past the torso midline onto the opposite side (the smaller
    of the two); negative when at least one wrist is on its own side."""
    lw, rw = g.P[:, HANDS[0][0]], g.P[:, HANDS[1][0]]
    # lateral position in the person's frame: + toward their left
    lat_l = (lw[:, 0] - g.ms[:, 0]) * g.side / g.scale
    lat_r = (rw[:, 0] - g.ms[:, 0]) * g.side / g.scale
    return np.where(g.hand_ok.all(axis=0), np.fmin(-lat_l, lat_r), np.nan)


# ---------------------------------------------------------------- posture signals


def _baseline_ratio(x: np.ndarray, k: int) -> np.ndarray:
    """x [T] smoothed over k frames, divided by its clip median."""
    xs = rolling(x, k, np.nanmedian)
    med = nanmedian(xs)
    return xs / med if np.isfinite(med) and med > 0 else np.full_like(xs, np.nan)


def head_size_change(g: Geometry) -> np.ndarray:
    """[T] apparent head size relative to the clip's median, minus 1 (ear-to-ear and outer
    eye-to-eye distances, averaged): + when the head comes toward the camera."""
    k = window_frames(0.5, g.dt)
    eyes = np.linalg.norm(g.P[:, 3, :2] - g.P[:, 6, :2], axis=1)
    ratios = np.stack([_baseline_ratio(g.head_w, k), _baseline_ratio(eyes, k)])
    return nanmean(ratios, axis=0) - 1.0


def shrink_signal(g: Geometry, head_change: np.ndarray, lean_exit: float) -> np.ndarray:
    """[T] 1 - (body size / baseline body size): shoulder width and torso height, each relative to
    the head width (ears) so that moving away from the camera is not read as shrinking; the
    smaller of the two ratios counts. Without visible ears, relative to the baseline shoulder width.
    Torso height is ignored while the head size changes (a forward or back lean foreshortens the
    torso in the image)."""
    k = window_frames(0.5, g.dt)
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
    ear_y = nanmean(ears, axis=1)
    ear_y = np.where(np.isfinite(ear_y), ear_y, g.P[:, NOSE, 1])
    neck = rolling((g.ms[:, 1] - ear_y) / g.scale, window_frames(0.3, g.dt), np.nanmedian)
    return nanmedian(neck) - neck


def depth_lean(g: Geometry) -> np.ndarray:
    """[T] forward lean (sw, + forward): the shoulders' depth z relative to the hips (the pose
    model's own estimate, its noisiest output), relative to the clip's median."""
    fwd = rolling(-g.ms[:, 2] / nanmedian(g.sw), window_frames(0.5, g.dt), np.nanmedian)
    return fwd - nanmedian(fwd)


def torso_angle(g: Geometry) -> np.ndarray:
    """[T] angle (degrees) of the hip->shoulder axis from vertical, + toward the person's left;
    NaN without visible hips."""
    dx = (g.ms[:, 0] - g.mh[:, 0]) * g.side
    return np.where(g.hips_ok, np.degrees(np.arctan2(dx, g.mh[:, 1] - g.ms[:, 1])), np.nan)


def side_lean(g: Geometry) -> np.ndarray:
    """[T] sideways torso angle (degrees, + toward the person's left) relative to the clip's
    median."""
    angle = rolling(torso_angle(g), window_frames(0.5, g.dt), np.nanmedian)
    return angle - nanmedian(angle)
