"""Learned late fusion: the LLM's label scores and the experts' numeric estimates -> one label distribution.

A multinomial logistic regression (scikit-learn) over a flat, named feature vector per clip:

    llm.<label>            the language model's label probability (calibrated or trained scoring)
    words.<figure>         the transcript expert: VADER polarity, NRC emotion shares, emotion-word rate
    voice.<figure>         the voice expert: pitch level/variability, loudness, rate, pauses, quality
    face.<figure>          the face expert: expression probabilities, micro/macro counts
    body.<figure>, physio.<figure>   numeric estimates of those experts when they ran
    <group>.present        1 when that expert returned a result, else 0 (its figures are then imputed)

Missing figures (an expert that did not run or found no signal) take the training mean, and every
feature is standardised; both are part of the saved model. The fuser is trained by ``deemo fuser
train`` on labelled rows (the data builder's), saved as ``fuser.json`` beside the checkpoint (feature
list, label set, imputation means, scaling, weights, held-out scores: JSON, not a pickle), and
loaded by the Evidence pipeline's label choice (analyze.Analyzer, the gateway).

Each answer's *drivers*: a feature's contribution to a label's logit is ``w[label, f] * z_f``; summed
by group (llm, words, voice, ...) and taken relative to the mean over labels, it says which cues
pushed the chosen label up, and which group on its own pointed to a different label (a conflict).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import DeemoError
from .evidence import BODY, FACE, PHYSIO, TRANSCRIPT, VOICE, Evidence

FUSER_FILE = "fuser.json"
FUSER_VERSION = "2"  # 2: speaker traits (absolute pitch level, loudness) are not features
GROUPS = {TRANSCRIPT: "words", VOICE: "voice", FACE: "face", BODY: "body", PHYSIO: "physio"}
GROUP_NAMES = {"llm": "the language model", "words": "the words", "voice": "the voice", "face": "the face", "body": "body language", "physio": "physiology"}
# estimates that are not evidence about the emotion (units, method names, clip-relative baselines)
_SKIP = {"mcadams_alpha", "au_unit", "method", "cue_words", "negated_words", "dominant_emotion", "dominant_expression"}
# figures that describe the speaker or the recording rather than the emotion: the absolute pitch level
# (a voice trait that differs with sex and age) and the absolute loudness (microphone gain and
# distance). A fuser given them learns the training voices; it keeps the voice's relative figures
# (pitch range and variability, loudness variability, rate, pauses, voice quality).
SPEAKER_TRAITS = {"voice.pitch_median_semitones", "voice.loudness_mean"}


def _numbers(prefix: str, value: Any, out: dict[str, float], depth: int = 0) -> None:
    if isinstance(value, bool):
        out[prefix] = float(value)
    elif isinstance(value, (int, float)) and math.isfinite(float(value)):
        out[prefix] = float(value)
    elif isinstance(value, dict) and depth < 2:
        for k, v in value.items():
            if k not in _SKIP:
                _numbers(f"{prefix}.{k}", v, out, depth + 1)


def expert_features(evidence: Evidence | dict) -> dict[str, float]:
    """The experts' numeric estimates, flattened and named by group (``voice.pitch_iqr_semitones``)."""
    experts = evidence.experts if isinstance(evidence, Evidence) else evidence.get("experts") or {}
    out: dict[str, float] = {}
    for tool, group in GROUPS.items():
        env = experts.get(tool) or {}
        ok = env.get("status") == "ok"
        out[f"{group}.present"] = float(ok)
        if ok:
            _numbers(group, {k: v for k, v in (env.get("estimates") or {}).items() if k not in _SKIP}, out)
    return {k: v for k, v in out.items() if k not in SPEAKER_TRAITS}


def clip_features(evidence: Evidence | dict, llm_scores: dict[str, float] | None) -> dict[str, float]:
    """All named features of one clip: the LLM's label probabilities and the experts' figures."""
    feats = {f"llm.{k}": float(v) for k, v in (llm_scores or {}).items()}
    return feats | expert_features(evidence)


def _group(feature: str) -> str:
    return feature.split(".", 1)[0]


@dataclass
class Fuser:
    """A fitted fuser; ``predict`` and ``explain`` need numpy only (no scikit-learn at inference)."""

    labels: list[str]
    features: list[str]
    means: list[float]  # imputation of a missing feature (its training mean)
    scale: list[float]  # standard deviation (1 where a feature was constant)
    coef: list[list[float]]  # [labels][features]
    intercept: list[float]
    info: dict[str, Any] = field(default_factory=dict)  # training data, held-out scores, C, version

    @property
    def default_mode(self) -> str:
        """The mode a checkpoint with this fuser runs when none is asked for: "fused", unless the
        fuser's training found fusion no better than the fine-tuned LLM alone (``info["default_mode"]``,
        :func:`deemo_llama.training.fuser.choose_default_mode`), then "trained". A fuser saved before
        that choice was recorded runs fused."""
        return str((self.info.get("default_mode") or {}).get("mode", "fused"))

    # -- inference --------------------------------------------------------------------------------
    def _z(self, feats: dict[str, float]) -> np.ndarray:
        x = np.array([feats.get(f, np.nan) for f in self.features], np.float64)
        x = np.where(np.isnan(x), self.means, x)
        return (x - np.asarray(self.means)) / np.asarray(self.scale)

    def logits(self, feats: dict[str, float]) -> np.ndarray:
        return np.asarray(self.coef) @ self._z(feats) + np.asarray(self.intercept)

    def predict(self, feats: dict[str, float]) -> dict[str, float]:
        z = self.logits(feats)
        p = np.exp(z - z.max())
        p /= p.sum()
        return {label: round(float(v), 4) for label, v in zip(self.labels, p)}

    def explain(self, feats: dict[str, float], label: str) -> dict[str, Any]:
        """Which feature groups pushed ``label`` up (``drivers``, largest first) and which on their own
        pointed elsewhere (``conflicts``: group -> the label it favours). Contributions are in logit
        units relative to the mean over labels."""
        w = np.asarray(self.coef)
        contrib = w * self._z(feats)[None, :]  # [labels, features]
        contrib -= contrib.mean(0, keepdims=True)
        groups: dict[str, np.ndarray] = {}
        for j, f in enumerate(self.features):
            if f.endswith(".present") and feats.get(f, 0.0) == 0.0:
                continue
            g = _group(f)
            if feats.get(f"{g}.present", 1.0) == 0.0 and g != "llm":
                continue  # an expert that did not run drives nothing (its imputed figures are the mean)
            groups[g] = groups.get(g, 0) + contrib[:, j]
        i = self.labels.index(label)
        drivers = sorted(((g, float(c[i])) for g, c in groups.items() if c[i] > 0.05), key=lambda t: -t[1])
        conflicts = {g: self.labels[int(np.argmax(c))] for g, c in groups.items() if self.labels[int(np.argmax(c))] != label and float(c.max() - c[i]) > 0.25}
        return {"drivers": [{"cue": g, "weight": round(v, 3)} for g, v in drivers], "conflicts": conflicts}

    @staticmethod
    def sentence(label: str, explanation: dict[str, Any]) -> str:
        """One plain sentence of ``explain``'s result for the answer."""
        drivers = [GROUP_NAMES.get(d["cue"], d["cue"]) for d in explanation["drivers"][:3]]
        out = f"Fused, {_join(drivers)} drove {label}." if drivers else f"Fused, no single cue stood out for {label}."
        if explanation["conflicts"]:
            out += " " + "; ".join(f"{GROUP_NAMES.get(g, g)} pointed to {lab}" for g, lab in explanation["conflicts"].items()).capitalize() + "."
        return out

    # -- storage ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"version": FUSER_VERSION, "labels": self.labels, "features": self.features, "means": self.means, "scale": self.scale, "coef": self.coef, "intercept": self.intercept, "info": self.info}

    def save(self, directory: str | Path) -> Path:
        from .fsio import atomic_write_text

        path = Path(directory) / FUSER_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Fuser":
        path = Path(path)
        path = path / FUSER_FILE if path.is_dir() else path
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DeemoError(f"{path}: not a readable fuser ({e.__class__.__name__}: {e})") from None
        if str(d.get("version")) != FUSER_VERSION:
            raise DeemoError(f"{path}: fuser version {d.get('version')!r} is not {FUSER_VERSION!r}; retrain it with `deemo fuser train`")
        n, k = len(d["features"]), len(d["labels"])
        if np.shape(d["coef"]) != (k, n) or len(d["means"]) != n or len(d["scale"]) != n or len(d["intercept"]) != k:
            raise DeemoError(f"{path}: the fuser's weights do not match its {k} labels and {n} features")
        return cls(d["labels"], d["features"], d["means"], d["scale"], d["coef"], d["intercept"], d.get("info", {}))


def find_fuser(checkpoint: str | Path) -> Fuser | None:
    """The fuser saved beside ``checkpoint``, if any."""
    path = Path(checkpoint) / FUSER_FILE
    return Fuser.load(path) if path.is_file() else None


def decide(scores: dict[str, float], evidence: Evidence | dict, fuser: "Fuser | None") -> tuple[str, dict[str, float], dict[str, Any] | None]:
    """The one label decision after the LLM's scores (CLI, gateway, evaluation): (label, scores, fusion).

    Without a fuser, or when the request's label set is not the fuser's, the LLM's best label and its
    scores (fusion None). With one: the fused distribution, and ``fusion`` = the LLM's own scores, the
    drivers/conflicts (:meth:`Fuser.explain`) and the sentence the answer ends with."""
    from .scoring import best

    if fuser is None or sorted(scores) != sorted(fuser.labels):
        return best(scores), scores, None
    feats = clip_features(evidence, scores)
    fused = fuser.predict(feats)
    label = best(fused)
    why = fuser.explain(feats, label)
    # a cue that states its own label (the face's dominant expression) is never said to point to
    # another: the fuser's weights may count a happy face's figures toward sad, but "the face pointed
    # to sad" beside "their face is mostly happy" would contradict the Evidence
    stated = _stated_labels(evidence, fuser.labels)
    why["conflicts"] = {g: lab for g, lab in why["conflicts"].items() if stated.get(g, lab) == lab}
    return label, fused, {"llm_scores": scores, **why, "sentence": Fuser.sentence(label, why)}


def _stated_labels(evidence: Evidence | dict, labels: Sequence[str]) -> dict[str, str | None]:
    """Feature group -> the label that cue states itself, mapped into ``labels`` (None: one outside
    them): the face's dominant expression when the face expert ran."""
    from .data.labels import label_set_for

    experts = (evidence.experts if isinstance(evidence, Evidence) else evidence.get("experts")) or {}
    face = experts.get(FACE) or {}
    dom = (face.get("estimates") or {}).get("dominant_expression") if face.get("status") == "ok" else None
    return {"face": label_set_for(labels).normalise(dom)} if dom else {}


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def fit(rows: Sequence[dict[str, float]], y: Sequence[str], labels: Sequence[str], C: float = 1.0, seed: int = 0) -> Fuser:
    """Fit on named feature dicts (``clip_features``) with their labels. Features are the union of
    names seen, minus those constant in training."""
    from sklearn.linear_model import LogisticRegression

    labels = list(labels)
    unknown = sorted(set(y) - set(labels))
    if unknown:
        raise DeemoError(f"training labels {unknown} are not in the label set {labels}")
    if len(set(y)) < 2:
        raise DeemoError("the fuser needs rows of at least two labels")
    names = sorted({k for r in rows for k in r})
    X = np.array([[r.get(f, np.nan) for f in names] for r in rows], np.float64)
    means = np.nanmean(np.where(np.isnan(X), np.nan, X), axis=0)
    means = np.where(np.isnan(means), 0.0, means)
    X = np.where(np.isnan(X), means, X)
    sd = X.std(0)
    keep = sd > 1e-9
    names, X, means, sd = [n for n, k in zip(names, keep) if k], X[:, keep], means[keep], sd[keep]
    if not names:  # nothing varies (e.g. an expert that never ran): the training label prior
        prior = np.array([max(list(y).count(lab), 1e-3) for lab in labels], np.float64)
        return Fuser(labels, [], [], [], [[] for _ in labels], list(np.log(prior / prior.sum())), {"C": C, "rows": len(y)})
    Z = (X - means) / sd
    clf = LogisticRegression(C=C, max_iter=5000, random_state=seed)
    clf.fit(Z, list(y))
    # scikit-learn orders classes alphabetically; labels absent from training get a very low bias
    coef = np.zeros((len(labels), len(names)))
    intercept = np.full(len(labels), -10.0)
    classes = list(clf.classes_)
    if len(classes) == 2:  # binary: one row of weights for classes_[1]
        coef[labels.index(classes[1])], intercept[labels.index(classes[1])] = clf.coef_[0] / 2, clf.intercept_[0] / 2
        coef[labels.index(classes[0])], intercept[labels.index(classes[0])] = -clf.coef_[0] / 2, -clf.intercept_[0] / 2
    else:
        for c, w, b in zip(classes, clf.coef_, clf.intercept_):
            coef[labels.index(c)], intercept[labels.index(c)] = w, b
    return Fuser(labels, names, [float(v) for v in means], [float(v) for v in sd], coef.tolist(), intercept.tolist(), {"C": C, "rows": len(y)})


def choose_c(rows: Sequence[dict[str, float]], y: Sequence[str], groups: Sequence[str], labels: Sequence[str], grid: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)) -> tuple[float, dict[float, float]]:
    """The regularisation by grouped cross-validation (groups: subjects, so a speaker's clips are
    never on both sides): (best C, {C: mean held-out accuracy}). The grid reaches 0.001 because the
    default's fuser chose the smallest value of the earlier grid (0.01), the sign that the best lies
    below it."""
    from sklearn.model_selection import GroupKFold

    y, groups = np.asarray(y), np.asarray(groups)
    k = min(5, len(set(groups)))
    if k < 2:
        return 1.0, {}
    scores = {}
    for C in grid:
        acc = []
        for tr, te in GroupKFold(n_splits=k).split(np.zeros(len(y)), y, groups):
            if len(set(y[tr])) < 2:
                continue
            f = fit([rows[i] for i in tr], y[tr], labels, C)
            acc += [max(p := f.predict(rows[i]), key=p.get) == y[i] for i in te]
        scores[C] = float(np.mean(acc)) if acc else 0.0
    return max(scores, key=lambda c: (scores[c], -abs(math.log(c)))), scores
