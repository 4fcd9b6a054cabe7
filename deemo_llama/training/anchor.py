"""The anchor stage's objective: media tokens pointed at the LLM's own embeddings of the label words.

Each labelled clip's projected tokens are classified among its label set's words by cosine
similarity of their mean (cross-entropy, optionally label-smoothed: the text-side alignment that
BLIP-2 runs before it connects an LLM), and, with ``word_weight``, every token is also pulled
towards its label word's direction, so that the LLM meets a token it can read like that word.
No LLM pass: a projector pass per clip.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..modeling import MediaInputs
from ..processing import DeemoProcessor
from .rows import Example


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


def anchor_loss(model, processor: DeemoProcessor, batch: list[Example], media: MediaInputs, anchors: dict[tuple[str, ...], torch.Tensor], label_smoothing: float = 0.0, word_weight: float = 0.0) -> torch.Tensor:
    """The anchor stage's loss: per item and modality, the projected tokens' mean classified among
    the row's label words (``label_embeddings``, cached in ``anchors`` per label set) by cosine
    similarity; cross-entropy (optionally label-smoothed) averaged over items and modalities."""
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
            tokens = embeds[m][seen[m]].to(anchors[labels].dtype)  # [T, H]
            seen[m] += 1
            logits = F.cosine_similarity(tokens.mean(0)[None], anchors[labels], dim=-1) / ANCHOR_TEMPERATURE
            loss = F.cross_entropy(logits[None], target, label_smoothing=label_smoothing)
            if word_weight:  # every token towards its label word's direction, not only their mean
                loss = loss + word_weight * (1 - F.cosine_similarity(tokens, anchors[labels][target], dim=-1)).mean()
            losses.append(loss)
    return torch.stack(losses).mean()
