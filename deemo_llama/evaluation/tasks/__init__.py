"""Evaluation tasks: one small class per benchmark format, one file each (adding one is one file:
subclass :class:`~deemo_llama.evaluation.tasks.base.Task`, give it a ``name`` and list it here).

    recognition   a label of the row's label set (calibrated scores, else extracted from the text)
    reasoning     the explanation of the cues: judge-free proxies, and a judge LLM when one is given
    ambivalence   BAH: ambivalent or not; macro-F1 and average precision of the positive class
    valence_arousal  valence/arousal from the label distribution (circumplex); CCC, MAE, high/low accuracy
    spotting      micro-expression intervals (MEGC F1 at IoU >= 0.5, STRS) on rows that carry them
"""

from __future__ import annotations

from ...errors import DeemoError
from .ambivalence import AmbivalenceTask
from .base import Item, Reply, Task
from .reasoning import ReasoningTask
from .recognition import RecognitionTask
from .spotting import SpottingTask
from .valence_arousal import ValenceArousalTask

TASKS: dict[str, type[Task]] = {t.name: t for t in (RecognitionTask, ReasoningTask, AmbivalenceTask, ValenceArousalTask, SpottingTask)}


def get_task(name: str, **options) -> Task:
    if name not in TASKS:
        raise DeemoError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[name](**options)


__all__ = ["TASKS", "Item", "Reply", "Task", "get_task"]
