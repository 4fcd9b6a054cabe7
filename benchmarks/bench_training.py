"""Does training work, and does the trained model use its video and audio? On the synthetic corpus.

    .venv/bin/python benchmarks/bench_training.py [--clips 432] [--recipe cpu-default] [--set KEY=VALUE ...] [--work DIR]

`deemo data synth` -> `deemo data build --experts none` (the prompt holds the transcript only, so the
voice and the video can reach the model only through its media tokens) -> held-out label accuracy
of the untrained base checkpoint (the embedded default) -> `deemo train` by the recipe as shipped
(cpu-default: the anchor stage, cross-fitted, then LoRA on the LLM) -> the same AFTER, with the
audio tokens zeroed, the video tokens zeroed and both: per kind of clip (wording, voice, video:
which modality alone carries the label). For reference, a linear probe on the frozen encoders'
features (is the label in them at all?) and the anchor stage's own accuracy (nearest label word,
out of fold and on the validation split). Also the training throughput with and without the
encoder-feature cache (same steps, same run). Subject-independent splits (train 0.5, validation
0.17, test 0.33 of the subjects' clips).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import machine, print_table, quiet


def ablation_table(ckpt: Path, rows_file: Path, cache: Path):
    from deemo_llama.build import load_checkpoint
    from deemo_llama.training.features import FeatureCache
    from deemo_llama.training.rows import load_records, tokenize_rows
    from deemo_llama.training.probe import media_ablation

    model, proc = load_checkpoint(ckpt)
    rows = [r for r in load_records(rows_file) if r["kind"] == "recognition"]
    return media_ablation(model, proc, tokenize_rows(rows, proc, rows_file.parent), FeatureCache(cache, model, proc), lambda r: r["meta"]["kind"])


def probe_table(train_file: Path, test_file: Path, cache: Path):
    from deemo_llama.assets import base_checkpoint
    from deemo_llama.build import load_checkpoint
    from deemo_llama.training.features import FeatureCache
    from deemo_llama.training.rows import load_records, tokenize_rows
    from deemo_llama.training.probe import feature_probe

    model, proc = load_checkpoint(base_checkpoint())
    tr, te = (tokenize_rows([r for r in load_records(f) if r["kind"] == "recognition"], proc, f.parent) for f in (train_file, test_file))
    return feature_probe(tr, te, FeatureCache(cache, model, proc), lambda r: r["meta"]["kind"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=432)
    ap.add_argument("--recipe", default="cpu-default", help="the recipe trained by (a shipped name or a YAML file)")
    ap.add_argument("--base", type=Path, default=None, help="the untrained checkpoint to start from (default: the embedded default)")
    ap.add_argument("--kinds", default="recognition", help="row kinds trained on (data.kinds), comma-separated; the corpus is built with recognition and reasoning rows")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides for the training run, as `deemo train --set` (e.g. data.modality_dropout=0.3)")
    ap.add_argument("--work", type=Path, default=None, help="keep the corpus, build and checkpoints here (default: a temporary folder)")
    ap.add_argument("--name", default="ckpt", help="the run's folder under --work (another name: another run on the same corpus)")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    quiet()
    from deemo_llama.assets import base_checkpoint
    from deemo_llama.data.build import BuildOptions, build_dataset
    from deemo_llama.data.synth import synth_corpus
    from deemo_llama.training import load_recipe, train

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        t = time.perf_counter()
        manifest = synth_corpus(work / "synth", clips=args.clips, progress=False)
        build = build_dataset(manifest, work / "built", BuildOptions(experts="none", kinds=("recognition", "reasoning"), ratios=(0.5, 0.17, 0.33)), progress=True)
        data_s = time.perf_counter() - t
        test = work / "built" / "test.jsonl"
        cache = work / "features"
        base = args.base or base_checkpoint()
        before = ablation_table(base, test, cache)
        probe = probe_table(work / "built" / "train.jsonl", test, cache)
        kinds = "[" + ", ".join(k.strip() for k in args.kinds.split(",")) + "]"
        sets = [f"data.train={work / 'built'}", f"data.feature_cache_dir={cache}", f"data.kinds={kinds}", f"model.checkpoint={base}", "logging.every_steps=5", *args.sets]
        recipe = load_recipe(args.recipe, sets)
        t = time.perf_counter()
        ckpt = train(recipe, work / args.name)
        train_s = time.perf_counter() - t
        summary = json.loads((ckpt / "train_summary.json").read_text())
        after = ablation_table(ckpt, test, cache)
        # throughput with and without the feature cache: the same 4 finetune steps on the same row kinds (the rows
        # file, not the folder: no validation pass, which would time the encoders again)
        speed = {}
        for on in (True, False):
            r = load_recipe(args.recipe, [f"data.train={work / 'built' / 'train.jsonl'}", f"data.feature_cache_dir={cache}", f"data.feature_cache={str(on).lower()}", f"data.kinds={kinds}", f"model.checkpoint={base}", "stages=[{name: finetune, max_steps: 4}]"])
            out = train(r, work / f"{args.name}-speed-{on}")
            speed[on] = json.loads((out / "train_summary.json").read_text())["samples_per_s"]
        n_test = sum(1 for line in test.read_text().splitlines() if '"recognition"' in line)
    kinds = ["wording", "voice", "video", "all"]
    rows = [("machine", machine()), ("corpus", f"{args.clips} synthetic clips, rows train/val/test {build.rows['train']}/{build.rows['validation']}/{build.rows['test']}, {n_test} held-out clips (subject-independent)"),
            ("data synth + build (s)", f"{data_s:.0f}"),
            ("recipe", f"{args.recipe}: " + ", ".join(f"{s.name} {s.max_steps or s.epochs} {'steps' if s.max_steps else 'epochs'}" + (f" ({s.folds} folds)" if s.folds > 1 else "") for s in recipe.stages)
             + f"; optimiser steps {summary['steps']}, batch {recipe.batch_size} x grad_accum {recipe.grad_accum}, row kinds {args.kinds}" + "".join(f", {x}" for x in args.sets)),
            ("training wall (s)", f"{train_s:.0f}"),
            ("samples/s (training)", f"{summary['samples_per_s']:.2f}"), ("validation accuracy per stage", ", ".join(f"{s['stage']} {s.get('val_accuracy', float('nan')):.2f}" for s in summary["stages"])),
            *((f"anchor stage: nearest label word, {what} (audio / video)", " / ".join(f"{st[key].get(m, float('nan')):.2f}" for m in ("audio", "video")))
              for st in summary["stages"] for key, what in (("anchor_oof_accuracy", "training clips out of fold"), ("anchor_val_accuracy", "validation clips")) if key in st),
            ("samples/s, feature cache on / off", f"{speed[True]:.2f} / {speed[False]:.2f} ({speed[True] / speed[False]:.2f}x)")]
    for name, table in (("untrained", before["none"]), *((f"trained, {c}", after[c]) for c in after)):
        rows.append((f"accuracy {name} (" + " / ".join(kinds) + ")", " / ".join(f"{table.get(k, float('nan')):.2f}" for k in kinds)))
    for m, table in probe.items():
        rows.append((f"reference: linear probe on frozen {m} features (" + " / ".join(kinds) + ")", " / ".join(f"{table.get(k, float('nan')):.2f}" for k in kinds)))
    print_table("training on the synthetic corpus: held-out accuracy (chance 0.17) by the kind of clip", rows)
    if args.out:
        args.out.write_text(json.dumps({"before": before, "after": after, "probe": probe, "summary": summary, "speed": {"cache": speed[True], "no_cache": speed[False]}, "machine": machine()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
