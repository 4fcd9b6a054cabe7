"""Cross-fitted projectors: the LLM learns to read media tokens as they look on clips the projectors never saw.

An anchor stage with ``folds: K`` (K >= 2) trains, besides the projectors it saves, K fold copies,
copy k on the labelled clips of every fold but k (folds by subject, so a fold holds whole
subjects, as a subject-independent split does). The later stages (LoRA on the LLM, projectors
frozen) then read each anchored clip's media tokens from the copy that never saw it.

Why: on a small corpus the projectors memorise their training clips (every clip has its own
background, voice, framing), so on those clips the media tokens point at the right label even when
the media carry nothing about it (a still face on a clip whose words carry the label). An LLM
fine-tuned on such tokens learns to trust them always, and on new clips, where they point at the
label only when the media really show it, it follows them into the wrong answer (measured on the
432-clip synthetic corpus, without folds: the wording clips 0.21 right with the media tokens, 0.54
with the video zeroed; with 4 folds 0.81). Out-of-fold tokens are what stacking feeds its second level for the same reason.

    folds = fold_of(examples, pool, k=5, seed=0)            # {example index: fold}
    copies = train_fold_projectors(model, processor, examples, folds, features, stage, recipe, init)
    with out_of_fold(model, copies, folds, batch_indices, batch, features):   # per batch
        loss = model(...).loss
"""

from __future__ import annotations

import copy
import hashlib
import math
from contextlib import contextmanager
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .anchor import anchor_loss, label_embeddings
from .recipe import Recipe, StageRecipe
from .rows import batch_inputs


def fold_of(examples: Sequence, pool: Sequence[int], k: int, seed: int) -> dict[int, int]:
    """{example index: fold in 0..k-1} for the anchored rows ``pool``: whole subjects per fold (a row
    without a subject is its own group, by clip), groups ordered by a seeded hash, dealt round-robin."""
    groups: dict[str, list[int]] = {}
    for i in pool:
        e = examples[i]
        groups.setdefault(str(e.row.get("subject") or e.clip or e.id), []).append(i)
    if len(groups) < k:
        from ..errors import DeemoError

        raise DeemoError(f"anchor folds={k} needs at least {k} subjects among the anchored rows; there are {len(groups)} (lower stages.0.folds)")
    order = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    return {i: n % k for n, g in enumerate(order) for i in groups[g]}


@contextmanager
def swapped_projectors(model, projectors: torch.nn.ModuleDict):
    """Run ``model`` with another set of projectors (a fold copy) in place of its own."""
    own = model.projectors
    model.projectors = projectors
    try:
        yield model
    finally:
        model.projectors = own


def train_fold_projectors(model, processor, examples: Sequence, folds: dict[int, int], features, stage: StageRecipe, recipe: Recipe,
                          init: dict[str, torch.Tensor], batch_size: int) -> list[torch.nn.ModuleDict]:
    """K copies of the projectors, each trained from ``init`` (the projectors before the anchor stage)
    by the anchor stage's own loss, schedule and step count per epoch, on the anchored rows outside
    its fold. Deterministic (seeded orders, no dropout): a resumed run trains the same copies."""
    k = max(folds.values()) + 1
    copies = []
    anchors: dict = {}
    for f in range(k):
        proj = copy.deepcopy(model.projectors)
        proj.load_state_dict(init)
        proj.requires_grad_(True)
        rows = sorted(i for i, g in folds.items() if g != f)
        per_epoch = math.ceil(math.ceil(len(rows) / batch_size) / recipe.grad_accum)
        total = stage.max_steps or max(1, math.ceil(stage.epochs * per_epoch))
        opt = torch.optim.AdamW(proj.parameters(), lr=stage.lr or recipe.optimizer.lr, betas=tuple(recipe.optimizer.betas),
                                weight_decay=recipe.optimizer.weight_decay if stage.weight_decay is None else stage.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, stage.lr_lambda(total))
        gen = torch.Generator().manual_seed(recipe.seed * 7919 + f)
        step = 0
        bar = tqdm(total=total, desc=f"anchor fold {f + 1}/{k}", leave=False)
        with swapped_projectors(model, proj):
            while step < total:  # epochs, stepping as the main loop does (every grad_accum batches and at an epoch's end)
                order = [rows[j] for j in torch.randperm(len(rows), generator=gen).tolist()]
                n_batches = math.ceil(len(order) / batch_size)
                for bi in range(n_batches):
                    batch = [examples[i] for i in order[bi * batch_size : (bi + 1) * batch_size]]
                    media = batch_inputs(batch, processor, features).media.to(model.device)
                    (anchor_loss(model, processor, batch, media, anchors, stage.label_smoothing, stage.word_weight) / recipe.grad_accum).backward()
                    if (bi + 1) % recipe.grad_accum and bi + 1 != n_batches:
                        continue
                    torch.nn.utils.clip_grad_norm_(proj.parameters(), recipe.optimizer.max_grad_norm)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    step += 1
                    bar.update(1)
                    if step >= total:
                        break
        bar.close()
        proj.requires_grad_(False).eval()
        copies.append(proj)
    return copies


@torch.no_grad()
def anchor_accuracy(model, processor, examples: Sequence, features, folds: dict[int, int] | None = None, copies: Sequence | None = None) -> dict[str, float]:
    """{modality: accuracy} of the nearest label word to each anchored clip's mean media token:
    out of fold (each clip by the copy that never saw it) when ``copies`` are given, else by the
    model's own projectors. The anchor stage's own measure of how well the projectors generalise."""
    import torch.nn.functional as F

    hits: dict[str, list[bool]] = {}
    anchors: dict = {}
    for i, e in (sorted(folds.items()) if folds is not None else enumerate(examples)):
        e = examples[i]
        proj = copies[folds[i]] if copies is not None else model.projectors
        labels = tuple(e.row["label_set"]["labels"])
        if labels not in anchors:
            anchors[labels] = label_embeddings(model, processor, labels)
        with swapped_projectors(model, proj):
            emb = model.embed_media(batch_inputs([e], processor, features).media.to(model.device))
        for m, t in emb.items():
            sim = F.cosine_similarity(t[0].mean(0)[None].to(anchors[labels].dtype), anchors[labels], dim=-1)
            hits.setdefault(m, []).append(labels[int(sim.argmax())] == e.row["label"])
    return {m: sum(v) / len(v) for m, v in sorted(hits.items())}


@contextmanager
def out_of_fold(model, copies: Sequence[torch.nn.ModuleDict], folds: dict[int, int], indices: Sequence[int], batch: Sequence, media):
    """While the model runs this batch, each anchored item's projected tokens are its fold copy's
    (``indices``: the batch's example indices; items not anchored keep the model's own tokens)."""
    if not copies or media is None or not any(i in folds for i in indices):
        yield model
        return
    from ..modeling import MediaInputs

    subst: dict[str, list[torch.Tensor | None]] = {}  # per modality, per item in prompt order
    for i, e in zip(indices, batch):
        first = {m: len(subst.get(m, [])) for m in e.modalities}  # this row's first item of each modality
        for m in e.modalities:
            subst.setdefault(m, []).append(None)
        if i not in folds:
            continue
        feats = {m: media.encoded[m][j : j + 1] for m, j in first.items()}
        with torch.no_grad(), swapped_projectors(model, copies[folds[i]]):
            emb = model.embed_media(MediaInputs(encoded=feats))
        for m, j in first.items():
            for n in range(j, len(subst[m])):  # every item of this row (a row's parts are one clip)
                subst[m][n] = emb[m][0]

    from ..projectors import projector_outputs_replaced

    def fn(name: str):
        def swap(out):
            return torch.stack([t.to(out.dtype) if t is not None else out[j] for j, t in enumerate(subst[name])])

        return swap

    with projector_outputs_replaced(model, {m: fn(m) for m, items in subst.items() if items}):
        yield model
