"""Training of the ``analyze_physiology`` valence/arousal model, evaluated subject-independently
(``deemo physio train|eval``). The model as the tool applies it is ``tools.physio_model``.

    table = extract_features("data/deap", "deap")          # per-trial features, cached on disk
    report = evaluate(table, folds=5)                      # leave-subjects-out accuracy / F1 vs majority
    model, report = train_model(table)                     # evaluate, then fit on every subject
    model.save("physio-model"); PhysioModel.load("physio-model").predict_recording(rec, a0, a1, b)

Classifier: a scikit-learn Pipeline (median imputation of failed channels, StandardScaler,
L2 LogisticRegression), one per target, on binary labels (metrics.binarize_ratings: DEAP >= 5,
DREAMER >= 3). Evaluation splits BY SUBJECT (GroupKFold, or leave-one-subject-out when folds >=
subjects): no subject's trials are in both train and test (segment-shuffled splits leak: ~98 % vs
~65 %). The majority class of each training fold, predicted for its test subjects, is the baseline.

Saving writes the model directory atomically (``physio_model.json`` and one pipeline file per
target; skops when installed, else joblib), as ``tools.physio_model`` describes and reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import DeemoError
from ..metrics import binarize_ratings, subject_independent_scores
from ..tools.physio_io import Recording, deap_trial, load_deap, load_dreamer
from ..tools.physio_model import (
    FEATURE_VERSION,
    META_FILE,
    TARGETS,
    TRUST_NOTE,
    InputSpec,
    ModelInputError,
    ModelMeta,
    PhysioModel,
    file_sha256,
    trial_features,
)

DATASETS = ("deap", "dreamer")


# -- datasets ----------------------------------------------------------------------------------------
@dataclass
class TrialRow:
    subject: str
    trial: int
    ratings: dict[str, float]
    features: dict[str, float]


def dataset_sources(data: str | Path, dataset: str) -> list[Path]:
    """The files of a dataset: DEAP ``s01.dat ...`` in a folder (or one file); one DREAMER ``.mat``."""
    data = Path(data)
    if dataset not in DATASETS:
        raise DeemoError(f"unknown dataset format {dataset!r} (expected one of {', '.join(DATASETS)})")
    if not data.exists():
        raise DeemoError(f"{data}: no such file or folder")
    suffix = ".dat" if dataset == "deap" else ".mat"
    files = sorted(data.glob(f"*{suffix}")) if data.is_dir() else [data]
    files = [f for f in files if f.is_file()]
    if not files or any(f.suffix.lower() != suffix for f in files):
        want = "a folder of DEAP sXX.dat files" if dataset == "deap" else "the DREAMER .mat file"
        raise DeemoError(f"{data}: expected {want} for --format {dataset}")
    if dataset == "dreamer" and len(files) > 1:
        raise DeemoError(f"{data}: holds {len(files)} .mat files; give the DREAMER .mat file itself")
    return files


def iter_trials(source: Path, dataset: str) -> tuple[int, Iterator[tuple[str, int, Recording]]]:
    """(number of trials, iterator of (subject id, trial index, Recording)) of one source file."""
    if dataset == "deap":
        data, labels = load_deap(source)
        return data.shape[0], ((source.stem, t, deap_trial(source, data, labels, t)) for t in range(data.shape[0]))
    dreamer = load_dreamer(source)
    pairs = [(s, t) for s in range(dreamer.n_subjects) for t in range(dreamer.n_trials(s))]
    return len(pairs), ((f"S{s + 1:02d}", t, dreamer.recording(s, t)) for s, t in pairs)


def _rows_of(source: Path, dataset: str, bar) -> tuple[InputSpec, list[TrialRow], float]:
    """(input spec, rows, sampling rate) of every trial in ``source``; the spec is its first trial's."""
    n, trials = iter_trials(source, dataset)
    bar.total = (bar.total or 0) + n
    bar.refresh()
    spec, rows, fs = None, [], 0.0
    for subject, trial, rec in trials:
        spec, fs = spec or InputSpec.from_recording(rec), fs or rec.sampling_rate
        if rec.sampling_rate != fs:
            raise DeemoError(f"{source}: subject {subject} trial {trial} is sampled at {rec.sampling_rate:g} Hz, the first at {fs:g} Hz")
        b = int(round(rec.baseline_s * rec.sampling_rate))
        try:
            signals = spec.select(rec, b)
        except ModelInputError as e:
            raise DeemoError(f"{source}: subject {subject} trial {trial} differs from the first trial: {e}") from None
        feats = trial_features(signals, rec.sampling_rate, spec, b, len(next(iter(rec.channels.values()))), b)
        ratings = {k: v for k, v in (rec.labels or {}).items() if k in TARGETS}
        rows.append(TrialRow(subject, trial, ratings, feats))
        bar.update(1)
    if spec is None:
        raise DeemoError(f"{source}: holds no trials")
    return spec, rows, fs


@dataclass
class FeatureTable:
    """Per-trial features of a dataset: ``X`` [trials, features], one row per (subject, trial)."""

    dataset: str
    names: list[str]
    X: np.ndarray
    subjects: np.ndarray  # [trials] subject ids
    trials: np.ndarray  # [trials] trial index within the subject
    ratings: dict[str, np.ndarray]  # target -> [trials] raw self-reports (1-9 DEAP, 1-5 DREAMER)
    spec: InputSpec
    sampling_rate: float

    def labels(self, target: str) -> np.ndarray:
        """Binary high (1) / low (0) labels of ``target`` on the dataset's scale."""
        if target not in self.ratings:
            raise DeemoError(f"the {self.dataset} data has no {target} ratings")
        return binarize_ratings(self.ratings[target], self.dataset)

    def subset(self, mask: np.ndarray) -> "FeatureTable":
        mask = np.asarray(mask)
        return FeatureTable(self.dataset, self.names, self.X[mask], self.subjects[mask], self.trials[mask], {k: v[mask] for k, v in self.ratings.items()}, self.spec, self.sampling_rate)


class FeatureCache:
    """Per-source JSON files of trial features under ``root``, keyed by the source file's identity.

    The key is (feature version, dataset, resolved path, size, mtime): re-running eval on unchanged
    files reads the features back; an edited file or a new feature version recomputes.
    """

    def __init__(self, root: str | Path | None = None):
        from ..assets import cache_dir

        self.root = Path(root) if root else cache_dir() / "physio-features"

    def _path(self, source: Path, dataset: str) -> Path:
        st = source.stat()
        raw = json.dumps([FEATURE_VERSION, dataset, str(source.resolve()), st.st_size, st.st_mtime_ns])
        return self.root / f"{dataset}-{source.stem}-{hashlib.sha256(raw.encode()).hexdigest()[:20]}.json"

    def get(self, source: Path, dataset: str) -> tuple[InputSpec, list[TrialRow], float] | None:
        path = self._path(source, dataset)
        try:
            d = json.loads(path.read_text())
            spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["spec"].items()})
            return spec, [TrialRow(**r) for r in d["rows"]], float(d["sampling_rate"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            return None  # absent or unreadable: recompute

    def put(self, source: Path, dataset: str, spec: InputSpec, rows: list[TrialRow], fs: float) -> None:
        path = self._path(source, dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"feature_version": FEATURE_VERSION, "source": str(source), "sampling_rate": fs, "spec": asdict(spec), "rows": [asdict(r) for r in rows]}))
        os.replace(tmp, path)


def extract_features(data: str | Path, dataset: str, *, cache: bool = True, cache_root: str | Path | None = None, progress: bool = True) -> FeatureTable:
    """Per-trial features of a DEAP folder or a DREAMER .mat (tqdm progress; cached per source file)."""
    from tqdm.auto import tqdm

    store = FeatureCache(cache_root) if cache else None
    specs, rows, rates = set(), [], set()
    with tqdm(desc=f"{dataset} features", unit="trial", total=0, disable=None if progress else True) as bar:
        for source in dataset_sources(data, dataset):
            hit = store.get(source, dataset) if store else None
            if hit is None:
                spec, src_rows, fs = _rows_of(source, dataset, bar)
                if store:
                    store.put(source, dataset, spec, src_rows, fs)
            else:
                spec, src_rows, fs = hit
                bar.total += len(src_rows)
                bar.update(len(src_rows))
            specs.add(spec)
            rates.add(fs)
            rows += src_rows
    if len(specs) > 1 or len(rates) > 1:
        raise DeemoError(f"{data}: the files differ in channels, baseline or sampling rate; one model needs one layout")
    return _table(dataset, rows, specs.pop(), rates.pop())


def _table(dataset: str, rows: list[TrialRow], spec: InputSpec, fs: float) -> FeatureTable:
    names = list(dict.fromkeys(k for r in rows for k in r.features))
    X = np.array([[r.features.get(k, np.nan) for k in names] for r in rows], dtype=float)
    targets = [t for t in TARGETS if all(t in r.ratings for r in rows)]
    ratings = {t: np.array([r.ratings[t] for r in rows], dtype=float) for t in targets}
    return FeatureTable(dataset, names, X, np.array([r.subject for r in rows]), np.array([r.trial for r in rows]), ratings, spec, fs)


# -- model -------------------------------------------------------------------------------------------
def build_pipeline(C: float = 0.1):
    """Median imputation (a failed channel) -> standardisation -> L2 logistic regression."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("scale", StandardScaler()), ("classify", LogisticRegression(C=C, max_iter=2000))])


def _fit(X: np.ndarray, y: np.ndarray, C: float):
    """The pipeline fitted on (X, y); a constant predictor when a training fold has one class only."""
    from sklearn.dummy import DummyClassifier

    if len(np.unique(y)) < 2:
        return DummyClassifier(strategy="most_frequent").fit(X, y)
    return build_pipeline(C).fit(X, y)


def _majority(y: np.ndarray) -> int:
    return int(np.bincount(y, minlength=2).argmax())


@dataclass
class TargetScores:
    """Pooled out-of-fold scores of one target, with the majority-class baseline."""

    accuracy: float
    f1: float
    majority_accuracy: float
    majority_f1: float
    n_trials: int
    positive_rate: float  # share of "high" labels
    fold_accuracy: list[float]


@dataclass
class EvalReport:
    dataset: str
    scheme: str
    folds: int
    subjects: list[str]
    n_trials: int
    n_features: int
    splits: list[list[str]]  # test subjects of each fold
    scores: dict[str, TargetScores]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def subject_splits(subjects: np.ndarray, folds: int) -> tuple[str, list[tuple[np.ndarray, np.ndarray]]]:
    """(scheme, [(train rows, test rows)]): GroupKFold by subject, or leave-one-subject-out."""
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    n_subjects = len(np.unique(subjects))
    if n_subjects < 2:
        raise DeemoError(f"subject-independent evaluation needs at least 2 subjects, got {n_subjects}")
    if folds < 2:
        raise DeemoError(f"folds must be >= 2, got {folds}")
    k = min(folds, n_subjects)
    splitter, scheme = (LeaveOneGroupOut(), "leave-one-subject-out") if k == n_subjects else (GroupKFold(n_splits=k), f"{k}-fold GroupKFold by subject")
    splits = list(splitter.split(subjects, groups=subjects))
    for train, test in splits:
        shared = set(subjects[train]) & set(subjects[test])
        if shared:  # the whole point of this evaluation; never let a splitter change break it silently
            raise RuntimeError(f"subjects {sorted(shared)} are in both train and test")
    return scheme, splits


def evaluate(table: FeatureTable, targets: Sequence[str] = TARGETS, folds: int = 5, C: float = 0.1) -> EvalReport:
    """Subject-independent accuracy and F1 (pooled over held-out subjects) vs the majority class."""
    scheme, splits = subject_splits(table.subjects, folds)
    everyone = np.unique(table.subjects)
    scores = {}
    for target in targets:
        y = table.labels(target)
        pred, base, fold_acc = np.zeros_like(y), np.zeros_like(y), []
        for train, test in splits:
            pred[test] = _fit(table.X[train], y[train], C).predict(table.X[test])
            base[test] = _majority(y[train])
            fold_acc.append(float(np.mean(pred[test] == y[test])))
        m = subject_independent_scores(y, pred, table.subjects, everyone)
        mb = subject_independent_scores(y, base, table.subjects, everyone)
        scores[target] = TargetScores(m["accuracy"], m["f1"], mb["accuracy"], mb["f1"], m["n"], float(y.mean()), fold_acc)
    return EvalReport(table.dataset, scheme, len(splits), [str(s) for s in everyone], len(y), table.X.shape[1], [sorted(map(str, np.unique(table.subjects[test]))) for _, test in splits], scores)


# -- persistence -------------------------------------------------------------------------------------
def _serializer() -> str:
    try:
        import skops.io  # noqa: F401
    except ImportError:
        return "joblib"
    return "skops"


def _dump(obj: Any, path: Path, serializer: str) -> None:
    if serializer == "skops":
        import skops.io

        skops.io.dump(obj, path)
    else:
        import joblib

        joblib.dump(obj, path)


def check_model_dir(out: str | Path) -> Path:
    """``out`` if a model may be written there: new, empty, or a previous model (replaced)."""
    out = Path(out)
    if out.exists() and not (out / META_FILE).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise DeemoError(f"{out}: exists and is not a physio model directory; choose a new directory")
    return out


class TrainedPhysioModel(PhysioModel):
    """A model fitted by :func:`train_model`: a :class:`PhysioModel` that can also be saved."""

    def save(self, out: str | Path) -> Path:
        """Write the model directory atomically (a temporary sibling renamed into place)."""
        out = check_model_dir(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        serializer = _serializer()
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            files, sums = {}, {}
            for target, pipe in self.pipelines.items():
                files[target] = f"{target}.{serializer}"
                _dump(pipe, tmp / files[target], serializer)
                sums[target] = file_sha256(tmp / files[target])
            import sklearn

            meta = ModelMeta(**{**asdict(self.meta), "serializer": serializer, "files": files, "sha256": sums, "sklearn_version": sklearn.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "trust": TRUST_NOTE if serializer == "joblib" else ""})
            (tmp / META_FILE).write_text(json.dumps(asdict(meta), indent=2) + "\n")
            if out.exists():
                old = out.with_name(f".{out.name}.old{os.getpid()}")
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.meta, self.path = meta, out
        return out


def train_model(table: FeatureTable, targets: Sequence[str] = TARGETS, folds: int = 5, C: float = 0.1) -> tuple[TrainedPhysioModel, EvalReport]:
    """Evaluate subject-independently, then fit each target on every subject."""
    report = evaluate(table, targets, folds, C)
    pipelines = {}
    for target in targets:
        y = table.labels(target)
        if len(np.unique(y)) < 2:
            raise DeemoError(f"every {target} rating in the data is {'high' if y[0] else 'low'}; nothing to learn")
        pipelines[target] = build_pipeline(C).fit(table.X, y)
    spec = table.spec
    meta = ModelMeta(table.dataset, list(targets), list(table.names), list(spec.eeg_channels), list(spec.peripheral_kinds), spec.eeg_baseline, spec.peripheral_baseline, table.sampling_rate, sorted(map(str, np.unique(table.subjects))), len(table.X), report.to_dict(), C)
    return TrainedPhysioModel(meta, pipelines), report
