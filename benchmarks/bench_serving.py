"""Serving throughput and latency: the served default in vLLM against the bare LLM in vLLM (the
engine's own speed for this backbone), in one run; optionally plain transformers ``generate``; the
gateway's overhead per request; memory.

    .venv/bin/python benchmarks/bench_serving.py [--new-tokens 64] [--levels 1,16] [--rounds 6] [--dtype auto] [--hf] [--same-prompt]

The served default is started exactly as ``deemo serve`` starts it (the fine-tuned default's adapter
merged, no LoRA machinery, our plugin's model class, ``--dtype auto``); the baseline is the same
SmolLM2 weights as a plain vLLM Llama. Concurrent streaming requests from threads with the openai
client; TTFT = first content chunk. Every request generates exactly ``new_tokens`` tokens (vLLM
``ignore_eos``, HF ``min_new_tokens``), greedy. Both engines are up at once and measured in
alternating turns (``--rounds``, the order flipped each round); the ratio reported is the median of
the rounds' paired ratios, with its range, because a shared machine's load drifts by more than the
gap being measured (one run of each, back to back, gave anything from 0.77x to 1.09x).
HF (``--hf``): how comparable open projects serve, one process calling ``model.generate`` on a
left-padded batch of the concurrent requests.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common import machine, print_table, quiet

PROMPTS = [
    "Describe how a person who just got good news might sound.",
    "What facial cues suggest someone is anxious?",
    "How can a voice reveal sadness?",
    "Explain what a micro-expression is.",
    "What does crossing one's arms often signal?",
    "How does surprise show on a face?",
    "Name three cues of anger in speech.",
    "How might a calm person hold their body?",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_tree(pid: int) -> float:
    import psutil

    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**30


def vllm_level(client, c: int, n: int, new_tokens: int, raw: list[str] | None = None) -> dict:
    """``raw``: the same rendered prompt texts for every engine, through /v1/completions (no chat
    template: the engines' own speed on identical tokens)."""
    def one(i):
        t0 = time.perf_counter()
        ttft, tokens = None, 0
        if raw is not None:
            stream = client.completions.create(model="deemo", prompt=raw[i % len(raw)], max_tokens=new_tokens, temperature=0, stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        else:
            stream = client.chat.completions.create(model="deemo", messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], max_tokens=new_tokens, temperature=0, stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        for chunk in stream:
            if chunk.choices and (chunk.choices[0].text if raw is not None else chunk.choices[0].delta.content) and ttft is None:
                ttft = time.perf_counter() - t0
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return ttft, time.perf_counter() - t0, tokens

    t = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        res = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t
    return {"ttft": statistics.median(r[0] for r in res), "latency": statistics.median(r[1] for r in res), "tok_s": sum(r[2] for r in res) / wall, "req_s": n / wall}


def hf_level(model, proc, c: int, n: int, new_tokens: int) -> dict:
    import torch

    tok = proc.tokenizer
    tok.padding_side = "left"
    ttfts, lats, total, t = [], [], 0, time.perf_counter()
    for start in range(0, n, c):
        texts = [proc.render([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], add_generation_prompt=True) for i in range(start, min(n, start + c))]
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            t0 = time.perf_counter()
            model.language_model.generate(**batch, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)
            ttft = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = model.language_model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            lat = time.perf_counter() - t0
        total += (out.shape[1] - batch.input_ids.shape[1]) * len(texts)
        ttfts += [ttft] * len(texts)
        lats += [lat] * len(texts)
    wall = time.perf_counter() - t
    return {"ttft": statistics.median(ttfts), "latency": statistics.median(lats), "tok_s": total / wall, "req_s": n / wall}


def gateway_overhead(direct, via, reps: int = 8) -> tuple[float, float]:
    def med(client):
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            client.chat.completions.create(model="deemo", messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0, extra_body={"deemo": {"experts": "none"}} if client is via else {})
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    med(direct), med(via)  # warm-up
    return med(direct), med(via)


def _requests(c: int) -> int:
    return 16 if c >= 16 else max(4, 2 * c)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--levels", default="1,16")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="every engine (auto: as `deemo serve`)")
    ap.add_argument("--hf", action="store_true", help="also transformers generate (batched), in the same dtype")
    ap.add_argument("--rounds", type=int, default=6, help="alternating measurement rounds per engine and level (the ratio reported is the median of the rounds' paired ratios)")
    ap.add_argument("--same-prompt", action="store_true", help="send both engines the same rendered prompt text through /v1/completions (the bare LLM's chat template), so the comparison is the engines' alone")
    args = ap.parse_args()
    quiet()
    import psutil
    import uvicorn
    from openai import OpenAI
    from tqdm.auto import tqdm

    from deemo_llama.assets import asset_dir, default_checkpoint
    from deemo_llama.build import load_checkpoint, merged_for_serving
    from deemo_llama.serving.gateway import Gateway, GatewaySettings
    from deemo_llama.serving.vllm_server import VllmOptions, VllmServer, resolve_dtype

    levels = [int(x) for x in args.levels.split(",")]
    dtype = resolve_dtype(args.dtype)
    import torch

    rows = [("machine", machine()), ("workload", f"{args.new_tokens} new tokens per request, greedy, {dtype} ({args.dtype}); requests per level = max(4, 2 x concurrency) (16 at 16)")]
    ckpt = default_checkpoint()
    res: dict[str, dict[int, dict]] = {}
    engines = {"served default": (merged_for_serving(ckpt), True), "bare LLM": (asset_dir("llm"), False)}
    raw = None
    if args.same_prompt:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(asset_dir("llm"))
        raw = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False) for q in PROMPTS]
        rows.append(("prompts", "the same rendered text for both engines, /v1/completions"))
    # both engines stay up and are measured in alternating turns (A B, then B A, ...), each round giving a
    # paired ratio: a shared machine's load drifts by more than the difference being measured (two
    # back-to-back runs of the same engine differed by 30 % at c=16), so one run of each is not a comparison
    servers, clients = {}, {}
    with contextlib.ExitStack() as stack:
        for name, (path, ours) in engines.items():
            t = time.perf_counter()
            srv = servers[name] = stack.enter_context(VllmServer(path, VllmOptions(served_name="deemo", port=_port(), kv_cache_gib=2, max_model_len=2048, dtype=dtype, multimodal=ours)))
            rows.append((f"{name}: vLLM start-up (to /v1/models answering)", f"{time.perf_counter() - t:.0f} s"))
            clients[name] = OpenAI(base_url=srv.url, api_key="x", timeout=600, max_retries=0)
            vllm_level(clients[name], 1, 2, 8, raw)  # warm-up
        runs: dict[str, dict[int, list[dict]]] = {name: {c: [] for c in levels} for name in engines}
        for r in tqdm(range(args.rounds), desc="rounds (each engine, each level)", unit="round"):
            for c in levels:
                for name in (list(engines) if r % 2 == 0 else list(engines)[::-1]):
                    runs[name][c].append(vllm_level(clients[name], c, _requests(c), args.new_tokens, raw))
        for name, srv in servers.items():
            rows.append((f"{name}: vLLM memory (RSS, server + engine, 2 GiB KV cache)", f"{_rss_tree(srv.proc.pid):.2f} GiB"))
        gw = Gateway(GatewaySettings(backend_url=servers["served default"].url))
        server = uvicorn.Server(uvicorn.Config(gw.app, host="127.0.0.1", port=_port(), log_level="warning"))
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        while not server.started:
            time.sleep(0.05)
        via = OpenAI(base_url=f"http://127.0.0.1:{server.config.port}/v1", api_key="x", timeout=600, max_retries=0)
        d, g = gateway_overhead(clients["served default"], via)
        rows.append(("gateway overhead per text request (median of 8, 1 token)", f"{(g - d) * 1000:.0f} ms ({d * 1000:.0f} ms direct vs {g * 1000:.0f} ms via gateway)"))
        server.should_exit = True
        th.join(10)
    med = statistics.median
    for c in levels:
        v, b = runs["served default"][c], runs["bare LLM"][c]
        ratios = sorted(x["tok_s"] / y["tok_s"] for x, y in zip(v, b))
        res.setdefault("served default", {})[c] = {"tok_s": med(x["tok_s"] for x in v), "ttft": med(x["ttft"] for x in v)}
        rows.append((f"c={c}: tokens/s served default / bare LLM (median of {len(v)} rounds)", f"{med(x['tok_s'] for x in v):.1f} / {med(x['tok_s'] for x in b):.1f}"))
        rows.append((f"c={c}: paired ratio served / bare, median (range) of rounds", f"{med(ratios):.3f}x ({ratios[0]:.3f} to {ratios[-1]:.3f}); {sum(x >= 0.95 for x in ratios)} of {len(ratios)} rounds >= 0.95x"))
        rows.append((f"c={c}: median TTFT served default / bare LLM", f"{med(x['ttft'] for x in v) * 1000:.0f} / {med(x['ttft'] for x in b) * 1000:.0f} ms"))
        rows.append((f"c={c}: median latency served default / bare LLM", f"{med(x['latency'] for x in v):.2f} / {med(x['latency'] for x in b):.2f} s"))
    if args.hf:
        model, proc = load_checkpoint(merged_for_serving(ckpt), dtype=getattr(torch, dtype))
        for c in levels:
            h, v = hf_level(model, proc, c, _requests(c), args.new_tokens), res["served default"][c]
            rows.append((f"c={c}: tokens/s served default (vLLM) / HF generate (ratio)", f"{v['tok_s']:.1f} / {h['tok_s']:.1f} ({v['tok_s'] / h['tok_s']:.2f}x)"))
            rows.append((f"c={c}: median TTFT vLLM / HF", f"{v['ttft'] * 1000:.0f} / {h['ttft'] * 1000:.0f} ms"))
        rows.append((f"HF process memory (RSS, {dtype} model loaded)", f"{psutil.Process().memory_info().rss / 2**30:.2f} GiB"))
    print_table("serving: the served default vs the bare LLM in vLLM, same weights and prompts", rows)


if __name__ == "__main__":
    main()
