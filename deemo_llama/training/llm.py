"""Training by a recipe (training/recipe.py): an explicit loop you can read top to bottom.

    deemo train OUT --config cpu-default --set data.train=/tmp/built [--resume]

Data: JSONL rows of instruction_data/row.schema.json (``deemo data build``); ``media`` (relative to
the JSONL file) feeds the video parts (sampled frames) and audio parts (its audio track); ``tools``
of tool-use rows are rendered into the system turn. Only assistant tokens carry labels.

Stages: ``anchor`` (first, when present) trains the projectors alone, without the LLM, towards the
LLM's own embeddings of the label words (training/anchor.py), and with ``folds`` it cross-fits
(training/crossfit.py): the later stages read each anchored clip's tokens from a fold copy of the
projectors that never saw it. ``align`` trains the projectors
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

import contextlib
import json
import math
import os
import random
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from ..assets import cache_dir
from ..errors import DeemoError
from ..modeling import DeemoLlamaForConditionalGeneration, MediaInputs
from ..processing import DeemoProcessor
from .anchor import anchor_loss, anchors_of
from .crossfit import anchor_accuracy, fold_of, out_of_fold, train_fold_projectors
from .features import FeatureCache
from .recipe import LoraRecipe, Recipe, StageRecipe
from .rows import Example, batch_inputs, check_rows, concat_rows, tokenize_file


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


def _rows_file(ref: str, what: str) -> Path:
    p = Path(ref).expanduser()
    if p.is_dir():
        p = p / f"{what}.jsonl"
    if not p.is_file():
        raise DeemoError(f"data.{'train' if what == 'train' else 'validation'}: {p} does not exist (a rows file or a `deemo data build` folder)")
    return p


def resolve_data(recipe: Recipe) -> tuple[list[Path], Path | None]:
    """(train rows files, validation rows or None) from the recipe's data section. ``data.train`` is
    one rows file or build folder, or a list of them (their rows trained on together, in that order);
    the validation rows default to the first build folder's."""
    refs = [recipe.data.train] if isinstance(recipe.data.train, str) else list(recipe.data.train or [])
    if not refs:
        raise DeemoError("data.train is not set: pass --set data.train=<rows.jsonl or a `deemo data build` folder> (or a list of them)")
    train_files = [_rows_file(ref, "train") for ref in refs]
    if len(set(train_files)) != len(train_files):
        raise DeemoError(f"data.train: {next(f for f in train_files if train_files.count(f) > 1)} is given twice")
    if recipe.data.validation:
        return train_files, _rows_file(recipe.data.validation, "validation")
    guess = train_files[0].parent / "validation.jsonl"
    return train_files, guess if Path(refs[0]).expanduser().is_dir() and guess.is_file() and guess.stat().st_size else None


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


@contextmanager
def zero_modalities(model, names: Iterable[str] | Mapping[str, torch.Tensor]):
    """Replace the named modalities' projected tokens by zeros (forward hooks on the projectors):
    every item's for a list of names, or, given {name: a bool per item of the batch, in prompt
    order}, only the flagged items' (training's modality dropout zeroes them as the ablation does)."""
    from ..projectors import projector_outputs_replaced

    items = names if isinstance(names, Mapping) else None

    def fn(name: str):
        def zero(out):
            if items is None:
                return torch.zeros_like(out)
            keep = (~items[name]).to(device=out.device, dtype=out.dtype)
            return out * keep.view(-1, *([1] * (out.dim() - 1)))

        return zero

    with projector_outputs_replaced(model, {n: fn(n) for n in names}):
        yield model


def modality_dropout(media: MediaInputs | None, p: float) -> dict[str, torch.Tensor]:
    """{modality: bool per item} drawn with probability ``p`` (torch's RNG, so a resumed run draws the
    same): the items whose projected tokens this step zeroes, as the ablation does, so the model
    learns to read the other cues when one is missing (and not to let media drown the words)."""
    if media is None or p <= 0:
        return {}
    return {m: torch.rand(n) < p for m, n in media.modalities.items()}


def _stage_param_groups(model: DeemoLlamaForConditionalGeneration, stage: StageRecipe, lr: float) -> list[dict]:
    """The optimiser's parameter groups. anchor, align: projectors only; finetune: projectors + LoRA,
    the projectors at ``stage.projector_lr`` when set (0: frozen). Encoders and base weights stay frozen."""
    for n, p in model.language_model.named_parameters():
        p.requires_grad_(stage.trains_lora and "lora_" in n)
    proj_lr = lr if stage.projector_lr is None else stage.projector_lr
    model.projectors.requires_grad_(proj_lr > 0)
    groups = [{"params": [p for p in model.projectors.parameters()], "lr": proj_lr}] if proj_lr > 0 else []
    lora = [p for p in model.language_model.parameters() if p.requires_grad]
    if lora:
        groups.append({"params": lora, "lr": lr})
    return groups


def _order(n: int, seed: int, stage_index: int, epoch: int) -> list[int]:
    """The data order of one epoch: a function of (seed, stage, epoch) only, so a resumed run sees
    the same batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + stage_index * 1009 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _shard(order: list[int], rank: int, world: int) -> list[int]:
    """This process's share of an epoch's order under data parallelism: every ``world``-th item from
    ``rank``, the order padded with its own head to a multiple of ``world`` (as torch's
    DistributedSampler pads), so every process runs the same number of batches."""
    if world <= 1:
        return order
    padded = order + order[: (-len(order)) % world]
    return padded[rank::world]


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


def save_training_state(out: Path, model, processor: DeemoProcessor, opt, sched, state: dict, keep_last: int, fold_copies: Sequence = ()) -> Path:
    """``out/checkpoints/step-<N>/``: a project checkpoint (``deemo analyze --checkpoint``, the gateway
    and vLLM load it like the final one) plus what ``--resume`` needs (trainable weights, optimiser,
    scheduler, RNG, data position, the anchor stage's fold copies of the projectors when it
    cross-fits); ``state.json`` is written last, its presence = complete."""
    from safetensors.torch import save_file

    from ..build import save_checkpoint

    d = out / "checkpoints" / f"step-{state['global_step']:07d}"
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_checkpoint(model, processor, tmp)
    save_file(_trainable_state(model), str(tmp / "trainable.safetensors"))
    if fold_copies:
        save_file({f"{k}.{n}": t.detach().cpu().contiguous() for k, c in enumerate(fold_copies) for n, t in c.state_dict().items()}, str(tmp / FOLD_FILE))
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


FOLD_FILE = "fold_projectors.safetensors"


def _load_fold_copies(path: Path, model) -> list[torch.nn.ModuleDict]:
    """The anchor stage's fold copies of the projectors, as :func:`save_training_state` wrote them."""
    import copy

    from safetensors.torch import load_file

    flat = load_file(str(path))
    copies = []
    for k in range(1 + max(int(n.split(".", 1)[0]) for n in flat)):
        c = copy.deepcopy(model.projectors)
        c.load_state_dict({n.split(".", 1)[1]: t for n, t in flat.items() if n.split(".", 1)[0] == str(k)})
        copies.append(c.requires_grad_(False).eval())
    return copies


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

    from ..assets import base_checkpoint
    from ..build import load_checkpoint, save_checkpoint
    from ..data.build import transcript_source
    from .recipe import dump_recipe

    out = Path(out)
    device = resolve_device(recipe)
    ckpt_dir = _check_out(out, recipe, resume)
    train_files, val_file = resolve_data(recipe)
    source = transcript_source(train_files)
    writer = _tensorboard(recipe, out)
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=recipe.precision.mixed)
    for f in filter(None, (*train_files, val_file)):
        if not f.stat().st_size:
            raise DeemoError(f"{f}: no records")
        check_rows(f)
    random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    model, processor = load_checkpoint(recipe.model.checkpoint or base_checkpoint(), load_adapter=False, quantization=recipe.model.quantization)
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
    examples = concat_rows([tokenize_file(f, processor, recipe.data.kinds, rows_cache) for f in train_files])
    val_examples = tokenize_file(val_file, processor, recipe.data.kinds, rows_cache) if val_file else []
    if not len(examples):
        raise DeemoError(f"{', '.join(map(str, train_files))}: no rows" + (f" of kinds {list(recipe.data.kinds)} (data.kinds)" if recipe.data.kinds else ""))
    if features.enabled:  # computed once; every epoch reads them
        for table in (examples, val_examples):
            for e in tqdm(table, desc="encoder features", total=len(table)):
                if e.modalities:
                    features.get(e.clip, sorted(set(e.modalities)))

    state = {"stage_index": 0, "step": 0, "epoch": 0, "batch_pos": 0, "global_step": 0, "stages": [], "samples": 0, "train_seconds": 0.0}
    # cross-fitting (training/crossfit.py): the projectors as loaded, where the anchor stage's fold copies start
    init_projectors = {k: v.detach().clone() for k, v in model.projectors.state_dict().items()}
    folds: dict[int, int] = {}
    fold_copies: list = []
    if ckpt_dir is not None:
        state = json.loads((ckpt_dir / "state.json").read_text())
        for n, t in load_file(str(ckpt_dir / "trainable.safetensors")).items():
            model.get_parameter(n).data.copy_(t.to(model.get_parameter(n).dtype))
        _truncate_metrics(out / "metrics.jsonl", state["global_step"])
        if (ckpt_dir / FOLD_FILE).is_file():
            fold_copies = [c.to(accelerator.device) for c in _load_fold_copies(ckpt_dir / FOLD_FILE, model)]
            anchor = recipe.stages[0]
            folds = fold_of(examples, [i for i in range(len(examples)) if anchors_of(examples[i])], anchor.folds, recipe.seed)
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
    # the checkpoint this becomes has projectors trained on media when any row has media (text-only rows
    # leave them as they were: `deemo analyze` then keeps answering from text); validation scores it so
    model.config.projectors_trained = model.config.projectors_trained or any(len(m) for m in examples.table["modalities"])
    # and is run with transcripts made the way its rows' were (a `deemo data build` folder says how)
    model.config.transcribe_from = source or model.config.transcribe_from
    anchors: dict[tuple[str, ...], torch.Tensor] = {}  # label set -> its label words' embeddings (anchor stage)
    t_start = time.perf_counter()
    for si in range(state["stage_index"], len(recipe.stages)):
        stage = recipe.stages[si]
        groups = _stage_param_groups(model, stage, stage.lr or recipe.optimizer.lr)
        params = [p for g in groups for p in g["params"]]
        wd = recipe.optimizer.weight_decay if stage.weight_decay is None else stage.weight_decay
        opt = torch.optim.AdamW(groups, betas=tuple(recipe.optimizer.betas), weight_decay=wd)
        # the rows this stage reads, by index: the anchor stage, the labelled clips only
        pool = [i for i in range(len(examples)) if anchors_of(examples[i])] if stage.name == "anchor" else range(len(examples))
        if not len(pool):  # e.g. text-only rows: nothing to anchor; said in the summary and on stderr
            reason = "no rows with media and a label of their label_set"
            tqdm.write(f"stage {si + 1}/{len(recipe.stages)} anchor skipped: {reason}")
            state["stages"].append({"stage": stage.name, "steps": 0, "skipped": reason})
            state.update(stage_index=si + 1, step=0, epoch=0, batch_pos=0)
            continue
        per_epoch = math.ceil(math.ceil(len(pool) / accelerator.num_processes) / recipe.batch_size)  # batches per process
        steps_per_epoch = math.ceil(per_epoch / recipe.grad_accum)
        total = stage.max_steps or max(1, math.ceil(stage.epochs * steps_per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, stage.lr_lambda(total))
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
            order = _shard(_order(len(pool), recipe.seed, si, state["epoch"]), accelerator.process_index, accelerator.num_processes)
            n_batches = math.ceil(len(order) / recipe.batch_size)
            for bi in range(state["batch_pos"], n_batches):
                idx = [pool[j] for j in order[bi * recipe.batch_size : (bi + 1) * recipe.batch_size]]
                batch = [examples[i] for i in idx]  # rows read per batch
                inputs = batch_inputs(batch, processor, features).to(accelerator.device)
                stepping = (bi + 1) % recipe.grad_accum == 0 or bi + 1 == n_batches
                if stage.name == "anchor":  # no LLM pass; outside the wrapped forward, so gradients are averaged by hand below
                    loss = anchor_loss(model, processor, batch, inputs.media, anchors, stage.label_smoothing, stage.word_weight)
                    accelerator.backward(loss / recipe.grad_accum)
                else:
                    dropped = modality_dropout(inputs.media, recipe.data.modality_dropout)
                    with out_of_fold(model, fold_copies, folds, idx, batch, inputs.media), zero_modalities(model, dropped):
                        # gradients are all-reduced across processes only on the step's last micro-batch
                        with contextlib.nullcontext() if stepping else accelerator.no_sync(wrapped):
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
                    save_training_state(out, model, processor, opt, sched, state, recipe.checkpointing.keep_last, fold_copies)
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
        if stage.name == "anchor":
            # how well the anchored projectors generalise: nearest label word to each clip's mean token
            # on the validation split, and out of fold on the training clips when cross-fitting
            if stage.folds > 1:
                folds = fold_of(examples, pool, stage.folds, recipe.seed)
                fold_copies = train_fold_projectors(model, processor, examples, folds, features, stage, recipe, init_projectors, recipe.batch_size)
                info["anchor_oof_accuracy"] = anchor_accuracy(model, processor, examples, features, folds, fold_copies)
            val_anchored = [e for e in val_examples if anchors_of(e)]
            if val_anchored:
                info["anchor_val_accuracy"] = anchor_accuracy(model, processor, val_anchored, features)
        if val_examples:
            info |= evaluate(model, processor, val_examples, features, recipe.batch_size)
            log({"stage": stage.name, "step": state["step"], "global_step": state["global_step"], **{k: v for k, v in info.items() if k.startswith("val_")}})
        state["stages"].append(info)
        state.update(stage_index=si + 1, step=0, epoch=0, batch_pos=0)
        ckpt_dir = None
        if recipe.checkpointing.every_steps and si + 1 < len(recipe.stages) and accelerator.is_main_process:
            save_training_state(out, model, processor, opt, sched, state, recipe.checkpointing.keep_last, fold_copies)
    metrics.close()
    if writer is not None:
        writer.close()
    model = accelerator.unwrap_model(model)
    model.eval()
    if accelerator.is_main_process:
        save_checkpoint(model if recipe.model.quantization != "none" else model.to("cpu"), processor, out)  # bitsandbytes weights stay on their GPU
        summary = {"steps": state["global_step"], "examples": len(examples), "validation_examples": len(val_examples), "stages": state["stages"],
                   "last_loss": next((s["last_loss"] for s in reversed(state["stages"]) if "last_loss" in s), None), "processes": accelerator.num_processes,
                   "samples": state["samples"] * accelerator.num_processes, "train_seconds": round(state["train_seconds"], 2),  # every process runs as many (padded shards)
                   "samples_per_s": round(state["samples"] * accelerator.num_processes / max(1e-9, state["train_seconds"]), 3), "tokens_per_s": round(state.get("tokens", 0) / max(1e-9, state["train_seconds"]), 1),
                   "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None, "wall_seconds": round(time.perf_counter() - t_start, 1),
                   "feature_cache": {"enabled": features.enabled, "hits": features.hits, "misses": features.misses},
                   "data": {"train": str(train_files[0]) if len(train_files) == 1 else [str(f) for f in train_files], "validation": str(val_file) if val_file else None}, "device": str(accelerator.device), "resumed": resume}
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
