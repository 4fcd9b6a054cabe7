"""The main job: clip -> emotion label + reasoning.

    decode (PyAV) -> transcribe (Whisper) -> cues (text, voice, motion) -> LLM: score labels, explain

Modes:
- ``zero-shot-text``: the checkpoint's projectors are untrained (the embedded default), so media
  tokens would be noise; the LLM sees only the transcript and the text cues.
- ``multimodal``: a trained checkpoint; de-identified video/audio go in as placeholder tokens too.

The label is the LLM's choice among ``labels``: each candidate answer is scored by its
log-likelihood, calibrated by the same answer's likelihood given a content-free prompt (Zhao et al.
2021, "Calibrate before use"), so the small default LLM is not dominated by its prior.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal

import numpy as np
import torch

from .media import Clip, load_clip_for

# MER2023/2024 classes plus the basic-emotion extras of DFEW/MAFW (domain.md).
DEFAULT_LABELS = ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust", "worried")
Mode = Literal["zero-shot-text", "multimodal"]


@dataclass
class AnalysisResult:
    label: str
    scores: dict[str, float]
    reasoning: str
    transcript: str
    mode: Mode
    inputs_used: dict[str, bool]
    cues: dict
    timings: dict[str, float]
    clip: dict
    checkpoint: str
    segments: list[dict] = field(default_factory=list)
    deidentified: bool = False
    deid: dict = field(default_factory=dict)  # faces found per sampled frame, McAdams alpha

    def to_dict(self) -> dict:
        return asdict(self)


class Analyzer:
    """Holds the loaded models; ``analyze(path)`` runs the whole pipeline on one clip."""

    def __init__(self, checkpoint: str | Path | None = None, whisper: str | Path | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32, labels: tuple[str, ...] = DEFAULT_LABELS, max_seconds: float = 600.0, max_new_tokens: int = 64, deid: bool = True, deid_options=None):
        from .assets import asset_dir, default_checkpoint
        from .build import load_checkpoint
        from .transcribe import Transcriber

        t0 = time.perf_counter()
        self.checkpoint = Path(checkpoint) if checkpoint else default_checkpoint()
        self.model, self.processor = load_checkpoint(self.checkpoint, dtype=dtype, device=device)
        self.transcriber = Transcriber(whisper or asset_dir("whisper"), device=device)
        self.labels = tuple(labels)
        self.max_seconds = max_seconds
        self.max_new_tokens = max_new_tokens
        self.mode: Mode = "multimodal" if self.model.config.projectors_trained else "zero-shot-text"
        # The privacy boundary: with deid on, the models below only ever see blurred frames and
        # McAdams-anonymised audio (and the transcript of that audio).
        self.deidentifier = None
        if deid:
            from .privacy.deid import DeidOptions, Deidentifier

            self.deidentifier = Deidentifier(deid_options or DeidOptions(audit=False, transcribe=False))
        self.load_s = time.perf_counter() - t0

    # -- prompt ------------------------------------------------------------------------------------
    def _messages(self, clip: Clip | None, transcript: str, cue_text: str) -> list[dict]:
        parts: list[dict] = []
        if self.mode == "multimodal" and clip is not None:
            if clip.has_video and "video" in self.model.config.modalities:
                parts.append({"type": "video"})
            if clip.has_audio and "audio" in self.model.config.modalities:
                parts.append({"type": "audio"})
        said = f'The person says: "{transcript}"' if transcript else "The person says nothing audible."
        question = (
            f"{said}\nObserved cues:\n{cue_text or '- none available'}\n"
            f"Which emotion does the person most likely feel? Choose one of: {', '.join(self.labels)}. "
            "Then explain which cues support it."
        )
        parts.append({"type": "text", "text": question})
        return [{"role": "user", "content": parts}]

    @torch.inference_mode()
    def _answer_logprobs(self, messages: list[dict], media, answers: list[str]) -> np.ndarray:
        """Sum of log-probabilities of each answer continuation.

        The prompt (and its media) runs once; its KV cache is repeated for the batch of answers.
        """
        prompt = self.processor.expand_placeholders(self.processor.render(messages, add_generation_prompt=True))
        tok = self.processor.tokenizer
        dev = self.model.device
        p_ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids.to(dev)  # [1, P]
        a_ids = [tok(a, add_special_tokens=False).input_ids for a in answers]
        n, k, plen = len(answers), max(len(a) for a in a_ids), p_ids.shape[1]
        media = self.processor.prepare_media(*media) if media is not None else None
        out = self.model(p_ids, media=media, use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[0, -1].float(), -1)  # predicts each answer's first token
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        ans = torch.full((n, k), tok.pad_token_id, dtype=torch.long)
        amask = torch.zeros((n, k), dtype=torch.long)
        for i, a in enumerate(a_ids):
            ans[i, : len(a)] = torch.tensor(a)
            amask[i, : len(a)] = 1
        attn = torch.cat([torch.ones((n, plen), dtype=torch.long), amask], 1).to(dev)
        positions = (plen + torch.arange(k)).expand(n, k).to(dev)
        logits = self.model.language_model(input_ids=ans.to(dev), attention_mask=attn, position_ids=positions, past_key_values=cache).logits.float()
        logp = torch.log_softmax(logits, -1)  # [n, k, V]; position j predicts token j + 1
        return np.array([float(first[a[0]]) + sum(float(logp[i, j, a[j + 1]]) for j in range(len(a) - 1)) for i, a in enumerate(a_ids)])

    def _score_labels(self, clip: Clip | None, transcript: str, cue_text: str) -> dict[str, float]:
        answers = [f"Emotion: {label}." for label in self.labels]
        messages = self._messages(clip, transcript, cue_text)
        cond = self._answer_logprobs(messages, self._raw_media(clip, messages), answers)
        # Content-free prompt: same template, no transcript, no cues, no media.
        free = self._answer_logprobs(self._messages(None, "", ""), None, answers)
        z = cond - free
        p = np.exp(z - z.max())
        p /= p.sum()
        return {label: round(float(v), 4) for label, v in zip(self.labels, p)}

    def _raw_media(self, clip, messages):
        if clip is None or self.mode != "multimodal":
            return None
        kinds = {p["type"] for m in messages for p in m["content"] if isinstance(m["content"], list)}
        return ([clip.frames] if "video" in kinds else [], [clip.audio] if "audio" in kinds else [])

    def stream_reasoning(self, clip: Clip | None, transcript: str, cue_text: str, label: str) -> Iterator[str]:
        """Greedy explanation of ``label``, streamed as text pieces."""
        from .generation import stream_chat

        messages = self._messages(clip, transcript, cue_text)
        videos, audios = self._raw_media(clip, messages) or ([], [])
        yield from stream_chat(self.model, self.processor, messages, videos, audios, assistant_prefix=f"Emotion: {label}. Reasoning:", max_new_tokens=self.max_new_tokens, repetition_penalty=1.15)

    # -- pipeline ----------------------------------------------------------------------------------
    def analyze(self, path: str | Path | Clip, on_reasoning: Callable[[str], None] | None = None) -> AnalysisResult:
        """Run the pipeline on a file (or an already decoded Clip); ``on_reasoning`` gets streamed text."""
        from .cues import extract_cues

        timings: dict[str, float] = {}
        t_all = time.perf_counter()
        t = time.perf_counter()
        if isinstance(path, Clip):
            clip = path
        else:
            clip = load_clip_for(self.model.config, path, self.max_seconds)
        timings["decode"] = clip.decode_s
        deid_info = None
        if self.deidentifier is not None:
            t = time.perf_counter()
            clip, deid_info = self.deidentifier.clip(clip)
            timings["deid"] = time.perf_counter() - t
        t = time.perf_counter()
        tr = self.transcriber(clip.audio) if clip.has_audio else None
        transcript = tr.text if tr else ""
        timings["transcribe"] = time.perf_counter() - t
        t = time.perf_counter()
        cues = extract_cues(transcript, clip.audio, clip.sample_rate, clip.frames)
        cue_text = cues.describe()
        timings["cues"] = time.perf_counter() - t
        t = time.perf_counter()
        scores = self._score_labels(clip, transcript, cue_text)
        label = max(scores, key=scores.get)
        timings["llm_label"] = time.perf_counter() - t
        t = time.perf_counter()
        pieces = []
        for piece in self.stream_reasoning(clip, transcript, cue_text, label):
            pieces.append(piece)
            if on_reasoning:
                on_reasoning(piece)
        timings["llm_reasoning"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_all
        return AnalysisResult(
            label=label,
            scores=scores,
            reasoning="".join(pieces).strip(),
            transcript=transcript,
            mode=self.mode,
            inputs_used=clip.inputs_used,
            cues=cues.to_dict(),
            timings={k: round(v, 3) for k, v in timings.items()},
            clip={"path": str(clip.path), "duration_s": round(clip.duration, 2), "fps": clip.fps, "frames_sampled": 0 if clip.frames is None else len(clip.frames), "notes": clip.notes},
            checkpoint=str(self.checkpoint),
            segments=[asdict(s) for s in tr.segments] if tr else [],
            deidentified=self.deidentifier is not None,
            deid=deid_info or {},
        )


def analyze_clip(path: str | Path, checkpoint: str | Path | None = None, **kwargs) -> AnalysisResult:
    """One-shot convenience: load the (default) checkpoint and analyse ``path``."""
    return Analyzer(checkpoint, **kwargs).analyze(path)
