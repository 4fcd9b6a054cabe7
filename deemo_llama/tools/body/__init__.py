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

Modules: ``geometry`` (per-frame geometry and signals), ``events`` (thresholds, hysteresis, the
detectors and :func:`detect_body_language`), ``tool`` (MediaPipe Pose and
:class:`AnalyzeBodyLanguage`). The names below are re-exported so that
``deemo_llama.tools.body.X`` keeps working.
"""

from .geometry import (
    EARS,
    ELBOWS,
    EYES,
    EYE_INNER,
    HANDS,
    HAND_NAMES,
    HIPS,
    MOUTH,
    NOSE,
    REGION_KINDS,
    SHOULDERS,
    VIS_MIN,
    Geometry,
    contact_points,
    crossed_amount,
    depth_lean,
    frame_period,
    geometry,
    hand_energy,
    head_size_change,
    nanmean,
    nanmedian,
    region_anchors,
    rolling,
    shrink_signal,
    shrug_signal,
    side_lean,
    torso_angle,
    touch_distances,
    window_frames,
)
from .events import (
    DEFAULT_THRESHOLDS,
    NOT_FROM_POSE,
    TYPES,
    BodyAnalysis,
    BodyThresholds,
    Hysteresis,
    covering_events,
    crossed_events,
    detect_body_language,
    episodes,
    fidget_bursts,
    hysteresis,
    lean_episodes,
    posture_events,
    rubbing_events,
    signal_episodes,
    summarize,
    touch_events,
)
from .tool import (
    BACKEND,
    MAX_POSE_FRAMES,
    AnalyzeBodyLanguage,
    run_pose,
)

__all__ = [
    "AnalyzeBodyLanguage",
    "BACKEND",
    "BodyAnalysis",
    "BodyThresholds",
    "DEFAULT_THRESHOLDS",
    "EARS",
    "ELBOWS",
    "EYES",
    "EYE_INNER",
    "Geometry",
    "HANDS",
    "HAND_NAMES",
    "HIPS",
    "Hysteresis",
    "MAX_POSE_FRAMES",
    "MOUTH",
    "NOSE",
    "NOT_FROM_POSE",
    "REGION_KINDS",
    "SHOULDERS",
    "TYPES",
    "VIS_MIN",
    "contact_points",
    "covering_events",
    "crossed_amount",
    "crossed_events",
    "depth_lean",
    "detect_body_language",
    "episodes",
    "fidget_bursts",
    "frame_period",
    "geometry",
    "hand_energy",
    "head_size_change",
    "hysteresis",
    "lean_episodes",
    "nanmean",
    "nanmedian",
    "posture_events",
    "region_anchors",
    "rolling",
    "rubbing_events",
    "run_pose",
    "shrink_signal",
    "shrug_signal",
    "side_lean",
    "signal_episodes",
    "summarize",
    "torso_angle",
    "touch_distances",
    "touch_events",
    "window_frames",
]
