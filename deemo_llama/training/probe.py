"""Does the model use its media? Label accuracy per group of rows, with modalities' tokens zeroed.

    with zero_modalities(model, ["audio"]):      # every audio placeholder gets a zero vector
        acc = label_accuracy(model, processor, examples, features)

``media_ablation`` runs the four conditions (none, audio, video, both zeroed) on the same
checkpoint and reports accuracy per group (e.g. the synthetic corpus' ``meta.kind``: wording,
voice, video), so a modality's effect shows on the rows whose label only it carries. Labels are
chosen by the one label scorer (scoring.HFLabelScorer), as ``deemo analyze`` chooses them.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterable, Sequence

import torch

ABLATIONS: dict[str, tuple[str, ...]] = {"none": (), "audio zeroed": ("audio",), "video zeroed": ("video",), "both zeroed": ("audio", "video")}


@contextmanager
def zero_modalities(model, names: Iterable[str]):
    """Replace the named modalities' projected tokens by zeros (forward hooks on the projectors)."""
    handles = [model.projectors[n].register_forward_hook(lambda _m, _i, out: torch.zeros_like(out)) for n in names if n in model.projectors]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def media_ablation(model, processor, examples: Sequence, features, group: Callable[[dict], str]) -> dict[str, dict[str, float]]:
    """{condition: {group: accuracy, "all": accuracy}} over the recognition ``examples``."""
    from .llm import predict_labels

    rec = [e for e in examples if e.row.get("kind") == "recognition"]
    was = model.training
    model.eval()
    table: dict[str, dict[str, float]] = {}
    for cond, names in ABLATIONS.items():
        with zero_modalities(model, names):
            pred = predict_labels(model, processor, rec, features)
        hits: dict[str, list[bool]] = defaultdict(list)
        for e, p in zip(rec, pred):
            hits[group(e.row)].append(p == e.row["label"])
            hits["all"].append(p == e.row["label"])
        table[cond] = {g: sum(v) / len(v) for g, v in sorted(hits.items())}
    model.train(was)
    return table
