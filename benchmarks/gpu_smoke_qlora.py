"""GPU smoke test of the training path: a reduced-size model, a few QLoRA steps on CUDA.

    .venv/bin/python benchmarks/gpu_smoke_qlora.py [--hidden 1024] [--layers 8] [--steps 10]

Needs a CUDA GPU, bitsandbytes (`pip install -e ".[dev,gpu]"`) and the embedded assets
(`deemo models prepare`); downloads nothing. CI never runs it. It builds a random Llama of the given
size with the embedded default's tokenizer, the embedded Whisper-tiny and MobileNetV2 encoders,
writes a few rows over the sample clip and runs `training.train` with the `gpu-llama3-8b-qlora`
recipe (4-bit base weights, bf16, gradient checkpointing, both stages) overridden to that model and
a few steps. Prints tokens/s, samples/s and peak GPU memory; exits non-zero if anything fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from common import machine, print_table, quiet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rows", type=int, default=16)
    args = ap.parse_args()
    quiet()
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    if not torch.cuda.is_available():
        raise SystemExit("gpu_smoke_qlora.py needs a CUDA GPU")
    from deemo_llama.assets import asset_dir
    from deemo_llama.build import ComponentSpec, create_model, save_checkpoint
    from deemo_llama.sample import make_sample_clip
    from deemo_llama.training import load_recipe, train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        llm = tmp / "llm"
        shutil.copytree(asset_dir("llm"), llm)
        cfg = AutoConfig.from_pretrained(llm)
        cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size = args.hidden, args.layers, 4 * args.hidden
        cfg.num_attention_heads = cfg.num_key_value_heads = max(1, args.hidden // 64)
        LlamaForCausalLM(cfg).save_pretrained(llm)
        spec = ComponentSpec(llm=str(llm), audio=str(asset_dir("whisper")), video=str(asset_dir("mobilenet") / "model.safetensors"))
        base = save_checkpoint(*create_model(spec), tmp / "base")
        clip = make_sample_clip(tmp / "clip.mp4")
        labels = ["happy", "sad"]
        rows = [{"schema_version": "1", "id": f"r{i}", "kind": "recognition", "split": "train", "label": labels[i % 2], "label_set": {"name": "custom", "labels": labels}, "media": str(clip),
                 "messages": [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "Which emotion does the person feel?"}]}, {"role": "assistant", "content": f"Emotion: {labels[i % 2]}."}]} for i in range(args.rows)]
        (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        half = max(1, args.steps // 2)
        recipe = load_recipe("gpu-llama3-8b-qlora", [f"model.checkpoint={base}", f"data.train={tmp / 'train.jsonl'}", f"data.feature_cache_dir={tmp / 'features'}",
                                                     f"stages=[{{name: align, max_steps: {half}}}, {{name: finetune, max_steps: {args.steps - half}}}]", "checkpointing.every_steps=null", "logging.eval_every_steps=null"])
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = train(recipe, tmp / "out")
        wall = time.perf_counter() - t
        s = json.loads((out / "train_summary.json").read_text())
        name = torch.cuda.get_device_name(0)
    print_table("QLoRA smoke (reduced-size model, 4-bit base, bf16, gradient checkpointing)", [
        ("machine", f"{name}; {machine()}"), ("model", f"Llama hidden {args.hidden}, {args.layers} layers + Whisper-tiny + MobileNetV2"),
        ("steps", str(s["steps"])), ("samples/s", f"{s['samples_per_s']:.2f}"), ("tokens/s", f"{s['tokens_per_s']:.0f}"),
        ("peak GPU memory (GB)", f"{s['peak_gpu_memory_gb']:.2f}"), ("last loss", f"{s['last_loss']:.3f}"), ("wall (s)", f"{wall:.1f}")])


if __name__ == "__main__":
    main()
