"""Metrics of the field, each a small function with a golden-value test (tests/test_metrics.py).

Recognition: UAR (mean per-class recall) and WAR (accuracy), as in dynamic facial expression
recognition (DFEW/MAFW); weighted F1 (Emotion-LLaMA, MER).
Intervals: MEGC micro-expression spotting (a prediction is a true positive when its IoU with a
ground-truth interval is >= 0.5; TP/FP/FN counted over the whole dataset) and the spot-then-recognise
score STRS = F1_spot x F1_recognition; the same matching per event type for body-language events.
Ambivalence/hesitancy (BAH): macro-F1 and average precision of the positive class.
Physiology (DEAP/DREAMER): binary valence/arousal (high if >= 5 on DEAP's 1-9 scale, >= 3 on
DREAMER's 1-5), scored on subject-independent splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

Interval = tuple[float, float]


def uar(y_true: Sequence, y_pred: Sequence) -> float:
    """Unweighted average recall: the mean over the classes present in ``y_true`` of their recall."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def war(y_true: Sequence, y_pred: Sequence) -> float:
    """Weighted average recall = overall accuracy."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def weighted_f1(y_true: Sequence, y_pred: Sequence) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def iou(a: Interval, b: Interval) -> float:
    """Temporal IoU of two closed intervals [start, end] (frames or seconds)."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else float(a == b)


def match_intervals(gt: Sequence[Interval], pred: Sequence[Interval], threshold: float = 0.5) -> list[tuple[int, int]]:
    """One-to-one matches (gt index, pred index) with IoU >= threshold, best IoU first (greedy)."""
    pairs = sorted(((iou(g, p), i, j) for i, g in enumerate(gt) for j, p in enumerate(pred)), reverse=True)
    used_g, used_p, out = set(), set(), []
    for score, i, j in pairs:
        if score < threshold:
            break
        if i not in used_g and j not in used_p:
            used_g.add(i)
            used_p.add(j)
            out.append((i, j))
    return sorted(out)


@dataclass
class SpottingScore:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def spotting_f1(gt: dict[Hashable, Sequence[Interval]], pred: dict[Hashable, Sequence[Interval]], threshold: float = 0.5) -> SpottingScore:
    """MEGC spotting: per video, one-to-one IoU >= threshold matching; TP/FP/FN summed over videos."""
    tp = fp = fn = 0
    for vid in set(gt) | set(pred):
        g, p = list(gt.get(vid, [])), list(pred.get(vid, []))
        m = len(match_intervals(g, p, threshold))
        tp, fp, fn = tp + m, fp + len(p) - m, fn + len(g) - m
    return SpottingScore(tp, fp, fn)


def strs(gt: dict[Hashable, Sequence[tuple[float, float, str]]], pred: dict[Hashable, Sequence[tuple[float, float, str]]], threshold: float = 0.5) -> dict[str, float]:
    """Spot-then-recognise score: spotting F1 x recognition F1.

    Recognition F1 is the macro-F1 of the emotion labels over the spotted (true-positive) intervals
    (MEGC 2023's analysis step); missed intervals do not enter it, they already cost spotting F1.
    """
    from sklearn.metrics import f1_score

    tp = fp = fn = 0
    y_true, y_pred = [], []
    for vid in set(gt) | set(pred):
        g, p = list(gt.get(vid, [])), list(pred.get(vid, []))
        matches = match_intervals([x[:2] for x in g], [x[:2] for x in p], threshold)
        tp, fp, fn = tp + len(matches), fp + len(p) - len(matches), fn + len(g) - len(matches)
        y_true += [g[i][2] for i, _ in matches]
        y_pred += [p[j][2] for _, j in matches]
    spot = SpottingScore(tp, fp, fn).f1
    rec = float(f1_score(y_true, y_pred, average="macro", zero_division=0)) if y_true else 0.0
    return {"spotting_f1": spot, "recognition_f1": rec, "strs": spot * rec}


def event_f1(gt: Sequence[tuple[float, float, str]], pred: Sequence[tuple[float, float, str]], threshold: float = 0.5) -> SpottingScore:
    """Event detection: events match only within the same type, IoU >= threshold; micro-averaged."""
    tp = fp = fn = 0
    for kind in {e[2] for e in gt} | {e[2] for e in pred}:
        g = [e[:2] for e in gt if e[2] == kind]
        p = [e[:2] for e in pred if e[2] == kind]
        m = len(match_intervals(g, p, threshold))
        tp, fp, fn = tp + m, fp + len(p) - m, fn + len(g) - m
    return SpottingScore(tp, fp, fn)


def bah_scores(y_true: Sequence[int], y_score: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """Ambivalence/hesitancy: macro-F1 of thresholded predictions and AP of the positive class."""
    from sklearn.metrics import average_precision_score, f1_score

    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=float)
    return {
        "macro_f1": float(f1_score(y_true, (y_score >= threshold).astype(int), average="macro", zero_division=0)),
        "ap_positive": float(average_precision_score(y_true, y_score)),
    }


def binarize_ratings(ratings: Sequence[float], scale: str) -> np.ndarray:
    """High (1) / low (0) valence or arousal: DEAP (1-9) high if >= 5; DREAMER (1-5) high if >= 3."""
    thresholds = {"deap": 5.0, "dreamer": 3.0}
    if scale not in thresholds:
        raise ValueError(f"unknown rating scale {scale!r} (expected one of {sorted(thresholds)})")
    return (np.asarray(ratings, dtype=float) >= thresholds[scale]).astype(int)


def subject_independent_scores(y_true: Sequence[int], y_pred: Sequence[int], subjects: Sequence[Hashable], test_subjects: Sequence[Hashable]) -> dict[str, float]:
    """Accuracy and F1 of binary predictions, counted on the rows of the held-out subjects only
    (segment-shuffled splits leak subjects and inflate results: ~98 % vs ~65 % cross-subject)."""
    from sklearn.metrics import accuracy_score, f1_score

    subjects = np.asarray(subjects)
    mask = np.isin(subjects, np.asarray(test_subjects))
    if not mask.any():
        raise ValueError("no rows belong to the test subjects")
    yt, yp = np.asarray(y_true)[mask], np.asarray(y_pred)[mask]
    return {"accuracy": float(accuracy_score(yt, yp)), "f1": float(f1_score(yt, yp, zero_division=0)), "n": int(mask.sum())}
