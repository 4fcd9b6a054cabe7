"""Micro-expression spotting (MEGC), on rows that carry annotated intervals (``micro_expressions``).

The system's spotted intervals are the face expert's ``micro_expression`` events in the Evidence it
answered from (both backends store them with the reply). Figures: MEGC spotting precision, recall and
F1 at IoU >= 0.5 with TP/FP/FN counted over the whole set (``metrics.spotting_f1``), and STRS =
F1_spot x F1_recognition, each spotted interval labelled with the clip's predicted label and each
annotated one with the clip's label (``metrics.strs``). A row with ``micro_expressions: []`` is
annotated as having none: anything spotted there is a false positive.
"""

from __future__ import annotations

from typing import Sequence

from ... import metrics as M
from .recognition import RecognitionTask


def annotated(row: dict) -> list[tuple[float, float]]:
    """The annotated micro-expression intervals (entries with an onset only, as some datasets give, are
    not intervals and are left out; ``intervals_incomplete`` in the figures counts them)."""
    return [(float(m["onset_s"]), float(m["offset_s"])) for m in row.get("micro_expressions") or [] if m.get("type", "micro") == "micro" and m.get("offset_s") is not None]


class SpottingTask(RecognitionTask):
    name = "spotting"

    def accepts(self, row: dict) -> bool:
        return super().accepts(row) and row.get("micro_expressions") is not None

    def row_fields(self, row: dict) -> dict:
        return super().row_fields(row) | {"micro_expressions": row.get("micro_expressions")}

    def parse(self, row: dict, reply: dict) -> dict:
        p = super().parse(row, reply)
        p["spotted"] = [list(x) for x in (reply.get("evidence") or {}).get("spotted") or []]
        p["face_ran"] = (reply.get("evidence") or {}).get("spotted") is not None
        return p

    def metrics(self, records: Sequence[dict], bootstrap: int = 1000) -> dict:
        out = {"n": len(records)}
        if not records:
            return out
        gt = {r["id"]: annotated(r["row"]) for r in records}
        pred = {r["id"]: [tuple(x) for x in r["prediction"]["spotted"]] for r in records}
        s = M.spotting_f1(gt, pred)
        out["spotting"] = {"tp": s.tp, "fp": s.fp, "fn": s.fn, "precision": s.precision, "recall": s.recall, "f1": s.f1, "iou": 0.5}
        out["strs"] = M.strs({r["id"]: [(*g, r["row"]["label"]) for g in gt[r["id"]]] for r in records},
                             {r["id"]: [(*p, r["prediction"]["label"]) for p in pred[r["id"]]] for r in records})
        out["face_expert_missing"] = sum(not r["prediction"]["face_ran"] for r in records)
        out["intervals_incomplete"] = sum(m.get("offset_s") is None for r in records for m in r["row"].get("micro_expressions") or [])
        return out
