"""The ONE label choice: calibrated log-likelihood of each label's answer, in-process or via vLLM.

For each label the answer ``Emotion: <label>.`` (prompting.label_answer) is scored by its summed
log-probability after the prompt, minus the same answer's log-probability after a content-free
prompt (the same template with no transcript, no observations, no media: Zhao et al. 2021,
"Calibrate before use"), so a small LLM's prior for one label does not decide. A softmax over
the labels gives the distribution. That correction is for a model that was never trained on the
task (the embedded default's zero-shot LLM): a checkpoint trained by ``deemo train`` has learned
its data's label prior, and it answers the content-free prompt as confidently as a real one, so
subtracting that answer would flip its choices (measured: a model right on every clip scored at
chance). ``calibrates(config)`` is the rule both backends follow: calibrate an untrained
checkpoint only.

Two backends compute the same numbers:
- :class:`HFLabelScorer`: the model in this process. The prompt (and its media) runs once; its KV
  cache is repeated for the batch of answers.
- :class:`OpenAILabelScorer`: an OpenAI-compatible vLLM server, with ``prompt_logprobs``: one chat
  request per answer, the answer as a final assistant message that the template continues
  (``continue_final_message``); vLLM's prefix cache shares the prompt between them.
The content-free scores depend only on the label set and the question: both backends cache them.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

import numpy as np
import torch

from .prompting import content_free_messages, label_answer


def calibrated(cond: np.ndarray, free: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Softmax over labels of (conditional - content-free) answer log-probabilities."""
    z = np.asarray(cond, np.float64) - np.asarray(free, np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    return {label: round(float(v), 4) for label, v in zip(labels, p)}


def calibrates(config) -> bool:
    """Content-free calibration for an untrained checkpoint only (``projectors_trained`` false)."""
    return not getattr(config, "projectors_trained", False)


def best(scores: dict[str, float]) -> str:
    return max(scores, key=scores.get)


class HFLabelScorer:
    """Scores answers with a loaded DeemoLlamaForConditionalGeneration + DeemoProcessor."""

    def __init__(self, model, processor, calibrate: bool | None = None):
        self.model, self.processor = model, processor
        self.calibrate = calibrates(model.config) if calibrate is None else calibrate
        self._free: dict[tuple, np.ndarray] = {}

    @torch.inference_mode()
    def answer_logprobs(self, messages: list[dict], answers: Sequence[str], videos=(), audios=(), media=None) -> np.ndarray:
        """[len(answers)] summed log-probabilities of each answer's tokens after the prompt.

        The answer is tokenised together with the prompt text (as the server tokenises the rendered
        chat), and its tokens are those past the prompt's own tokens.
        """
        tok, dev = self.processor.tokenizer, self.model.device
        prompt = self.processor.expand_placeholders(self.processor.render(messages, add_generation_prompt=True))
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        a_ids = []
        for a in answers:
            full = tok(prompt + a, add_special_tokens=False).input_ids
            if full[: len(p_ids)] != p_ids:
                raise ValueError(f"the answer {a!r} changes the prompt's tokenisation")
            a_ids.append(full[len(p_ids) :])
        n, k, plen = len(answers), max(len(a) for a in a_ids), len(p_ids)
        media = media if media is not None else self.processor.prepare_media(videos, audios)  # or precomputed (training.features)
        out = self.model(torch.tensor([p_ids], device=dev), media=media, use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[0, -1].float(), -1)  # predicts each answer's first token
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ans = torch.full((n, k), pad, dtype=torch.long)
        amask = torch.zeros((n, k), dtype=torch.long)
        for i, a in enumerate(a_ids):
            ans[i, : len(a)] = torch.tensor(a)
            amask[i, : len(a)] = 1
        attn = torch.cat([torch.ones((n, plen), dtype=torch.long), amask], 1).to(dev)
        positions = (plen + torch.arange(k)).expand(n, k).to(dev)
        logits = self.model.language_model(input_ids=ans.to(dev), attention_mask=attn, position_ids=positions, past_key_values=cache).logits.float()
        logp = torch.log_softmax(logits, -1)  # [n, k, V]; position j predicts token j + 1
        return np.array([float(first[a[0]]) + sum(float(logp[i, j, a[j + 1]]) for j in range(len(a) - 1)) for i, a in enumerate(a_ids)])

    def score(self, messages: list[dict], labels: Sequence[str], question: str | None = None, videos=(), audios=(), media=None) -> dict[str, float]:
        answers = [label_answer(label) for label in labels]
        cond = self.answer_logprobs(messages, answers, videos, audios, media)
        if not self.calibrate:
            return calibrated(cond, np.zeros_like(cond), labels)
        key = (tuple(labels), question)
        if key not in self._free:
            self._free[key] = self.answer_logprobs(content_free_messages(labels, question), answers)
        return calibrated(cond, self._free[key], labels)


def _prompt_logprob(entry: dict, token_id: int) -> float:
    """One ``prompt_logprobs`` entry ({token_id: {"logprob": ...}, ...}) -> the logprob of ``token_id``."""
    value = entry.get(str(token_id), entry.get(token_id)) if isinstance(entry, dict) else None
    if value is None:
        raise RuntimeError(f"the model server's prompt_logprobs lack token {token_id}: is it serving this checkpoint's tokenizer?")
    return float(value["logprob"] if isinstance(value, dict) else value)


class OpenAILabelScorer:
    """The same scores from an OpenAI-compatible vLLM server (``AsyncOpenAI`` client).

    ``tokenizer`` is the checkpoint's: it counts each answer's tokens, which are the last tokens of
    the continued prompt.
    """

    def __init__(self, client, model: str, tokenizer, calibrate: bool = True):
        self.client, self.model, self.tokenizer = client, model, tokenizer
        self.calibrate = calibrate  # calibrates(the checkpoint's config), as HFLabelScorer decides
        self._free: dict[tuple, np.ndarray] = {}

    def _answer_ids(self, prompt_text: str, answer: str) -> list[int]:
        p = self.tokenizer(prompt_text, add_special_tokens=False).input_ids
        full = self.tokenizer(prompt_text + answer, add_special_tokens=False).input_ids
        return full[len(p) :]

    async def _one(self, messages: list[dict], answer: str, ids: list[int]) -> float:
        resp = await self.client.chat.completions.create(
            model=self.model,
            messages=[*messages, {"role": "assistant", "content": answer}],
            max_tokens=1,
            temperature=0.0,
            extra_body={"prompt_logprobs": 0, "continue_final_message": True, "add_generation_prompt": False},
        )
        entries = (resp.model_extra or {}).get("prompt_logprobs")
        if not entries:
            raise RuntimeError("the model server returned no prompt_logprobs (a vLLM server is needed for label scores)")
        return sum(_prompt_logprob(e, t) for e, t in zip(entries[-len(ids) :], ids))

    async def answer_logprobs(self, messages: list[dict], answers: Sequence[str], rendered_prompt: str) -> np.ndarray:
        ids = [self._answer_ids(rendered_prompt, a) for a in answers]
        return np.array(await asyncio.gather(*(self._one(messages, a, t) for a, t in zip(answers, ids))))

    async def score(self, messages: list[dict], labels: Sequence[str], render, question: str | None = None) -> dict[str, float]:
        """``render(messages) -> str``: the prompt text with the generation prompt (processor.render)."""
        answers = [label_answer(label) for label in labels]
        cond = await self.answer_logprobs(messages, answers, render(messages))
        if not self.calibrate:
            return calibrated(cond, np.zeros_like(cond), labels)
        key = (tuple(labels), question)
        if key not in self._free:
            free_msgs = content_free_messages(labels, question)
            self._free[key] = await self.answer_logprobs(free_msgs, answers, render(free_msgs))
        return calibrated(cond, self._free[key], labels)
