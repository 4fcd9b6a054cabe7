"""The main job, in process: clip -> Evidence -> prompt -> calibrated label -> reasoning.

    evidence.EvidencePipeline   decode once, de-identify, transcribe the anonymised audio, run the experts
    prompting.build_messages    the one prompt (evidence as text; media parts only with trained projectors)
    scoring.HFLabelScorer       the one label choice (calibrated log-likelihood over the label set)
    generation.stream_chat      greedy reasoning after "Emotion: <label>. Reasoning:", through ReasoningFilter

The gateway (serving/gateway.py) runs the same steps against vLLM, so the CLI and the server give
the same label distribution for the same clip.

Modes:
- ``zero-shot-text``: the checkpoint's projectors are untrained (the embedded default), so media
  tokens would be noise; the LLM reads only the transcript and the experts' findings as text.
- ``multimodal``: a trained checkpoint; the de-identified video/audio go in as placeholder tokens too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal

import torch

from .evidence import Evidence, EvidencePipeline, Profile
from .penalties import DEFAULT_PENALTIES, logits_processors
from .prompting import DEFAULT_LABELS, ReasoningFilter, build_messages, finding_lines, forced_answer, reasoning_lead
from .scoring import HFLabelScorer, best

Mode = Literal["zero-shot-text", "multimodal"]
__all__ = ["DEFAULT_LABELS", "AnalysisResult", "Analyzer", "analyze_clip"]


@dataclass
class AnalysisResult:
    label: str
    scores: dict[str, float]
    reasoning: str
    transcript: str
    mode: Mode
    inputs_used: dict[str, bool]
    evidence: dict
    timings: dict[str, float]
    clip: dict
    checkpoint: str
    segments: list[dict] = field(default_factory=list)
    deidentified: bool = False
    deid: dict = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)  # the evidence lines the model read

    def to_dict(self) -> dict:
        return asdict(self)


def media_parts(mode: Mode, evidence: Evidence, modalities) -> tuple[list[dict], list, list]:
    """(content parts, videos, audios) the model sees: none unless the projectors are trained."""
    if mode != "multimodal" or evidence.media is None:
        return [], [], []
    parts, videos, audios = [], [], []
    if evidence.media.frames is not None and "video" in modalities:
        parts.append({"type": "video"})
        videos.append(evidence.media.frames)
    if evidence.media.audio is not None and "audio" in modalities:
        parts.append({"type": "audio"})
        audios.append(evidence.media.audio)
    return parts, videos, audios


class Analyzer:
    """Holds the loaded models; ``analyze(path)`` runs the whole pipeline on one clip."""

    def __init__(self, checkpoint: str | Path | None = None, whisper: str | Path | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32, labels: tuple[str, ...] = DEFAULT_LABELS, max_seconds: float = 600.0, max_new_tokens: int = 64, deid: bool = True, deid_options=None, experts: Profile = "fast", cache=None, transcriber=None):
        from .assets import asset_dir, default_checkpoint
        from .build import load_checkpoint
        from .transcribe import Transcriber

        t0 = time.perf_counter()
        self.checkpoint = Path(checkpoint) if checkpoint else default_checkpoint()
        self.model, self.processor = load_checkpoint(self.checkpoint, dtype=dtype, device=device)
        self.labels = tuple(labels)
        self.max_new_tokens = max_new_tokens
        self.mode: Mode = "multimodal" if self.model.config.projectors_trained else "zero-shot-text"
        enc = self.model.config.video.encoder if self.model.config.video is not None else None
        # The privacy boundary: the models below only ever see blurred frames, McAdams-anonymised
        # audio and the transcript of that audio; the experts read the raw media inside it.
        self.deid = deid
        self.pipeline = EvidencePipeline(
            experts,
            transcriber=transcriber or Transcriber(whisper or asset_dir("whisper"), device=device),
            deid_options=deid_options,
            cache=cache,
            max_seconds=max_seconds,
            forward_media=self.mode == "multimodal",
            model_frames=(enc.num_frames, enc.sampling, enc.fps) if enc else (8, "uniform", 1.0),
            deidentify=deid,
        )
        self.scorer = HFLabelScorer(self.model, self.processor)
        self.load_s = time.perf_counter() - t0

    def messages(self, evidence: Evidence, question: str | None = None, labels: tuple[str, ...] | None = None) -> tuple[list[dict], list, list]:
        """The prompt for ``evidence`` (the gateway builds the same) and the media it references."""
        parts, videos, audios = media_parts(self.mode, evidence, self.model.config.modalities)
        return build_messages(evidence, labels or self.labels, question, parts), videos, audios

    def stream_reasoning(self, messages: list[dict], videos, audios, label: str, lead: str = "") -> Iterator[str]:
        """Greedy explanation of ``label`` opening with ``lead``: yields whole sentences, stops at a repeated one."""
        from .generation import stream_chat

        from transformers import StoppingCriteria, StoppingCriteriaList

        flt = ReasoningFilter(lead)

        class UntilFiltered(StoppingCriteria):  # generation runs on a thread: stop it when the filter is done
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), flt.done, dtype=torch.bool, device=input_ids.device)

        stop = StoppingCriteriaList([UntilFiltered()])
        for piece in stream_chat(self.model, self.processor, messages, videos, audios, assistant_prefix=forced_answer(label, lead), max_new_tokens=self.max_new_tokens, logits_processor=logits_processors(**DEFAULT_PENALTIES), stopping_criteria=stop):
            if text := flt.feed(piece):
                yield text
            if flt.done:
                break
        if text := flt.finish():
            yield text

    def analyze(self, path: str | Path, on_reasoning: Callable[[str], None] | None = None, physiology: str | Path | None = None, physio_args: dict | None = None, question: str | None = None, labels: tuple[str, ...] | None = None) -> AnalysisResult:
        """Run the pipeline on a file; ``on_reasoning`` gets the reasoning as it is generated;
        ``labels``: this clip's label set (default: the analyzer's)."""
        labels = tuple(labels or self.labels)
        t_all = time.perf_counter()
        ev = self.pipeline.run(path, physiology=physiology, physio_args=physio_args)
        timings = dict(ev.timings)
        messages, videos, audios = self.messages(ev, question, labels)
        t = time.perf_counter()
        scores = self.scorer.score(messages, labels, question, videos, audios)
        label = best(scores)
        timings["llm_label"] = time.perf_counter() - t
        t = time.perf_counter()
        pieces = []
        for piece in self.stream_reasoning(messages, videos, audios, label, reasoning_lead(ev)):
            pieces.append(piece)
            if on_reasoning:
                on_reasoning(piece)
        timings["llm_reasoning"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_all

        return AnalysisResult(
            label=label,
            scores=scores,
            reasoning="".join(pieces).strip(),
            transcript=ev.transcript,
            mode=self.mode,
            inputs_used=ev.inputs_used,
            evidence=ev.to_dict(),
            timings={k: round(v, 3) for k, v in timings.items()},
            clip={"path": str(path), **ev.clip},
            checkpoint=str(self.checkpoint),
            segments=ev.segments,
            deidentified=self.deid,
            deid=ev.deid,
            findings=finding_lines(ev),
        )


def analyze_clip(path: str | Path, checkpoint: str | Path | None = None, **kwargs) -> AnalysisResult:
    """One-shot convenience: load the (default) checkpoint and analyse ``path``."""
    return Analyzer(checkpoint, **kwargs).analyze(path)
