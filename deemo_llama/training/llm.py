"""Training by a recipe (training/recipe.py): an explicit loop you can read top to bottom.

    deemo train OUT --config cpu-default --set data.train=/tmp/built [--resume]

Data: JSONL rows of instruction_data/row.schema.json (``deemo data build``); ``media`` (relative to
the JSONL file) feeds the video parts (sampled frames) and audio parts (its audio track); ``tools``
of tool-use rows are rendered into the system turn. Only assistant tokens carry labels.

Stages: ``anchor`` (optional, first) trains the projectors alone, without the LLM: each labelled
clip's projected tokens, averaged per modality, are classified against the LLM's own embeddings of
the label words (cosine similarity, cross-entropy; the text-side alignment that BLIP-2 runs before
it connects the LLM), so the media tokens start out pointing at words the LLM already reads; it
costs a projector pass per clip, so it can run for many epochs. ``align`` trains the projectors
through the frozen LLM; ``finetune`` the projectors and LoRA on the LLM. The
encoders are frozen, so their pooled outputs are computed once per clip (training/features.py);
rows stream through ``datasets`` into a memory-mapped Arrow table of token ids, tokenised once
(``tokenize_file``), and a batch reads its rows and its clips' features from disk. accelerate places the model, runs
mixed precision and data parallel (``accelerate launch``). Every ``checkpointing.every_steps`` the
checkpoint is saved in the project format (loadable like the final one) with the trainable weights,
optimiser, scheduler, RNG and data position; ``--resume`` continues
from the last one and ends where an uninterrupted run ends. Validation loss and label accuracy (the
one label scorer, scoring.HFLabelScorer) run every ``logging.eval_every_steps`` and after each stage.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from ..assets import cache_dir
from ..errors import DeemoError
from ..modeling import DeemoLlamaForConditionalGeneration, MediaInputs
from ..processing import DeemoProcessor, count_media
from .features import FeatureCache
from .recipe import LoraRecipe, Recipe, StageRecipe


def apply_lora(model: DeemoLlamaForConditionalGeneration, settings: LoraRecipe) -> DeemoLlamaForConditionalGeneration:
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


def check_rows(path: Path) -> Path:
    """Check a JSONL instruction file (row.schema.json, as ``deemo data build`` writes it) with the one
    validator (``deemo data validate``), line by line; the first problem is the error, naming its line."""
    from ..data.validate import iter_problems

    path = Path(path)
    problems = [p for _, p in iter_problems(path, probe=False) if p is not None]
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); run `deemo data validate {path}`)" if len(problems) > 1 else ""
        raise DeemoError(problems[0].format(path) + more)
    return path


def load_records(path: Path) -> list[dict]:
    """The rows of a checked JSONL instruction file, as dicts (small files: probes, tests)."""
    path = check_rows(path)
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


def _rows_file(ref: str, what: str) -> Path:
    p = Path(ref).expanduser()
    if p.is_dir():
        p = p / f"{what}.jsonl"
    if not p.is_file():
        raise DeemoError(f"data.{'train' if what == 'train' else 'validation'}: {p} does not exist (a rows file or a `deemo data build` folder)")
    return p


def resolve_data(recipe: Recipe) -> tuple[Path, Path | None]:
    """(train rows, validation rows or None) from the recipe's data section."""
    if not recipe.data.train:
        raise DeemoError("data.train is not set: pass --set data.train=<rows.jsonl or a `deemo data build` folder>")
    train_file = _rows_file(recipe.data.train, "train")
    if recipe.data.validation:
        return train_file, _rows_file(recipe.data.validation, "validation")
    guess = train_file.parent / "validation.jsonl"
    return train_file, guess if Path(recipe.data.train).is_dir() and guess.is_file() and guess.stat().st_size else None


def resolve_device(recipe: Recipe) -> torch.device:
    """The device, and clear errors for CUDA-only options on a machine without CUDA."""
    cuda = torch.cuda.is_available()
    want = recipe.precision.device
    if want == "cuda" and not cuda:
        raise DeemoError("precision.device is cuda but no CUDA device is available (use precision.device=cpu)")
    device = torch.device("cuda" if (want == "cuda" or (want == "auto" and cuda)) else "cpu")
    if device.type == "cpu":
        if recipe.model.quantization != "none":
            raise DeemoError(f"model.quantization={recipe.model.quantization} (QLoRA) needs CUDA and bitsandbytes; this run is on CPU (set model.quantization=none)")
        if recipe.precision.mixed == "fp16":
            raise DeemoError("precision.mixed=fp16 needs CUDA; on CPU use no or bf16")
    return device


IGNORE = -100


@dataclass
class Example:
    """One tokenised row; its media are fetched per batch (``modalities``: one entry per media part)."""

    id: str
    input_ids: list[int]
    labels: list[int]
    clip: str | None
    modalities: tuple[str, ...]
    row: dict


class TokenizedRows(Sequence[Example]):
    """Rows tokenised once into an Arrow table (``datasets``), memory-mapped when it came from a file:
    ``len()``, ``[i]`` and iteration give :class:`Example` objects, built on access, so a corpus of any
    size costs its token ids on disk, not its rows in RAM (the clips' features load per batch)."""

    def __init__(self, table):
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def _example(self, r: dict) -> Example:
        return Example(r["id"], r["input_ids"], r["labels"], r["clip"] or None, tuple(r["modalities"]), json.loads(r["row"]))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._example(r) for r in self.table.select(range(*i.indices(len(self))))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._example(self.table[i % len(self)])

    def __iter__(self):
        for r in self.table:
            yield self._example(r)


def _tokenizer(processor: DeemoProcessor, root: Path):
    def fn(batch: dict) -> dict:
        out: dict[str, list] = {"id": [], "input_ids": [], "labels": [], "clip": [], "modalities": []}
        for line in batch["row"]:
            rec = json.loads(line)
            ids, labels = processor.encode_for_training(rec["messages"], tools=rec.get("tools"))
            n = count_media(rec["messages"])
            clip = ""
            if n["video"] or n["audio"]:
                p = Path(rec["media"])
                clip = str(p if p.is_absolute() else root / p)
            for k, v in (("id", rec["id"]), ("input_ids", ids), ("labels", labels), ("clip", clip), ("modalities", ["video"] * n["video"] + ["audio"] * n["audio"])):
                out[k].append(v)
        return out

    return fn


def _processor_fingerprint(processor: DeemoProcessor) -> str:
    """What the token ids of a row depend on: the tokenizer, the chat template, the media placeholders."""
    import hashlib

    tok = processor.tokenizer
    h = hashlib.sha256(json.dumps({"vocab": sorted(tok.get_vocab().items()), "template": tok.chat_template, "special": tok.all_special_tokens,
                                   "media": {n: [m.placeholder, m.placeholder_id, m.num_tokens] for n, m in sorted(processor.config.modalities.items())}}, default=str).encode())
    return h.hexdigest()[:16]


def tokenize_file(path: Path, processor: DeemoProcessor, kinds: Sequence[str] | None = None, cache: Path | None = None) -> TokenizedRows:
    """A validated rows file -> :class:`TokenizedRows`, streamed through ``datasets``: the JSONL is read
    line by line into an Arrow table under ``cache`` and tokenised once (``Dataset.map``); a rerun (or
    ``--resume``) on the same file, kinds and tokenizer reuses it."""
    import datasets

    from ..hashing import file_digest

    path = Path(path)
    key = f"{file_digest(path)[:16]}-{_processor_fingerprint(processor)}-{'+'.join(sorted(kinds or ())) or 'all'}"
    cache = Path(cache or cache_dir() / "rows").expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    raw = datasets.Dataset.from_generator(_jsonl_lines, gen_kwargs={"path": str(path), "kinds": tuple(kinds or ()), "key": key}, features=datasets.Features({"row": datasets.Value("string")}),
                                          cache_dir=str(cache / "raw"))
    table = raw.map(_tokenizer(processor, path.parent), batched=True, batch_size=256, cache_file_name=str(cache / f"tokens-{key}.arrow"), new_fingerprint=key, desc=f"tokenising {path.name}")
    return TokenizedRows(table)


def _jsonl_lines(path: str, kinds: tuple[str, ...], key: str):
    """The rows of ``path`` (of ``kinds``), one JSON string each; ``key`` only fingerprints the file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip() and (not kinds or json.loads(line).get("kind") in kinds):
                yield {"row": line.strip()}


def tokenize_rows(records: list[dict], processor: DeemoProcessor, root: Path) -> TokenizedRows:
    """In-memory rows (a test, a probe) -> :class:`TokenizedRows` by the same tokeniser as files."""
    import datasets

    raw = datasets.Dataset.from_dict({"row": [json.dumps(r) for r in records]})
    return TokenizedRows(raw.map(_tokenizer(processor, Path(root)), batched=True, batch_size=256, keep_in_memory=True, desc="tokenising") if records else raw)


def batch_inputs(batch: list[Example], processor: DeemoProcessor, features: FeatureCache):
    """Pad the tokens; stack each modality's cached encoder features in prompt order."""
    inputs = processor.collate([{"input_ids": e.input_ids, "labels": e.labels} for e in batch])
    encoded: dict[str, list[torch.Tensor]] = {}
    for e in batch:
        if not e.modalities:
            continue
        feats = features.get(e.clip, sorted(set(e.modalities)))
        for m in e.modalities:
            encoded.setdefault(m, []).append(feats[m])
    if encoded:
        inputs.media = MediaInputs(encoded={k: torch.stack(v) for k, v in encoded.items()})
    return inputs


@contextmanager
def zero_modalities(model, names: Iterable[str] | Mapping[str, torch.Tensor]):
    """Replace the named modalities' projected tokens by zeros (forward hooks on the projectors):
    every item's for a list of names, or, given {name: a bool per item of the batch, in prompt
    order}, only the flagged items' (training's modality dropout zeroes them as the ablation does)."""
    items = names if isinstance(names, Mapping) else None

    def hook(name: str):
        def fn(_m, _i, out):
            if items is None:
                return torch.zeros_like(out)
            keep = (~items[name]).to(device=out.device, dtype=out.dtype)
            return out * keep.view(-1, *([1] * (out.dim() - 1)))

        return fn

    handles = [model.projectors[n].register_forward_hook(hook(n)) for n in names if n in model.projectors]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def modality_dropout(media: MediaInputs | None, p: float) -> dict[str, torch.Tensor]:
    """{modality: bool per item} drawn with probability ``p`` (torch's RNG, so a resumed run draws the
    same): the items whose projected tokens this step zeroes, as the ablation does, so the model
    learns to read the other cues when one is missing (and not to let media drown the words)."""
    if media is None or p <= 0:
        return {}
    return {m: torch.rand(n) < p for m, n in media.modalities.items()}


ANCHOR_TEMPERATURE = 0.1  # CLIP-style: cosine similarities / 0.1 as logits


def anchors_of(example: Example) -> bool:
    """Can the anchor stage use this row: media and a label of its own label set."""
    labels = (example.row.get("label_set") or {}).get("labels") or []
    return bool(example.modalities) and example.row.get("label") in labels


def label_embeddings(model, processor: DeemoProcessor, labels: Sequence[str]) -> torch.Tensor:
    """[len(labels), hidden]: each label word as the LLM reads it in an answer (the mean of the
    input embeddings of its tokens, with the space before it)."""
    table = model.get_input_embeddings().weight
    return torch.stack([table[processor.tokenizer(" " + lab, add_special_tokens=False).input_ids].mean(0) for lab in labels]).detach()


def anchor_loss(model, processor: DeemoProcessor, batch: list[Example], media: MediaInputs, anchors: dict[tuple[str, ...], torch.Tensor]) -> torch.Tensor:
    """The anchor stage's loss: per item and modality, the projected tokens' mean classified among
    the row's label words (``label_embeddings``, cached in ``anchors`` per label set) by cosine
    similarity; cross-entropy averaged over items and modalities."""
    import torch.nn.functional as F

    embeds = model.embed_media(media)  # {modality: [N, T, H]}, items in prompt order
    seen = dict.fromkeys(embeds, 0)
    losses = []
    for e in batch:
        labels = tuple(e.row["label_set"]["labels"])
        if labels not in anchors:
            anchors[labels] = label_embeddings(model, processor, labels)
        target = torch.tensor([labels.index(e.row["label"])], device=anchors[labels].device)
        for m in e.modalities:
            z = embeds[m][seen[m]].mean(0)
            seen[m] += 1
            logits = F.cosine_similarity(z[None].to(anchors[labels].dtype), anchors[labels], dim=-1) / ANCHOR_TEMPERATURE
            losses.append(F.cross_entropy(logits[None], target))
    return torch.stack(losses).mean()


def _stage_trainables(model: DeemoLlamaForConditionalGeneration, stage: StageRecipe) -> list[torch.nn.Parameter]:
    """anchor, align: projectors only; finetune: projectors + LoRA. Encoders and base weights stay frozen."""
    for n, p in model.language_model.named_parameters():
        p.requires_grad_(stage.trains_lora and "lora_" in n)
    model.projectors.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _schedule(stage: StageRecipe, total: int):
    warmup = int(stage.warmup_ratio * total)

    def factor(s: int) -> float:
        w = min(1.0, (s + 1) / max(1, warmup))
        if stage.scheduler == "constant":
            return w
        frac = min(s, total) / total
        return w * (0.5 * (1 + math.cos(math.pi * frac)) if stage.scheduler == "cosine" else 1.0 - frac)

    return factor


def _order(n: int, seed: int, stage_index: int, epoch: int) -> list[int]:
    """The data order of one epoch: a function of (seed, stage, epoch) only, so a resumed run sees
    the same batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + stage_index * 1009 + epoch)
    return torch.randperm(n, generator=g).tolist()


# -- validation ---------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, processor: DeemoProcessor, examples: list[Example], features: FeatureCache, batch_size: int = 1, accuracy: bool = True) -> dict[str, float]:
    """Mean loss over ``examples``; label accuracy on their recognition rows through the one label
    scorer (calibrated, as ``deemo analyze`` and the server choose a label)."""
    was = model.training
    model.eval()
    losses = []
    for i in range(0, len(examples), batch_size):
        inputs = batch_inputs(examples[i : i + batch_size], processor, features).to(model.device)
        losses.append(model(inputs.input_ids, attention_mask=inputs.attention_mask, labels=inputs.labels, media=inputs.media).loss.item())
    out = {"val_loss": float(sum(losses) / max(1, len(losses)))}
    rec = [e for e in examples if e.row.get("kind") == "recognition"]
    if accuracy and rec:
        out["val_accuracy"] = sum(p == e.row["label"] for p, e in zip(predict_labels(model, processor, rec, features), rec)) / len(rec)
    model.train(was)
    return out


@torch.no_grad()
def predict_labels(model, processor: DeemoProcessor, examples: list[Example], features: FeatureCache) -> list[str]:
    """The label the one label scorer picks for each example (its messages without the answer)."""
    from ..scoring import HFLabelScorer, best

    scorer = HFLabelScorer(model, processor)
    out = []
    for e in examples:
        media = batch_inputs([e], processor, features).media
        out.append(best(scorer.score(e.row["messages"][:-1], e.row["label_set"]["labels"], media=media)))
    return out


# -- checkpoints: trainable weights + optimiser + scheduler + RNG + data position ------------------------
def _rng_state() -> dict:
    import numpy as np

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(s: dict) -> None:
    import numpy as np

    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s["cuda"]:
        torch.cuda.set_rng_state_all(s["cuda"])


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if "lora_" in n or n.startswith("projectors.")}


def save_training_state(out: Path, model, processor: DeemoProcessor, opt, sched, state: dict, keep_last: int) -> Path:
    """``out/checkpoints/step-<N>/``: a project checkpoint (``deemo analyze --checkpoint``, the gateway
    and vLLM load it like the final one) plus what ``--resume`` needs (trainable weights, optimiser,
    scheduler, RNG, data position); ``state.json`` is written last, its presence = complete."""
    from safetensors.torch import save_file

    from ..build import save_checkpoint

    d = out / "checkpoints" / f"step-{state['global_step']:07d}"
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.config.projectors_trained = True  # the saved config says what the checkpoint holds
    save_checkpoint(model, processor, tmp)
    save_file(_trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state()}, tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n")
    shutil.rmtree(d, ignore_errors=True)
    os.replace(tmp, d)
    done = _complete_checkpoints(out)
    for old in done[:-keep_last] if keep_last > 0 else []:
        gone = old.with_name(old.name + ".del")  # renamed first: a kill mid-delete leaves no half checkpoint
        os.replace(old, gone)
        shutil.rmtree(gone, ignore_errors=True)
    for stale in (out / "checkpoints").glob("step-*.del"):  # a delete an earlier kill interrupted
        shutil.rmtree(stale, ignore_errors=True)
    return d


def _complete_checkpoints(out: Path) -> list[Path]:
    return sorted(p for p in (out / "checkpoints").glob("step-*") if (p / "state.json").is_file() and not p.name.endswith((".tmp", ".del")))


def latest_checkpoint(out: Path) -> Path | None:
    done = _complete_checkpoints(out)
    return done[-1] if done else None


# -- the loop ---------------------------------------------------------------------------------------------
def _check_out(out: Path, recipe: Recipe, resume: bool) -> Path | None:
    from .recipe import dump_recipe

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        if resume:
            raise DeemoError(f"{out}: nothing to resume (no earlier run there)")
        return None
    if not out.is_dir():
        raise DeemoError(f"{out}: exists and is not a folder")
    if not resume:
        raise DeemoError(f"{out}: holds another run; pass --resume to continue it or choose a new folder")
    saved = out / "recipe.yaml"
    if not saved.is_file():
        raise DeemoError(f"{out}: not a training run (no recipe.yaml); choose a new folder")
    if saved.read_text() != dump_recipe(recipe):
        raise DeemoError(f"{out}: was started with a different recipe ({saved}); resume with the same --config and --set values")
    if (out / "train_summary.json").is_file():
        raise DeemoError(f"{out}: this run has finished already")
    return latest_checkpoint(out)


def train(recipe: Recipe, out: Path, resume: bool = False) -> Path:
    """Run the recipe's stages and write a checkpoint (base weights + trained projectors + LoRA
    adapter) to ``out``, with ``recipe.yaml`` (resolved), ``metrics.jsonl``, ``curves.png`` and
    ``train_summary.json``. A crash loses at most the steps since the last checkpoint."""
    from accelerate import Accelerator
    from safetensors.torch import load_file

    from ..assets import default_checkpoint
    from ..build import load_checkpoint, save_checkpoint
    from .recipe import dump_recipe

    out = Path(out)
    device = resolve_device(recipe)
    ckpt_dir = _check_out(out, recipe, resume)
    train_file, val_file = resolve_data(recipe)
    writer = _tensorboard(recipe, out)
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=recipe.precision.mixed)
    for f in filter(None, (train_file, val_file)):
        if not f.stat().st_size:
            raise DeemoError(f"{f}: no records")
        check_rows(f)
    random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    model, processor = load_checkpoint(recipe.model.checkpoint or default_checkpoint(), load_adapter=False, quantization=recipe.model.quantization)
    if recipe.model.quantization != "none":
        from peft import prepare_model_for_kbit_training

        model.language_model = prepare_model_for_kbit_training(model.language_model, use_gradient_checkpointing=recipe.model.gradient_checkpointing)
    elif recipe.model.gradient_checkpointing:
        model.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    apply_lora(model, recipe.lora)
    if recipe.model.quantization == "none":
        model.to(accelerator.device)
    else:  # a 4/8-bit LLM is placed by bitsandbytes at load time and cannot be moved
        model.encoders.to(accelerator.device)
        model.projectors.to(accelerator.device)
    features = FeatureCache(Path(recipe.data.feature_cache_dir).expanduser() if recipe.data.feature_cache_dir else cache_dir() / "features", model, processor, enabled=recipe.data.feature_cache)
    rows_cache = cache_dir() / "rows"
    examples = tokenize_file(train_file, processor, recipe.data.kinds, rows_cache)
    val_examples = tokenize_file(val_file, processor, recipe.data.kinds, rows_cache) if val_file else []
    if not len(examples):
        raise DeemoError(f"{train_file}: no rows" + (f" of kinds {list(recipe.data.kinds)} (data.kinds)" if recipe.data.kinds else ""))
    if features.enabled:  # computed once; every epoch reads them
        for table in (examples, val_examples):
            for e in tqdm(table, desc="encoder features", total=len(table)):
                if e.modalities:
                    features.get(e.clip, sorted(set(e.modalities)))

    state = {"stage_index": 0, "step": 0, "epoch": 0, "batch_pos": 0, "global_step": 0, "stages": [], "samples": 0, "train_seconds": 0.0}
    if ckpt_dir is not None:
        state = json.loads((ckpt_dir / "state.json").read_text())
        for n, t in load_file(str(ckpt_dir / "trainable.safetensors")).items():
            model.get_parameter(n).data.copy_(t.to(model.get_parameter(n).dtype))
        _truncate_metrics(out / "metrics.jsonl", state["global_step"])
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.yaml").write_text(dump_recipe(recipe))
        (out / "metrics.jsonl").write_text("")
    metrics = open(out / "metrics.jsonl", "a")

    def log(row: dict) -> None:
        if accelerator.is_main_process:
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            if writer is not None:
                for k, v in row.items():
                    if isinstance(v, float):
                        writer.add_scalar(f"{row['stage']}/{k}", v, row["global_step"])

    model.train()
    model.config.projectors_trained = True  # validation scores it as the trained checkpoint it becomes (scoring.calibrates)
    anchors: dict[tuple[str, ...], torch.Tensor] = {}  # label set -> its label words' embeddings (anchor stage)
    t_start = time.perf_counter()
    for si in range(state["stage_index"], len(recipe.stages)):
        stage = recipe.stages[si]
        params = _stage_trainables(model, stage)
        opt = torch.optim.AdamW(params, lr=stage.lr or recipe.optimizer.lr, betas=tuple(recipe.optimizer.betas), weight_decay=recipe.optimizer.weight_decay)
        # the rows this stage reads, by index: the anchor stage, the labelled clips only
        pool = [i for i in range(len(examples)) if anchors_of(examples[i])] if stage.name == "anchor" else range(len(examples))
        if not len(pool):
            raise DeemoError(f"{train_file}: the anchor stage needs rows with media and a label of their label_set; there are none")
        per_epoch = math.ceil(len(pool) / recipe.batch_size)
        steps_per_epoch = math.ceil(per_epoch / recipe.grad_accum)
        total = stage.max_steps or max(1, math.ceil(stage.epochs * steps_per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(stage, total))
        wrapped, opt = accelerator.prepare(model, opt)
        if ckpt_dir is not None and si == state["stage_index"]:  # resuming inside this stage (or at its start)
            saved = torch.load(ckpt_dir / "optim.pt", weights_only=False)
            if state["step"] > 0:
                opt.load_state_dict(saved["optimizer"])
                sched.load_state_dict(saved["scheduler"])
            _set_rng_state(saved["rng"])
        else:
            state.update(step=0, epoch=0, batch_pos=0)
        losses: list[float] = []  # per optimiser step: the mean loss of its batches
        group: list[float] = []
        bar = tqdm(total=total, initial=state["step"], desc=f"stage {si + 1}/{len(recipe.stages)} {stage.name}", disable=not accelerator.is_main_process)
        t_stage = time.perf_counter()
        while state["step"] < total:
            order = _order(len(pool), recipe.seed, si, state["epoch"])
            n_batches = math.ceil(len(order) / recipe.batch_size)
            for bi in range(state["batch_pos"], n_batches):
                batch = [examples[pool[j]] for j in order[bi * recipe.batch_size : (bi + 1) * recipe.batch_size]]  # rows read per batch
                inputs = batch_inputs(batch, processor, features).to(accelerator.device)
                stepping = (bi + 1) % recipe.grad_accum == 0 or bi + 1 == n_batches
                if stage.name == "anchor":  # no LLM pass; outside the wrapped forward, so gradients are averaged by hand below
                    loss = anchor_loss(model, processor, batch, inputs.media, anchors)
                else:
                    dropped = modality_dropout(inputs.media, recipe.data.modality_dropout)
                    with zero_modalities(model, dropped):
                        loss = wrapped(inputs.input_ids, attention_mask=inputs.attention_mask, labels=inputs.labels, media=inputs.media).loss
                accelerator.backward(loss / recipe.grad_accum)
                if stage.name == "anchor" and stepping and accelerator.num_processes > 1:
                    for p in params:
                        if p.grad is not None:
                            p.grad = accelerator.reduce(p.grad, reduction="mean")
                group.append(loss.item())
                state["samples"] += len(batch)
                if stage.name != "anchor":  # tokens the LLM read (the anchor stage runs none)
                    state["tokens"] = state.get("tokens", 0) + int(inputs.attention_mask.sum())
                if not stepping:
                    continue
                accelerator.clip_grad_norm_(params, recipe.optimizer.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                state["step"] += 1
                state["global_step"] += 1
                state["batch_pos"] = bi + 1
                losses.append(sum(group) / len(group))
                group = []
                row = {"stage": stage.name, "step": state["step"], "global_step": state["global_step"], "loss": losses[-1], "lr": float(sched.get_last_lr()[0])}
                if val_examples and recipe.logging.eval_every_steps and state["step"] % recipe.logging.eval_every_steps == 0:
                    row |= evaluate(model, processor, val_examples, features, recipe.batch_size)
                if state["step"] % recipe.logging.every_steps == 0 or "val_loss" in row or state["step"] == total:
                    log(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}")
                every = recipe.checkpointing.every_steps
                if every and state["global_step"] % every == 0 and state["step"] < total and accelerator.is_main_process:
                    state["train_seconds"] += time.perf_counter() - t_stage
                    t_stage = time.perf_counter()
                    save_training_state(out, model, processor, opt, sched, state, recipe.checkpointing.keep_last)
                if state["step"] >= total:
                    break
            else:
                state["epoch"] += 1
                state["batch_pos"] = 0
                continue
            break
        bar.close()
        state["train_seconds"] += time.perf_counter() - t_stage
        info = {"stage": stage.name, "steps": state["step"], "last_loss": losses[-1] if losses else None}
        if val_examples:
            info |= evaluate(model, processor, val_examples, features, recipe.batch_size)
            log({"stage": stage.name, "step": state["step"], "global_step": state["global_step"], **{k: v for k, v in info.items() if k.startswith("val_")}})
        state["stages"].append(info)
        state.update(stage_index=si + 1, step=0, epoch=0, batch_pos=0)
        ckpt_dir = None
        if recipe.checkpointing.every_steps and si + 1 < len(recipe.stages) and accelerator.is_main_process:
            save_training_state(out, model, processor, opt, sched, state, recipe.checkpointing.keep_last)
    metrics.close()
    if writer is not None:
        writer.close()
    model = accelerator.unwrap_model(model)
    model.eval()
    if accelerator.is_main_process:
        save_checkpoint(model.to("cpu"), processor, out)
        last = state["stages"][-1]
        summary = {"steps": state["global_step"], "examples": len(examples), "validation_examples": len(val_examples), "stages": state["stages"],
                   "last_loss": last["last_loss"], "samples": state["samples"], "train_seconds": round(state["train_seconds"], 2),
                   "samples_per_s": round(state["samples"] / max(1e-9, state["train_seconds"]), 3), "tokens_per_s": round(state.get("tokens", 0) / max(1e-9, state["train_seconds"]), 1),
                   "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None, "wall_seconds": round(time.perf_counter() - t_start, 1),
                   "feature_cache": {"enabled": features.enabled, "hits": features.hits, "misses": features.misses},
                   "data": {"train": str(train_file), "validation": str(val_file) if val_file else None}, "device": str(accelerator.device), "resumed": resume}
        plot_curves(out / "metrics.jsonl", out / "curves.png")
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out


def _truncate_metrics(path: Path, global_step: int) -> None:
    """Drop metric rows logged after the checkpoint being resumed (they will be logged again)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["global_step"] <= global_step]
    path.write_text("".join(line + "\n" for line in keep))


def _tensorboard(recipe: Recipe, out: Path):
    if not recipe.logging.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DeemoError("logging.tensorboard is true but tensorboard is not installed (pip install tensorboard)") from None
    return SummaryWriter(str(out / "tensorboard"))


def plot_curves(metrics: Path, png: Path) -> Path | None:
    """Training loss per step (coloured by stage) and validation loss/accuracy, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for stage in dict.fromkeys(r["stage"] for r in rows):
        pts = [(r["global_step"], r["loss"]) for r in rows if r["stage"] == stage and "loss" in r]
        if pts:
            ax.plot(*zip(*pts), label=f"{stage} loss")
    val = [(r["global_step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if val:
        ax.plot(*zip(*val), "o--", label="validation loss")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    acc = [(r["global_step"], r["val_accuracy"]) for r in rows if "val_accuracy" in r]
    if acc:
        ax2 = ax.twinx()
        ax2.plot(*zip(*acc), "s:", color="black", label="validation accuracy")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("label accuracy")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
