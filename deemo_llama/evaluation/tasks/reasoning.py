"""Reasoning: the explanation of the cues, against the row's reference explanation.

Judge-free proxies, deterministic (domain.md): label-set F1 (the emotion words of each text, after
synonym normalisation, negated mentions left out) and clue-set F1 (the cue terms of each text: the
face, voice, body and wording cues of the field's vocabulary). With a judge (``deemo eval judge``,
any OpenAI-compatible server), clue overlap and label overlap 0-10 as the DEEMO paper scores them;
the judge's replies are stored in the run, and unparseable ones are counted, not guessed.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ... import metrics as M
from ..extract import NEGATIONS, emotion_words
from .base import Task, label_set_of

# cue terms (word prefixes) of the field's vocabulary; each maps to one clue
CUES = {
    "smile": "smile", "grin": "smile", "laugh": "smile", "frown": "frown", "brow": "brow", "eyebrow": "brow",
    "tear": "tears", "cry": "tears", "crie": "tears", "grimace": "grimace", "jaw": "jaw", "lip": "lips", "mouth": "mouth",
    "eye": "eyes", "gaze": "eyes", "stare": "eyes", "blink": "eyes", "face": "face", "facial": "face", "expression": "face",
    "pitch": "pitch", "loud": "loudness", "quiet": "loudness", "soft": "loudness", "volume": "loudness", "trembl": "tremor",
    "shak": "tremor", "tremor": "tremor", "fast": "tempo", "slow": "tempo", "pace": "tempo", "rapid": "tempo", "speed": "tempo",
    "monoton": "flat voice", "flat": "flat voice", "even": "flat voice", "tone": "tone", "voice": "voice", "sigh": "sigh",
    "posture": "posture", "slump": "posture", "lean": "posture", "gestur": "gesture", "fidget": "fidget", "shrug": "shrug",
    "arm": "arms", "head": "head", "nod": "head", "withdraw": "withdrawal", "shrink": "withdrawal", "draw": "withdrawal",
    "hand": "hands", "word": "words", "said": "words", "says": "words", "sentence": "words", "transcript": "words",
}
_TOKEN = re.compile(r"[a-z]+")


def cue_set(text: str) -> set[str]:
    words = _TOKEN.findall((text or "").lower())
    out = set()
    for i, w in enumerate(words):
        if any(n in NEGATIONS for n in words[max(0, i - 2) : i]):
            continue
        for stem, cue in CUES.items():
            if w.startswith(stem) and (len(stem) >= 4 or w == stem or w.rstrip("s") == stem):
                out.add(cue)
                break
    return out


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
