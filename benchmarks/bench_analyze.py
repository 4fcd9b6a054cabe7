"""``deemo analyze`` wall time on a 10 s clip, with the per-stage breakdown.

    .venv/bin/python benchmarks/bench_analyze.py [--seconds 10] [--repeats 3]

Model loading is reported apart (a server pays it once); stages are medians over repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import machine, print_table, quiet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    quiet()
    from deemo_llama.analyze import Analyzer
    from deemo_llama.sample import make_sample_clip

    clip = make_sample_clip(Path(tempfile.mkdtemp()) / "bench.mp4", seconds=args.seconds)
    analyzer = Analyzer()
    runs = [analyzer.analyze(clip).timings for _ in range(args.repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    rows = [("model load (once)", f"{analyzer.load_s:.2f} s")]
    rows += [(f"stage: {k}", f"{v:.2f} s ({100 * v / med['total']:.0f}%)") for k, v in med.items() if k != "total"]
    rows.append(("total per clip", f"{med['total']:.2f} s = {med['total'] / args.seconds:.2f}x real time"))
    print_table(f"analyze, {args.seconds:g} s clip (25 fps, 8 frames sampled), median of {args.repeats} ({machine()})", rows)


if __name__ == "__main__":
    main()
