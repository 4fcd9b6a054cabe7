"""The trained valence/arousal model as ``analyze_physiology`` applies it: the model's input
spec and features, its metadata, loading and prediction. Training, evaluation and saving are in
``deemo_llama.training.physio`` (``deemo physio train|eval``); nothing here imports them.

    PhysioModel.load("physio-model").predict_recording(rec, a0, a1, b)

Features (one row per trial; the tool's feature code, ``physio_features.py``):
  EEG   ``eeg_<electrode>_<band>_change``: ln(band power during the stimulus / during the baseline)
        per electrode and band (Welch). Differential entropy is not added: for a band-limited
        Gaussian signal DE = 0.5 ln(2 pi e P_band), an affine function of the log power, so it carries
        nothing new after standardisation. ``faa`` / ``faa_change``: frontal alpha asymmetry.
  Peripheral, the first channel of each kind: ``ppg_hr_bpm``; ``ecg_hr_bpm``, ``ecg_rmssd_ms``;
        ``eda_scr_per_min``, ``eda_scr_amplitude``, ``eda_tonic``; ``rsp_per_min``, each with a
        ``_change`` vs the baseline when the baseline is >= 5 s (DREAMER; DEAP's 3 s is too short).
Baseline normalisation is what makes absolute EEG power comparable across people (electrode
impedance and skull thickness differ); a model trained with it needs a baseline at inference.

Saved model: a directory with ``physio_model.json`` (dataset, features, channels, training subjects,
scores, versions, checksums) and one pipeline file per target, written atomically. The pipelines
are serialised with skops when it is installed, otherwise with joblib (pickle): a joblib model
executes code when loaded, so load only model directories you trust.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DeemoError
from .physio_features import (
    BANDS,
    EEG_BASELINE_MIN_S,
    PERIPHERAL_BASELINE_MIN_S,
    PERIPHERAL_FEATURES,
    band_powers,
    channel_kind,
    frontal_alpha_asymmetry,
    peripheral_features,
)
from .physio_io import Recording

FEATURE_VERSION = 1  # bump when trial_features() changes: invalidates the feature cache
MODEL_FORMAT_VERSION = 1
META_FILE = "physio_model.json"
MODEL_KIND = "deemo-physio-model"
TARGETS = ("valence", "arousal")
# Skin temperature is left out: over a 1-min trial it drifts with the room more than with emotion.
MODEL_KINDS = ("ecg", "ppg", "eda", "rsp")
TRUST_NOTE = "joblib pipelines are pickles that run code when loaded: load only model directories you trust"


class ModelInputError(DeemoError):
    """A recording lacks what a trained model reads (channels, baseline, sampling rate)."""


# -- features ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    """The signals a model reads: EEG electrodes by name, peripheral channels by kind (first of each)."""

    eeg_channels: tuple[str, ...]
    peripheral_kinds: tuple[str, ...]
    eeg_baseline: bool  # EEG features are changes from the resting baseline
    peripheral_baseline: bool  # peripheral features also get a change from the baseline

    @classmethod
    def from_recording(cls, rec: Recording) -> "InputSpec":
        kinds = {channel_kind(n) for n in rec.channels}
        return cls(
            eeg_channels=tuple(n for n in rec.channels if channel_kind(n) == "eeg"),
            peripheral_kinds=tuple(k for k in MODEL_KINDS if k in kinds),
            eeg_baseline=rec.baseline_s >= EEG_BASELINE_MIN_S,
            peripheral_baseline=rec.baseline_s >= PERIPHERAL_BASELINE_MIN_S,
        )

    def select(self, rec: Recording, baseline_samples: int) -> dict[str, np.ndarray]:
        """{electrode or kind: signal} from ``rec``; ModelInputError names whatever is missing."""
        by_lower = {n.lower(): n for n in rec.channels}
        first_of_kind: dict[str, str] = {}
        for n in rec.channels:
            first_of_kind.setdefault(channel_kind(n) or "", n)
        problems = []
        missing_eeg = [c for c in self.eeg_channels if c.lower() not in by_lower]
        if missing_eeg:
            problems.append(f"EEG channel(s) {missing_eeg} missing")
        missing_kinds = [k for k in self.peripheral_kinds if k not in first_of_kind]
        if missing_kinds:
            problems.append(f"peripheral channel(s) of kind {missing_kinds} missing")
        need_s = max([EEG_BASELINE_MIN_S] * self.eeg_baseline + [PERIPHERAL_BASELINE_MIN_S] * self.peripheral_baseline, default=0.0)
        if baseline_samples < int(need_s * rec.sampling_rate):
            problems.append(f"a resting baseline of >= {need_s:g} s is needed (have {baseline_samples / rec.sampling_rate:g} s; set baseline_s)")
        if problems:
            raise ModelInputError("; ".join(problems))
        out = {c: rec.channels[by_lower[c.lower()]] for c in self.eeg_channels}
        return out | {k: rec.channels[first_of_kind[k]] for k in self.peripheral_kinds}


def _log_band_powers(x: np.ndarray, fs: float) -> np.ndarray:
    return np.log(band_powers(x, fs) + 1e-12)


def _eeg_trial_features(x: np.ndarray, names: Sequence[str], fs: float, a0: int, a1: int, b: int, baseline: bool) -> dict[str, float]:
    """x [electrodes, samples]: per electrode and band ln power (change from baseline), and FAA."""
    stim = _log_band_powers(x[:, a0:a1], fs)  # [electrodes, bands]
    base = _log_band_powers(x[:, :b], fs) if baseline else np.zeros_like(stim)
    suffix = "_change" if baseline else ""
    out = {}
    for j, band in enumerate(BANDS):
        if not np.isnan(stim[:, j]).all():  # bands above Nyquist are absent, not NaN
            out |= {f"eeg_{n}_{band}{suffix}": float(stim[i, j] - base[i, j]) for i, n in enumerate(names)}
    alpha = list(BANDS).index("alpha")
    faa = frontal_alpha_asymmetry({n.lower(): float(np.exp(stim[i, alpha])) for i, n in enumerate(names)})
    if faa is not None:
        out["faa"] = faa[0]
        if baseline:
            out["faa_change"] = faa[0] - frontal_alpha_asymmetry({n.lower(): float(np.exp(base[i, alpha])) for i, n in enumerate(names)})[0]
    return out


def _peripheral_or_nan(kind: str, x: np.ndarray, fs: float) -> dict[str, float]:
    """peripheral_features with every key of the kind present; NaN where NeuroKit2 failed."""
    try:
        feats = peripheral_features(kind, x, fs)[0]
    except Exception:  # NeuroKit2 raises many types on unusable signals; the imputer fills the gap
        feats = {}
    return {k: float(feats.get(k, np.nan)) for k in PERIPHERAL_FEATURES[kind]}


def trial_features(signals: dict[str, np.ndarray], fs: float, spec: InputSpec, a0: int, a1: int, b: int) -> dict[str, float]:
    """Features of the window [a0, a1) with the baseline [0, b) of ``signals`` (from InputSpec.select)."""
    out: dict[str, float] = {}
    if spec.eeg_channels:
        x = np.stack([signals[c] for c in spec.eeg_channels]).astype(float)
        out |= _eeg_trial_features(x, spec.eeg_channels, fs, a0, a1, b, spec.eeg_baseline)
    for kind in spec.peripheral_kinds:
        stim = _peripheral_or_nan(kind, signals[kind][a0:a1], fs)
        out |= {_peripheral_name(kind, k): v for k, v in stim.items()}
        if spec.peripheral_baseline:
            base = _peripheral_or_nan(kind, signals[kind][:b], fs)
            out |= {_peripheral_name(kind, k) + "_change": stim[k] - base[k] for k in stim}
    return out


def _peripheral_name(kind: str, key: str) -> str:
    """``ppg_hr_bpm``, ``eda_tonic``: the kind names the source, once (ECG and PPG both give hr_bpm)."""
    return key if key.startswith(f"{kind}_") else f"{kind}_{key}"


# -- model -------------------------------------------------------------------------------------------
@dataclass
class ModelMeta:
    """``physio_model.json``: everything needed to apply, trust-check and describe a model."""

    dataset: str
    targets: list[str]
    feature_names: list[str]
    eeg_channels: list[str]
    peripheral_kinds: list[str]
    eeg_baseline: bool
    peripheral_baseline: bool
    sampling_rate: float
    training_subjects: list[str]
    n_trials: int
    evaluation: dict[str, Any]  # EvalReport.to_dict() of the subject-independent evaluation
    C: float
    serializer: str = ""
    files: dict[str, str] = field(default_factory=dict)  # target -> pipeline file
    sha256: dict[str, str] = field(default_factory=dict)
    kind: str = MODEL_KIND
    format_version: int = MODEL_FORMAT_VERSION
    feature_version: int = FEATURE_VERSION
    sklearn_version: str = ""
    created: str = ""
    trust: str = ""

    @property
    def spec(self) -> InputSpec:
        return InputSpec(tuple(self.eeg_channels), tuple(self.peripheral_kinds), self.eeg_baseline, self.peripheral_baseline)


def _load(path: Path, serializer: str) -> Any:
    if serializer == "skops":
        try:
            import skops.io
        except ImportError:
            raise DeemoError(f"{path}: saved with skops; install it to load this model") from None
        return skops.io.load(path)  # default trust list: scikit-learn and numpy types only
    if serializer == "joblib":
        import joblib

        return joblib.load(path)
    raise DeemoError(f"{path}: unknown serializer {serializer!r}")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (the checksums in ``physio_model.json``)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class PhysioModel:
    """Fitted pipelines per target plus their metadata; ``path`` is where it was loaded from."""

    meta: ModelMeta
    pipelines: dict[str, Any]
    path: Path | None = None

    def predict_proba(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """P(high) per target for rows of ``X`` [trials, features] in ``meta.feature_names`` order."""
        X = np.asarray(X, dtype=float)
        return {t: p.predict_proba(X)[:, list(p.classes_).index(1)] for t, p in self.pipelines.items()}

    def predict_recording(self, rec: Recording, a0: int, a1: int, b: int) -> dict[str, float]:
        """P(high) per target for the window [a0, a1) of ``rec`` with baseline [0, b)."""
        top = max((hi for band, (_, hi) in BANDS.items() if any(n.endswith(f"_{band}_change") or n.endswith(f"_{band}") for n in self.meta.feature_names)), default=0)
        if rec.sampling_rate / 2 <= top:
            raise ModelInputError(f"sampled at {rec.sampling_rate:g} Hz; the model uses EEG up to {top} Hz (needs > {2 * top} Hz)")
        feats = trial_features(self.meta.spec.select(rec, b), rec.sampling_rate, self.meta.spec, a0, a1, b)
        missing = [n for n in self.meta.feature_names if n not in feats]
        if missing:
            raise ModelInputError(f"features {missing[:4]}{' ...' if len(missing) > 4 else ''} cannot be computed from this recording")
        x = np.array([[feats[n] for n in self.meta.feature_names]])
        return {t: float(p[0]) for t, p in self.predict_proba(x).items()}

    def describe(self) -> str:
        """One line for the tool's ``method``: the model, its dataset and subject-independent scores."""
        ev = self.meta.evaluation
        parts = [f"{t} acc {s['accuracy']:.2f} / F1 {s['f1']:.2f} (majority {s['majority_accuracy']:.2f} / {s['majority_f1']:.2f})" for t, s in ev["scores"].items()]
        name = self.path.name if self.path else "unsaved"
        return f"trained model '{name}' ({self.meta.dataset.upper()}, {len(self.meta.training_subjects)} training subjects); subject-independent {ev['scheme']}: " + "; ".join(parts)

    def details(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None, "dataset": self.meta.dataset, "targets": self.meta.targets, "scores": self.meta.evaluation["scores"], "scheme": self.meta.evaluation["scheme"]}

    @classmethod
    def load(cls, path: str | Path) -> PhysioModel:
        """Read a model directory; DeemoError names what is wrong (missing, foreign, changed files)."""
        path = Path(path)
        if not path.is_dir():
            raise DeemoError(f"{path}: no such model directory")
        try:
            raw = json.loads((path / META_FILE).read_text())
        except FileNotFoundError:
            raise DeemoError(f"{path}: not a physio model (no {META_FILE}); train one with: deemo physio train") from None
        except json.JSONDecodeError as e:
            raise DeemoError(f"{path}/{META_FILE}: not valid JSON ({e})") from None
        if not isinstance(raw, dict) or raw.get("kind") != MODEL_KIND:
            raise DeemoError(f"{path}/{META_FILE}: not a {MODEL_KIND} metadata file")
        if raw.get("format_version") != MODEL_FORMAT_VERSION or raw.get("feature_version") != FEATURE_VERSION:
            raise DeemoError(f"{path}: model format {raw.get('format_version')}/features {raw.get('feature_version')}; this version reads {MODEL_FORMAT_VERSION}/{FEATURE_VERSION}: retrain it")
        try:
            meta = ModelMeta(**raw)
        except TypeError as e:
            raise DeemoError(f"{path}/{META_FILE}: malformed metadata ({e})") from None
        pipelines = {}
        for target in meta.targets:
            f = path / meta.files.get(target, "")
            if not f.is_file():
                raise DeemoError(f"{path}: the {target} pipeline file {meta.files.get(target)!r} is missing")
            if file_sha256(f) != meta.sha256.get(target):
                raise DeemoError(f"{f}: changed since the model was saved (checksum mismatch)")
            try:
                pipelines[target] = _load(f, meta.serializer)
            except DeemoError:
                raise
            except Exception as e:  # unpickling raises anything
                raise DeemoError(f"{f}: cannot load the pipeline ({type(e).__name__}: {e})") from None
            if getattr(pipelines[target], "n_features_in_", len(meta.feature_names)) != len(meta.feature_names):
                raise DeemoError(f"{f}: expects {pipelines[target].n_features_in_} features, the metadata lists {len(meta.feature_names)}")
        return cls(meta, pipelines, path)
