"""Cached-asset load time vs loading the source GGUF each time (the baseline the cache replaces).

    .venv/bin/python benchmarks/bench_load.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import machine, print_table, quiet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    quiet()
    from transformers import AutoModelForCausalLM
    from deemo_llama.assets import SOURCES, asset_dir
    from deemo_llama.build import load_checkpoint

    gguf = SOURCES["llm"].path()
    fig = {"gguf": [], "llm": [], "checkpoint": []}
    for _ in range(args.repeats):
        t = time.perf_counter(); AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name); fig["gguf"].append(time.perf_counter() - t)
        t = time.perf_counter(); AutoModelForCausalLM.from_pretrained(asset_dir("llm")); fig["llm"].append(time.perf_counter() - t)
        t = time.perf_counter(); load_checkpoint(asset_dir("checkpoint")); fig["checkpoint"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in fig.items()}
    print_table(f"asset load, median of {args.repeats} ({machine()})", [
        ("SmolLM2 from GGUF (dequantised each load, baseline)", f"{med['gguf']:.2f} s"),
        ("SmolLM2 from the cached safetensors", f"{med['llm']:.2f} s"),
        ("deemo-default checkpoint (LLM + encoders + projectors)", f"{med['checkpoint']:.2f} s"),
        ("speed-up of the cached LLM over GGUF", f"{med['gguf'] / med['llm']:.1f}x"),
    ])


if __name__ == "__main__":
    main()
