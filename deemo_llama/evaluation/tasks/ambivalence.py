"""Ambivalence/hesitancy (BAH): a binary label per clip, scored as BAH scores it.

Rows: recognition rows of the ``bah`` label set ("not ambivalent", "ambivalent"). The label is read
as recognition reads it; the positive score is the system's probability of "ambivalent" (1/0 from
the extracted label when a reply has text only). Figures: BAH's macro-F1 and average precision of
the positive class (``metrics.bah_scores``), plus the recognition figures.
"""

from __future__ import annotations

from typing import Sequence

from ... import metrics as M
from .recognition import RecognitionTask

POSITIVE = "ambivalent"


class AmbivalenceTask(RecognitionTask):
    name = "ambivalence"

    def accepts(self, row: dict) -> bool:
        return super().accepts(row) and row.get("label_set", {}).get("name") == "bah"

    def parse(self, row: dict, reply: dict) -> dict:
        p = super().parse(row, reply)
        p["positive_score"] = float(p["scores"][POSITIVE]) if p.get("scores") and POSITIVE in p["scores"] else float(p["label"] == POSITIVE)
        return p

    def metrics(self, records: Sequence[dict], bootstrap: int = 1000) -> dict:
        out = super().metrics(records, bootstrap)
        if records:
            y = [int(r["row"]["label"] == POSITIVE) for r in records]
            s = [r["prediction"]["positive_score"] for r in records]
            out["bah"] = M.bah_scores(y, s) if 0 < sum(y) < len(y) else {"macro_f1": None, "ap_positive": None, "note": "needs both classes"}
        return out
