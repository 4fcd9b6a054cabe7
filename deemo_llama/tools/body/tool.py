"""The ``analyze_body_language`` tool: MediaPipe Pose on the raw frames (inside the privacy
boundary), then the detectors of ``events``; only the envelope leaves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import DeemoError, MediaError
from ..base import CLIP_WINDOW_PARAMS, Tool, ToolResult
from .events import DEFAULT_THRESHOLDS, BodyThresholds, detect_body_language, summarize
from .geometry import frame_period

MAX_POSE_FRAMES = 1200  # longer windows are sampled more sparsely (about 1 min of pose on 2 cores)
BACKEND = "mediapipe 0.10.21 Pose (model_complexity=1) + rule-based event detection"


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
            **CLIP_WINDOW_PARAMS,
            "fps": {"type": "number", "minimum": 2, "maximum": 30, "description": "Pose frames per second (default 10; more is slower, fewer misses brief movements)."},
        },
        "required": ["clip"],
    }
    privacy = "Pose runs inside the privacy boundary on the raw frames; only event times, rates and posture summary numbers are returned (no landmarks, crops or silhouettes)."

    def __init__(self, thresholds: BodyThresholds = DEFAULT_THRESHOLDS):
        self.thresholds = thresholds

    def run(self, clip: str, start_s: float | None = None, end_s: float | None = None, fps: float = 10.0) -> ToolResult:
        from ...media import load_clip

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
        window = (lo, min(hi, max(c.duration, float(times[-1]))))
        del c  # raw frames and landmarks stay inside this call
        return self.analyze_frames(frames, times, window=window)

    def analyze_frames(self, frames: np.ndarray, times: np.ndarray, *, window: tuple[float, float] | None = None) -> ToolResult:
        """The envelope from frames decoded by the caller: [T, H, W, 3] uint8 RGB at ``times`` [T]
        (s), sampled at the rate pose should run at. MediaPipe Pose, then :meth:`from_pose`;
        ``window`` (s) as there. Landmarks stay inside this call."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise DeemoError(f"{self.name}: frames must be [T, H, W, 3] RGB, got {list(frames.shape)}")
        aspect = frames.shape[2] / frames.shape[1]
        pose = run_pose(frames)
        return self.from_pose(pose, np.asarray(times, dtype=np.float64), aspect, window)

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
