"""Readers for physiological recordings -> ``Recording`` (named channels, one sampling rate).

Formats: CSV (a ``time`` column in seconds, or a first line ``# sampling_rate: 128``), NPZ (one array
per channel plus ``sampling_rate``; or ``data`` [channels, samples] + ``channels``), DEAP's
``sXX.dat`` (pickle, 40 trials x 40 channels x 8064 samples at 128 Hz, first 3 s baseline).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DeemoError

# DEAP's preprocessed channel order (Koelstra et al., 2012): 32 EEG (Geneva order), then peripherals.
DEAP_CHANNELS = (
    "Fp1 AF3 F3 F7 FC5 FC1 C3 T7 CP5 CP1 P3 P7 PO3 O1 Oz Pz Fp2 AF4 Fz F4 F8 FC6 FC2 Cz C4 T8 CP6 CP2 P4 P8 PO4 O2 "
    "hEOG vEOG zEMG tEMG GSR Respiration Plethysmograph Temperature"
).split()
DEAP_RATE, DEAP_BASELINE_S = 128.0, 3.0


@dataclass
class Recording:
    channels: dict[str, np.ndarray]
    sampling_rate: float
    baseline_s: float = 0.0  # leading seconds that are a resting baseline
    labels: dict[str, float] | None = None

    @property
    def duration_s(self) -> float:
        return len(next(iter(self.channels.values()))) / self.sampling_rate


def read_recording(path: str | Path, trial: int | None = None) -> Recording:
    path = Path(path)
    if not path.is_file():
        raise DeemoError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".dat":
        return _read_deap(path, trial)
    raise DeemoError(f"{path}: unsupported physiology format {suffix!r} (expected .csv, .npz or DEAP .dat)")


def _read_csv(path: Path) -> Recording:
    import pandas as pd

    first = path.read_text().splitlines()[:1]
    rate = None
    if first and first[0].startswith("#") and "sampling_rate" in first[0]:
        rate = float(first[0].split(":", 1)[1])
    try:
        df = pd.read_csv(path, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DeemoError(f"{path}: not a readable CSV ({e})") from None
    if "time" in df.columns:
        t = df.pop("time").to_numpy(dtype=float)
        if len(t) < 2 or np.any(np.diff(t) <= 0):
            raise DeemoError(f"{path}: the time column must increase")
        if rate is None:
            rate = float(1.0 / np.median(np.diff(t)))
            if abs(rate - round(rate)) < 1e-3 * rate:  # timestamps written with few decimals
                rate = float(round(rate))
    if rate is None:
        raise DeemoError(f"{path}: give a 'time' column (seconds) or a first line '# sampling_rate: <Hz>'")
    if df.empty:
        raise DeemoError(f"{path}: no signal columns")
    return Recording({c: df[c].to_numpy(dtype=float) for c in df.columns}, rate)


def _read_npz(path: Path) -> Recording:
    with np.load(path, allow_pickle=False) as z:
        if "sampling_rate" not in z:
            raise DeemoError(f"{path}: needs a 'sampling_rate' array")
        rate = float(np.asarray(z["sampling_rate"]).reshape(-1)[0])
        if "data" in z and "channels" in z:
            data, names = z["data"], [str(c) for c in z["channels"]]
            channels = {n: np.asarray(data[i], dtype=float) for i, n in enumerate(names)}
        else:
            channels = {k: np.asarray(z[k], dtype=float) for k in z.files if k != "sampling_rate"}
    if not channels:
        raise DeemoError(f"{path}: no channels")
    return Recording(channels, rate)


def _read_deap(path: Path, trial: int | None) -> Recording:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        data, labels = np.asarray(d["data"]), np.asarray(d["labels"])
    except (pickle.UnpicklingError, KeyError, EOFError, TypeError) as e:
        raise DeemoError(f"{path}: not a DEAP preprocessed .dat file ({e})") from None
    if data.ndim != 3 or data.shape[1] != len(DEAP_CHANNELS):
        raise DeemoError(f"{path}: expected data of shape (trials, 40, samples), got {data.shape}")
    if trial is None:
        raise DeemoError(f"{path}: a DEAP file holds {data.shape[0]} trials; choose one with trial (0-based)")
    if not 0 <= trial < data.shape[0]:
        raise DeemoError(f"{path}: trial {trial} out of range 0..{data.shape[0] - 1}")
    v, a, dom, lik = labels[trial]
    return Recording({n: data[trial, i].astype(float) for i, n in enumerate(DEAP_CHANNELS)}, DEAP_RATE, DEAP_BASELINE_S, {"valence": float(v), "arousal": float(a), "dominance": float(dom), "liking": float(lik)})
