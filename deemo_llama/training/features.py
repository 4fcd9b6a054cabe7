"""Frozen-encoder features, computed once per clip and cached on disk.

The encoders do not train, so what the projectors read for a clip never changes: the pooled encoder
outputs ``{modality: [num_tokens, D_enc]}`` (``model.encode_media``) are stored as safetensors under
``<root>/<key>.safetensors``, keyed by the clip's content digest and the encoders' configuration
(backbone, frame sampling, token count, the encoder weights' digest). Later epochs, validation and
the ablation benchmark then cost the LLM only, and no clip is held in RAM: a batch loads its few
kilobytes of features from disk.

    cache = FeatureCache(root, model, processor)
    encoded = cache.get(clip_path, modalities=("video", "audio"))   # {"video": [8, 1280], "audio": [16, 384]}
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import torch

from ..errors import DeemoError
from ..hashing import file_digest

CACHE_VERSION = "1"


def encoder_fingerprint(model) -> str:
    """Digest of everything that determines the encoded features of a clip."""
    cfg = model.config
    h = hashlib.sha256(CACHE_VERSION.encode())
    for name, m in sorted(cfg.modalities.items()):
        enc = {k: v for k, v in vars(m.encoder).items() if k not in ("hf_config", "whisper_config")}
        h.update(json.dumps({"name": name, "tokens": m.num_tokens, "encoder": enc}, sort_keys=True, default=str).encode())
        # the weights themselves (a few tensors' sums would collide on purpose-built edits; hash all)
        for k, t in sorted(model.encoders[name].state_dict().items()):
            h.update(k.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:24]


class FeatureCache:
    """``get(clip, modalities)`` -> {modality: [num_tokens, D_enc]} float32 tensors (CPU)."""

    def __init__(self, root: str | Path | None, model, processor, enabled: bool = True):
        self.model, self.processor = model, processor
        self.enabled = enabled and root is not None
        self.root = Path(root) if root else None
        self.fingerprint = encoder_fingerprint(model) if self.enabled else ""
        self.hits = self.misses = 0

    def _path(self, clip: Path, modalities: Sequence[str]) -> Path:
        key = hashlib.sha256(f"{self.fingerprint}:{file_digest(clip)}:{','.join(sorted(modalities))}".encode()).hexdigest()[:32]
        return self.root / key[:2] / f"{key}.safetensors"

    def compute(self, clip: Path, modalities: Sequence[str]) -> dict[str, torch.Tensor]:
        """Decode the clip the way the checkpoint samples it and run the frozen encoders."""
        from ..media import load_clip_for

        c = load_clip_for(self.processor.config, clip)
        if "video" in modalities and not c.has_video:
            raise DeemoError(f"{clip}: the row asks for video but the file has none")
        if "audio" in modalities and not c.has_audio:
            raise DeemoError(f"{clip}: the row asks for audio but the file has none")
        media = self.processor.prepare_media([c.frames] if "video" in modalities else [], [c.audio] if "audio" in modalities else [])
        enc = self.model.encode_media(media)
        return {k: v[0].float().cpu().contiguous() for k, v in enc.items()}

    def get(self, clip: str | Path, modalities: Sequence[str]) -> dict[str, torch.Tensor]:
        clip = Path(clip)
        if not modalities:
            return {}
        if not self.enabled:
            return self.compute(clip, modalities)
        from safetensors.torch import load_file, save_file

        path = self._path(clip, modalities)
        if path.is_file():
            try:
                out = load_file(str(path))
                self.hits += 1
                return out
            except Exception:  # a torn file (killed mid-write is impossible: atomic) or disk damage: recompute
                path.unlink(missing_ok=True)
        out = self.compute(clip, modalities)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        save_file(out, str(tmp))
        os.replace(tmp, path)
        self.misses += 1
        return out
