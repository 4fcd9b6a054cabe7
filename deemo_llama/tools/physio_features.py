"""Signal features of ``analyze_physiology`` (shared by the tool and its trained model): channel
kinds by name, NeuroKit2 peripheral features, Welch EEG band powers, differential entropy and
frontal alpha asymmetry.

Peripheral: ECG/PPG heart rate and HRV (RMSSD), EDA skin-conductance responses (rate, amplitude,
tonic level), respiration rate, skin temperature (level, slope). EEG: log band powers and
differential entropy (delta 1-4, theta 4-8, alpha 8-13, beta 13-30, gamma 30-45 Hz) and frontal alpha
asymmetry ln(alpha F4) - ln(alpha F3) (AF4/AF3 or F8/F7 when F3/F4 are absent).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

BANDS = {"delta": (1, 4), "theta": (4, 8), "alpha": (8, 13), "beta": (13, 30), "gamma": (30, 45)}
EEG_NAMES = {n.lower() for n in "Fp1 Fp2 Fpz AF3 AF4 AF7 AF8 AFz F1 F2 F3 F4 F5 F6 F7 F8 Fz FC1 FC2 FC3 FC4 FC5 FC6 FCz FT7 FT8 C1 C2 C3 C4 C5 C6 Cz T7 T8 T3 T4 T5 T6 TP7 TP8 CP1 CP2 CP3 CP4 CP5 CP6 CPz P1 P2 P3 P4 P5 P6 P7 P8 Pz PO3 PO4 PO7 PO8 POz O1 O2 Oz".split()}
PERIPHERAL = {"ecg": ("ecg",), "ppg": ("ppg", "bvp", "plethysmograph", "pleth"), "eda": ("eda", "gsr"), "rsp": ("rsp", "resp", "respiration"), "temp": ("temp", "skt", "temperature")}
# The keys peripheral_features() returns per channel kind (a trained model needs them fixed).
PERIPHERAL_FEATURES = {"ecg": ("hr_bpm", "rmssd_ms"), "ppg": ("hr_bpm",), "eda": ("scr_per_min", "scr_amplitude", "eda_tonic"), "rsp": ("rsp_per_min",), "temp": ("temp_mean", "temp_slope_per_min")}
PERIPHERAL_BASELINE_MIN_S = 5.0  # rates over a shorter baseline are noise (DEAP's 3 s is too short)
EEG_BASELINE_MIN_S = 2.0  # one 2 s Welch segment


def channel_kind(name: str) -> str | None:
    low = name.lower()
    if low in EEG_NAMES:
        return "eeg"
    for kind, prefixes in PERIPHERAL.items():
        if low.startswith(prefixes):
            return kind
    return None


def peripheral_features(kind: str, x: np.ndarray, fs: float) -> tuple[dict, list[dict]]:
    """Features (keys as in PERIPHERAL_FEATURES, rmssd_ms only with > 3 beats) and events of one channel.

    Heart and breathing use NeuroKit2's clean -> peaks -> rate steps, exactly what ``*_process``
    computes for the rate, without the delineation and quality passes that cost 50x the time.
    """
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "ecg":
            clean = nk.ecg_clean(x, sampling_rate=fs, method="neurokit")
            _, info = nk.ecg_peaks(clean, sampling_rate=fs, method="neurokit", correct_artifacts=True)
            out = {"hr_bpm": float(np.nanmean(nk.signal_rate(info, sampling_rate=fs, desired_length=len(clean))))}
            if len(info["ECG_R_Peaks"]) > 3:
                out["rmssd_ms"] = float(nk.hrv_time(info["ECG_R_Peaks"], sampling_rate=fs)["HRV_RMSSD"].iloc[0])
            return out, []
        if kind == "ppg":
            clean = nk.ppg_clean(x, sampling_rate=fs, method="elgendi")
            _, info = nk.ppg_peaks(clean, sampling_rate=fs, method="elgendi")
            return {"hr_bpm": float(np.nanmean(nk.signal_rate(info["PPG_Peaks"], sampling_rate=fs, desired_length=len(clean))))}, []
        if kind == "eda":
            sig, _ = nk.eda_process(x, sampling_rate=fs)
            peaks = np.flatnonzero(sig["SCR_Peaks"].to_numpy() == 1)
            amps = sig["SCR_Amplitude"].to_numpy()[peaks]
            minutes = len(x) / fs / 60
            events = [{"type": "skin_conductance_response", "time_s": round(p / fs, 2), "amplitude": round(float(a), 4)} for p, a in zip(peaks, amps)]
            return {"scr_per_min": len(peaks) / minutes, "scr_amplitude": float(np.nanmean(amps)) if len(amps) else 0.0, "eda_tonic": float(np.nanmean(sig["EDA_Tonic"]))}, events
        if kind == "rsp":
            clean = nk.rsp_clean(x, sampling_rate=fs, method="khodadad2018")
            _, info = nk.rsp_peaks(clean, sampling_rate=fs, method="khodadad2018", amplitude_min=0.3)  # as rsp_process
            return {"rsp_per_min": float(np.nanmean(nk.signal_rate(info["RSP_Troughs"], sampling_rate=fs, desired_length=len(x))))}, []
        if kind == "temp":
            t = np.arange(len(x)) / fs / 60
            return {"temp_mean": float(np.mean(x)), "temp_slope_per_min": float(np.polyfit(t, x, 1)[0]) if len(x) > 1 else 0.0}, []
    raise ValueError(kind)


def band_powers(x: np.ndarray, fs: float) -> np.ndarray:
    """Absolute power per band (BANDS order) of ``x`` [channels, samples] -> [channels, bands].

    Welch with 2 s segments; bands reaching the Nyquist frequency are NaN.
    """
    from scipy.signal import welch

    x = np.atleast_2d(np.asarray(x, dtype=float))
    f, pxx = welch(x, fs=fs, nperseg=min(x.shape[-1], int(2 * fs)), axis=-1)
    out = np.full((x.shape[0], len(BANDS)), np.nan)
    for j, (lo, hi) in enumerate(BANDS.values()):
        if hi < fs / 2:
            sel = (f >= lo) & (f < hi)
            out[:, j] = np.trapezoid(pxx[:, sel], f[sel], axis=-1)
    return out


def frontal_alpha_asymmetry(alpha: dict[str, float]) -> tuple[float, str] | None:
    """ln(alpha right) - ln(alpha left) of the first homologous frontal pair present (lower-case names)."""
    for right, left in (("f4", "f3"), ("af4", "af3"), ("f8", "f7")):
        if right in alpha and left in alpha:
            return math.log(alpha[right] + 1e-12) - math.log(alpha[left] + 1e-12), f"{right.upper()}-{left.upper()}"
    return None


def eeg_features(channels: dict[str, np.ndarray], fs: float) -> dict:
    """Mean log band power and differential entropy over channels, and frontal alpha asymmetry."""
    from scipy.signal import butter, sosfiltfilt

    names = list(channels)
    powers = np.vstack([band_powers(channels[n], fs) for n in names])  # per channel: lengths may differ
    out: dict = {}
    for j, (b, (lo, hi)) in enumerate(BANDS.items()):
        if hi >= fs / 2:
            continue
        out[f"log_power_{b}"] = float(np.mean(np.log(powers[:, j] + 1e-12)))
    for b, (lo, hi) in BANDS.items():
        if hi >= fs / 2:
            continue
        sos = butter(4, [lo, hi], btype="band", fs=fs, output="sos")
        de = [0.5 * math.log(2 * math.pi * math.e * (np.var(sosfiltfilt(sos, channels[n])) + 1e-12)) for n in names]
        out[f"de_{b}"] = float(np.mean(de))
    faa = frontal_alpha_asymmetry({n.lower(): float(powers[i, list(BANDS).index("alpha")]) for i, n in enumerate(names)})
    if faa is not None:
        out["frontal_alpha_asymmetry"], out["faa_pair"] = faa
    return out
