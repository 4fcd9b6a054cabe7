"""Tiny random-initialised parts (hidden 64, 2 layers) for fast CPU tests with no network."""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "The person smiles and says they are happy to be here.",
    "I am so angry about this, it is not fair!",
    "She looks sad and speaks slowly with long pauses.",
    "Neutral tone, steady voice, no strong emotion.",
    '{"name": "analyze_voice", "arguments": {"clip": "a.mp4"}}',
    "emotion label reasoning transcript video audio tool call response",
]


def make_tokenizer(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<|endoftext|>", pad_token="<|im_end|>")
    fast.save_pretrained(out)
    return fast


def make_llm(out: Path, vocab_size: int, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=2, pad_token_id=2, bos_token_id=1)
    LlamaForCausalLM(cfg).save_pretrained(out)
    return out


def make_whisper(out: Path, seed: int = 0) -> Path:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    cfg = WhisperConfig(vocab_size=128, pad_token_id=0, bos_token_id=1, eos_token_id=0, decoder_start_token_id=1, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80, max_source_positions=1500, max_target_positions=64)
    WhisperForConditionalGeneration(cfg).save_pretrained(out)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out)
    return out


def make_mobilenet(out: Path, seed: int = 0) -> Path:
    from safetensors.torch import save_file

    from deemo_llama.encoders import MobileNetV2

    torch.manual_seed(seed)
    net = MobileNetV2()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out)
    return out


def make_parts(root: Path) -> dict[str, Path]:
    """Write tokenizer+LLM, Whisper and MobileNetV2 parts under ``root``; return their paths."""
    llm = root / "llm"
    tok = make_tokenizer(llm)
    make_llm(llm, len(tok))
    return {"llm": llm, "audio": make_whisper(root / "whisper"), "video": make_mobilenet(root / "mobilenet.safetensors")}


class FixedTranscriber:
    """Stands in for Whisper in unit tests (a random tiny Whisper has no tokenizer to decode with):
    every clip "says" ``text``, so a planted phrase can be followed into the prompt."""

    def __init__(self, text: str = "I am so happy today."):
        self.text = text
        self.calls = 0

    def __call__(self, wave, sample_rate: int = 16000):
        from deemo_llama.transcribe import Segment, Transcript

        self.calls += 1
        self.heard = wave  # the audio it was given (which side of the privacy boundary)
        return Transcript(self.text, [Segment(0.0, round(len(wave) / sample_rate, 2), self.text)])
