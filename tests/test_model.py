"""Model seams: placeholders vs features, masked scatter, config and checkpoint round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deemo_llama.config import DeemoConfig
from deemo_llama.modeling import DeemoLlamaForConditionalGeneration, MediaInputs, PlaceholderMismatchError, pool_tokens

MSG_AV = [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "How does the person feel?"}]}]


def _media(proc, n_video=1, n_audio=1, seed=0):
    rng = np.random.default_rng(seed)
    videos = [rng.integers(0, 255, (3, 60, 80, 3), dtype=np.uint8) for _ in range(n_video)]
    audios = [(0.1 * rng.standard_normal(8000)).astype(np.float32) for _ in range(n_audio)]
    return videos, audios


def test_placeholder_count_equals_feature_count(tiny):
    model, proc = tiny
    videos, audios = _media(proc)
    out = proc(MSG_AV, videos=videos, audios=audios)
    cfg = model.config
    assert int((out.input_ids == cfg.video.placeholder_id).sum()) == cfg.video.num_tokens == 4
    assert int((out.input_ids == cfg.audio.placeholder_id).sum()) == cfg.audio.num_tokens == 5
    feats = model.embed_media(out.media)
    assert feats["video"].shape == (1, 4, cfg.hidden_size)
    assert feats["audio"].shape == (1, 5, cfg.hidden_size)


def test_media_lands_exactly_on_placeholders(tiny):
    model, proc = tiny
    videos, audios = _media(proc)
    out = proc(MSG_AV, videos=videos, audios=audios)
    with torch.no_grad():
        merged = model.build_inputs_embeds(out.input_ids, out.media)
        text_only = model.get_input_embeddings()(out.input_ids)
        feats = model.embed_media(out.media)
    vmask = out.input_ids[0] == model.config.video.placeholder_id
    amask = out.input_ids[0] == model.config.audio.placeholder_id
    torch.testing.assert_close(merged[0, vmask], feats["video"][0])
    torch.testing.assert_close(merged[0, amask], feats["audio"][0])
    torch.testing.assert_close(merged[0, ~(vmask | amask)], text_only[0, ~(vmask | amask)])


def test_mismatch_error_states_both_counts(tiny):
    model, proc = tiny
    videos, audios = _media(proc, n_video=2)
    out = proc(MSG_AV, videos=videos[:1], audios=audios)
    two_videos = proc.prepare_media(videos, audios)
    with pytest.raises(PlaceholderMismatchError, match=r"video: the prompt has 4 <\|video\|> placeholder tokens but the media give 8 feature vectors \(2 item\(s\) x 4 tokens\)"):
        model(out.input_ids, media=two_videos)
    with pytest.raises(PlaceholderMismatchError, match=r"audio: the prompt has 5 .* but the media give 0 feature vectors"):
        model(out.input_ids, media=MediaInputs(pixel_values_videos=out.media.pixel_values_videos))


def test_processor_rejects_wrong_media_count(tiny):
    _, proc = tiny
    videos, audios = _media(proc)
    with pytest.raises(ValueError, match="reference 1 video.*0 and 1 were given"):
        proc(MSG_AV, videos=[], audios=audios)


def test_audio_pooling_uses_only_unpadded_frames(tiny):
    model, proc = tiny
    _, audios = _media(proc)
    media = proc.prepare_media([], audios)
    assert media.audio_frames.tolist() == [25]  # 0.5 s at 50 frames/s
    with torch.no_grad():
        feats = model.encoders["audio"](media.audio_features)
        expected = model.projectors["audio"](pool_tokens(feats[0, :25], 5))
        got = model.embed_media(media)["audio"][0]
    torch.testing.assert_close(got, expected)


def test_pool_tokens_shapes():
    x = torch.arange(12.0).reshape(6, 2)
    assert pool_tokens(x, 3).tolist() == [[1.0, 2.0], [5.0, 6.0], [9.0, 10.0]]
    assert pool_tokens(x[:2], 4).shape == (4, 2)


def test_greedy_generation_is_deterministic(tiny):
    model, proc = tiny
    videos, audios = _media(proc)
    out = proc(MSG_AV, videos=videos, audios=audios)
    a = model.generate(out.input_ids, media=out.media, max_new_tokens=6, do_sample=False)
    b = model.generate(out.input_ids, media=out.media, max_new_tokens=6, do_sample=False)
    assert a.shape == (1, 6) and torch.equal(a, b)


def test_config_round_trip(tiny, tmp_path):
    model, _ = tiny
    model.config.save(tmp_path)
    again = DeemoConfig.load(tmp_path)
    assert again.to_dict() == model.config.to_dict()
    assert again.architectures[0] == "DeemoLlamaForConditionalGeneration"
    assert again.video.encoder.feature_dim == 1280 and again.audio.encoder.feature_dim == 64


def test_config_rejects_unknown_fields(tiny):
    d = tiny[0].config.to_dict()
    d["mystery"] = 1
    with pytest.raises(ValueError, match="unknown DeemoConfig fields: \\['mystery'\\]"):
        DeemoConfig.from_dict(d)


def test_checkpoint_round_trip_identical_logits(tiny, tmp_path):
    from deemo_llama.build import load_checkpoint, save_checkpoint

    model, proc = tiny
    for w in model.projectors["video"].parameters():  # not the init values
        torch.nn.init.normal_(w)
    videos, audios = _media(proc)
    out = proc(MSG_AV, videos=videos, audios=audios)
    with torch.no_grad():
        before = model(out.input_ids, media=out.media).logits
    save_checkpoint(model, proc, tmp_path / "ckpt")
    model2, proc2 = load_checkpoint(tmp_path / "ckpt")
    out2 = proc2(MSG_AV, videos=videos, audios=audios)
    assert torch.equal(out.input_ids, out2.input_ids)
    with torch.no_grad():
        after = model2(out2.input_ids, media=out2.media).logits
    assert torch.equal(before, after)


def test_lora_checkpoint_round_trip(tiny, tmp_path):
    from deemo_llama.build import load_checkpoint, save_checkpoint
    from deemo_llama.training import LoraRecipe, apply_lora

    model, proc = tiny
    apply_lora(model, LoraRecipe(r=4, alpha=8, dropout=0.0))
    for n, p in model.language_model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)  # LoRA B starts at zero: make the adapter matter
    model.eval()
    videos, audios = _media(proc)
    out = proc(MSG_AV, videos=videos, audios=audios)
    with torch.no_grad():
        before = model(out.input_ids, media=out.media).logits
    save_checkpoint(model, proc, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "adapter" / "adapter_config.json").is_file()
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    base, _ = load_checkpoint(tmp_path / "ckpt", load_adapter=False)
    with torch.no_grad():
        after = loaded(out.input_ids, media=out.media).logits
        without = base(out.input_ids, media=out.media).logits
    torch.testing.assert_close(before, after, rtol=0, atol=1e-5)
    assert (before - without).abs().max() > 1e-3  # the adapter really changes the output


def _vision_source(kind: str, path):
    """Save a tiny random vision model of ``kind`` to ``path``; return its vision tower module."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    if kind == "clip_vision":
        model = CLIPVisionModel(CLIPVisionConfig(**small))
    elif kind == "siglip_vision":
        model = SiglipVisionModel(SiglipVisionConfig(**small))
    else:  # a dual encoder: the tower is inside
        model = CLIPModel(CLIPConfig(vision_config=small, text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=99)))
    model.save_pretrained(path)
    return model.vision_model if kind == "clip_dual" else model


@pytest.mark.parametrize("kind", ["clip_vision", "siglip_vision", "clip_dual"])
def test_hf_vision_tower_backbone(kind, tiny_parts, tmp_path):
    """A CLIP/SigLIP vision tower given by local path (as a hub id would be) works as the frame encoder."""
    from deemo_llama.build import ComponentSpec, create_model, load_checkpoint, save_checkpoint

    source = _vision_source(kind, tmp_path / "vision")
    model, proc = create_model(ComponentSpec(llm=str(tiny_parts["llm"]), video=str(tmp_path / "vision"), video_backbone="hf_vision", num_frames=2, video_tokens=3))
    assert model.config.video.encoder.feature_dim == 32 and model.config.audio is None
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        ref = source(pixel_values=x)
        ref = ref.pooler_output
        got = model.encoders["video"](x[None])[0]
    torch.testing.assert_close(got, ref)  # the tower's weights arrived intact
    msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}]
    videos = [np.zeros((2, 40, 40, 3), np.uint8)]
    out = proc(msgs, videos=videos)
    assert out.media.pixel_values_videos.shape == (1, 2, 3, 32, 32)
    save_checkpoint(model, proc, tmp_path / "ckpt")
    model2, proc2 = load_checkpoint(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(model(out.input_ids, media=out.media).logits, model2(out.input_ids, media=out.media).logits)


def test_quantization_without_cuda_is_a_clear_error(tiny, tmp_path):
    from deemo_llama.build import save_checkpoint

    if torch.cuda.is_available():
        pytest.fail("this test describes the CPU-only behaviour; run it on a machine without CUDA")
    model, proc = tiny
    save_checkpoint(model, proc, tmp_path / "ckpt")
    with pytest.raises(RuntimeError, match="4bit loading needs a CUDA GPU"):
        DeemoLlamaForConditionalGeneration.from_pretrained(tmp_path / "ckpt", quantization="4bit")


def test_streamed_reply_equals_whole_reply(tiny):
    from deemo_llama.generation import chat, stream_chat

    model, proc = tiny
    videos, audios = _media(proc)
    pieces = list(stream_chat(model, proc, MSG_AV, videos, audios, max_new_tokens=8))
    whole = chat(model, proc, MSG_AV, videos, audios, max_new_tokens=8)
    out = proc(MSG_AV, videos=videos, audios=audios)
    ids = model.generate(out.input_ids, media=out.media, max_new_tokens=8, do_sample=False, eos_token_id=model.config.text_config["eos_token_id"])
    assert "".join(pieces) == whole == proc.tokenizer.decode(ids[0], skip_special_tokens=True)
    assert len(pieces) >= 2


def test_projector_temporal_delta_and_input_norm():
    """The delta input is [x_t, x_t - mean_t x]: a still clip's change half is exactly zero, a moving
    clip's is not; [N, T, D] batches and one item's [T, D] (the vLLM path) give the same tokens."""
    from deemo_llama.config import ProjectorConfig
    from deemo_llama.projectors import MLPProjector, TemporalDelta, build_projector

    x = torch.randn(2, 8, 6)
    d = TemporalDelta()(x)
    assert d.shape == (2, 8, 12) and torch.equal(d[..., :6], x)
    torch.testing.assert_close(d[..., 6:].mean(1), torch.zeros(2, 6), atol=1e-6, rtol=0)
    still = torch.randn(1, 6).expand(8, 6)
    assert torch.count_nonzero(TemporalDelta()(still)[:, 6:]) == 0
    torch.manual_seed(0)
    p = build_projector(ProjectorConfig(input_norm=True, temporal="delta"), 6, 4)
    assert [k for k in p.state_dict()] == ["norm.weight", "norm.bias", "map.fc1.weight", "map.fc1.bias", "map.fc2.weight", "map.fc2.bias"]
    assert p.map.fc1.in_features == 12
    torch.testing.assert_close(p(x)[1], p(x[1]))
    # LayerNorm'd input: a feature scale change does not change the tokens
    torch.testing.assert_close(p(100 * x), p(x), atol=1e-4, rtol=1e-4)
    # the plain config keeps the plain module and its keys (checkpoints written before these options)
    plain = build_projector(ProjectorConfig(), 6, 4)
    assert isinstance(plain, MLPProjector) and sorted(plain.state_dict()) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    with pytest.raises(ValueError, match="temporal must be 'none' or 'delta'"):
        ProjectorConfig(temporal="diff")


def test_projector_output_norm_gives_every_token_the_configured_length():
    """output_norm rescales each projected token to a word embedding's length, whatever the features'
    scale (a trained projector's tokens otherwise grow to tens of times a word's norm); it adds no
    parameters, and a non-positive norm is refused."""
    from deemo_llama.config import ProjectorConfig
    from deemo_llama.projectors import build_projector

    torch.manual_seed(0)
    p = build_projector(ProjectorConfig(input_norm=True, temporal="delta", output_norm=3.2), 6, 4)
    assert [k for k in p.state_dict()] == ["norm.weight", "norm.bias", "map.fc1.weight", "map.fc1.bias", "map.fc2.weight", "map.fc2.bias"]
    for scale in (1e-3, 1.0, 1e3):
        out = p(scale * torch.randn(2, 8, 6))
        torch.testing.assert_close(out.norm(dim=-1), torch.full((2, 8), 3.2), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="output_norm must be > 0"):
        ProjectorConfig(output_norm=0.0)


def test_created_checkpoint_measures_the_word_norm(tiny_spec, tmp_path):
    """``projector_output_norm`` sets each modality's output norm to the LLM's own mean word-embedding
    norm, and the config round-trips through config.json."""
    from deemo_llama.build import create_model, load_checkpoint, save_checkpoint
    from transformers import AutoModelForCausalLM

    import dataclasses

    model, proc = create_model(dataclasses.replace(tiny_spec, projector_output_norm=True))
    want = AutoModelForCausalLM.from_pretrained(tiny_spec.llm).get_input_embeddings().weight.norm(dim=-1).mean().item()
    assert model.config.video.projector.output_norm == pytest.approx(want, abs=1e-3) == model.config.audio.projector.output_norm
    save_checkpoint(model, proc, tmp_path / "c")
    again, _ = load_checkpoint(tmp_path / "c")
    assert again.config.video.projector.output_norm == model.config.video.projector.output_norm


def test_the_same_spec_builds_the_same_checkpoint(tiny_spec):
    """Creation is seeded, the added tokens' embedding rows included (resize draws them at random):
    `deemo models prepare` rebuilds the embedded default byte for byte."""
    from deemo_llama.build import create_model

    a, b = (create_model(tiny_spec)[0].state_dict() for _ in range(2))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_without_projector_options_loads_as_plain(tiny):
    """A config.json written before input_norm/temporal existed reads back as the plain projector."""
    d = tiny[0].config.to_dict()
    for m in ("video", "audio"):
        d[m]["projector"] = {"type": "mlp", "hidden_dim": None}
    cfg = DeemoConfig.from_dict(d)
    assert cfg.video.projector.input_norm is False and cfg.audio.projector.temporal == "none" and cfg.video.projector.output_norm is None


def test_a_quantized_base_is_saved_from_its_full_precision_weights(tiny_checkpoint, tmp_path):
    """QLoRA: the LLM's base is held packed in 4 bits (bitsandbytes, CUDA only), which a checkpoint
    cannot store; a save writes the full-precision weights it was loaded from (LoRA never changes
    them), beside the adapter. Here the quantized state is simulated on CPU: the in-memory base is
    marked quantized and its weights scrambled, as packing would make them unusable."""
    from safetensors.torch import load_file

    from deemo_llama.build import load_checkpoint, save_checkpoint
    from deemo_llama.modeling import WEIGHTS_NAME
    from deemo_llama.training import LoraRecipe, apply_lora

    model, proc = load_checkpoint(tiny_checkpoint)
    model._lm_source = tiny_checkpoint / WEIGHTS_NAME
    apply_lora(model, LoraRecipe(r=4, alpha=8, dropout=0.0))
    inner = model.language_model.get_base_model()
    inner.hf_quantizer = object()  # what transformers sets on a model loaded with a quantization_config
    with torch.no_grad():
        for n, p in inner.named_parameters():
            if "lora_" not in n:
                p.mul_(-3.0)
    save_checkpoint(model, proc, tmp_path / "q")
    source, saved = load_file(str(tiny_checkpoint / WEIGHTS_NAME)), load_file(str(tmp_path / "q" / WEIGHTS_NAME))
    assert source.keys() == saved.keys()
    assert all(torch.equal(source[k], saved[k]) for k in source if k.startswith("language_model."))
    assert (tmp_path / "q" / "adapter" / "adapter_model.safetensors").is_file()
    del model._lm_source  # without its source a quantized base cannot be saved: a clear error, no checkpoint
    with pytest.raises(RuntimeError, match="cannot be saved"):
        save_checkpoint(model, proc, tmp_path / "q2")
