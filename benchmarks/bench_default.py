"""Proof of the fine-tuned default (issue 13), through `deemo eval`: held-out spoken clips, six systems.

    .venv/bin/python benchmarks/bench_default.py [--work /tmp/bench-default] [--checkpoint CKPT] [--heldout-set a|b|c|d|e|f] [--out results.json]

The held-out set is `deemo data synth --heldout-set f` by default (192 clips: 16 per MER class of each
kind; sentences and voice files no clip the shipped default learned from has). Sets a (96 clips), b
(96) and c-e (192 each) share no sentence with each other or the training corpus either; each was
measured once for an earlier default, and a, b, c and e are now rows the shipped fuser learned from,
so they measure the shipped default on its own training data (another --checkpoint may still use them).
The set is built by `deemo data build` inside the
privacy boundary (experts fast, Whisper transcripts made as the checkpoint's training rows were:
of the anonymised audio, or of the raw audio inside the boundary), then asked by
`deemo eval run --task recognition` once per system, all on the same rows in one run:

    (a) free text     the base LLM (zero-shot), its unforced answer; the label read from the text
    (b) calibrated    the base LLM (zero-shot), calibrated label scores (`--mode zero-shot`)
    (c) transcript    (b) with the words only (`--experts none`): a transcript-only system
    (d) trained LLM   the fine-tuned LLM alone, media tokens in (`--mode trained`)
    (e) fused         the trained LLM + the experts' fuser (`--mode fused`)
    (f) media zeroed  the checkpoint's default mode (no --mode: (d) or (e), as its fuser's training
                      chose, printed first) with the audio and video tokens zeroed (`--zero-media audio,video`)

Printed: accuracy, UAR, macro-F1, the largest share of predictions, accuracy on the wording clips and
on the voice clips (neutral words: only the prosody carries the class), the share of explanations
citing only observed evidence, and each system's confusion matrix (also as a figure, confusion.png).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import machine

ROOT = Path(__file__).resolve().parents[1]
DEEMO = [sys.executable, "-m", "deemo_llama.cli"]
# (checkpoint, options): "base" is the embedded untrained checkpoint (its LLM is the default's without
# the adapter, which is what zero-shot runs), "trained" the fine-tuned default (or --checkpoint)
SYSTEMS = {
    "(a) free text": ("base", ["--mode", "free-text"]),
    "(b) calibrated": ("base", ["--mode", "zero-shot"]),
    "(c) transcript only": ("base", ["--mode", "zero-shot", "--experts", "none"]),
    "(d) trained LLM": ("trained", ["--mode", "trained"]),
    "(e) fused": ("trained", ["--mode", "fused"]),
    "(f) default, media zeroed": ("trained", ["--zero-media", "audio,video"]),
}


def checkpoint_dir(checkpoint: str) -> Path:
    from deemo_llama.assets import default_checkpoint

    return default_checkpoint() if checkpoint == "default" else Path(checkpoint)


def default_mode(checkpoint: str) -> tuple[str, str]:
    """(mode, why) the checkpoint runs when no --mode is given (analyze.resolve_mode)."""
    from deemo_llama.fusion import find_fuser
    from deemo_llama.serving.gateway import serving_mode

    ckpt = checkpoint_dir(checkpoint)
    fuser = find_fuser(ckpt)
    why = ((fuser.info.get("default_mode") or {}).get("reason") or "the fuser predates the recorded choice") if fuser else "no fuser"
    return serving_mode(ckpt)[0], why


def sh(*args, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=ROOT, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(map(str, args))}")
    return r


def transcribe_from(checkpoint: str) -> str:
    """The audio the checkpoint's training transcripts were made from: the held-out rows are made so too."""
    from deemo_llama.config import DeemoConfig

    return DeemoConfig.load(checkpoint_dir(checkpoint)).transcribe_from


def build(work: Path, which: str, source: str) -> Path:
    rows = work / "built" / "test.jsonl"
    if not rows.is_file():
        sh(*DEEMO, "data", "synth", work / "clips", "--heldout-set", which)
        sh(*DEEMO, "data", "build", work / "clips" / "manifest.jsonl", work / "built", "--kinds", "recognition", "--experts", "fast", "--transcript", "whisper", "--transcribe-from", source, "--split", "0,0,1")
    from deemo_llama.data.build import built_transcribe_from

    made = built_transcribe_from(work / "built")
    if made != source:
        raise SystemExit(f"{work}: its rows were transcribed from the {made} audio, the checkpoint's from the {source} audio: use another --work")
    return rows


def per_kind(run: Path) -> dict[str, float]:
    recs = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines() if x.strip()]
    out = {}
    for kind in ("wording", "voice"):
        hits = [r["prediction"]["label"] == r["row"]["label"] for r in recs if r["row"]["meta"]["kind"] == kind]
        out[kind] = sum(hits) / len(hits) if hits else float("nan")
    return out


def corrections_by_cue(run: Path) -> dict[str, int]:
    """What the reasoning filter set right in the run's explanations, counted by cue (the words'
    verdict, the face's, the lexicon emotions named, the closing sentence)."""
    out: dict[str, int] = {}
    for line in filter(str.strip, (run / "results.jsonl").read_text().splitlines()):
        for c in (json.loads(line)["reply"].get("raw") or {}).get("reasoning_corrections") or []:
            out[c["cue"]] = out.get(c["cue"], 0) + 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-default"))
    ap.add_argument("--checkpoint", default="default", help="the fine-tuned checkpoint (default: the shipped default)")
    ap.add_argument("--systems", default=",".join(k[1] for k in SYSTEMS), help="letters of the systems to run")
    ap.add_argument("--heldout-set", default="f", choices=["a", "b", "c", "d", "e", "f"], help="which held-out spoken set: a (96 clips, the first), b (96 clips, used once to decide against a recipe), c (192 clips), d (192 clips, measured once for a default of 2026-12-07), e (192 clips, measured once for a default of 2026-12-07) or f (the default: 192 clips, measured once for the shipped default, whose card's scores are set f's; its fuser learned from sets a, b, c and e)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    source = transcribe_from(args.checkpoint)
    rows = build(args.work, args.heldout_set, source)
    print(f"transcripts: Whisper on the {source} audio (as the checkpoint was trained)", flush=True)
    from deemo_llama.data.synth import plan_heldout

    first = json.loads(rows.read_text().splitlines()[0])["clip_id"]
    if first not in {spec["id"] for spec in plan_heldout(which=args.heldout_set)}:
        raise SystemExit(f"{rows} holds another set's rows ({first}): use another --work for --heldout-set {args.heldout_set}")
    mode, why = default_mode(args.checkpoint)
    print(f"the checkpoint's default mode: {mode} ({why})", flush=True)
    table, confusions = {}, {}
    from deemo_llama.assets import base_checkpoint

    for name, (which, extra) in SYSTEMS.items():
        if name[1] not in args.systems.split(","):
            continue
        run = args.work / "runs" / name[1]
        ckpt = base_checkpoint() if which == "base" else args.checkpoint
        sh(*DEEMO, "eval", "run", "--data", rows, "--task", "recognition", "--out", run, "--checkpoint", ckpt, *extra, "--json", stdout=subprocess.DEVNULL)
        rep = json.loads((run / "report.json").read_text())["metrics"]
        table[name] = {"accuracy": rep["accuracy"]["value"], "uar": rep["uar"]["value"], "macro_f1": rep["macro_f1"]["value"], "top_share": rep["top_prediction_share"],
                       **{f"acc_{k}": v for k, v in per_kind(run).items()}, "cites_only_observed": rep.get("cites_only_observed"), "verdicts_corrected": rep.get("verdicts_corrected"), "unparsed": rep["unparsed"]}
        confusions[name] = (rep["labels"], rep["confusion"])
        table[name]["corrections"] = corrections_by_cue(run)
    from rich.console import Console
    from rich.table import Table

    n = sum(1 for x in rows.read_text().splitlines() if x.strip())
    cols = ("accuracy", "uar", "macro_f1", "top_share", "acc_wording", "acc_voice", "cites_only_observed", "verdicts_corrected", "unparsed")
    t = Table(title=f"held-out spoken set {args.heldout_set}: {n} clips, 6 classes (chance 0.167); {machine()}")
    t.add_column("system")
    for c in cols:
        t.add_column(c.replace("_", " "), justify="right")
    for k, v in table.items():
        t.add_row(k, *(f"{v[c]:.3f}" if isinstance(v[c], float) else str(v[c]) for c in cols))
    Console(width=160).print(t)
    print(f"the default as users meet it: {mode} mode, {'(d)' if mode == 'trained' else '(e)'} ({why})")
    for k, v in table.items():
        if v["corrections"]:
            print(f"{k}: explanation parts set right to the Evidence: " + ", ".join(f"{cue} {n}" for cue, n in sorted(v["corrections"].items(), key=lambda x: -x[1])))
    for name, (labels, conf) in confusions.items():
        print(f"\n{name}: confusion (rows true, columns predicted: {', '.join(labels)})")
        for lab, row in zip(labels, conf):
            print(f"  {lab:>9s} " + " ".join(f"{v:3d}" for v in row))
    _plot(confusions, args.work / "confusion.png")
    if args.out:
        args.out.write_text(json.dumps({"heldout_set": args.heldout_set, "scores": table, "confusion": confusions, "default_mode": {"mode": mode, "why": why}, "machine": machine()}, indent=1))


def _plot(confusions: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(confusions), figsize=(3.2 * len(confusions), 3.4))
    for ax, (name, (labels, conf)) in zip(np.atleast_1d(axes), confusions.items()):
        ax.imshow(np.asarray(conf), cmap="Blues")
        ax.set_title(name, fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nconfusion matrices: {path}")


if __name__ == "__main__":
    main()
