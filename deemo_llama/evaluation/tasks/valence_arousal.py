"""Valence and arousal per clip, from the label distribution (rows with ``valence``/``arousal``).

The system answers with a label distribution; its valence and arousal are the expectation of each
label's position on Russell's circumplex (approximate positions on [-1, 1], :data:`CIRCUMPLEX`),
mapped linearly onto the rows' scale: MER's valence -5..5 when any value is negative, else DEAP's
1-9 when any value exceeds 5, else DREAMER's 1-5. Figures: the concordance correlation coefficient
(CCC, the AVEC measure), Pearson's r and the MAE on that scale, and high/low accuracy and F1 with
the field's thresholds (``metrics.binarize_ratings`` for DEAP and DREAMER, 0 for MER). A baseline
read of the categorical model, not a regression head; rows need a label set whose labels have a
position (the basic emotions and their synonyms).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ... import metrics as M
from .base import label_set_of
from .recognition import RecognitionTask

# approximate (valence, arousal) on [-1, 1] (Russell 1980's circumplex, rounded)
CIRCUMPLEX = {
    "happy": (0.8, 0.5), "sad": (-0.7, -0.4), "angry": (-0.6, 0.7), "fear": (-0.6, 0.6), "worried": (-0.5, 0.3),
    "surprise": (0.3, 0.8), "neutral": (0.0, 0.0), "disgust": (-0.7, 0.3), "contempt": (-0.5, 0.2), "anxiety": (-0.5, 0.5),
    "helplessness": (-0.6, -0.3), "disappointment": (-0.6, -0.3), "repression": (-0.3, -0.2), "others": (0.0, 0.0),
}
SCALES = {"mer": (-5.0, 5.0), "deap": (1.0, 9.0), "dreamer": (1.0, 5.0)}


def position(label: str, label_set) -> tuple[float, float] | None:
    for key in (label, label_set.normalise(label)):
        if key in CIRCUMPLEX:
            return CIRCUMPLEX[key]
    basic = {"happiness": "happy", "sadness": "sad", "anger": "angry"}.get(label)
    return CIRCUMPLEX.get(basic) if basic else None


def scale_of(values: Sequence[float]) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    return "mer" if (v < 0).any() else "deap" if (v > 5).any() else "dreamer"


def ccc(a, b) -> float:
    """Lin's concordance correlation coefficient."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    cov = np.mean((a - a.mean()) * (b - b.mean()))
    return float(2 * cov / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)) if len(a) > 1 else float("nan")


class ValenceArousalTask(RecognitionTask):
    name = "valence_arousal"

    def accepts(self, row: dict) -> bool:
        return super().accepts(row) and (row.get("valence") is not None or row.get("arousal") is not None)

    def parse(self, row: dict, reply: dict) -> dict:
        p = super().parse(row, reply)
        ls = label_set_of(row)
        dist = p.get("scores") or ({p["label"]: 1.0} if p["label"] in ls.labels else {})
        pos = {k: position(k, ls) for k in dist}
        known = {k: v for k, v in dist.items() if pos[k] is not None}
        total = sum(known.values())
        if total <= 0:
            p["valence01"] = p["arousal01"] = None
        else:
            p["valence01"] = sum(v * pos[k][0] for k, v in known.items()) / total  # on [-1, 1]
            p["arousal01"] = sum(v * pos[k][1] for k, v in known.items()) / total
        return p

    def metrics(self, records: Sequence[dict], bootstrap: int = 1000) -> dict:
        out: dict = {"n": len(records)}
        for dim in ("valence", "arousal"):
            recs = [r for r in records if r["row"].get(dim) is not None]
            if not recs:
                continue
            name = scale_of([r["row"][dim] for r in recs])
            lo, hi = SCALES[name]
            y = np.array([r["row"][dim] for r in recs], dtype=float)
            pred = np.array([lo + (hi - lo) * ((r["prediction"][f"{dim}01"] if r["prediction"][f"{dim}01"] is not None else 0.0) + 1) / 2 for r in recs])
            t = (y >= 0).astype(int) if name == "mer" else M.binarize_ratings(y, name)
            pb = (pred >= 0).astype(int) if name == "mer" else M.binarize_ratings(pred, name)
            from sklearn.metrics import f1_score

            point, l, h = M.bootstrap_ci(lambda ix: ccc(y[ix], pred[ix]), len(y), n=bootstrap)
            out[dim] = {"scale": name, "n": len(y), "ccc": {"value": point, "low": l, "high": h},
                        "pearson": float(np.corrcoef(y, pred)[0, 1]) if len(y) > 1 and y.std() and pred.std() else None,
                        "mae": float(np.mean(np.abs(y - pred))), "high_low_accuracy": float(np.mean(t == pb)),
                        "high_low_f1": float(f1_score(t, pb, zero_division=0)), "unmapped": sum(r["prediction"][f"{dim}01"] is None for r in recs)}
        return out
