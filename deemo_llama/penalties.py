"""OpenAI's frequency and presence penalties for transformers' ``generate`` (vLLM applies the same).

    logit[t] -= frequency_penalty * count(t in the generated tokens) + presence_penalty * (count > 0)

Only GENERATED tokens count, as in the OpenAI API and vLLM, so the in-process reasoning
(``deemo analyze``) and the served one (the gateway sends the same numbers to vLLM) are decoded
alike. (HF's repetition_penalty would not match: with ``inputs_embeds`` it sees only the new
tokens, while vLLM's also counts the prompt's.) Small greedy models loop without a penalty.
"""

from __future__ import annotations

import torch

# The server-side default of every evidence answer (CLI and gateway).
DEFAULT_PENALTIES = {"frequency_penalty": 0.5, "presence_penalty": 0.0}


class OpenAIPenalties:
    """A ``LogitsProcessor``: ``input_ids`` [B, generated so far] (generate with inputs_embeds passes
    only the new tokens), ``scores`` [B, V]."""

    def __init__(self, frequency_penalty: float = 0.0, presence_penalty: float = 0.0):
        self.frequency, self.presence = float(frequency_penalty), float(presence_penalty)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] == 0 or (self.frequency == 0 and self.presence == 0):
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, input_ids, torch.ones_like(input_ids, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


def logits_processors(frequency_penalty: float = 0.0, presence_penalty: float = 0.0):
    from transformers import LogitsProcessorList

    return LogitsProcessorList([OpenAIPenalties(frequency_penalty, presence_penalty)])
