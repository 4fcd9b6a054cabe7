"""HF ``generate`` throughput of the default LLM, fp32 vs bf16 (same prompt, greedy, same run).

    .venv/bin/python benchmarks/bench_generate.py [--new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import machine, print_table, quiet


def tokens_per_s(model, ids, new_tokens: int, repeats: int) -> float:
    model.generate(ids, max_new_tokens=4, do_sample=False)  # warm-up
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        rates.append((out.shape[1] - ids.shape[1]) / (time.perf_counter() - t))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    quiet()
    from deemo_llama.assets import default_checkpoint
    from deemo_llama.build import load_checkpoint

    rows = []
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        model, proc = load_checkpoint(default_checkpoint(), dtype=dtype)
        ids = proc([{"role": "user", "content": "Describe how a person who just got good news might sound."}]).input_ids
        rates[dtype] = tokens_per_s(model.language_model, ids, args.new_tokens, args.repeats)
        rows.append((f"generate {str(dtype).removeprefix('torch.')} (prompt {ids.shape[1]} tok, {args.new_tokens} new)", f"{rates[dtype]:.1f} tok/s"))
    rows.append(("bf16 / fp32", f"{rates[torch.bfloat16] / rates[torch.float32]:.2f}x"))
    print_table(f"HF generate, median of {args.repeats} ({machine()})", rows)


if __name__ == "__main__":
    main()
