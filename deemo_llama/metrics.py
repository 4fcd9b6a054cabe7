"""Metrics of the field, each a small function with a golden-value test (tests/test_metrics.py).

Recognition: UAR (mean per-class recall) and WAR (accuracy), as in dynamic facial expression
recognition (DFEW/MAFW); weighted F1 (Emotion-LLaMA, MER).
Intervals: MEGC micro-expression spotting (a prediction is a true positive when its IoU with a
ground-truth interval is >= 0.5; TP/FP/FN counted over the whole dataset) and the spot-then-recognise
score STRS = F1_spot x F1_recognition; the same matching per event type for body-language events.
Ambivalence/hesitancy (BAH): macro-F1 and average precision of the positive class.
Physiology (DEAP/DREAMER): binary valence/arousal (high if >= 5 on DEAP's 1-9 scale, >= 3 on
DREAMER's 1-5), scored on subject-independent splits.
Fairness across demographic groups (multiclass; domain.md): EqOpp, TTEqOdds, DemPar and Overall
Disparity from each group's row-normalised confusion matrix; dataset bias on the rows themselves:
representational (how unequal the groups' shares are) and stereotypical (how much the label depends
on the group, Cramer's V).
Uncertainty: percentile bootstrap intervals over items, and a paired bootstrap for two runs on the
same items.
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


# ---------------------------------------------------------------------------------------------
# Per-class figures


def confusion(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> np.ndarray:
    """[len(labels), len(labels)] counts, rows true, columns predicted (predictions outside
    ``labels``, e.g. an unparseable reply, count in no column)."""
    idx = {label: i for i, label in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(y_true, y_pred):
        if t in idx and p in idx:
            cm[idx[t], idx[p]] += 1
    return cm


def per_class(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> dict[str, dict[str, float]]:
    """{label: precision, recall, f1, support, predicted (share of the predictions)}."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, n = precision_recall_fscore_support(y_true, y_pred, labels=list(labels), zero_division=0)
    pred = np.asarray(y_pred, dtype=object)
    return {str(c): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(n[i]),
                     "predicted": float(np.mean(pred == c)) if len(pred) else 0.0} for i, c in enumerate(labels)}


# ---------------------------------------------------------------------------------------------
# Fairness across groups (domain.md): each from the groups' row-normalised confusion matrices


def group_confusions(y_true: Sequence, y_pred: Sequence, groups: Sequence, labels: Sequence) -> dict[Hashable, np.ndarray]:
    """{group: row-normalised confusion matrix}; a class a group has no rows of is a NaN row."""
    y_true, y_pred, groups = (np.asarray(a, dtype=object) for a in (y_true, y_pred, groups))
    out = {}
    for g in sorted(set(groups.tolist()), key=str):
        m = groups == g
        cm = confusion(y_true[m], y_pred[m], labels).astype(float)
        support = np.array([np.sum(y_true[m] == c) for c in labels], dtype=float)  # rows, unparsed replies included
        with np.errstate(invalid="ignore", divide="ignore"):
            out[g] = np.where(support[:, None] > 0, cm / support[:, None], np.nan)
    return out


def _spread(values: np.ndarray) -> np.ndarray:
    """max - min over groups (axis 0), ignoring groups without the class; NaN where < 2 groups have it."""
    ok = np.sum(~np.isnan(values), axis=0) >= 2
    filled = np.where(np.isnan(values), 0.0, values)
    top = np.where(np.isnan(values), -np.inf, filled).max(axis=0)
    low = np.where(np.isnan(values), np.inf, filled).min(axis=0)
    return np.where(ok, top - low, np.nan)


def fairness(y_true: Sequence, y_pred: Sequence, groups: Sequence, labels: Sequence) -> dict[str, float]:
    """EqOpp, TTEqOdds, DemPar and Overall Disparity across the groups (0 = equal treatment).

    EqOpp = mean over classes of (max_g - min_g) recall; TTEqOdds = mean over all cells (i, j) of
    (max_g - min_g) CM_g[i, j]; DemPar = mean over predicted classes j of (max_g - min_g)
    P(pred = j | g); Overall Disparity = mean over classes k of 1/(|G|-1) sum_g (1 - r_gk / max_g r_gk).
    Classes that fewer than two groups have are left out of the class means.
    """
    cms = group_confusions(y_true, y_pred, groups, labels)
    if len(cms) < 2:
        raise ValueError(f"fairness needs at least 2 groups; there is {len(cms)}")
    stack = np.stack(list(cms.values()))  # [G, K, K]
    recall = np.stack([np.diag(c) for c in cms.values()])  # [G, K]
    y_pred, groups = np.asarray(y_pred, dtype=object), np.asarray(groups, dtype=object)
    rate = np.stack([[np.mean(y_pred[groups == g] == c) for c in labels] for g in cms])  # [G, K]
    disparity = []
    for k in range(len(labels)):
        r = recall[:, k][~np.isnan(recall[:, k])]
        if len(r) >= 2:
            top = r.max()
            disparity.append(float(np.sum(1 - r / top) / (len(r) - 1)) if top > 0 else 0.0)
    nanmean = lambda a: float(np.nanmean(a)) if np.any(~np.isnan(a)) else float("nan")  # noqa: E731
    return {
        "eqopp": nanmean(_spread(recall)),
        "tteqodds": nanmean(_spread(stack.reshape(len(cms), -1))),
        "dempar": nanmean(_spread(rate)),
        "overall_disparity": float(np.mean(disparity)) if disparity else float("nan"),
    }


def dataset_bias(labels_of_rows: Sequence, groups: Sequence) -> dict:
    """Bias in the data itself, before any model: representational = 1 - normalised entropy of the
    groups' shares (0 balanced, 1 one group only); stereotypical = Cramer's V of the label x group
    contingency table (0 the label tells nothing about the group, 1 it decides it)."""
    from scipy.stats.contingency import association

    labels_of_rows, groups = np.asarray(labels_of_rows, dtype=object), np.asarray(groups, dtype=object)
    names = sorted(set(groups.tolist()), key=str)
    classes = sorted(set(labels_of_rows.tolist()), key=str)
    counts = np.array([np.sum(groups == g) for g in names], dtype=float)
    share = counts / counts.sum()
    ent = -np.sum(share[share > 0] * np.log(share[share > 0]))
    rep = float(1 - ent / np.log(len(names))) if len(names) > 1 else 1.0
    table = np.array([[np.sum((groups == g) & (labels_of_rows == c)) for c in classes] for g in names])
    stereo = float(association(table, method="cramer")) if table.shape[0] > 1 and table.shape[1] > 1 else 0.0
    return {"groups": {str(g): int(n) for g, n in zip(names, counts)}, "representational": rep, "stereotypical": stereo,
            "label_given_group": {str(g): {str(c): float(v / row.sum()) for c, v in zip(classes, row)} for g, row in zip(names, table)}}


# ---------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_ci(metric, n_items: int, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """(point, low, high): ``metric(indices) -> float`` on all items, and the percentile interval of
    its value over ``n`` resamples of the items with replacement (resamples where it is NaN dropped)."""
    if n_items == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    point = float(metric(np.arange(n_items)))
    values = np.array([metric(rng.integers(0, n_items, n_items)) for _ in range(n)], dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return point, float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return point, float(lo), float(hi)


def paired_bootstrap(metric_a, metric_b, n_items: int, n: int = 1000, seed: int = 0) -> dict[str, float]:
    """Two systems on the same items: the difference a - b, its 95 % interval and a two-sided p-value
    (twice the share of resamples on the far side of 0), from the same resampled indices for both."""
    rng = np.random.default_rng(seed)
    full = np.arange(n_items)
    diff = float(metric_a(full) - metric_b(full))
    d = np.array([metric_a(ix) - metric_b(ix) for ix in (rng.integers(0, n_items, n_items) for _ in range(n))], dtype=float)
    d = d[~np.isnan(d)]
    lo, hi = np.quantile(d, [0.025, 0.975])
    p = min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0)))
    return {"diff": diff, "low": float(lo), "high": float(hi), "p": float(p)}
