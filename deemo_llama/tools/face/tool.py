"""The ``analyze_facial_expression`` tool: arguments, backends and the JSON envelope.

Backend ``openface``: the same AU summary, spotting and timeline from an OpenFace 2 CSV of the clip
(AU intensities 0-5 instead of geometry; the timeline from EMFACS prototype AU combinations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ...errors import DeemoError, MediaError
from ..base import CLIP_WINDOW_PARAMS, Tool, ToolResult
from .face_io import read_openface_csv
from .geometry import L_EYE, R_EYE, Channel
from .spotting import (
    OPENFACE_MICRO_MAX,
    OPENFACE_NOISE_FLOOR,
    AUAnalysis,
    Movement,
    Segment,
    analyse_channels,
    analyse_landmarks,
    au45_blinks,
    au_activations,
    au_summary,
    aus_at,
    coarse_series,
    detect_blinks,
    expression_timeline,
    frame_rate,
    prototype_scores,
)
from .tracking import FER_FPS, MESH_MAX_FPS, FaceTrack, fer_stride, track_face, track_frames

BACKENDS = {
    "default": "mediapipe face mesh (AU geometry) + fer mini-Xception (torch)",
    "openface": "OpenFace 2 AU intensities (user CSV)",
    "hsemotion": "mediapipe face mesh (AU geometry) + HSEmotion ONNX classifier (user weights)",
}


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


def _window(times: np.ndarray) -> tuple[float, float]:
    """(start, end) s of analysed frames: the first frame to one frame period past the last."""
    return (_r(times[0], 3), _r(times[-1] + 1.0 / frame_rate(times), 3))


class AnalyzeFacialExpression(Tool):
    name = "analyze_facial_expression"
    version = "1.0"
    description = "Facial expression of the person in a clip, read inside the privacy boundary: expression-class probabilities, action-unit estimates relative to the person's own neutral face, an expression timeline, and spotted micro- and macro-expressions with their action units."
    parameters = {
        "type": "object",
        "properties": {
            **CLIP_WINDOW_PARAMS,
            "backend": {"type": "string", "enum": sorted(BACKENDS), "description": "default: face mesh + expression CNN on the video; openface: AU intensities from an OpenFace 2 CSV of the clip; hsemotion: face mesh + an HSEmotion ONNX classifier."},
            "openface_csv": {"type": "string", "description": "OpenFace 2 FeatureExtraction CSV of this clip (backend openface)."},
            "hsemotion_onnx": {"type": "string", "description": "HSEmotion ONNX model file, e.g. enet_b0_8_best_vgaf.onnx (backend hsemotion)."},
            "max_fps": {"type": "number", "minimum": 1, "default": MESH_MAX_FPS, "description": f"Most video frames per second the face mesh analyses (default {MESH_MAX_FPS:g}; fewer is faster but spots fewer brief micro-expressions)."},
        },
        "required": ["clip"],
    }
    privacy = "Reads the raw face inside the privacy boundary; returns only expression probabilities, baseline-relative action-unit figures, event times and coarse series (no crops, landmarks or embeddings)."
    # openface_csv and hsemotion_onnx are files: the server binds them, the model never sees them
    path_arguments = ("clip", "openface_csv", "hsemotion_onnx")

    def run(self, clip: str, start_s: float | None = None, end_s: float | None = None, backend: str = "default", openface_csv: str | None = None, hsemotion_onnx: str | None = None, max_fps: float = MESH_MAX_FPS) -> ToolResult:
        start = float(start_s or 0.0)
        if end_s is not None and end_s <= start:
            raise DeemoError(f"{clip}: end_s ({end_s:g}) must be after start_s ({start:g})")
        if not max_fps >= 1:
            raise DeemoError(f"{self.name}: max_fps must be >= 1, got {max_fps}")
        if backend == "openface":
            return self._run_openface(Path(clip), start, end_s, openface_csv)
        if backend == "hsemotion":
            from .hsemotion import load_hsemotion

            if not hsemotion_onnx:
                raise DeemoError("backend 'hsemotion' needs hsemotion_onnx: the path of an HSEmotion ONNX model (hsemotion-onnx project, e.g. enet_b0_8_best_vgaf.onnx)")
            classifier = load_hsemotion(str(Path(hsemotion_onnx).resolve()))
            return self._from_track(track_face(Path(clip), start, end_s, classifier.size, color=True, max_fps=float(max_fps)), classifier)
        if backend != "default":
            raise DeemoError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
        return self._from_track(track_face(Path(clip), start, end_s, max_fps=float(max_fps)))

    def analyze_frames(self, frames: np.ndarray, times: np.ndarray, source_fps: float, boxes: dict[int, list] | None = None, fer_fps: float = FER_FPS) -> ToolResult:
        """The default backend on frames decoded by the caller: the envelope of :meth:`run`.

        frames: [T, H, W, 3] uint8 RGB at ``times`` [T] (s), already thinned to the rate the caller
        wants analysed; ``source_fps``: the clip's own frame rate (reported, and the analysis rate
        when the frames are not thinned). ``boxes`` maps a frame index to CenterFace boxes already
        found on that frame (privacy.faces.Box objects or ``[x1, y1, x2, y2, score]`` lists, e.g.
        Deidentifier.clip's summary); the face tracker then uses them instead of detecting again.
        Expression probabilities are computed on ~``fer_fps`` frames a second.
        """
        frames = np.asarray(frames)
        times = np.asarray(times, dtype=np.float64)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise DeemoError(f"{self.name}: frames must be [T, H, W, 3] uint8 RGB, got {frames.dtype} {list(frames.shape)}")
        if len(times) != len(frames):
            raise DeemoError(f"{self.name}: {len(times)} times for {len(frames)} frames")
        if not len(frames):
            raise MediaError(f"{self.name}: no video frames to analyse")
        track = track_frames(zip(times.tolist(), frames), fer_stride(self._analysis_fps(times, float(source_fps)), fer_fps), float(source_fps), boxes)
        return self._from_track(track)

    @staticmethod
    def _analysis_fps(times: np.ndarray, source_fps: float) -> float:
        """The rate the frames were analysed at: the source's when they were not thinned (within
        1 %; frame_rate of the time stamps is not exact), else that of the time stamps."""
        fps = frame_rate(times) if len(times) > 1 else source_fps
        return source_fps if fps >= 0.99 * source_fps else fps

    def _from_track(self, track: FaceTrack, classifier=None) -> ToolResult:
        """Mesh AUs + expression probabilities from fer (``classifier`` None) or an HSEmotion model."""
        if classifier is None:
            from .fer_model import LABELS, predict_expressions

            method, backend = "fer mini-Xception (FER2013, 7 classes)", BACKENDS["default"]
        else:
            LABELS, predict_expressions = classifier.labels, classifier.predict
            method, backend = f"HSEmotion ONNX {classifier.path.name} ({len(LABELS)} classes)", BACKENDS["hsemotion"]
        analysis = analyse_landmarks(track.landmarks, track.times)
        fps = frame_rate(track.times)
        window = _window(track.times)
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
        return self._ok(
            analysis, segments, blinks, window, quality, share, backend,
            dominant=dominant, scores=("mean_probabilities", mean_p), scale=100.0, unit="iod_pct",
            au_unit="% of inter-ocular distance, relative to the clip's neutral baseline (mean, 95th percentile; active_share = frames over 4 robust SDs)",
            method=f"probabilities: {method} on mesh-derived face crops; AUs: geometric proxies from the MediaPipe face mesh, not a trained AU detector",
            series=self._series_default(analysis, probs, fer_t, window, LABELS),
        )

    def _ok(self, analysis: AUAnalysis, segments: list[Segment], blinks: list[tuple[float, float]], window: tuple[float, float], quality: dict, share: float, backend: str, *, dominant: str | None, scores: tuple[str, Mapping | None], scale: float, unit: str, au_unit: str, method: str, series: dict, score_name: str = "p") -> ToolResult:
        """The "ok" envelope both backends share: AU summary (x ``scale``), events and counts,
        estimates (``scores`` = (key, per-label means)), blinks, series and the two-sentence summary."""
        au = au_summary(analysis, scale=scale)
        events, shared = _events_and_counts(analysis, segments, blinks, window, scale, unit)
        key, means = scores
        estimates = {"dominant_expression": dominant, key: means, "au_proxies": au, "au_unit": au_unit, **shared, "method": method}
        details = {"series": series, "blinks": [[_r(a), _r(b)] for a, b in blinks]}
        summary = _summary(window, share, dominant, means, analysis.movements, au, score=score_name)
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
        window = _window(times)
        share = float(valid.mean())
        quality = {"frames_analysed": int(keep.sum()), "analysis_fps": _r(fps, 2), "face_detected_share": _r(share, 3), "openface_csv": Path(openface_csv).name, "aus_in_csv": [c.name for c in channels]}
        if not valid.any():
            return self.result("no_signal", window, quality, [], {}, f"OpenFace tracked no face in the {int(keep.sum())} frames of {window[0]:.1f}-{window[1]:.1f} s.", BACKENDS["openface"])
        analysis = analyse_channels(feats, times, valid, channels, OPENFACE_NOISE_FLOOR, OPENFACE_MICRO_MAX)
        labels, scores = prototype_scores({int(c.name[2:]): np.maximum(d, 0.0) for c, d in zip(channels, analysis.deltas.T)})
        segments = expression_timeline(scores, times, labels, valid) if labels else []
        blinks = au45_blinks(track.intensity["AU45"][keep], times, valid) if "AU45" in track.intensity else []
        mean_scores = {k: _r(v, 3) for k, v in zip(labels, scores[valid].mean(0))} if labels else None
        # no prototype reaches a fifth of its full activation on average: the face is mostly at rest
        dominant = max(mean_scores, key=mean_scores.get) if mean_scores and max(mean_scores.values()) >= 0.2 else "neutral"
        acts = au_activations(analysis)
        series = _series(*coarse_series(times, np.stack([acts[c.name] for c in channels], 1), valid, *window), [c.name for c in channels], 2)
        return self._ok(
            analysis, segments, blinks, window, quality, share, BACKENDS["openface"],
            dominant=dominant, scores=("prototype_scores", mean_scores), scale=1.0, unit="intensity",
            au_unit="OpenFace intensity (0-5), relative to the clip's neutral baseline (mean, 95th percentile; active_share = frames over 4 robust SDs)",
            method="OpenFace 2 AU intensities; expression scores from EMFACS prototype AU combinations (heuristic, no trained classifier)",
            series={"au_intensity": series}, score_name="prototype score",
        )
