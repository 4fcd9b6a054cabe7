"""LoRA fine-tuning on DEEMO-MER-style instruction data: an explicit loop you can read top to bottom.

Data: JSONL rows of instruction_data/row.schema.json, e.g. ``OUT/train.jsonl`` of ``deemo data
build``: ``media`` (relative to the JSONL file) feeds the conversation's video parts (sampled frames)
and audio parts (its audio track); ``tools`` (tool-use rows) are rendered into the system turn. Only assistant tokens carry labels. Trained: the projectors (fully) and LoRA
adapters on the LLM's attention projections; the encoders and the LLM's base weights stay frozen.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import DeemoError
from ..modeling import DeemoLlamaForConditionalGeneration
from ..processing import DeemoProcessor, count_media


@dataclass
class LoraSettings:
    """peft LoRA on the LLM only (vLLM serves LLM-only adapters)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class TrainArgs:
    data: Path
    out: Path
    checkpoint: Path | None = None  # base checkpoint; None = the embedded default
    epochs: float = 3.0
    max_steps: int | None = None
    lr: float = 2e-4
    batch_size: int = 1
    grad_accum: int = 4
    warmup_ratio: float = 0.05
    seed: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)


def apply_lora(model: DeemoLlamaForConditionalGeneration, settings: LoraSettings) -> DeemoLlamaForConditionalGeneration:
    """Wrap the LLM with LoRA, make the projectors trainable, keep encoders as their config says."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=list(settings.target_modules), task_type="CAUSAL_LM")
    model.language_model = get_peft_model(model.language_model, cfg)
    model.projectors.requires_grad_(True)
    for name, m in model.config.modalities.items():
        model.encoders[name].requires_grad_(not m.encoder.frozen)
    return model


def trainable_parameter_names(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def load_records(path: Path) -> list[dict]:
    """Read a JSONL instruction file (row.schema.json, as ``deemo data build`` writes it), checked by
    the one validator (``deemo data validate``); the first problem is the error, naming its line."""
    from ..data.validate import iter_problems

    path = Path(path)
    problems = [p for _, p in iter_problems(path, probe=False) if p is not None]
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); run `deemo data validate {path}`)" if len(problems) > 1 else ""
        raise DeemoError(problems[0].format(path) + more)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not records:
        raise DeemoError(f"{path}: no records")
    return records


def encode_record(rec: dict, processor: DeemoProcessor, root: Path) -> dict:
    """Token ids + labels + decoded media for one record."""
    from ..media import load_clip_for

    ids, labels = processor.encode_for_training(rec["messages"], tools=rec.get("tools"))
    n = count_media(rec["messages"])
    videos, audios = [], []
    if n["video"] or n["audio"]:
        clip = load_clip_for(processor.config, root / rec["media"])
        if n["video"] and not clip.has_video:
            raise DeemoError(f"{rec['media']}: record asks for video but the file has none")
        if n["audio"] and not clip.has_audio:
            raise DeemoError(f"{rec['media']}: record asks for audio but the file has none")
        videos = [clip.frames] * n["video"]
        audios = [clip.audio] * n["audio"]
    return {"input_ids": ids, "labels": labels, "videos": videos, "audios": audios}


def train(args: TrainArgs) -> Path:
    """Fine-tune and write a checkpoint (base weights + trained projectors + LoRA adapter) to ``args.out``."""
    from ..assets import default_checkpoint
    from ..build import load_checkpoint, save_checkpoint

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    records = load_records(args.data)
    model, processor = load_checkpoint(args.checkpoint or default_checkpoint(), load_adapter=False)
    apply_lora(model, args.lora)
    examples = [encode_record(r, processor, args.data.parent) for r in tqdm(records, desc="encoding data")]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(examples) / (args.batch_size * args.grad_accum))
    total = args.max_steps or max(1, math.ceil(args.epochs * steps_per_epoch))
    warmup = int(args.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    model.train()
    losses, step, t0 = [], 0, time.perf_counter()
    bar = tqdm(total=total, desc="training")
    while step < total:
        random.shuffle(examples)
        batches = [examples[i : i + args.batch_size] for i in range(0, len(examples), args.batch_size)]
        for i, batch in enumerate(batches):
            inputs = processor.collate(batch)
            out = model(inputs.input_ids, attention_mask=inputs.attention_mask, labels=inputs.labels, media=inputs.media)
            (out.loss / args.grad_accum).backward()
            losses.append(out.loss.item())
            if (i + 1) % args.grad_accum == 0 or i + 1 == len(batches):
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses[-args.grad_accum:]) / len(losses[-args.grad_accum:]):.3f}")
                if step >= total:
                    break
    bar.close()
    model.eval()
    model.config.projectors_trained = True
    save_checkpoint(model, processor, args.out)
    summary = {"steps": step, "examples": len(examples), "first_loss": losses[0], "last_loss": losses[-1], "seconds": round(time.perf_counter() - t0, 1), "args": json.loads(json.dumps(asdict(args), default=str))}
    (args.out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return args.out
