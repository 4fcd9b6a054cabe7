"""``analyze_physiology``: peripheral signals (NeuroKit2) and EEG (scipy Welch) -> features, events,
and valence/arousal estimates.

Peripheral: ECG/PPG heart rate and HRV (RMSSD), EDA skin-conductance responses (rate, amplitude,
tonic level), respiration rate, skin temperature (level, slope). EEG: log band powers and
differential entropy (delta 1-4, theta 4-8, alpha 8-13, beta 13-30, gamma 30-45 Hz) and frontal alpha
asymmetry ln(alpha F4) - ln(alpha F3) (AF4/AF3 or F8/F7 when F3/F4 are absent). With a resting
baseline (DEAP: the first 3 s), features are also given as changes from it.
Estimates are HEURISTIC until a trained model exists (and say so): arousal rises with heart rate,
SCR rate and breathing rate above baseline (or typical resting values); valence follows the sign of
frontal alpha asymmetry (Davidson's approach-withdrawal model).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import DeemoError
from .base import Tool, ToolResult
from .physio_io import read_recording

BANDS = {"delta": (1, 4), "theta": (4, 8), "alpha": (8, 13), "beta": (13, 30), "gamma": (30, 45)}
EEG_NAMES = {n.lower() for n in "Fp1 Fp2 Fpz AF3 AF4 AF7 AF8 AFz F1 F2 F3 F4 F5 F6 F7 F8 Fz FC1 FC2 FC3 FC4 FC5 FC6 FCz FT7 FT8 C1 C2 C3 C4 C5 C6 Cz T7 T8 T3 T4 T5 T6 TP7 TP8 CP1 CP2 CP3 CP4 CP5 CP6 CPz P1 P2 P3 P4 P5 P6 P7 P8 Pz PO3 PO4 PO7 PO8 POz O1 O2 Oz".split()}
PERIPHERAL = {"ecg": ("ecg",), "ppg": ("ppg", "bvp", "plethysmograph", "pleth"), "eda": ("eda", "gsr"), "rsp": ("rsp", "resp", "respiration"), "temp": ("temp", "skt", "temperature")}
# Typical resting values used when there is no baseline (adult norms).
RESTING = {"hr_bpm": 70.0, "scr_per_min": 3.0, "rsp_per_min": 15.0}
SCALES = {"hr_bpm": 10.0, "scr_per_min": 3.0, "rsp_per_min": 4.0}


def channel_kind(name: str) -> str | None:
    low = name.lower()
    if low in EEG_NAMES:
        return "eeg"
    for kind, prefixes in PERIPHERAL.items():
        if low.startswith(prefixes):
            return kind
    return None


def _peripheral(kind: str, x: np.ndarray, fs: float) -> tuple[dict, list[dict]]:
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "ecg":
            sig, info = nk.ecg_process(x, sampling_rate=fs)
            out = {"hr_bpm": float(np.nanmean(sig["ECG_Rate"]))}
            if len(info["ECG_R_Peaks"]) > 3:
                out["rmssd_ms"] = float(nk.hrv_time(info["ECG_R_Peaks"], sampling_rate=fs)["HRV_RMSSD"].iloc[0])
            return out, []
        if kind == "ppg":
            sig, _ = nk.ppg_process(x, sampling_rate=fs)
            return {"hr_bpm": float(np.nanmean(sig["PPG_Rate"]))}, []
        if kind == "eda":
            sig, _ = nk.eda_process(x, sampling_rate=fs)
            peaks = np.flatnonzero(sig["SCR_Peaks"].to_numpy() == 1)
            amps = sig["SCR_Amplitude"].to_numpy()[peaks]
            minutes = len(x) / fs / 60
            events = [{"type": "skin_conductance_response", "time_s": round(p / fs, 2), "amplitude": round(float(a), 4)} for p, a in zip(peaks, amps)]
            return {"scr_per_min": len(peaks) / minutes, "scr_amplitude": float(np.nanmean(amps)) if len(amps) else 0.0, "eda_tonic": float(np.nanmean(sig["EDA_Tonic"]))}, events
        if kind == "rsp":
            sig, _ = nk.rsp_process(x, sampling_rate=fs)
            return {"rsp_per_min": float(np.nanmean(sig["RSP_Rate"]))}, []
        if kind == "temp":
            t = np.arange(len(x)) / fs / 60
            return {"temp_mean": float(np.mean(x)), "temp_slope_per_min": float(np.polyfit(t, x, 1)[0]) if len(x) > 1 else 0.0}, []
    raise ValueError(kind)


def eeg_features(channels: dict[str, np.ndarray], fs: float) -> dict:
    """Mean log band power and differential entropy over channels, and frontal alpha asymmetry."""
    from scipy.signal import butter, sosfiltfilt, welch

    logp = {b: [] for b in BANDS}
    de = {b: [] for b in BANDS}
    alpha = {}
    for name, x in channels.items():
        f, pxx = welch(x, fs=fs, nperseg=min(len(x), int(2 * fs)))
        for b, (lo, hi) in BANDS.items():
            if hi >= fs / 2:
                continue
            sel = (f >= lo) & (f < hi)
            power = float(np.trapezoid(pxx[sel], f[sel]))
            logp[b].append(math.log(power + 1e-12))
            band = sosfiltfilt(butter(4, [lo, hi], btype="band", fs=fs, output="sos"), x)
            de[b].append(0.5 * math.log(2 * math.pi * math.e * (np.var(band) + 1e-12)))
            if b == "alpha":
                alpha[name.lower()] = power
    out = {f"log_power_{b}": float(np.mean(v)) for b, v in logp.items() if v}
    out |= {f"de_{b}": float(np.mean(v)) for b, v in de.items() if v}
    for right, left in (("f4", "f3"), ("af4", "af3"), ("f8", "f7")):
        if right in alpha and left in alpha:
            out["frontal_alpha_asymmetry"] = math.log(alpha[right] + 1e-12) - math.log(alpha[left] + 1e-12)
            out["faa_pair"] = f"{right.upper()}-{left.upper()}"
            break
    return out


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


class AnalyzePhysiology(Tool):
    name = "analyze_physiology"
    version = "1.0"
    description = "Physiological arousal and valence cues from a recording of ECG/PPG, EDA, respiration, skin temperature and/or EEG: heart rate and HRV, skin-conductance responses, breathing rate, EEG band powers and frontal alpha asymmetry."
    parameters = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Recording: CSV, NPZ, or DEAP sXX.dat."},
            "trial": {"type": "integer", "minimum": 0, "description": "Trial index for multi-trial files (DEAP)."},
            "start_s": {"type": "number", "minimum": 0, "description": "Start of the analysis window (s, after the baseline)."},
            "end_s": {"type": "number", "minimum": 0, "description": "End of the analysis window (s)."},
            "baseline_s": {"type": "number", "minimum": 0, "description": "Leading seconds of resting baseline (DEAP files set 3)."},
        },
        "required": ["path"],
    }
    privacy = "Reads physiological signals inside the privacy boundary; returns only aggregate features, event times and estimates (no raw waveforms)."
    path_arguments = ("path",)

    def run(self, path: str, trial: int | None = None, start_s: float | None = None, end_s: float | None = None, baseline_s: float | None = None) -> ToolResult:
        rec = read_recording(path, trial)
        fs = rec.sampling_rate
        base_s = rec.baseline_s if baseline_s is None else baseline_s
        b = int(base_s * fs)
        n = len(next(iter(rec.channels.values())))
        a0 = b + int((start_s or 0.0) * fs)
        a1 = min(n, b + int(end_s * fs)) if end_s is not None else n
        if a1 - a0 < int(5 * fs):
            raise DeemoError(f"{path}: the analysis window is {max(0, a1 - a0) / fs:.1f} s; at least 5 s are needed")
        window = (round(a0 / fs, 3), round(a1 / fs, 3))
        kinds = {name: channel_kind(name) for name in rec.channels}
        used = {k: v for k, v in kinds.items() if v}
        if not used:
            raise DeemoError(f"{path}: no recognised channels (ECG, PPG/BVP, EDA/GSR, RSP, TEMP or 10-20 EEG names) among {sorted(rec.channels)}")
        features, events, failed = {}, [], {}
        base_feats: dict = {}
        for name, kind in used.items():
            if kind == "eeg":
                continue
            try:
                feats, ev = _peripheral(kind, rec.channels[name][a0:a1], fs)
                features.update(feats)
                events += [{**e, "time_s": round(e["time_s"] + a0 / fs, 2), "channel": name} for e in ev]
                if b >= int(5 * fs):
                    base_feats.update(_peripheral(kind, rec.channels[name][:b], fs)[0])
            except Exception as e:  # NeuroKit2 raises many types on unusable signals
                failed[name] = f"{type(e).__name__}: {e}"[:200]
        eeg = {name: rec.channels[name][a0:a1] for name, k in used.items() if k == "eeg"}
        if eeg:
            features.update(eeg_features(eeg, fs))
            if b >= int(2 * fs):
                base_eeg = eeg_features({name: rec.channels[name][:b] for name in eeg}, fs)
                features |= {f"{k}_change": features[k] - v for k, v in base_eeg.items() if k.startswith("log_power_") and k in features}
        for k in ("hr_bpm", "scr_per_min", "rsp_per_min"):
            if k in features and k in base_feats:
                features[f"{k}_change"] = features[k] - base_feats[k]
        estimates = self._estimates(features, base_feats)
        quality = {"sampling_rate": fs, "duration_s": round((a1 - a0) / fs, 2), "baseline_s": base_s, "channels": {n: k for n, k in used.items()}, "ignored_channels": sorted(n for n, k in kinds.items() if not k), "failed_channels": failed}
        status = "ok" if features else "no_signal"
        features = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in features.items()}
        return self.result(status, window, quality, sorted(events, key=lambda e: e["time_s"]), {**estimates, "features": features}, self._summary(features, estimates), "neurokit2 + scipy (heuristic estimates)", {"labels": rec.labels} if rec.labels else None)

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
        guesses = [f"{dim} {est[dim]['label']} (p={est[dim]['p_high']:.2f})" for dim in ("arousal", "valence") if dim in est]
        return first + (" Heuristic estimate: " + ", ".join(guesses) + "." if guesses else "")
