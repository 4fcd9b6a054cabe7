"""Answer quality of ``deemo analyze`` on held-out spoken clips: accuracy, macro-F1, UAR, the share of
the most predicted label, and whether the reasoning ends cleanly without repeating itself.

    .venv/bin/python benchmarks/bench_answers.py [--experts fast] [--per-class 8] [--out answers.json]

48 short utterances (8 per MER class: neutral, angry, happy, sad, worried, surprise) written for this
benchmark and used nowhere else but the held-out set of `deemo data synth --heldout` (never for training), spoken by espeak-ng with a per-class pitch
and rate (so the voice carries the class too) and two voices, as audio-only clips (the synthetic
sample face smiles in every video, which would tell the face expert nothing). Baseline in the same
run: the calibrated label choice with the transcript only (``--experts none``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from common import machine, print_table, quiet

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
from deemo_llama.data.synth import HELDOUT_SENTENCES as SENTENCES  # noqa: E402  (the held-out set's sentences)

# espeak-ng prosody per class (pitch 0-99, words per minute): the voice carries the class as well
PROSODY = {"neutral": (45, 150), "angry": (35, 210), "happy": (75, 190), "sad": (25, 110), "worried": (55, 170), "surprise": (85, 180)}
VOICES = ("en-us", "en")


def make_set(root: Path, per_class: int) -> list[tuple[Path, str]]:
    from deemo_llama.sample import make_sample_clip

    items = []
    for label in LABELS:
        pitch, wpm = PROSODY[label]
        for i, text in enumerate(SENTENCES[label][:per_class]):
            path = make_sample_clip(root / f"{label}_{i}.wav", text=text, video=False, pitch=pitch, words_per_minute=wpm, voice=VOICES[i % 2])
            items.append((path, label))
    return items


def run(experts: str, items: list[tuple[Path, str]], cache_root: Path) -> list[dict]:
    from tqdm.auto import tqdm

    from deemo_llama.analyze import Analyzer
    from deemo_llama.tools import ToolCache

    a = Analyzer(experts=experts, labels=LABELS, cache=ToolCache(cache_root / experts))
    out = []
    for path, gold in tqdm(items, desc=f"analyze --experts {experts}", unit="clip"):
        r = a.analyze(path)
        out.append({"clip": path.name, "gold": gold, "label": r.label, "scores": r.scores, "reasoning": r.reasoning, "findings": r.findings, "seconds": r.timings["total"]})
    return out


def scores(rows: list[dict]) -> dict:
    from sklearn.metrics import f1_score, recall_score

    gold, pred = [r["gold"] for r in rows], [r["label"] for r in rows]
    top, n = Counter(pred).most_common(1)[0]
    ends = sum(r["reasoning"][-1:] in ".!?" for r in rows)
    no_repeat = sum(len(s := [x.strip().lower() for x in r["reasoning"].split(".") if x.strip()]) == len(set(s)) for r in rows)
    return {
        "accuracy": sum(g == p for g, p in zip(gold, pred)) / len(rows),
        "macro_f1": f1_score(gold, pred, labels=list(LABELS), average="macro", zero_division=0),
        "uar": recall_score(gold, pred, labels=list(LABELS), average="macro", zero_division=0),
        "top_label": f"{top} {n / len(rows):.0%}",
        "reasoning_ends_at_sentence": ends / len(rows),
        "reasoning_without_repeat": no_repeat / len(rows),
        "seconds_per_clip": sum(r["seconds"] for r in rows) / len(rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experts", default="fast", choices=("fast", "all"))
    ap.add_argument("--per-class", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    quiet()
    work = Path(tempfile.mkdtemp())
    items = make_set(work / "clips", args.per_class)
    results = {name: run(name, items, work / "cache") for name in ("none", args.experts)}
    table = {name: scores(rows) for name, rows in results.items()}
    rows = []
    for key in ("accuracy", "macro_f1", "uar", "top_label", "reasoning_ends_at_sentence", "reasoning_without_repeat", "seconds_per_clip"):
        rows.append((key, "  |  ".join(f"{name}: {v if isinstance(v, str) else f'{v:.3f}'}" for name, v in ((n, table[n][key]) for n in table))))
    print_table(f"answers on {len(items)} held-out spoken clips, chance {1 / len(LABELS):.3f} ({machine()})", rows)
    if args.out:
        args.out.write_text(json.dumps({"scores": table, "items": results}, indent=2))


if __name__ == "__main__":
    main()
