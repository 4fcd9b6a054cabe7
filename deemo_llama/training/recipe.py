"""Training recipes: typed dataclasses filled from YAML (``deemo train OUT --config RECIPE``).

    recipe = load_recipe("cpu-default", ["data.train=/tmp/built", "stages.1.max_steps=8"])

A recipe is a shipped name (``deemo_llama/recipes/<name>.yaml``) or a YAML file. ``--set
key.path=value`` overrides any field (list items by index: ``stages.0.lr=1e-3``). Unknown keys and
wrong types are one-line errors naming the key; the resolved recipe is saved beside the checkpoint
(``recipe.yaml``).

Stages, in order: ``anchor`` trains the projectors alone against the LLM's label-word embeddings
(no LLM pass); ``align`` trains the projectors only (LLM and encoders frozen); ``finetune`` trains
the projectors and LoRA adapters on the LLM. Any one can be run alone (``stages`` of one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..typed import ConfigError, apply_override, from_data, to_data

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


@dataclass
class ModelRecipe:
    checkpoint: str | None = None  # base checkpoint folder; None = the embedded default
    quantization: Literal["none", "4bit", "8bit"] = "none"  # QLoRA base weights (CUDA + bitsandbytes)
    gradient_checkpointing: bool = False


@dataclass
class DataRecipe:
    train: str | list[str] | None = None  # rows (JSONL) or a `deemo data build` folder (its train.jsonl), or a list of them: trained on together
    validation: str | None = None  # default: the build folder's validation.jsonl, when there is one
    kinds: list[Literal["recognition", "reasoning", "tool_use", "chat"]] | None = None  # None: every kind
    feature_cache: bool = True  # frozen encoders: features computed once per clip, on disk
    feature_cache_dir: str | None = None  # default: <cache_dir>/features
    modality_dropout: float = 0.0  # per training item and modality: probability its projected tokens are zeroed

    def __post_init__(self):
        if not 0 <= self.modality_dropout < 1:
            raise ValueError("data.modality_dropout must be in [0, 1)")


@dataclass
class LoraRecipe:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self):
        if self.r < 1 or self.alpha < 1:
            raise ValueError("lora.r and lora.alpha must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ValueError("lora.dropout must be in [0, 1)")


@dataclass
class OptimizerRecipe:
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError("optimizer.lr must be > 0")
        if len(self.betas) != 2:
            raise ValueError("optimizer.betas must be two numbers")


@dataclass
class StageRecipe:
    name: Literal["anchor", "align", "finetune"]
    epochs: float = 1.0
    max_steps: int | None = None  # optimiser steps; None = epochs
    lr: float | None = None  # None = optimizer.lr
    # the projectors' own learning rate in this stage (LLaVA's mm_projector_lr); None = the stage's lr,
    # 0 = projectors frozen (e.g. LoRA learns to read projectors an anchor stage has trained)
    projector_lr: float | None = None
    weight_decay: float | None = None  # None = optimizer.weight_decay
    # anchor stage only: label smoothing of its cross-entropy, and cross-fitting (training/crossfit.py):
    # with folds K >= 2 the later stages read each anchored clip's tokens from one of K fold copies of
    # the projectors that never saw it (by subject); the projectors saved are trained on all clips
    label_smoothing: float = 0.0
    word_weight: float = 0.0
    folds: int = 1
    warmup_ratio: float = 0.05
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"

    def __post_init__(self):
        if self.epochs <= 0:
            raise ValueError(f"stage {self.name}: epochs must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"stage {self.name}: max_steps must be >= 1")
        if self.projector_lr is not None and (self.projector_lr < 0 or (self.projector_lr == 0 and not self.trains_lora)):
            raise ValueError(f"stage {self.name}: projector_lr must be > 0" + ("" if self.trains_lora else " (the projectors are all this stage trains)"))
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"stage {self.name}: weight_decay must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"stage {self.name}: label_smoothing must be in [0, 1)")
        if self.folds < 1:
            raise ValueError(f"stage {self.name}: folds must be >= 1")
        if self.name != "anchor" and (self.label_smoothing or self.word_weight or self.folds != 1):
            raise ValueError(f"stage {self.name}: label_smoothing and folds belong to the anchor stage")

    @property
    def trains_lora(self) -> bool:
        return self.name == "finetune"

    def lr_lambda(self, total: int):
        """The learning-rate factor per optimiser step (``LambdaLR``): linear warm-up over
        ``warmup_ratio`` of ``total`` steps, then the stage's schedule."""
        warmup = int(self.warmup_ratio * total)

        def factor(s: int) -> float:
            w = min(1.0, (s + 1) / max(1, warmup))
            if self.scheduler == "constant":
                return w
            frac = min(s, total) / total
            return w * (0.5 * (1 + math.cos(math.pi * frac)) if self.scheduler == "cosine" else 1.0 - frac)

        return factor


@dataclass
class PrecisionRecipe:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed: Literal["no", "bf16", "fp16"] = "no"


@dataclass
class LoggingRecipe:
    every_steps: int = 5
    eval_every_steps: int | None = None  # validation loss/accuracy; None = at the end of each stage
    tensorboard: bool = False


@dataclass
class CheckpointRecipe:
    every_steps: int | None = None  # None = at the end only
    keep_last: int = 2


@dataclass
class Recipe:
    model: ModelRecipe = field(default_factory=ModelRecipe)
    data: DataRecipe = field(default_factory=DataRecipe)
    lora: LoraRecipe = field(default_factory=LoraRecipe)
    optimizer: OptimizerRecipe = field(default_factory=OptimizerRecipe)
    stages: list[StageRecipe] = field(default_factory=lambda: [StageRecipe("align"), StageRecipe("finetune", epochs=2.0)])
    precision: PrecisionRecipe = field(default_factory=PrecisionRecipe)
    logging: LoggingRecipe = field(default_factory=LoggingRecipe)
    checkpointing: CheckpointRecipe = field(default_factory=CheckpointRecipe)
    batch_size: int = 1
    grad_accum: int = 4
    seed: int = 0
    description: str = ""

    def __post_init__(self):
        names = [s.name for s in self.stages]
        if not names:
            raise ValueError("stages: at least one stage (anchor, align and/or finetune)")
        order = ["anchor", "align", "finetune"]
        if len(set(names)) != len(names) or names != [n for n in order if n in names]:
            raise ValueError(f"stages must be one or more of anchor, align, finetune, each once and in that order, got {names}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be >= 1")
        if self.stages[0].name == "anchor" and self.stages[0].folds > 1 and any(s.name == "align" or s.projector_lr != 0 for s in self.stages[1:]):
            raise ValueError("an anchor stage with folds > 1 needs the projectors frozen afterwards: no align stage, and finetune with projector_lr: 0")


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(f"{p}: no such recipe file")
        return p
    shipped = RECIPES_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ConfigError(f"unknown recipe {str(name_or_path)!r}; shipped: {', '.join(recipe_names())} (or a .yaml file)")
    return shipped


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, apply ``--set`` overrides, type-check. Errors name the file and the key."""
    import yaml

    path = recipe_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"{path}" + (f":{mark.line + 1}" if mark else "") + f": not valid YAML ({getattr(e, 'problem', e)})") from None
    for o in overrides or []:
        apply_override(data, o)
    try:
        return from_data(Recipe, data)
    except ConfigError as e:
        raise ConfigError(f"{path.name}: {e}") from None


def dump_recipe(recipe: Recipe) -> str:
    import yaml

    return yaml.safe_dump(to_data(recipe), sort_keys=False)
