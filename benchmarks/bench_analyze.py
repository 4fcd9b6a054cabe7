"""``deemo analyze`` wall time on a 10 s talking clip: the one path (decode once, shared frames and
detections, experts beside the transcript) against the same work done separately, as before it.

    .venv/bin/python benchmarks/bench_analyze.py [--seconds 10] [--repeats 3] [--experts fast] [--gateway]

Baseline, in the same run: `deid.file` (decode + CenterFace on every frame + McAdams + Whisper) and
each expert tool run on the file (each decoding it again), as the CLI and the gateway did before.
Expert results are not cached between repeats (a fresh cache folder per run). Model loading is
reported apart (a server pays it once). ``--gateway`` also times an ``experts: fast`` request through
the gateway in front of a vLLM server started here (needs .venv-vllm: scripts/setup-vllm.sh).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import machine, print_table, quiet


def _separate(clip: Path, experts: tuple[str, ...], work: Path) -> float:
    """Seconds for de-identification + transcription + each expert on the file, one after another."""
    from deemo_llama.privacy.deid import DeidOptions, Deidentifier
    from deemo_llama.tools import ToolCache, get_tool

    t = time.perf_counter()
    Deidentifier(DeidOptions(audit=False)).file(clip, work / "deid")
    cache = ToolCache(work / "sep-cache")
    for name in experts:
        cache.run(get_tool(name), {"clip": str(clip)})
    return time.perf_counter() - t


def _gateway(clip: Path, repeats: int) -> list[float]:
    import base64

    from openai import OpenAI

    from deemo_llama.assets import default_checkpoint
    from deemo_llama.serving.gateway import Gateway, GatewaySettings
    from deemo_llama.serving.vllm_server import VllmOptions, VllmServer

    import socket
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from scripted_backend import ServerThread

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    srv = VllmServer(default_checkpoint(), VllmOptions(served_name="deemo", port=port(), kv_cache_gib=1, max_model_len=2048, dtype="float32"))  # as the HF path
    srv.start()
    try:
        p = port()
        with ServerThread(Gateway(GatewaySettings(backend_url=srv.url)).app, p):
            c = OpenAI(base_url=f"http://127.0.0.1:{p}/v1", api_key="unused", timeout=600, max_retries=0)
            url = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
            msgs = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "How does the person feel?"}]}]
            out = []
            for _ in range(repeats + 1):  # the first request warms the caches (content-free scores)
                t = time.perf_counter()
                c.chat.completions.create(model="deemo", messages=msgs, max_tokens=64, extra_body={"deemo": {"experts": "fast"}})
                out.append(time.perf_counter() - t)
            return out[1:]
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--experts", default="fast", choices=("none", "fast", "all"))
    ap.add_argument("--gateway", action="store_true")
    args = ap.parse_args()
    quiet()
    from deemo_llama.analyze import Analyzer
    from deemo_llama.sample import make_sample_clip
    from deemo_llama.tools import ToolCache

    work = Path(tempfile.mkdtemp())
    clip = make_sample_clip(work / "bench.mp4", seconds=args.seconds)
    analyzer = Analyzer(experts=args.experts)
    analyzer.analyze(clip)  # warm-up: first calls compile / load lazily, content-free scores cached
    runs = []
    for i in range(args.repeats):
        analyzer.pipeline.cache = ToolCache(work / f"cache-{i}")  # no cached expert results
        runs.append(analyzer.analyze(clip).timings)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    experts = analyzer.pipeline.spec.experts
    sep = statistics.median(_separate(clip, experts, work / f"sep-{i}") for i in range(args.repeats))
    llm = med["llm_label"] + med["llm_reasoning"]
    rows = [("model load (once)", f"{analyzer.load_s:.2f} s")]
    rows += [(f"stage: {k}", f"{v:.2f} s") for k, v in med.items() if k != "total"]
    rows.append(("total per clip", f"{med['total']:.2f} s = real-time factor {med['total'] / args.seconds:.2f}"))
    evidence = med["total"] - llm
    rows.append((f"evidence (deid + transcript + {', '.join(e.removeprefix('analyze_') for e in experts) or 'no experts'})", f"{evidence:.2f} s"))
    rows.append(("baseline: deid.file + each expert on the file, separately", f"{sep:.2f} s"))
    rows.append(("ratio baseline / evidence", f"{sep / evidence:.2f}x"))
    if args.gateway:
        g = _gateway(clip, args.repeats)
        rows.append(("gateway request, experts fast, vLLM (median)", f"{statistics.median(g):.2f} s = real-time factor {statistics.median(g) / args.seconds:.2f}"))
    print_table(f"analyze --experts {args.experts}, {args.seconds:g} s clip (25 fps), median of {args.repeats} ({machine()})", rows)


if __name__ == "__main__":
    main()
