"""``analyze_physiology``: peripheral signals (NeuroKit2) and EEG (scipy Welch) -> features, events,
and valence/arousal estimates.

Peripheral: ECG/PPG heart rate and HRV (RMSSD), EDA skin-conductance responses (rate, amplitude,
tonic level), respiration rate, skin temperature (level, slope). EEG: log band powers and
differential entropy (delta 1-4, theta 4-8, alpha 8-13, beta 13-30, gamma 30-45 Hz) and frontal alpha
asymmetry ln(alpha F4) - ln(alpha F3) (AF4/AF3 or F8/F7 when F3/F4 are absent). With a resting
baseline (DEAP: the first 3 s; DREAMER: its separate baseline clip), features are also given as
changes from it.

Estimates come from a trained model (``physio_model``; ``deemo physio train``) when one is given
with ``model`` or exists at ``<cache_dir>/physio-model``; the method then names the model, its
training dataset and its subject-independent scores. Otherwise they are HEURISTIC (and say so):
arousal rises with heart rate, SCR rate and breathing rate above baseline (or typical resting
values); valence follows the sign of frontal alpha asymmetry (Davidson's approach-withdrawal model).
An explicitly given model that cannot be applied (its EEG channels or baseline missing) is an error;
the default model falls back to the heuristic with a note.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from ..errors import DeemoError
from .base import Tool, ToolResult
from .physio_features import (
    EEG_BASELINE_MIN_S,
    PERIPHERAL_BASELINE_MIN_S,
    channel_kind,
    eeg_features,
    peripheral_features,
)
from .physio_io import Recording, read_recording
from .physio_model import META_FILE as MODEL_META_FILE
from .physio_model import ModelInputError, PhysioModel

# Typical resting values used when there is no baseline (adult norms).
RESTING = {"hr_bpm": 70.0, "scr_per_min": 3.0, "rsp_per_min": 15.0}
SCALES = {"hr_bpm": 10.0, "scr_per_min": 3.0, "rsp_per_min": 4.0}
MIN_WINDOW_S = 5.0  # shortest analysis window (a few heart beats / one breath)
DEFAULT_MODEL_DIR = "physio-model"  # under assets.cache_dir(); `deemo physio train` writes it


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _resolve_model(model: str | None) -> tuple[PhysioModel | None, str | None]:
    """(model, note): the explicit ``model`` (errors propagate), else the default if it loads."""
    from ..assets import cache_dir

    default = cache_dir() / DEFAULT_MODEL_DIR
    if model is None and not default.exists():
        return None, None  # the common case: no scikit-learn import
    if model is not None:
        return PhysioModel.load(model), None
    try:
        return PhysioModel.load(default), None
    except DeemoError as e:
        return None, f"default model not used ({e}); estimates are heuristic"


class AnalyzePhysiology(Tool):
    name = "analyze_physiology"
    base_version = "1.1"
    description = "Physiological arousal and valence cues from a recording of ECG/PPG, EDA, respiration, skin temperature and/or EEG: heart rate and HRV, skin-conductance responses, breathing rate, EEG band powers and frontal alpha asymmetry."
    parameters = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Recording: CSV, NPZ, DEAP sXX.dat or DREAMER .mat."},
            "trial": {"type": "integer", "minimum": 0, "description": "Trial index for multi-trial files (DEAP, DREAMER), 0-based."},
            "subject": {"type": "integer", "minimum": 0, "description": "Subject index for DREAMER .mat files, 0-based."},
            "start_s": {"type": "number", "minimum": 0, "description": "Start of the analysis window (s, after the baseline)."},
            "end_s": {"type": "number", "minimum": 0, "description": "End of the analysis window (s)."},
            "baseline_s": {"type": "number", "minimum": 0, "description": "Leading seconds of resting baseline (DEAP files set 3, DREAMER its baseline clip)."},
            "model": {"type": "string", "description": "Directory of a trained valence/arousal model (deemo physio train); default: the cached one if any, else heuristic estimates. Loaded with joblib: trusted directories only."},
        },
        "required": ["path"],
    }
    privacy = "Reads physiological signals inside the privacy boundary; returns only aggregate features, event times and estimates (no raw waveforms, no demographics)."
    path_arguments = ("path",)
    server_arguments = ("model",)  # a joblib directory: the operator's choice, never the LLM's

    @property
    def version(self) -> str:  # type: ignore[override]
        """``base_version``, plus a fingerprint of the default model when one exists: ToolCache keys
        results on the version, so a result computed before a default model was (re)trained is not
        served afterwards. (An explicit ``model`` argument is part of the key already.)"""
        from ..assets import cache_dir

        try:
            meta = (cache_dir() / DEFAULT_MODEL_DIR / MODEL_META_FILE).read_bytes()
        except OSError:
            return self.base_version
        return f"{self.base_version}+model.{hashlib.sha256(meta).hexdigest()[:10]}"

    def run(self, path: str, trial: int | None = None, subject: int | None = None, start_s: float | None = None, end_s: float | None = None, baseline_s: float | None = None, model: str | None = None) -> ToolResult:
        rec = read_recording(path, trial, subject)
        fs = rec.sampling_rate
        base_s = rec.baseline_s if baseline_s is None else baseline_s
        b = int(base_s * fs)
        n = len(next(iter(rec.channels.values())))
        a0 = b + int((start_s or 0.0) * fs)
        a1 = min(n, b + int(end_s * fs)) if end_s is not None else n
        if a1 - a0 < int(MIN_WINDOW_S * fs):
            raise DeemoError(f"{path}: the analysis window is {max(0, a1 - a0) / fs:.1f} s; at least {MIN_WINDOW_S:g} s are needed")
        kinds = {name: channel_kind(name) for name in rec.channels}
        used = {k: v for k, v in kinds.items() if v}
        if not used:
            raise DeemoError(f"{path}: no recognised channels (ECG, PPG/BVP, EDA/GSR, RSP, TEMP or 10-20 EEG names) among {sorted(rec.channels)}")
        features, events, failed, base_feats = self._features(rec, used, a0, a1, b)
        estimates = self._estimates(features, base_feats)
        estimates, model_details = self._apply_model(model, path, rec, estimates, a0, a1, b)
        quality = {"sampling_rate": fs, "duration_s": round((a1 - a0) / fs, 2), "baseline_s": base_s, "channels": dict(used), "ignored_channels": sorted(n for n, k in kinds.items() if not k), "failed_channels": failed}
        if rec.source_rates:
            quality["resampled_from_hz"] = dict(rec.source_rates)
        status = "ok" if features else "no_signal"
        features = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in features.items()}
        backend = "neurokit2 + scipy + scikit-learn model" if model_details else "neurokit2 + scipy (heuristic estimates)"
        details = ({"labels": rec.labels} if rec.labels else {}) | ({"model": model_details} if model_details else {})
        window = (round(a0 / fs, 3), round(a1 / fs, 3))
        return self.result(status, window, quality, sorted(events, key=lambda e: e["time_s"]), {**estimates, "features": features}, self._summary(features, estimates), backend, details or None)

    @staticmethod
    def _features(rec: Recording, used: dict[str, str], a0: int, a1: int, b: int) -> tuple[dict, list, dict, dict]:
        """(features, events, failed channels, baseline features) of the window [a0, a1)."""
        fs = rec.sampling_rate
        features, events, failed, base_feats = {}, [], {}, {}
        for name, kind in used.items():
            if kind == "eeg":
                continue
            try:
                feats, ev = peripheral_features(kind, rec.channels[name][a0:a1], fs)
                features.update(feats)
                events += [{**e, "time_s": round(e["time_s"] + a0 / fs, 2), "channel": name} for e in ev]
                if b >= int(PERIPHERAL_BASELINE_MIN_S * fs):
                    base_feats.update(peripheral_features(kind, rec.channels[name][:b], fs)[0])
            except Exception as e:  # NeuroKit2 raises many types on unusable signals
                failed[name] = f"{type(e).__name__}: {e}"[:200]
        eeg = {name: rec.channels[name][a0:a1] for name, k in used.items() if k == "eeg"}
        if eeg:
            features.update(eeg_features(eeg, fs))
            if b >= int(EEG_BASELINE_MIN_S * fs):
                base_eeg = eeg_features({name: rec.channels[name][:b] for name in eeg}, fs)
                features |= {f"{k}_change": features[k] - v for k, v in base_eeg.items() if k.startswith("log_power_") and k in features}
        for k in ("hr_bpm", "scr_per_min", "rsp_per_min"):
            if k in features and k in base_feats:
                features[f"{k}_change"] = features[k] - base_feats[k]
        return features, events, failed, base_feats

    @staticmethod
    def _estimates(f: dict, base: dict) -> dict:
        parts = {k: (f[k] - base.get(k, RESTING[k])) / SCALES[k] for k in RESTING if k in f}
        out: dict = {"method": "heuristic (no trained model): arousal from heart, skin-conductance and breathing rates vs baseline; valence from frontal alpha asymmetry"}
        if parts:
            z = float(np.mean(list(parts.values())))
            out["arousal"] = {"p_high": round(_sigmoid(z), 3), "label": "high" if z >= 0 else "low", "evidence": {k: round(v, 2) for k, v in parts.items()}}
        if "frontal_alpha_asymmetry" in f:
            z = 4.0 * f["frontal_alpha_asymmetry"]
            out["valence"] = {"p_high": round(_sigmoid(z), 3), "label": "high" if z >= 0 else "low", "evidence": {"frontal_alpha_asymmetry": round(f["frontal_alpha_asymmetry"], 3)}}
        return out

    @staticmethod
    def _apply_model(model: str | None, path: str, rec: Recording, heuristic: dict, a0: int, a1: int, b: int) -> tuple[dict, dict | None]:
        """Replace heuristic estimates by the trained model's where it applies; (estimates, model details)."""
        pm, note = _resolve_model(model)
        if pm is None:
            return ({**heuristic, "note": note} if note else heuristic), None
        try:
            probs = pm.predict_recording(rec, a0, a1, b)
        except ModelInputError as e:
            if model is not None:  # asked for explicitly: say why it cannot be used
                raise DeemoError(f"{path}: model {model} cannot be applied: {e}") from None
            return {**heuristic, "note": f"default model {pm.path} not applicable ({e}); estimates are heuristic"}, None
        out = {k: v for k, v in heuristic.items() if k not in probs}
        for target, p in probs.items():
            out[target] = {"p_high": round(p, 3), "label": "high" if p >= 0.5 else "low", "source": "model"}
        for target in ("valence", "arousal"):
            if target in out and target not in probs:
                out[target] = {**out[target], "source": "heuristic"}
        out["method"] = pm.describe() + ("" if set(probs) >= {"valence", "arousal"} else "; other estimates heuristic")
        return out, pm.details()

    @staticmethod
    def _summary(f: dict, est: dict) -> str:
        bits = []
        if "hr_bpm" in f:
            bits.append(f"heart rate {f['hr_bpm']:.0f} bpm" + (f" ({f['hr_bpm_change']:+.0f} vs baseline)" if "hr_bpm_change" in f else ""))
        if "scr_per_min" in f:
            bits.append(f"{f['scr_per_min']:.1f} skin-conductance responses per minute")
        if "rsp_per_min" in f:
            bits.append(f"breathing {f['rsp_per_min']:.0f}/min")
        if "frontal_alpha_asymmetry" in f:
            bits.append(f"frontal alpha asymmetry {f['frontal_alpha_asymmetry']:+.2f}")
        first = ("Physiology: " + ", ".join(bits) + ".") if bits else "No usable physiological features."
        dims = [d for d in ("arousal", "valence") if d in est]
        sources = {est[d].get("source", "heuristic") for d in dims}
        mixed = len(sources) > 1
        guesses = [f"{d} {est[d]['label']} (p={est[d]['p_high']:.2f}" + (f", {est[d]['source']})" if mixed else ")") for d in dims]
        lead = "Estimate" if mixed else ("Model estimate" if sources == {"model"} else "Heuristic estimate")
        return first + (f" {lead}: " + ", ".join(guesses) + "." if guesses else "")
