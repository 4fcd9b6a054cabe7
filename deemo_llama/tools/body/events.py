"""Body-language event detectors of ``analyze_body_language``: thresholds, hysteresis episodes,
the self-manipulation / self-protection / posture / movement detectors and their assembly
(:func:`detect_body_language`: pose [T, 33, 4] + times -> events, estimates, quality).

Every per-frame signal goes through hysteresis (separate enter and exit thresholds), gap merging
and a minimum duration, so flicker around a threshold gives one event. Pure numpy.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .geometry import (
    HAND_NAMES,
    HANDS,
    REGION_KINDS,
    SHOULDERS,
    Geometry,
    crossed_amount,
    depth_lean,
    frame_period,
    geometry,
    hand_energy,
    head_size_change,
    nanmedian,
    rolling,
    shrink_signal,
    shrug_signal,
    side_lean,
    torso_angle,
    touch_distances,
    window_frames,
)

NOT_FROM_POSE = "not detectable from pose alone (no object detector)"

TYPES = ("self_manipulation", "manipulation_of_objects", "self_protection", "posture", "movement")


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


# ---------------------------------------------------------------- self-manipulation


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
    motion = np.sqrt(np.nansum(rolling(rel, window_frames(1.0, g.dt), np.nanvar), axis=1))
    motion[~np.isfinite(close) | crossed] = np.nan
    with np.errstate(invalid="ignore"):
        enter = (close < th.rub_close.enter) & (motion > th.rub_motion.enter)
        stay = (close < th.rub_close.exit) & (motion > th.rub_motion.exit)
    h = Hysteresis(0, 0, max(th.rub_close.min_s, th.rub_motion.min_s), th.rub_close.gap_s)
    return [_event(g, a, b, "self_manipulation", "rubbing_hands", hand="both", motion_sw=float(np.nanmax(motion[a:b]))) for a, b in episodes(enter, stay, g.times, h)]


# ---------------------------------------------------------------- self-protection


def _height_fraction(g: Geometry, y: np.ndarray) -> np.ndarray:
    """Vertical position of y [T] between the shoulder line (0) and the hips (1)."""
    return (y - g.ms[:, 1]) / g.torso


def _in_band(x: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (x >= band[0]) & (x <= band[1])


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


# ---------------------------------------------------------------- posture


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
        "shoulder_tilt_deg": _r(nanmedian(np.where(g.body_ok, roll, np.nan))),  # + = left shoulder lower
        "torso_tilt_deg": _r(nanmedian(torso_angle(g))),  # + = toward the person's left
        "arm_openness_sw": _r(nanmedian(np.where(g.hand_ok.all(axis=0), wrist_gap, np.nan))),  # wrist to wrist
    }
    return {
        "event_counts": {**counts, "manipulation_of_objects": None},
        "kind_counts": kinds,
        "time_share": {t: round(min(1.0, s / span), 3) for t, s in seconds.items()} if span > 0 else {},
        "fidget_bursts_per_min": round(n_bursts / hand_minutes, 1) if hand_minutes > 0 else None,
        "hand_movement_energy_sw": _r(nanmedian(_stronger_hand(energy))),  # median 0.5 s SD
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
