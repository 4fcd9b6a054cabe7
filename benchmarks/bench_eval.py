"""`deemo eval run` throughput: items/s in process and against the served embedded default at
concurrency 1 and 8, on the same rows, in one run (ratios vs in process); and how far the served
answers (`deemo serve`'s default dtype: bf16 where the hardware has it) are from the in-process ones
(float32, transformers): labels that differ, and the largest gap in any label's score.

    .venv/bin/python benchmarks/bench_eval.py [--items 12] [--data ROWS.jsonl]

Without --data, a small synthetic test split is built by our own pipeline (`deemo data synth`, then
`deemo data build --experts none`). In process runs the Evidence pipeline on each row's
de-identified media (`--pipeline-evidence`), as the server does, so both sides do the same work.
`deemo serve --no-ui` starts vLLM and the gateway (needs .venv-vllm: `bash scripts/setup-vllm.sh`). Each item runs the whole Evidence pipeline (de-identify,
transcribe, the fast experts) and the label scorer and reasoning, on 2 cores the CPU-bound part.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine, print_table, quiet, served

DEEMO = str(Path(sys.executable).parent / "deemo")


def _eval(args: list[str], out: Path) -> tuple[float, int, str]:
    """(items/s, failed items, first error) of one `deemo eval run` (its own figure: items answered /
    seconds asking; failed items are those still failing after the client's retries)."""
    r = subprocess.run([DEEMO, "eval", "run", *args, "--out", str(out)], capture_output=True, text=True)
    line = next((x for x in r.stdout.splitlines() if " asked in " in x), None)
    if line is None:
        raise SystemExit(f"deemo eval run failed:\n{r.stderr[-2000:]}")
    asked, secs = int(line.split()[0]), float(line.split(" asked in ")[1].split()[0])
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()] if (out / "errors.jsonl").exists() else []
    return asked / secs, len({e["id"] for e in errors}), errors[0]["error"][:120] if errors else ""


def _agreement(a: Path, b: Path) -> dict:
    """Served (``a``) vs in process (``b``), item by item: labels that differ (with the in-process
    margin between its top two labels there) and the largest / median gap of any label's score."""
    import statistics

    from deemo_llama.evaluation.runner import records_of

    pa, pb = ({r["id"]: r["prediction"] for r in records_of(d)[2]} for d in (a, b))
    gaps, differ = [], {}
    for i in pa.keys() & pb.keys():
        sa, sb = pa[i].get("scores") or {}, pb[i].get("scores") or {}
        gaps += [abs(sa[k] - sb[k]) for k in sa.keys() & sb.keys()]
        if pa[i]["label"] != pb[i]["label"]:
            top = sorted(sb.values(), reverse=True)
            differ[i] = round(top[0] - top[1], 3) if len(top) > 1 else None
    return {"items": len(pa.keys() & pb.keys()), "labels_differ": differ, "max_gap": max(gaps, default=0.0), "median_gap": statistics.median(gaps) if gaps else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=12)
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    quiet()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            subprocess.run([DEEMO, "data", "synth", str(tmp / "synth"), "--clips", str(max(18, 3 * args.items))], check=True, capture_output=True)
            subprocess.run([DEEMO, "data", "build", str(tmp / "synth" / "manifest.jsonl"), str(tmp / "built"), "--experts", "none", "--kinds", "recognition", "--split", "0.5,0.17,0.33", "--no-progress"], check=True, capture_output=True)
            data = tmp / "built" / "test.jsonl"
        common = ["--data", str(data), "--task", "recognition", "--limit", str(args.items)]
        figs = {"in process (--checkpoint default)": _eval([*common, "--checkpoint", "default", "--pipeline-evidence"], tmp / "local")}
        with served(tmp) as (url, _proc):
            for c in (1, 8):
                figs[f"served, concurrency {c}"] = _eval([*common, "--endpoint", url, "--concurrency", str(c)], tmp / f"c{c}")
        base = figs["in process (--checkpoint default)"][0]
        print_table(f"deemo eval run, recognition, {args.items} items ({machine()})",
                    [(k, f"{v:.3f} items/s ({v / base:.2f}x)" + (f"; {n} failed after retries ({e})" if n else "")) for k, (v, n, e) in figs.items()])
        agree = {f"served c={c}": _agreement(tmp / f"c{c}", tmp / "local") for c in (1, 8)}
        from deemo_llama.serving.vllm_server import resolve_dtype

        print_table(f"served ({resolve_dtype('auto')}, deemo serve's default) vs in process (float32): {args.items} items",
                    [(k, f"labels differ on {len(v['labels_differ'])} of {v['items']}" + (f" (in-process top-two margins there: {sorted(v['labels_differ'].values())})" if v["labels_differ"] else "") + f"; score gap max {v['max_gap']:.3f}, median {v['median_gap']:.4f}") for k, v in agree.items()])
        print(json.dumps({"throughput": figs, "agreement": agree}))


if __name__ == "__main__":
    main()
