"""Recognition: one label of the row's label set per clip.

The label is the system's own choice when it returns calibrated scores (``deemo analyze`` and the
gateway do); a reply with text only (any other OpenAI-compatible server) is read by
:func:`~deemo_llama.evaluation.extract.extract_label`. Figures: accuracy (= WAR), UAR, weighted and
macro F1 with bootstrap intervals, the per-class report, the confusion matrix, the largest share of
the predictions one label takes, unparsed replies; per demographic column the rows carry, per-group
UAR/WAR and the fairness gaps, and the same data's own bias.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ... import metrics as M
from ..extract import extract_label
from .base import Task, label_set_of

UNPARSED = "<unparsed>"


def corrections(raw: dict) -> int | None:
    """How many cue verdicts the system set right in this reply's explanation (``deemo analyze``
    reports ``reasoning_corrections``, the gateway its ``deemo`` field's); None when not reported."""
    got = raw.get("reasoning_corrections", (raw.get("deemo") or {}).get("reasoning_corrections"))
    return len(got) if isinstance(got, list) else None


class RecognitionTask(Task):
    name = "recognition"
    kinds = ("recognition",)

    def parse(self, row: dict, reply: dict) -> dict:
        from .reasoning import grounding

        ls = label_set_of(row)
        why = grounding(reply.get("text") or "", reply.get("evidence"))
        fixed = corrections(reply.get("raw") or {})
        scores = reply.get("scores")
        if scores:
            own = {ls.normalise(k): v for k, v in scores.items()}
            own = {k: v for k, v in own.items() if k is not None}
            if own:
                return {"label": max(own, key=own.get), "how": "scores", "scores": own, "grounding": why, "corrections": fixed}
        ex = extract_label(reply.get("text") or "", ls)
        return {"label": ex.label or UNPARSED, "how": ex.how, "scores": None, "grounding": why, "corrections": fixed}

    def metrics(self, records: Sequence[dict], bootstrap: int = 1000) -> dict:
        if not records:
            return {"n": 0}
        labels = list(records[0]["row"]["label_set"]["labels"])
        y_true = np.array([r["row"]["label"] for r in records], dtype=object)
        y_pred = np.array([r["prediction"]["label"] for r in records], dtype=object)
        out: dict = {"n": len(records), "labels": labels}
        for name, fn in (("accuracy", M.war), ("uar", M.uar), ("weighted_f1", M.weighted_f1), ("macro_f1", _macro_f1(labels))):
            point, lo, hi = M.bootstrap_ci(lambda ix, fn=fn: fn(y_true[ix], y_pred[ix]), len(records), n=bootstrap)
            out[name] = {"value": point, "low": lo, "high": hi}
        out["per_class"] = M.per_class(y_true, y_pred, labels)
        out["confusion"] = M.confusion(y_true, y_pred, labels).tolist()
        shares = {c: float(np.mean(y_pred == c)) for c in labels}
        out["top_prediction_share"] = max(shares.values())
        out["unparsed"] = int(np.sum(y_pred == UNPARSED))
        out["parsed_from"] = {k: int(v) for k, v in zip(*np.unique([r["prediction"]["how"].split(":")[0] for r in records], return_counts=True))}
        out["fairness"] = fairness_report(records, y_true, y_pred, labels, bootstrap)
        grounded = [g["grounded"] for r in records if (g := r["prediction"].get("grounding")) is not None]
        # the judge-free reasoning proxy: explanations whose cues name only modalities that were observed
        out["cites_only_observed"] = float(np.mean(grounded)) if grounded else None
        # how often the model's own explanation stated a cue verdict against the Evidence (set right
        # before the user saw it: prompting.ReasoningFilter); None when the system does not report it
        fixed = [c for r in records if (c := r["prediction"].get("corrections")) is not None]
        out["verdicts_corrected"] = float(np.mean([c > 0 for c in fixed])) if fixed else None
        return out


def _macro_f1(labels):
    from sklearn.metrics import f1_score

    return lambda t, p: float(f1_score(t, p, labels=labels, average="macro", zero_division=0))


def demographic_columns(records: Sequence[dict]) -> list[str]:
    cols: set[str] = set()
    for r in records:
        cols |= set((r["row"].get("demographics") or {}).keys())
    return sorted(cols)


def fairness_report(records: Sequence[dict], y_true, y_pred, labels: list[str], bootstrap: int) -> dict:
    """Per demographic column (from the rows' metadata, never inferred): per-group UAR/WAR
    (fairlearn's MetricFrame), the four fairness gaps with bootstrap intervals, and the data's bias."""
    out = {}
    for col in demographic_columns(records):
        groups = np.array([str((r["row"].get("demographics") or {}).get(col) or "unknown") for r in records], dtype=object)
        if len(set(groups)) < 2:
            continue
        from fairlearn.metrics import MetricFrame

        frame = MetricFrame(metrics={"uar": M.uar, "war": M.war, "n": lambda t, p: len(t)}, y_true=list(y_true), y_pred=list(y_pred), sensitive_features=list(groups))
        per_group = {str(g): {k: float(v) for k, v in row.items()} for g, row in frame.by_group.iterrows()}
        gaps = {}
        for gap in ("eqopp", "tteqodds", "dempar", "overall_disparity"):
            point, lo, hi = M.bootstrap_ci(lambda ix, gap=gap: _gap(y_true[ix], y_pred[ix], groups[ix], labels, gap), len(records), n=bootstrap)
            gaps[gap] = {"value": point, "low": lo, "high": hi}
        for g in per_group:  # per-group intervals (bootstrap within the group)
            m = groups == g
            for k, fn in (("uar", M.uar), ("war", M.war)):
                _, lo, hi = M.bootstrap_ci(lambda ix, fn=fn: fn(y_true[m][ix], y_pred[m][ix]), int(m.sum()), n=bootstrap)
                per_group[g][f"{k}_low"], per_group[g][f"{k}_high"] = lo, hi
        out[col] = {"per_group": per_group, "gaps": gaps, "data_bias": M.dataset_bias(y_true, groups)}
    return out


def _gap(y_true, y_pred, groups, labels, name) -> float:
    if len(set(groups)) < 2:
        return float("nan")
    return M.fairness(y_true, y_pred, groups, labels)[name]
