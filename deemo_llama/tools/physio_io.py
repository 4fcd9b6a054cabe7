"""Readers for physiological recordings -> ``Recording`` (named channels, one sampling rate).

Formats: CSV (a ``time`` column in seconds, or a first line ``# sampling_rate: 128``), NPZ (one array
per channel plus ``sampling_rate``; or ``data`` [channels, samples] + ``channels``), DEAP's
``sXX.dat`` (pickle, 40 trials x 40 channels x 8064 samples at 128 Hz, first 3 s baseline) and
DREAMER's single ``DREAMER.mat`` (23 subjects x 18 trials; 14 EEG channels at 128 Hz and 2 ECG leads
at 256 Hz, each trial with its own resting baseline recording; scores 1-5).

DREAMER's ECG is resampled to the EEG rate (scipy ``resample_poly``, anti-aliased) so a Recording
keeps one sampling rate; 128 Hz is ample for R-peak detection (DEAP's pulse is at 128 Hz too). The
trial's baseline recording is prepended and ``baseline_s`` says how long it is. Demographics
(``Age``, ``Gender``) are never read into a Recording.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeemoError

# DEAP's preprocessed channel order (Koelstra et al., 2012): 32 EEG (Geneva order), then peripherals.
DEAP_CHANNELS = (
    "Fp1 AF3 F3 F7 FC5 FC1 C3 T7 CP5 CP1 P3 P7 PO3 O1 Oz Pz Fp2 AF4 Fz F4 F8 FC6 FC2 Cz C4 T8 CP6 CP2 P4 P8 PO4 O2 "
    "hEOG vEOG zEMG tEMG GSR Respiration Plethysmograph Temperature"
).split()
DEAP_RATE, DEAP_BASELINE_S = 128.0, 3.0
DEAP_LABELS = ("valence", "arousal", "dominance", "liking")
# DREAMER (Katsigiannis & Ramzan, 2018): Emotiv EPOC electrodes, Shimmer 2-lead ECG.
DREAMER_SCORES = {"valence": "ScoreValence", "arousal": "ScoreArousal", "dominance": "ScoreDominance"}
DREAMER_ECG_CHANNELS = ("ECG1", "ECG2")


@dataclass
class Recording:
    """Named channels ``{name: [samples]}`` at one ``sampling_rate`` (Hz)."""

    channels: dict[str, np.ndarray]
    sampling_rate: float
    baseline_s: float = 0.0  # leading seconds that are a resting baseline
    labels: dict[str, float] | None = None
    source_rates: dict[str, float] = field(default_factory=dict)  # original rate of channels resampled to sampling_rate

    @property
    def duration_s(self) -> float:
        return len(next(iter(self.channels.values()))) / self.sampling_rate


def read_recording(path: str | Path, trial: int | None = None, subject: int | None = None) -> Recording:
    """Read one recording; ``trial`` (DEAP, DREAMER) and ``subject`` (DREAMER) are 0-based."""
    path = Path(path)
    if not path.is_file():
        raise DeemoError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if subject is not None and suffix != ".mat":
        raise DeemoError(f"{path}: subject applies only to DREAMER .mat files (a DEAP .dat file is one subject)")
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".dat":
        data, labels = load_deap(path)
        return deap_trial(path, data, labels, trial)
    if suffix == ".mat":
        dreamer = load_dreamer(path)
        if subject is None:
            raise DeemoError(f"{path}: a DREAMER file holds {dreamer.n_subjects} subjects; choose one with subject (0-based)")
        if trial is None:
            raise DeemoError(f"{path}: a DREAMER subject has {dreamer.n_trials(subject)} trials; choose one with trial (0-based)")
        return dreamer.recording(subject, trial)
    raise DeemoError(f"{path}: unsupported physiology format {suffix!r} (expected .csv, .npz, DEAP .dat or DREAMER .mat)")


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


# -- DEAP --------------------------------------------------------------------------------------------
def load_deap(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A DEAP preprocessed ``sXX.dat``: (data [trials, 40, samples], labels [trials, 4]).

    Shorter trials than DEAP's 8064 samples are accepted (synthetic or cropped files).
    NOTE: ``.dat`` files are pickles; read only files you trust (the DEAP distribution).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        data, labels = np.asarray(d["data"]), np.asarray(d["labels"], dtype=float)
    except (pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise DeemoError(f"{path}: not a DEAP preprocessed .dat file ({type(e).__name__}: {e})") from None
    if data.ndim != 3 or data.shape[1] != len(DEAP_CHANNELS):
        raise DeemoError(f"{path}: expected data of shape (trials, 40, samples), got {data.shape}")
    if labels.shape != (data.shape[0], len(DEAP_LABELS)):
        raise DeemoError(f"{path}: expected labels of shape ({data.shape[0]}, 4) (valence, arousal, dominance, liking), got {labels.shape}")
    return data, labels


def deap_trial(path: Path, data: np.ndarray, labels: np.ndarray, trial: int | None) -> Recording:
    """One trial of a loaded DEAP file (the first 3 s are its baseline)."""
    if trial is None:
        raise DeemoError(f"{path}: a DEAP file holds {data.shape[0]} trials; choose one with trial (0-based)")
    if not 0 <= trial < data.shape[0]:
        raise DeemoError(f"{path}: trial {trial} out of range 0..{data.shape[0] - 1}")
    channels = {n: data[trial, i].astype(float) for i, n in enumerate(DEAP_CHANNELS)}
    return Recording(channels, DEAP_RATE, DEAP_BASELINE_S, {k: float(v) for k, v in zip(DEAP_LABELS, labels[trial])})


# -- DREAMER -----------------------------------------------------------------------------------------
def _items(x: Any) -> list:
    """MATLAB cell/struct arrays come back as object ndarrays, or as a bare item when squeezed."""
    return list(np.asarray(x, dtype=object).ravel()) if isinstance(x, np.ndarray) else [x]


def _field(obj: Any, name: str, where: str, path: Path) -> Any:
    if not hasattr(obj, name):
        raise DeemoError(f"{path}: not a DREAMER file: {where} has no field {name!r}")
    return getattr(obj, name)


def _resample(x: np.ndarray, rate: float, target: float) -> np.ndarray:
    """Resample ``x`` [samples, channels] from ``rate`` to ``target`` Hz (polyphase, anti-aliased)."""
    from scipy.signal import resample_poly

    if rate == target:
        return x
    ratio = Fraction(target / rate).limit_denominator(1000)
    return resample_poly(x, ratio.numerator, ratio.denominator, axis=0)


@dataclass
class DreamerFile:
    """A loaded ``DREAMER.mat``; :meth:`recording` gives one (subject, trial) with its baseline."""

    path: Path
    subjects: list[Any]  # scipy mat_struct per subject
    eeg_channels: tuple[str, ...]
    eeg_rate: float
    ecg_rate: float

    @property
    def n_subjects(self) -> int:
        return len(self.subjects)

    def _subject(self, subject: int) -> Any:
        if not 0 <= subject < self.n_subjects:
            raise DeemoError(f"{self.path}: subject {subject} out of range 0..{self.n_subjects - 1}")
        return self.subjects[subject]

    def _segments(self, subject: int, modality: str, part: str) -> list[np.ndarray]:
        s = self._subject(subject)
        where = f"subject {subject} {modality}"
        return _items(_field(_field(s, modality, f"subject {subject}", self.path), part, where, self.path))

    def n_trials(self, subject: int) -> int:
        return len(self._segments(subject, "EEG", "stimuli"))

    def scores(self, subject: int) -> dict[str, np.ndarray]:
        """Self-reported ratings (1-5) per trial: {valence, arousal, dominance}."""
        s = self._subject(subject)
        out = {k: np.asarray(_field(s, f, f"subject {subject}", self.path), dtype=float).ravel() for k, f in DREAMER_SCORES.items()}
        n = self.n_trials(subject)
        for k, v in out.items():
            if len(v) != n:
                raise DeemoError(f"{self.path}: subject {subject} has {len(v)} {DREAMER_SCORES[k]} for {n} trials")
        return out

    def _array(self, subject: int, trial: int, modality: str, part: str, n_channels: int) -> np.ndarray:
        segs = self._segments(subject, modality, part)
        if len(segs) <= trial:
            raise DeemoError(f"{self.path}: subject {subject} {modality}.{part} has {len(segs)} trials, no trial {trial}")
        x = np.asarray(segs[trial], dtype=float)
        if x.ndim != 2 or x.shape[1] != n_channels:
            raise DeemoError(f"{self.path}: subject {subject} trial {trial} {modality}.{part} should be [samples, {n_channels}], got shape {x.shape}")
        return x

    def recording(self, subject: int, trial: int) -> Recording:
        """Baseline + stimulus of one trial; EEG channels by electrode name, ECG as ECG1/ECG2."""
        n = self.n_trials(subject)
        if not 0 <= trial < n:
            raise DeemoError(f"{self.path}: trial {trial} out of range 0..{n - 1}")
        parts = []
        for part in ("baseline", "stimuli"):
            eeg = self._array(subject, trial, "EEG", part, len(self.eeg_channels))
            ecg = _resample(self._array(subject, trial, "ECG", part, len(DREAMER_ECG_CHANNELS)), self.ecg_rate, self.eeg_rate)
            # Resampling may leave the ECG a sample longer or shorter; more than 1 s apart is a broken file.
            if abs(len(eeg) - len(ecg)) > self.eeg_rate:
                raise DeemoError(f"{self.path}: subject {subject} trial {trial} {part}: EEG lasts {len(eeg) / self.eeg_rate:.1f} s but ECG {len(ecg) / self.eeg_rate:.1f} s")
            m = min(len(eeg), len(ecg))
            parts.append(np.concatenate([eeg[:m], ecg[:m]], axis=1))
        base, stim = parts
        data = np.concatenate([base, stim], axis=0)
        names = (*self.eeg_channels, *DREAMER_ECG_CHANNELS)
        labels = {k: float(v[trial]) for k, v in self.scores(subject).items()}
        return Recording({n_: data[:, i].copy() for i, n_ in enumerate(names)}, self.eeg_rate, len(base) / self.eeg_rate, labels, {c: self.ecg_rate for c in DREAMER_ECG_CHANNELS} if self.ecg_rate != self.eeg_rate else {})


def load_dreamer(path: str | Path) -> DreamerFile:
    """Open ``DREAMER.mat`` (MAT v5) and check its top-level layout; subjects are read lazily."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    try:
        mat = loadmat(path, struct_as_record=False, squeeze_me=True)
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError) as e:  # v7.3 (HDF5) files raise NotImplementedError
        raise DeemoError(f"{path}: not a readable MAT v5 file ({type(e).__name__}: {e})") from None
    if "DREAMER" not in mat:
        raise DeemoError(f"{path}: not a DREAMER file: no 'DREAMER' variable (found {sorted(k for k in mat if not k.startswith('__'))})")
    d = mat["DREAMER"]
    subjects = _items(_field(d, "Data", "DREAMER", path))
    electrodes = tuple(str(e) for e in _items(_field(d, "EEG_Electrodes", "DREAMER", path)))
    try:
        eeg_rate = float(_field(d, "EEG_SamplingRate", "DREAMER", path))
        ecg_rate = float(_field(d, "ECG_SamplingRate", "DREAMER", path))
    except (TypeError, ValueError):
        raise DeemoError(f"{path}: DREAMER sampling rates must be numbers") from None
    if not subjects:
        raise DeemoError(f"{path}: DREAMER.Data holds no subjects")
    if not electrodes or eeg_rate <= 0 or ecg_rate <= 0:
        raise DeemoError(f"{path}: DREAMER needs EEG_Electrodes and positive sampling rates (got {len(electrodes)} electrodes, {eeg_rate} Hz, {ecg_rate} Hz)")
    return DreamerFile(path, subjects, electrodes, eeg_rate, ecg_rate)
