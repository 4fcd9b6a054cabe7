"""Each expert tool's time per 10 s clip at 25 fps on this machine, against decoding the same clip.

    .venv/bin/python benchmarks/bench_tools.py [--seconds 10] [--fps 25] [--repeats 2]

The clip is the talking-face sample (astronaut photo + espeak-ng speech). Each clip tool runs
``repeats`` times without the result cache: the first run includes loading its models ("cold"),
the best of the others is "warm". The baseline in the same run is decoding every frame and the
audio of the clip (``load_clip``), so "x decode" is a ratio that survives a noisy shared machine.
analyze_physiology runs on a 60 s NeuroKit2-simulated ECG + EDA + RSP recording at 128 Hz.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, print_table, quiet

CLIP_TOOLS = ("analyze_facial_expression", "analyze_body_language", "analyze_voice")


def timed(fn, repeats: int) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times[0], min(times[1:] or times), out


def sampling_note(result: dict) -> str:
    """What the tool says it analysed (each tool reports its own frame sampling in quality)."""
    q = result.get("quality", {})
    keys = [k for k in q if any(s in k for s in ("fps", "frames", "sampling"))]
    return ", ".join(f"{k}={q[k]}" for k in keys) or "audio only"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    quiet()
    from deemo_llama.media import load_clip
    from deemo_llama.sample import make_sample_clip
    from deemo_llama.tools import get_tool, tool_names

    tmp = Path(tempfile.mkdtemp())
    clip = make_sample_clip(tmp / "clip.mp4", seconds=args.seconds, fps=args.fps)
    n = int(round(args.seconds * args.fps))
    _, decode_s, _ = timed(lambda: load_clip(clip, num_frames=n), 2)
    rows = [("machine", machine()), ("clip", f"{args.seconds:g} s, {args.fps} fps, 640x360, speech"), ("baseline: decode all frames + audio", f"{decode_s:.2f} s")]
    for name in CLIP_TOOLS:
        if name not in tool_names():
            rows.append((name, "not registered"))
            continue
        tool = get_tool(name)
        cold, warm, out = timed(lambda: tool.run(clip=str(clip)).to_dict(), args.repeats)
        rows.append((f"{name}: cold / warm", f"{cold:.2f} s / {warm:.2f} s ({warm / decode_s:.1f}x decode, RTF {warm / args.seconds:.2f})"))
        rows.append((f"{name}: analysed", sampling_note(out)))
    import neurokit2 as nk

    fs, sec = 128, 60
    rec = tmp / "physio.npz"
    np.savez(rec, sampling_rate=fs, ECG=nk.ecg_simulate(duration=sec, sampling_rate=fs, random_state=0), GSR=nk.eda_simulate(duration=sec, sampling_rate=fs, scr_number=5, random_state=0), RSP=nk.rsp_simulate(duration=sec, sampling_rate=fs, random_state=0))
    tool = get_tool("analyze_physiology")
    cold, warm, _ = timed(lambda: tool.run(path=str(rec)).to_dict(), args.repeats)
    rows.append(("analyze_physiology (60 s ECG+EDA+RSP @128 Hz): cold / warm", f"{cold:.2f} s / {warm:.2f} s"))
    print_table("expert tools, time per clip", rows)


if __name__ == "__main__":
    main()
