"""Reasoning: the explanation of the cues, against the row's reference explanation.

Judge-free proxies, deterministic (domain.md): label-set F1 (the emotion words of each text, after
synonym normalisation, negated mentions left out) and clue-set F1 (the cue terms of each text: the
face, voice, body and wording cues of the field's vocabulary). With a judge (``deemo eval judge``,
any OpenAI-compatible server), clue overlap and label overlap 0-10 as the DEEMO paper scores them;
the judge's replies are stored in the run, and unparseable ones are counted, not guessed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ... import metrics as M
from ...prompting import CUE_MODALITY, CUES, cited_modalities, cue_set  # noqa: F401  (the one cue vocabulary; CUES re-exported)
from ..extract import emotion_words
from .base import Task, label_set_of

FINDING_MODALITY = {"Face": "face", "Voice": "voice", "Body": "body", "Physiology": "physiology", "Wording": "words"}


def observed_modalities(evidence: dict | None) -> set[str]:
    """What the system was shown (a reply's evidence summary): the experts' finding lines that are not
    "no face visible"/"no voiced speech", and the words when there is a transcript."""
    if (evidence or {}).get("observed") is not None:  # the backend said (evidence_summary)
        return set(evidence["observed"])
    out = set()
    for line in (evidence or {}).get("findings") or []:
        head, _, rest = line.removeprefix("- ").partition(":")
        if head in FINDING_MODALITY and not rest.strip().lower().startswith("no "):
            out.add(FINDING_MODALITY[head])
    if ((evidence or {}).get("transcript") or "").strip():
        out.add("words")
    return out


def grounding(text: str, evidence: dict | None) -> dict | None:
    """{cited, observed, grounded}: the modalities the explanation's cues name, and whether each was
    observed (the judge-free proxy "cites only observed evidence"); None without an evidence summary."""
    if evidence is None:
        return None
    cited = cited_modalities(text)
    seen = observed_modalities(evidence)
    return {"cited": sorted(cited), "observed": sorted(seen), "grounded": cited <= seen}


def set_f1(pred: set, gold: set) -> float:
    """F1 of two sets; 1.0 when both are empty (nothing to find, nothing claimed)."""
    if not pred and not gold:
        return 1.0
    tp = len(pred & gold)
    return 2 * tp / (len(pred) + len(gold))


class ReasoningTask(Task):
    name = "reasoning"
    kinds = ("reasoning",)

    def item(self, row: dict):
        it = super().item(row)
        it.max_tokens = 160
        return it

    def parse(self, row: dict, reply: dict) -> dict:
        ls = label_set_of(row)
        text, ref = reply.get("text") or "", row["reference"]
        pw, gw = emotion_words(text, ls), emotion_words(ref, ls)
        pc, gc = cue_set(text), cue_set(" ".join([ref, *(row.get("clues") or [])]))
        return {"label_words": sorted(pw), "reference_label_words": sorted(gw), "label_set_f1": set_f1(pw, gw),
                "cues": sorted(pc), "reference_cues": sorted(gc), "clue_set_f1": set_f1(pc, gc)}

    def metrics(self, records: Sequence[dict], bootstrap: int = 1000) -> dict:
        out: dict = {"n": len(records)}
        if not records:
            return out
        for key in ("label_set_f1", "clue_set_f1"):
            v = np.array([r["prediction"][key] for r in records], dtype=float)
            point, lo, hi = M.bootstrap_ci(lambda ix, v=v: float(v[ix].mean()), len(v), n=bootstrap)
            out[key] = {"value": point, "low": lo, "high": hi}
        judged = [r for r in records if r.get("judge")]
        if judged:
            out["judge"] = {"model": judged[0]["judge"].get("model"), "prompt_version": judged[0]["judge"].get("version"), "n": len(judged)}
            for key in ("clue_overlap", "label_overlap"):
                scores = [r["judge"][key]["score"] for r in judged if r["judge"].get(key) and r["judge"][key]["score"] is not None]
                out["judge"][f"{key}_unparsed"] = len(judged) - len(scores)
                if scores:
                    v = np.array(scores, dtype=float)
                    point, lo, hi = M.bootstrap_ci(lambda ix, v=v: float(v[ix].mean()), len(v), n=bootstrap)
                    out["judge"][key] = {"value": point, "low": lo, "high": hi, "histogram": np.bincount(v.round().astype(int), minlength=11)[:11].tolist()}
        return out
