"""Throughput of ``deemo data build`` on the synthetic corpus: clips/s with 1 and 2 workers,
uncached (a fresh output folder) and cached (the same build run again: every clip reused).

    .venv/bin/python benchmarks/bench_data_build.py [--clips 72] [--experts fast]

Baseline in the same run: 1 worker, uncached; the other figures are reported as ratios to it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import machine, print_table, quiet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=None, help="synthetic clips (default: deemo data synth's default)")
    ap.add_argument("--experts", default="fast")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    quiet()
    from deemo_llama.data.build import BuildOptions, build_dataset
    from deemo_llama.data.synth import DEFAULT_CLIPS, synth_corpus

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        manifest = synth_corpus(tmp / "synth", clips=args.clips or DEFAULT_CLIPS, progress=False)
        synth_s = time.perf_counter() - t
        n = sum(1 for line in manifest.read_text().splitlines() if line.strip())
        figures: dict[str, float] = {}
        for workers in (1, 2):
            out = tmp / f"built-{workers}"
            for phase in ("uncached", "cached"):
                t = time.perf_counter()
                r = build_dataset(manifest, out, BuildOptions(experts=args.experts, workers=workers), progress=False)
                s = time.perf_counter() - t
                assert r.failed == 0, r.errors
                assert (r.built, r.cached) == ((n, 0) if phase == "uncached" else (0, n)), (phase, r)
                figures[f"{workers}w_{phase}"] = n / s
                print(f"{workers} worker(s), {phase}: {n} clips in {s:.1f} s = {n / s:.3f} clips/s", flush=True)
        rows = json.loads((tmp / "built-1" / "build.json").read_text())["rows"]
    base = figures["1w_uncached"]
    table = [("machine", machine()), ("clips", str(n)), ("rows (train/validation/test)", "/".join(str(v) for v in rows.values())),
             ("experts profile", args.experts), ("synth (s)", f"{synth_s:.1f}")]
    for k, v in figures.items():
        table.append((f"clips/s, {k.replace('w_', ' worker(s), ')}", f"{v:.3f} ({v / base:.2f}x)"))
    print_table("deemo data build throughput (ratios vs 1 worker uncached)", table)
    if args.out:
        args.out.write_text(json.dumps({"clips": n, "clips_per_s": figures, "machine": machine()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
