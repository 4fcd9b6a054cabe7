"""The served stack under load: many concurrent clients, a mix of text, audio and video requests.

    .venv/bin/python benchmarks/bench_serve_load.py [--clients 32] [--requests 200] [--mix text=0.6,audio=0.25,video=0.15]

Starts `deemo serve` (vLLM + gateway, no UI) on the fine-tuned default, then ``--clients`` threads
with the official ``openai`` client (max_retries=0) send ``--requests`` chat requests in all, each
drawn from the mix: a text question, a short spoken clip (input_audio), or a short talking-face
video (video_url). Printed: outcomes by status (only well-formed 429s are acceptable errors),
p50/p95 latency per kind, requests/s, the gateway process's RSS before (after one warm-up request of
each kind, which loads the experts' and Whisper's models) and after, and whether the
gateway's scratch folders are empty afterwards. A benchmark, not a test: figures go to
benchmarks/RESULTS.md with the machine and the command.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from common import machine, print_table, served

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["How might someone sound when they are worried?", "What does a sudden frown suggest?", "Name two cues of surprise.", "How does sadness change speech?"]


def rss_gib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**30


def scratch_left() -> list[str]:
    root = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    return sorted(p.name for p in root.glob("deemo-*"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--mix", default="text=0.6,audio=0.25,video=0.15")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    mix = {k: float(v) for k, v in (x.split("=") for x in args.mix.split(","))}

    from openai import APIStatusError, OpenAI

    from deemo_llama.sample import make_sample_clip

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    video = make_sample_clip(work / "talk.mp4", seconds=3.0, text="I cannot believe you did that.")
    audio = make_sample_clip(work / "talk.wav", text="I cannot believe you did that.", video=False)
    parts = {
        "text": lambda i: QUESTIONS[i % len(QUESTIONS)],
        "audio": lambda i: [{"type": "input_audio", "input_audio": {"data": base64.b64encode(audio.read_bytes()).decode(), "format": "wav"}}, {"type": "text", "text": "How does the person feel?"}],
        "video": lambda i: [{"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()}}, {"type": "text", "text": "How does the person feel?"}],
    }
    with served(work) as (url, proc):
        client = OpenAI(base_url=url, api_key="unused", timeout=900, max_retries=0)
        for kind in mix:  # warm: every kind once, so the models each kind loads lazily are in before the baseline
            client.chat.completions.create(model="deemo", messages=[{"role": "user", "content": parts[kind](0)}], max_tokens=4, extra_body={"deemo": {"experts": "fast"}})
        rss_before = rss_gib(proc.pid)
        rng = random.Random(args.seed)
        kinds = rng.choices(list(mix), weights=list(mix.values()), k=args.requests)
        results: list[tuple[str, int, float, str]] = []
        lock, nxt = threading.Lock(), iter(range(args.requests))

        def worker():
            while True:
                with lock:
                    i = next(nxt, None)
                if i is None:
                    return
                kind = kinds[i]
                t0 = time.perf_counter()
                try:
                    client.chat.completions.create(model="deemo", messages=[{"role": "user", "content": parts[kind](i)}], max_tokens=args.max_tokens, extra_body={"deemo": {"experts": "fast"}})
                    status, note = 200, ""
                except APIStatusError as e:
                    ok429 = e.status_code == 429 and e.response.headers.get("retry-after") and isinstance(e.body, dict)
                    status, note = e.status_code, "well-formed" if ok429 else str(e)[:120]
                except Exception as e:  # a connection error is a failure to report
                    status, note = -1, f"{type(e).__name__}: {e}"[:120]
                with lock:
                    results.append((kind, status, time.perf_counter() - t0, note))

        t = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        time.sleep(2)
        rss_after = rss_gib(proc.pid)
        left = scratch_left()
    outcomes = Counter(f"{s} {n}".strip() if s != 200 else "200" for _k, s, _t, n in results)
    rows = [("requests", f"{len(results)} ({', '.join(f'{k}: {v}' for k, v in Counter(kinds).items())})"), ("clients", str(args.clients)), ("wall time", f"{wall:.1f} s"), ("requests/s", f"{len(results) / wall:.2f}")]
    rows += [(f"outcome {k}", str(v)) for k, v in sorted(outcomes.items())]
    for kind in mix:
        lat = sorted(t for k, s, t, _n in results if k == kind and s == 200)
        if lat:
            rows.append((f"{kind} latency p50 / p95", f"{statistics.median(lat):.2f} / {lat[min(len(lat) - 1, int(0.95 * len(lat)))]:.2f} s"))
    bad = [r for r in results if r[1] not in (200, 429) or (r[1] == 429 and r[3] != "well-formed")]
    rows += [("errors other than well-formed 429", str(len(bad))), ("gateway RSS before / after", f"{rss_before:.2f} / {rss_after:.2f} GiB ({rss_after - rss_before:+.2f})"), ("scratch folders left", str(len(left)))]
    print_table(f"deemo serve under load; {machine()}", rows)
    for r in bad[:5]:
        print("failed:", r)


if __name__ == "__main__":
    main()
