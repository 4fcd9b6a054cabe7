"""Read a CTranslate2 Whisper ``model.bin`` into ``transformers.WhisperForConditionalGeneration``.

The CTranslate2 binary is a small header followed by named arrays (format version 6):

    uint32 version | str spec_name | uint32 spec_revision | uint32 n_vars
    n_vars x ( str name | uint8 rank | uint32 dims[rank] | uint8 dtype | uint32 n_bytes | bytes )
    uint32 n_aliases | n_aliases x ( str alias | str target )

where ``str`` is a uint16 length (including a trailing NUL) and the bytes. CTranslate2 fuses the
self-attention q/k/v projections into one ``linear_0`` (and cross-attention k/v into ``linear_1``);
Hugging Face keeps them apart and has no bias on ``k_proj``. ``proj_out`` is tied to the token
embeddings in both.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_BF16 = 5


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 Whisper model this reader understands."""


def _read(f: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    raw = f.read(size)
    if len(raw) != size:
        raise CT2FormatError("unexpected end of file")
    return struct.unpack("<" + fmt, raw)[0]


def _read_str(f: BinaryIO) -> str:
    n = _read(f, "H")
    return f.read(n).rstrip(b"\0").decode("utf-8")


def read_ct2_model(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """Return (spec name, {variable name: array}) of a CTranslate2 ``model.bin``; aliases resolved."""
    with open(path, "rb") as f:
        version = _read(f, "I")
        if version < 5 or version > 6:
            raise CT2FormatError(f"unsupported CTranslate2 binary version {version} (expected 5 or 6)")
        spec = _read_str(f)
        _read(f, "I")  # spec revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(_read(f, "I")):
            name = _read_str(f)
            dims = [_read(f, "I") for _ in range(_read(f, "B"))]
            dtype_id = _read(f, "B")
            raw = f.read(_read(f, "I"))
            if dtype_id == _BF16:
                arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif dtype_id in _DTYPES:
                arr = np.frombuffer(raw, _DTYPES[dtype_id])
            else:
                raise CT2FormatError(f"variable {name!r} has unknown dtype id {dtype_id}")
            variables[name] = arr.reshape(dims) if dims else arr
        for _ in range(_read(f, "I")):
            alias, target = _read_str(f), _read_str(f)
            variables[alias] = variables[target]
    return spec, variables


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _attn(state: dict, dst: str, v: dict, src: str, *, fused_qkv: bool) -> None:
    """Map a CT2 attention block (self: fused qkv; cross: q + fused kv) onto HF's q/k/v/out."""
    if fused_qkv:
        q_w, k_w, v_w = np.split(v[f"{src}/linear_0/weight"], 3)
        q_b, _k_b, v_b = np.split(v[f"{src}/linear_0/bias"], 3)
        out = "linear_1"
    else:
        q_w, q_b = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
        k_w, v_w = np.split(v[f"{src}/linear_1/weight"], 2)
        _k_b, v_b = np.split(v[f"{src}/linear_1/bias"], 2)
        out = "linear_2"
    state.update({
        f"{dst}.q_proj.weight": _t(q_w), f"{dst}.q_proj.bias": _t(q_b),
        f"{dst}.k_proj.weight": _t(k_w),  # HF's k_proj has no bias (CT2 stores zeros)
        f"{dst}.v_proj.weight": _t(v_w), f"{dst}.v_proj.bias": _t(v_b),
        f"{dst}.out_proj.weight": _t(v[f"{src}/{out}/weight"]), f"{dst}.out_proj.bias": _t(v[f"{src}/{out}/bias"]),
    })


def _norm(state: dict, dst: str, v: dict, src: str) -> None:
    state[f"{dst}.weight"] = _t(v[f"{src}/gamma"])
    state[f"{dst}.bias"] = _t(v[f"{src}/beta"])


def _linear(state: dict, dst: str, v: dict, src: str) -> None:
    state[f"{dst}.weight"] = _t(v[f"{src}/weight"])
    state[f"{dst}.bias"] = _t(v[f"{src}/bias"])


def _count_layers(v: dict, prefix: str) -> int:
    return len({m.group(1) for k in v if (m := re.match(rf"{prefix}/layer_(\d+)/", k))})


def ct2_to_hf_state_dict(v: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict]:
    """Return (HF state dict, WhisperConfig kwargs inferred from the arrays)."""
    n_enc, n_dec = _count_layers(v, "encoder"), _count_layers(v, "decoder")
    d_model = v["encoder/conv1/weight"].shape[0]
    s: dict[str, torch.Tensor] = {}
    for i in range(2):
        _linear(s, f"model.encoder.conv{i + 1}", v, f"encoder/conv{i + 1}")
    s["model.encoder.embed_positions.weight"] = _t(v["encoder/position_encodings/encodings"])
    for i in range(n_enc):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        _attn(s, f"{dst}.self_attn", v, f"{src}/self_attention", fused_qkv=True)
        _norm(s, f"{dst}.self_attn_layer_norm", v, f"{src}/self_attention/layer_norm")
        _linear(s, f"{dst}.fc1", v, f"{src}/ffn/linear_0")
        _linear(s, f"{dst}.fc2", v, f"{src}/ffn/linear_1")
        _norm(s, f"{dst}.final_layer_norm", v, f"{src}/ffn/layer_norm")
    _norm(s, "model.encoder.layer_norm", v, "encoder/layer_norm")
    s["model.decoder.embed_tokens.weight"] = _t(v["decoder/embeddings/weight"])
    s["model.decoder.embed_positions.weight"] = _t(v["decoder/position_encodings/encodings"])
    for i in range(n_dec):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        _attn(s, f"{dst}.self_attn", v, f"{src}/self_attention", fused_qkv=True)
        _norm(s, f"{dst}.self_attn_layer_norm", v, f"{src}/self_attention/layer_norm")
        _attn(s, f"{dst}.encoder_attn", v, f"{src}/attention", fused_qkv=False)
        _norm(s, f"{dst}.encoder_attn_layer_norm", v, f"{src}/attention/layer_norm")
        _linear(s, f"{dst}.fc1", v, f"{src}/ffn/linear_0")
        _linear(s, f"{dst}.fc2", v, f"{src}/ffn/linear_1")
        _norm(s, f"{dst}.final_layer_norm", v, f"{src}/ffn/layer_norm")
    _norm(s, "model.decoder.layer_norm", v, "decoder/layer_norm")
    s["proj_out.weight"] = s["model.decoder.embed_tokens.weight"]
    config = dict(
        vocab_size=v["decoder/embeddings/weight"].shape[0],
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=n_enc,
        decoder_layers=n_dec,
        encoder_attention_heads=int(v["encoder/num_heads"].reshape(-1)[0]),
        decoder_attention_heads=int(v["decoder/num_heads"].reshape(-1)[0]),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
    )
    return s, config


def convert_ct2_whisper(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Convert a CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json) to a HF one.

    Writes ``model.safetensors``, ``config.json``, ``generation_config.json``, the tokenizer and the
    feature extractor to ``out_dir`` and returns it.
    """
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    spec, variables = read_ct2_model(model_dir / "model.bin")
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{model_dir / 'model.bin'} holds a {spec}, not a WhisperSpec")
    state, cfg_kwargs = ct2_to_hf_state_dict(variables)
    ct2_cfg = json.loads((model_dir / "config.json").read_text())
    vocab = cfg_kwargs["vocab_size"]
    multilingual = vocab >= 51865  # the .en models have 51864 tokens (Whisper's tokenizer.py)
    # Special token ids follow Whisper's tokenizer: <|endoftext|>, then <|startoftranscript|>.
    eot, sot = 50256, 50257
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    no_ts = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    config = WhisperConfig(
        **cfg_kwargs,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        tie_word_embeddings=True,
    )
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Only the sinusoid buffers may be absent from a state dict; anything else is a mapping bug.
    missing = [k for k in missing if not k.endswith("embed_positions.weight")]
    if missing or unexpected:
        raise CT2FormatError(f"CT2 -> HF mapping incomplete: missing={missing} unexpected={unexpected}")
    lang_task = {}
    if multilingual:  # transformers probes hasattr(lang_to_id): set these only for multilingual models
        lang_task = dict(
            lang_to_id={t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.additional_special_tokens if len(t) <= 7 and t.startswith("<|") and t[2:-2].isalpha() and t[2:-2].islower()},
            task_to_id={t: tokenizer.convert_tokens_to_ids(f"<|{t}|>") for t in ("transcribe", "translate")},
        )
    gen = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        max_length=config.max_target_positions,
        suppress_tokens=ct2_cfg.get("suppress_ids", []),
        begin_suppress_tokens=ct2_cfg.get("suppress_ids_begin", [220, eot]),
        no_timestamps_token_id=no_ts, is_multilingual=multilingual,
        alignment_heads=ct2_cfg.get("alignment_heads"),
        **lang_task,
    )
    model.generation_config = gen
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out_dir)
    return out_dir
