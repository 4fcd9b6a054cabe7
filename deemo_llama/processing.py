"""DeemoProcessor: chat messages + raw media -> model inputs; also label masking for training.

The chat template (``templates/chat_template.jinja``) emits ONE placeholder per media item; this
processor expands it to the modality's fixed ``num_tokens`` (vLLM's prompt replacement does the same).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import DeemoConfig
from .modeling import MediaInputs

CHAT_TEMPLATE = (Path(__file__).parent / "templates" / "chat_template.jinja").read_text()
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
IGNORE_INDEX = -100

Message = dict[str, Any]


@dataclass
class ProcessorOutput:
    """input_ids/attention_mask/labels: [B, L] long; media: the batch's preprocessed media."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None
    media: MediaInputs | None = None

    def to(self, device: torch.device | str) -> "ProcessorOutput":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return ProcessorOutput(mv(self.input_ids), mv(self.attention_mask), mv(self.labels), None if self.media is None else self.media.to(device))


def count_media(messages: Sequence[Message]) -> dict[str, int]:
    """Number of video and audio content parts in ``messages``."""
    n = {"video": 0, "audio": 0}
    for msg in messages:
        if isinstance(msg.get("content"), list):
            for part in msg["content"]:
                t = part.get("type")
                if t in ("video", "video_url"):
                    n["video"] += 1
                elif t in ("audio", "audio_url", "input_audio"):
                    n["audio"] += 1
    return n


class DeemoProcessor:
    """Tokenizer + chat template + media preprocessing for one DeemoConfig."""

    def __init__(self, tokenizer, config: DeemoConfig, feature_extractor=None, chat_template: str = CHAT_TEMPLATE):
        self.tokenizer = tokenizer
        self.config = config
        self.feature_extractor = feature_extractor
        self.chat_template = chat_template
        if "audio" in config.modalities and feature_extractor is None:
            from transformers import WhisperFeatureExtractor

            self.feature_extractor = WhisperFeatureExtractor(feature_size=config.audio.encoder.whisper_config["num_mel_bins"])
        for name, m in config.modalities.items():
            tid = tokenizer.convert_tokens_to_ids(m.placeholder)
            if tid is None or tid == tokenizer.unk_token_id or m.placeholder_id != tid:
                raise ValueError(f"{name} placeholder {m.placeholder!r} is token {tid} in the tokenizer but {m.placeholder_id} in the config")

    # -- text ------------------------------------------------------------------------------------
    def render(self, messages: Sequence[Message], tools: list[dict] | None = None, add_generation_prompt: bool = False) -> str:
        """The chat template's text, with one placeholder per media item."""
        return self.tokenizer.apply_chat_template(
            list(messages), tools=tools, chat_template=self.chat_template, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def expand_placeholders(self, text: str) -> str:
        for m in self.config.modalities.values():
            text = text.replace(m.placeholder, m.placeholder * m.num_tokens)
        return text

    # -- media -----------------------------------------------------------------------------------
    def preprocess_video(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames [T, H, W, 3] -> [T, 3, S, S]: shorter side to S, centre crop, normalise."""
        enc = self.config.video.encoder
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
        h, w = x.shape[-2:]
        scale = enc.image_size / min(h, w)
        nh, nw = max(enc.image_size, round(h * scale)), max(enc.image_size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (nh - enc.image_size) // 2, (nw - enc.image_size) // 2
        x = x[..., top : top + enc.image_size, left : left + enc.image_size]
        mean = torch.tensor(enc.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(enc.image_std).view(1, 3, 1, 1)
        return (x - mean) / std

    def preprocess_audio(self, wave: np.ndarray) -> tuple[torch.Tensor, int]:
        """16 kHz mono float wave -> (log-mel [n_mels, 3000], unpadded encoder frames)."""
        enc = self.config.audio.encoder
        wave = np.asarray(wave, dtype=np.float32)[: int(enc.max_seconds * enc.sampling_rate)]
        feats = self.feature_extractor(wave, sampling_rate=enc.sampling_rate, return_tensors="pt").input_features[0]
        frames = int(np.ceil(len(wave) / enc.sampling_rate * enc.frames_per_second))
        return feats, max(1, min(frames, 1500))

    def prepare_media(self, videos: Sequence[np.ndarray] = (), audios: Sequence[np.ndarray] = ()) -> MediaInputs | None:
        if not videos and not audios:
            return None
        media = MediaInputs()
        if videos:
            if "video" not in self.config.modalities:
                raise ValueError("this model has no video modality")
            frames = [self.preprocess_video(v) for v in videos]
            t = max(f.shape[0] for f in frames)
            # Clips of different frame counts: repeat the last frame (pooling averages it in evenly).
            media.pixel_values_videos = torch.stack([torch.cat([f, f[-1:].expand(t - f.shape[0], *f.shape[1:])]) for f in frames])
        if audios:
            if "audio" not in self.config.modalities:
                raise ValueError("this model has no audio modality")
            feats, frames = zip(*(self.preprocess_audio(a) for a in audios))
            media.audio_features = torch.stack(feats)
            media.audio_frames = torch.tensor(frames, dtype=torch.long)
        return media

    # -- inference inputs --------------------------------------------------------------------------
    def __call__(self, messages: Sequence[Message], videos: Sequence[np.ndarray] = (), audios: Sequence[np.ndarray] = (), tools: list[dict] | None = None, add_generation_prompt: bool = True) -> ProcessorOutput:
        """One conversation -> batch of one. ``videos``/``audios`` in the order their parts appear."""
        n = count_media(messages)
        if n["video"] != len(videos) or n["audio"] != len(audios):
            raise ValueError(f"messages reference {n['video']} video(s) and {n['audio']} audio(s) but {len(videos)} and {len(audios)} were given")
        text = self.expand_placeholders(self.render(messages, tools, add_generation_prompt))
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        return ProcessorOutput(ids, torch.ones_like(ids), None, self.prepare_media(videos, audios))

    # -- training inputs -------------------------------------------------------------------------
    def encode_for_training(self, messages: Sequence[Message], tools: list[dict] | None = None) -> tuple[list[int], list[int]]:
        """Token ids and labels; labels are IGNORE_INDEX everywhere except assistant replies.

        An assistant reply spans from after ``<|im_start|>assistant\\n`` through its ``<|im_end|>``.
        """
        full = self.expand_placeholders(self.render(messages, tools))
        spans = []
        for i, msg in enumerate(messages):
            if msg["role"] != "assistant":
                continue
            start = len(self.expand_placeholders(self.render(messages[:i], tools, add_generation_prompt=True)))
            end = len(self.expand_placeholders(self.render(messages[: i + 1], tools)))
            if not full.startswith(self.expand_placeholders(self.render(messages[: i + 1], tools))):
                raise ValueError("chat template is not prefix-consistent; cannot mask labels")
            spans.append((start, end - 1))  # drop the newline after <|im_end|>
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        labels = [
            tok if any(s <= a < e for s, e in spans) else IGNORE_INDEX
            for tok, (a, _b) in zip(enc["input_ids"], enc["offset_mapping"])
        ]
        return enc["input_ids"], labels

    def collate(self, examples: Sequence[dict]) -> ProcessorOutput:
        """Right-pad a list of {input_ids, labels, videos, audios} examples into one batch."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        length = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), length), pad, dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(examples), length), dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[i, :n] = torch.tensor(e["input_ids"])
            labels[i, :n] = torch.tensor(e["labels"])
            mask[i, :n] = 1
        videos = [v for e in examples for v in e.get("videos", ())]
        audios = [a for e in examples for a in e.get("audios", ())]
        return ProcessorOutput(ids, mask, labels, self.prepare_media(videos, audios))

    # -- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.chat_template = self.chat_template
        self.tokenizer.save_pretrained(directory)
        (directory / CHAT_TEMPLATE_FILE).write_text(self.chat_template)
        if self.feature_extractor is not None:
            self.feature_extractor.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, config: DeemoConfig | None = None) -> "DeemoProcessor":
        from transformers import AutoTokenizer

        directory = Path(directory)
        config = config or DeemoConfig.load(directory)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        fe = None
        if "audio" in config.modalities and (directory / "preprocessor_config.json").is_file():
            from transformers import WhisperFeatureExtractor

            fe = WhisperFeatureExtractor.from_pretrained(directory)
        template_file = directory / CHAT_TEMPLATE_FILE
        template = template_file.read_text() if template_file.is_file() else CHAT_TEMPLATE
        return cls(tokenizer, config, fe, template)


def parse_tool_calls(text: str, start: str = "<tool_call>", end: str = "</tool_call>") -> tuple[str, list[dict]]:
    """Split generated text into (content, tool calls) in the template's format.

    Each call is ``{"name": str, "arguments": dict}``; a block that is not valid JSON raises ValueError.
    """
    calls, content, rest = [], [], text
    while start in rest:
        before, _, after = rest.partition(start)
        content.append(before)
        body, found, rest = after.partition(end)
        if not found:
            raise ValueError(f"unterminated {start} block in model output")
        try:
            obj = json.loads(body.strip())
        except json.JSONDecodeError as e:
            raise ValueError(f"tool call is not valid JSON: {body.strip()[:80]!r}") from e
        if not isinstance(obj, dict) or "name" not in obj:
            raise ValueError(f"tool call lacks a name: {body.strip()[:80]!r}")
        calls.append({"name": obj["name"], "arguments": obj.get("arguments", {})})
    content.append(rest)
    return "".join(content).strip(), calls
