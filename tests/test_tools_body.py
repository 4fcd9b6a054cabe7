"""analyze_body_language: planted events in synthetic pose sequences (pure numpy, no MediaPipe), and
real MediaPipe Pose on scikit-image's astronaut photo (``weights`` stage).

The synthetic person sits facing the camera with realistic proportions (shoulder width ~0.25 of
the frame height, head width ~0.42 shoulder widths, ears ~0.6 shoulder widths above the shoulder
line, hips ~1.3 below), with landmark jitter, slow sway, and events planted with 0.3 s ramps.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deemo_llama.errors import MediaError
from deemo_llama.metrics import event_f1
from deemo_llama.tools.base import ToolArgumentError
from deemo_llama.tools.body.events import Hysteresis, detect_body_language, signal_episodes
from deemo_llama.tools.body.tool import AnalyzeBodyLanguage

FPS = 10.0
ASPECT = 16 / 9
SW = 0.25  # template shoulder width (image heights)
SHOULDER_Y = 0.45

# Seated person facing the camera, in image-height units relative to the shoulder midpoint's x:
# index -> (x, y, z). The person's left is +x (image right), as MediaPipe reports a facing person.
TEMPLATE = {
    0: (0.0, 0.31, -0.35),
    1: (0.015, 0.285, -0.33), 2: (0.025, 0.283, -0.33), 3: (0.035, 0.285, -0.33),
    4: (-0.015, 0.285, -0.33), 5: (-0.025, 0.283, -0.33), 6: (-0.035, 0.285, -0.33),
    7: (0.0525, 0.30, -0.20), 8: (-0.0525, 0.30, -0.20),
    9: (0.02, 0.34, -0.32), 10: (-0.02, 0.34, -0.32),
    11: (0.125, 0.45, -0.10), 12: (-0.125, 0.45, -0.10),
    13: (0.16, 0.62, -0.05), 14: (-0.16, 0.62, -0.05),
    15: (0.10, 0.76, -0.15), 16: (-0.10, 0.76, -0.15),
    17: (0.11, 0.79, -0.16), 18: (-0.11, 0.79, -0.16),
    19: (0.095, 0.795, -0.16), 20: (-0.095, 0.795, -0.16),
    21: (0.085, 0.775, -0.16), 22: (-0.085, 0.775, -0.16),
    23: (0.09, 0.775, 0.0), 24: (-0.09, 0.775, 0.0),
    25: (0.10, 0.85, -0.3), 26: (-0.10, 0.85, -0.3), 27: (0.10, 0.98, -0.2), 28: (-0.10, 0.98, -0.2),
    29: (0.10, 0.99, -0.2), 30: (-0.10, 0.99, -0.2), 31: (0.11, 1.0, -0.3), 32: (-0.11, 1.0, -0.3),
}
VISIBILITY = np.array([0.99] * 11 + [0.99, 0.99, 0.95, 0.95] + [0.9] * 8 + [0.8, 0.8] + [0.1] * 8)
HAND_L, HAND_R = (15, 17, 19, 21), (16, 18, 20, 22)
BASE = np.array([TEMPLATE[i] for i in range(33)])  # [33, 3]


class Person:
    """A synthetic pose sequence in image-height units; ``pose()`` gives MediaPipe's [T, 33, 4]."""

    def __init__(self, seconds: float, seed: int, fps: float = FPS):
        self.rng = np.random.default_rng(seed)
        self.t = (np.arange(int(seconds * fps)) + 0.5) / fps
        self.scale = self.rng.uniform(0.8, 1.2)  # distance to the camera
        self.cx = ASPECT / 2 + self.rng.uniform(-0.2, 0.2)
        self.offsets = np.zeros((len(self.t), 33, 3))  # planted displacements, template units
        self.vis = np.tile(VISIBILITY, (len(self.t), 1))

    def envelope(self, t0: float, t1: float, ramp: float = 0.3) -> np.ndarray:
        """[T] 0 -> 1 -> 0 weight, 0.5 at t0 and t1 (the ground-truth edges)."""
        up = np.clip((self.t - t0) / ramp + 0.5, 0, 1)
        down = np.clip((t1 - self.t) / ramp + 0.5, 0, 1)
        return np.minimum(up, down)

    def move(self, t0: float, t1: float, targets: dict[int, tuple], ramp: float = 0.3) -> None:
        """Move landmarks to absolute template positions (x, y[, z]) between t0 and t1."""
        w = self.envelope(t0, t1, ramp)
        for i, target in targets.items():
            delta = np.array(target, dtype=float) - BASE[i, : len(target)]
            self.offsets[:, i, : len(target)] += w[:, None] * delta

    def shift(self, t0: float, t1: float, idx, delta: tuple, ramp: float = 0.3) -> None:
        """Displace landmarks ``idx`` by ``delta`` (dx, dy, dz) between t0 and t1."""
        w = self.envelope(t0, t1, ramp)
        self.offsets[:, list(idx)] += w[:, None, None] * np.array(delta)

    def hand_to(self, hand, t0, t1, wrist_xy, fingers_xy=None, z=None):
        """Move a hand: the wrist to ``wrist_xy``; the other hand points keep their offset from the
        wrist unless ``fingers_xy`` (pinky, index, thumb) is given."""
        targets = {}
        wrist = hand[0]
        for k, i in enumerate(hand):
            if k == 0:
                xy = wrist_xy
            elif fingers_xy is not None:
                xy = fingers_xy[k - 1]
            else:
                xy = tuple(np.array(wrist_xy) + BASE[i, :2] - BASE[wrist, :2])
            targets[i] = (*xy, z) if z is not None else xy
        self.move(t0, t1, targets)

    def lean(self, t0: float, t1: float, direction: int) -> None:
        """Lean toward (+1) or away from (-1) the camera, pivoting at the hips: the shoulders and
        head come ~0.6 shoulder widths closer (z) and look ~12 % larger, and sink a little."""
        w = self.envelope(t0, t1)[:, None, None]
        upper = list(range(0, 15))
        about = np.array([0.0, SHOULDER_Y, 0.0])
        grow = 0.12 * direction * (BASE[upper] - about) * np.array([1.0, 1.0, 0.0])
        self.offsets[:, upper] += w * (grow + np.array([0.0, 0.02 * direction, -0.15 * direction]))

    def pose(self) -> np.ndarray:
        T = len(self.t)
        xyz = BASE[None] + self.offsets
        xyz = xyz - np.array([0.0, SHOULDER_Y, 0.0])
        xyz = xyz * self.scale + np.array([self.cx, SHOULDER_Y, 0.0])
        sway = np.stack([0.01 * np.sin(2 * np.pi * self.t / 7 + 1), 0.005 * np.sin(2 * np.pi * self.t / 5), np.zeros(T)], axis=1)
        xyz = xyz + sway[:, None] + self.rng.normal(0, 1, xyz.shape) * np.array([0.002, 0.002, 0.01])
        out = np.empty((T, 33, 4))
        out[..., 0] = xyz[..., 0] / ASPECT  # MediaPipe: x normalised by width, z on x's scale
        out[..., 1] = xyz[..., 1]
        out[..., 2] = xyz[..., 2] / ASPECT
        out[..., 3] = self.vis
        return out

    def detect(self, **kw):
        return detect_body_language(self.pose(), self.t, aspect=ASPECT, **kw)


def plant_five(p: Person, jitter: float = 0.0) -> list[tuple[float, float, str]]:
    """Hand to face (2 s), arms crossed (3 s), rubbing hands, a shrug, a forward lean.
    Returns the ground truth as (start, end, "type/kind")."""
    j = lambda: jitter * p.rng.uniform(-1, 1)  # noqa: E731
    gt = []
    a = 2.0 + j()
    p.hand_to(HAND_R, a, a + 2.0, (-0.05, 0.41), [(-0.045, 0.38), (-0.03, 0.35), (-0.02, 0.37)], z=-0.3)
    gt.append((a, a + 2.0, "self_manipulation/hand_to_face"))
    a = 6.0 + j()
    p.hand_to(HAND_L, a, a + 3.0, (-0.06, 0.60))
    p.hand_to(HAND_R, a, a + 3.0, (0.06, 0.62))
    p.move(a, a + 3.0, {13: (0.11, 0.63), 14: (-0.11, 0.64)})
    gt.append((a, a + 3.0, "self_protection/arms_crossed"))
    a = 11.0 + j()
    p.hand_to(HAND_L, a, a + 2.5, (0.03, 0.75))
    p.hand_to(HAND_R, a, a + 2.5, (-0.03, 0.75))
    w = p.envelope(a, a + 2.5)
    rub = 0.02 * np.sin(2 * np.pi * 3.0 * p.t) * w  # 3 Hz, hands sliding against each other
    p.offsets[:, list(HAND_L), 0] += rub[:, None]
    p.offsets[:, list(HAND_R), 0] -= rub[:, None]
    p.offsets[:, list(HAND_L + HAND_R), 1] += 0.5 * np.cos(2 * np.pi * 3.0 * p.t)[:, None] * w[:, None] * 0.02
    gt.append((a, a + 2.5, "self_manipulation/rubbing_hands"))
    a = 15.0 + j()
    p.shift(a, a + 0.8, (11, 12), (0, -0.035, 0), ramp=0.2)
    p.shift(a, a + 0.8, (13, 14) + HAND_L + HAND_R, (0, -0.02, 0), ramp=0.2)
    gt.append((a, a + 0.8, "movement/shrug"))
    a = 17.0 + j()
    p.lean(a, a + 2.5, +1)
    gt.append((a, a + 2.5, "posture/lean_forward"))
    return gt


def labelled(events) -> list[tuple[float, float, str]]:
    return [(e["start_s"], e["end_s"], f"{e['type']}/{e['kind']}") for e in events]


# ---------------------------------------------------------------- planted events (no MediaPipe)


def test_planted_events_recovered_over_seeds():
    """Five planted events per clip, 8 seeds (person size/position, event times, noise): the
    detector finds each with the right type and kind; event F1 at IoU >= 0.5 over all >= 0.95 (measured: 1.0)."""
    gt_all, pred_all = [], []
    for seed in range(8):
        p = Person(22.0, seed)
        gt = plant_five(p, jitter=0.4)
        pred = labelled(p.detect().events)
        off = 100.0 * seed  # one timeline, clips side by side, so events of different clips never match
        gt_all += [(s + off, e + off, k) for s, e, k in gt]
        pred_all += [(s + off, e + off, k) for s, e, k in pred]
        assert event_f1(gt, pred).tp >= 4, (seed, gt, pred)
    score = event_f1(gt_all, pred_all)
    assert score.f1 >= 0.95, (score, pred_all)


def test_neutral_person_has_no_events():
    """Jitter and sway alone give no events and a low fidget rate."""
    for seed in range(3):
        r = Person(20.0, 100 + seed).detect()
        assert r.events == [], r.events
        assert r.estimates["fidget_bursts_per_min"] <= 3
        assert r.quality["pose_detected_share"] == 1.0 and r.quality["hands_usable_share"] == 1.0


@pytest.mark.parametrize(
    ("kind", "fingers", "wrist"),
    [
        ("hand_to_neck", [(-0.03, 0.42), (-0.01, 0.41), (-0.005, 0.43)], (-0.05, 0.46)),
        ("hand_to_head", [(-0.06, 0.25), (-0.045, 0.22), (-0.035, 0.24)], (-0.075, 0.29)),
        ("hand_to_face", [(-0.03, 0.31), (-0.015, 0.29), (-0.01, 0.32)], (-0.05, 0.35)),
    ],
)
def test_touch_region_kinds(kind, fingers, wrist):
    p = Person(10.0, 7)
    p.hand_to(HAND_R, 3.0, 5.5, wrist, fingers, z=-0.3)
    ev = [e for e in p.detect().events if e["type"] == "self_manipulation"]
    assert [e["kind"] for e in ev] == [kind] and ev[0]["hand"] == "right", ev
    assert event_f1([(3.0, 5.5, kind)], [(e["start_s"], e["end_s"], e["kind"]) for e in ev]).tp == 1


def test_hand_far_in_front_of_face_is_not_a_touch():
    """In the image the hand overlaps the face, but its depth puts it far in front (waving at the
    camera): the depth gate rejects it."""
    p = Person(10.0, 8)
    p.hand_to(HAND_R, 3.0, 5.5, (-0.05, 0.35), [(-0.03, 0.31), (-0.015, 0.29), (-0.01, 0.32)], z=-0.35 - 1.2 * SW)
    assert not [e for e in p.detect().events if e["type"] == "self_manipulation"]


def test_covering_shrinking_side_lean_back_lean_and_raised_shoulders():
    """Covering the chest, a hunched (shrinking) posture, a sideways lean, a lean back and
    shoulders raised for 4 s, one after the other: each found once, nothing else."""
    p = Person(40.0, 9)
    p.hand_to(HAND_R, 2.0, 5.0, (-0.03, 0.56))  # a hand held over the chest
    p.shift(8.0, 12.0, (11,), (-0.019, 0.03, 0))  # shoulders narrow 15 % and drop: hunched
    p.shift(8.0, 12.0, (12,), (0.019, 0.03, 0))
    p.shift(8.0, 12.0, range(0, 11), (0, 0.03, 0))
    p.shift(15.0, 18.0, range(0, 15), (0.08, 0, 0))  # upper body ~14 degrees toward the person's left
    p.lean(21.0, 24.0, -1)
    p.shift(27.0, 31.0, (11, 12), (0, -0.035, 0))  # shoulders raised and held: not a shrug
    gt = [
        (2.0, 5.0, "self_protection/covering_torso"),
        (8.0, 12.0, "self_protection/shrinking_posture"),
        (15.0, 18.0, "posture/lean_left"),
        (21.0, 24.0, "posture/lean_back"),
        (27.0, 31.0, "self_protection/raised_shoulders"),
    ]
    pred = labelled(p.detect().events)
    score = event_f1(gt, pred)
    assert score.tp == 5 and score.fp == 0, pred


def test_lean_needs_depth_and_head_size_to_agree():
    """Shoulder depth (z) jumping alone (the pose model's z is noisy, worst with the hips out of
    view) or the head alone looking smaller (a head turn) is not a lean; both together are."""
    p = Person(24.0, 17)
    p.shift(3.0, 6.0, range(0, 13), (0, 0, -0.2))  # z only
    p.offsets[:, [3, 7], 0] -= 0.012 * p.envelope(10.0, 13.0)[:, None]  # eyes and ears closer together:
    p.offsets[:, [6, 8], 0] += 0.012 * p.envelope(10.0, 13.0)[:, None]  # the head turns, ~20 % narrower
    p.lean(17.0, 20.0, +1)
    leans = [(e["start_s"], e["end_s"], e["kind"]) for e in p.detect().events if e["type"] == "posture"]
    assert len(leans) == 1 and event_f1([(17.0, 20.0, "lean_forward")], leans).tp == 1, leans


def test_moving_away_from_the_camera_is_not_shrinking():
    """The whole person gets 20 % smaller (leaning back in the chair, farther from the camera):
    shoulder width relative to head width is unchanged, so no shrinking posture."""
    p = Person(20.0, 10)
    w = p.envelope(6.0, 14.0)[:, None, None]
    centre = np.array([0.0, SHOULDER_Y, 0.0])
    p.offsets += w * (-0.2) * (BASE - centre)[None]
    kinds = [e["kind"] for e in p.detect().events]
    assert "shrinking_posture" not in kinds, kinds


def test_fidget_rate_counts_hand_bursts():
    """Eight brief 2 Hz hand wiggles in 30 s at the lap: 16 bursts per minute (+-2)."""
    p = Person(30.0, 11)
    for k in range(8):
        a = 2.0 + 3.5 * k
        w = ((p.t >= a) & (p.t < a + 0.8)).astype(float)
        p.offsets[:, list(HAND_R), 0] += (0.05 * np.sin(2 * np.pi * 2 * (p.t - a)) * w)[:, None]
    r = p.detect()
    assert abs(r.estimates["fidget_bursts_per_min"] - 16) <= 2, r.estimates
    assert not [e for e in r.events if e["type"] != "movement"], r.events


def test_hysteresis_turns_flicker_into_one_event():
    """A signal that flickers across the enter threshold (and drops above the exit threshold for
    single frames) is one event; a plain threshold at the enter value would give many."""
    t = (np.arange(100) + 0.5) / FPS
    x = np.full(100, 1.0)
    x[30:60] = np.where(np.arange(30) % 2 == 0, 0.20, 0.30)  # around enter 0.25, below exit 0.40
    x[45] = 0.6  # one frame above exit: bridged by gap merging
    h = Hysteresis(0.25, 0.40, 0.4)
    ev = signal_episodes(x, t, h, below=True)
    naive = np.diff(np.concatenate([[0], (x < 0.25).astype(int), [0]]))
    assert (naive == 1).sum() >= 10  # the flicker is real
    assert len(ev) == 1 and ev[0] == (30, 60), ev


def test_flickering_hand_near_face_is_one_event():
    """The hand hovers at the cheek, every other frame just outside the enter distance, and
    vanishes (low visibility) for single frames: one hand_to_face event."""
    p = Person(12.0, 12)
    p.hand_to(HAND_R, 3.0, 7.0, (-0.05, 0.37), [(-0.045, 0.36), (-0.035, 0.345), (-0.03, 0.355)], z=-0.3)
    inside = (p.t > 3.3) & (p.t < 6.7)
    odd = inside & (np.arange(len(p.t)) % 2 == 1)
    # every other frame the hand sits ~0.3 sw farther from the face: between enter 0.25 and exit 0.40
    p.offsets[odd, 16:23:2, 1] += 0.3 * SW
    drop = np.flatnonzero(inside)[::9]
    p.vis[drop[:, None], np.array(HAND_R)] = 0.1
    ev = [e for e in p.detect().events if e["type"] == "self_manipulation"]
    assert len(ev) == 1 and ev[0]["kind"] == "hand_to_face", ev
    assert event_f1([(3.0, 7.0, "x")], [(ev[0]["start_s"], ev[0]["end_s"], "x")]).tp == 1


def test_low_visibility_hands_give_no_hand_events():
    """The same planted events with the hands at visibility 0.2: no hand events, quality says so,
    and posture events (shrug, lean) are still found."""
    p = Person(22.0, 13)
    plant_five(p)
    p.vis[:, list(HAND_L + HAND_R)] = 0.2
    r = p.detect()
    kinds = {e["kind"] for e in r.events}
    assert kinds == {"shrug", "lean_forward"}, r.events
    assert r.quality["hands_usable_share"] == 0.0 and r.estimates["fidget_bursts_per_min"] is None
    assert any("hands" in n for n in r.notes)


def test_missing_person_frames_and_no_person():
    p = Person(22.0, 14)
    gt = plant_five(p)
    pose = p.pose()
    gone = p.rng.random(len(pose)) < 0.2  # 20 % of frames without a person, scattered
    pose[gone] = np.nan
    r = detect_body_language(pose, p.t, aspect=ASPECT)
    assert r.quality["pose_detected_share"] == pytest.approx(1 - gone.mean(), abs=1e-3)
    assert event_f1(gt, labelled(r.events)).f1 >= 0.8, labelled(r.events)

    tool = AnalyzeBodyLanguage()
    empty = tool.from_pose(np.full_like(pose, np.nan), p.t, ASPECT).to_dict()
    assert empty["status"] == "no_signal" and empty["events"] == []
    assert empty["quality"]["pose_detected_share"] == 0.0 and "No person" in empty["summary"]


def _walk(x):
    yield x
    if isinstance(x, dict):
        for v in x.values():
            yield from _walk(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _walk(v)


def test_envelope_holds_no_landmarks():
    p = Person(22.0, 15)
    plant_five(p)
    r = AnalyzeBodyLanguage().from_pose(p.pose(), p.t, ASPECT).to_dict()
    assert r["status"] == "ok" and r["tool"] == "analyze_body_language" and r["version"] == "1.0"
    json.dumps(r)  # JSON-ready
    for x in _walk(r):
        if isinstance(x, (list, tuple)) and x is not r["window"]:
            numbers = [v for v in x if isinstance(v, (int, float)) and not isinstance(v, bool)]
            assert len(x) < 33 and len(numbers) < 2, x  # no landmark lists, no coordinate pairs/triples
        if isinstance(x, dict):
            assert not {"landmarks", "pose", "keypoints", "x", "y", "z"} & set(x), x
    assert len(r["events"]) == 5 and r["estimates"]["event_counts"]["self_manipulation"] == 2
    assert r["quality"]["manipulation_of_objects"].startswith("not detectable from pose alone")
    assert "hand to face" in r["summary"] and "arms crossed" in r["summary"]
    assert r["window"][0] == 0.0 and r["window"][1] == pytest.approx(22.0, abs=0.06)


def test_scale_invariance():
    """The same behaviour filmed closer/farther and in a narrower frame gives the same events."""
    out = []
    for scale, aspect in ((0.7, 16 / 9), (1.3, 4 / 3)):
        p = Person(22.0, 16)
        p.scale = scale
        p.cx = aspect / 2
        gt = plant_five(p)
        pose = p.pose()
        pose[..., 0] *= ASPECT / aspect  # re-normalise x and z by the new frame width
        pose[..., 2] *= ASPECT / aspect
        out.append(labelled(detect_body_language(pose, p.t, aspect=aspect).events))
        assert event_f1(gt, out[-1]).f1 == 1.0, out[-1]


def test_arguments_and_unusable_inputs(tmp_path):
    from deemo_llama.sample import write_clip

    tool = AnalyzeBodyLanguage()
    with pytest.raises(ToolArgumentError, match="must be >= 2"):
        tool.validate({"clip": "x.mp4", "fps": 1})
    with pytest.raises(MediaError, match="no such file"):
        tool.run(clip=str(tmp_path / "missing.mp4"))
    wav = write_clip(tmp_path / "a.wav", None, 0.1 * np.sin(np.linspace(0, 2000 * math.pi, 16000)).astype(np.float32))
    with pytest.raises(MediaError, match="no video"):
        tool.run(clip=str(wav))
    assert tool.spec()["function"]["name"] == "analyze_body_language"


# ---------------------------------------------------------------- real MediaPipe Pose


@pytest.mark.weights
def test_mediapipe_pose_finds_the_astronaut():
    from skimage import data

    from deemo_llama.tools.body.tool import run_pose

    pose = run_pose(data.astronaut()[None])[0]  # [33, 4]
    assert np.isfinite(pose).all()
    assert pose[11, 3] > 0.9 and pose[12, 3] > 0.9  # shoulders visible
    assert pose[11, 0] > pose[12, 0]  # facing the camera: her left shoulder at image right
    assert pose[0, 1] < pose[11, 1] and pose[0, 1] < pose[12, 1]  # nose above the shoulders
    assert 0.2 < abs(pose[11, 0] - pose[12, 0]) < 0.6


@pytest.mark.weights
def test_tool_on_astronaut_clip(tmp_path):
    """3 s of the sliding astronaut at 25 fps, pose at 5 fps: person found, no events (hands are
    out of frame; the photo does not move its body), and the envelope is valid and landmark-free."""
    from deemo_llama.sample import moving_face_frames, write_clip

    clip = write_clip(tmp_path / "astro.mp4", moving_face_frames(75), None, fps=25)
    tool = AnalyzeBodyLanguage()
    r = tool.run(**tool.validate({"clip": str(clip), "fps": 5})).to_dict()
    assert r["status"] == "ok", r
    assert r["quality"]["pose_detected_share"] >= 0.8 and r["quality"]["body_visible_share"] >= 0.8
    assert r["quality"]["frames"] == 15 and r["window"] == [0.0, 3.0]
    assert r["quality"]["hands_usable_share"] < 0.5
    assert r["events"] == []  # a rigid photo sliding sideways: any event would be a false positive
    json.dumps(r)
    assert all(not (isinstance(x, list) and len(x) >= 33) for x in _walk(r))
    part = tool.run(clip=str(clip), start_s=1.0, end_s=2.0, fps=5).to_dict()
    assert part["quality"]["frames"] == 5 and 0.9 <= part["window"][0] and part["window"][1] <= 2.1


@pytest.mark.weights
def test_analyze_frames_runs_pose_on_decoded_frames(tmp_path):
    """analyze_frames (frames decoded by the caller) is what run() does after decoding."""
    from deemo_llama.media import load_clip
    from deemo_llama.sample import moving_face_frames, write_clip
    from deemo_llama.tools.body.tool import MAX_POSE_FRAMES

    clip = write_clip(tmp_path / "astro.mp4", moving_face_frames(50), None, fps=25)
    tool = AnalyzeBodyLanguage()
    c = load_clip(clip, num_frames=MAX_POSE_FRAMES, sampling="fps", fps=5, audio=False)
    r = tool.analyze_frames(c.frames, c.frame_times, window=(0.0, c.duration)).to_dict()
    assert r == tool.run(clip=str(clip), fps=5).to_dict()
    assert r["quality"]["frames"] == 10 and r["quality"]["pose_detected_share"] >= 0.8
    assert tool.analyze_frames(c.frames, c.frame_times).quality == r["quality"]  # window: the frames' span
