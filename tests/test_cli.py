"""The `deemo` command as users meet it: one-line errors, non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

DEEMO = [sys.executable, "-m", "deemo_llama.cli"]


def run(*args, env=None):
    return subprocess.run([*DEEMO, *map(str, args)], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_spec, tmp_path_factory):
    from deemo_llama.build import create_model, save_checkpoint

    return save_checkpoint(*create_model(tiny_spec), tmp_path_factory.mktemp("ck") / "tiny")


def test_help_lists_only_implemented_commands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("analyze", "sample", "train", "models"):
        assert cmd in r.stdout


@pytest.mark.parametrize("kind", ["missing", "dir", "empty", "text", "truncated", "too_long"])
def test_analyze_bad_input_is_one_line_error(kind, tiny_ckpt, media_dir, tmp_path):
    mp4 = (media_dir / "talk.mp4").read_bytes()
    path = {"missing": tmp_path / "nope.mp4", "dir": tmp_path, "empty": tmp_path / "e.mp4", "text": tmp_path / "t.mp4", "truncated": tmp_path / "tr.mp4", "too_long": media_dir / "talk.mp4"}[kind]
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello")
    elif kind == "truncated":
        path.write_bytes(mp4[: len(mp4) // 3])
    extra = ["--max-seconds", "1"] if kind == "too_long" else []
    r = run("analyze", path, "--checkpoint", tiny_ckpt, *extra)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr


def test_analyze_needs_clip_or_sample():
    r = run("analyze")
    assert r.returncode == 2 and r.stderr.strip() == "error: give exactly one of CLIP or --sample"


def test_analyze_rejects_single_label(media_dir, tiny_ckpt):
    r = run("analyze", media_dir / "talk.mp4", "--checkpoint", tiny_ckpt, "--labels", "happy")
    assert r.returncode == 2 and "at least two labels" in r.stderr


def test_missing_default_assets_named(tmp_path, media_dir):
    r = run("analyze", media_dir / "talk.mp4", env={"DEEMO_HOME": str(tmp_path)})
    assert r.returncode == 3 and "run: deemo models prepare" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_models_info(tiny_ckpt):
    r = run("models", "info", tiny_ckpt)
    assert r.returncode == 0 and "<|video|>" in r.stdout and "projectors trained" in r.stdout
    assert "Whisper on the anonymised audio" in r.stdout  # how its clips are transcribed (DeemoConfig.transcribe_from)


def test_sample_command_writes_audio_only(tmp_path):
    r = run("sample", tmp_path / "s.wav", "--text", "hello")
    assert r.returncode == 0 and (tmp_path / "s.wav").stat().st_size > 1000


def test_train_rejects_bad_jsonl(tmp_path, tiny_ckpt):
    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n')
    r = run("train", tmp_path / "out", "--set", f"data.train={data}", "--set", f"model.checkpoint={tiny_ckpt}")
    assert r.returncode == 2
    assert r.stderr.strip().startswith(f"error: {data}:1: row: 'schema_version' is a required property (and ")
    assert r.stderr.strip().endswith(f"more problem(s); run `deemo data validate {data}`)") and len(r.stderr.strip().splitlines()) == 1


def test_models_create_from_local_parts(tiny_parts, tmp_path):
    out = tmp_path / "ck"
    r = run("models", "create", out, "--llm", tiny_parts["llm"], "--audio", tiny_parts["audio"], "--video", tiny_parts["video"], "--video-tokens", "3", "--projector", "linear")
    assert r.returncode == 0, r.stderr
    from deemo_llama.config import DeemoConfig

    cfg = DeemoConfig.load(out)
    assert cfg.video.num_tokens == 3 and cfg.video.projector.type == "linear" and cfg.audio.num_tokens == 16
    again = run("models", "create", out, "--llm", tiny_parts["llm"])
    assert again.returncode == 2 and "exists and is not empty" in again.stderr


def test_deid_bad_input_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    r = run("deid", bad, tmp_path / "out", "--no-transcript")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "bad_mp4" / "report.json").exists()


def test_deid_batch_with_one_bad_file_exits_1(tmp_path):
    from deemo_llama.sample import make_sample_clip

    make_sample_clip(tmp_path / "raw" / "ok.wav", text="hello", video=False)
    (tmp_path / "raw" / "bad.mp4").write_bytes(b"nope")
    r = run("deid", tmp_path / "raw", tmp_path / "out", "--no-transcript")
    assert r.returncode == 1 and "de-identified 1" in r.stderr and "bad.mp4" in r.stderr
    assert (tmp_path / "out" / "ok_wav" / "report.json").is_file()


def test_tools_list_and_run(tmp_path):
    import numpy as np

    specs = json.loads(run("tools", "list", "--json").stdout)
    assert [s["function"]["name"] for s in specs] == ["analyze_body_language", "analyze_facial_expression", "analyze_physiology", "analyze_transcript", "analyze_voice"]
    import neurokit2 as nk

    np.savez(tmp_path / "r.npz", sampling_rate=128, ECG=nk.ecg_simulate(duration=20, sampling_rate=128, heart_rate=90, random_state=0))
    env = {"DEEMO_HOME": str(tmp_path / "home")}
    r = run("tools", "run", "analyze_physiology", tmp_path / "r.npz", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["tool"] == "analyze_physiology" and out["envelope_version"] == "1" and 85 < out["estimates"]["features"]["hr_bpm"] < 95
    again = run("tools", "run", "analyze_physiology", tmp_path / "r.npz", env=env)
    assert again.returncode == 0 and "(cached)" in again.stdout
    bad = run("tools", "run", "analyze_physiology", tmp_path / "r.npz", "--arg", "colour=red", env=env)
    assert bad.returncode == 2 and "unknown argument(s) ['colour']" in bad.stderr


def test_serve_rejects_bad_options_before_starting_anything(tmp_path, tiny_ckpt):
    """One-line errors, non-zero exits, and no server started (each run returns in seconds)."""
    r = run("serve", "--checkpoint", tmp_path)
    assert r.returncode == 2 and "not a deemo-llama checkpoint" in r.stderr
    r = run("serve", "--checkpoint", tiny_ckpt, "--experts", "psychic")
    assert r.returncode == 2 and "'psychic' is not one of 'none', 'fast', 'all'" in r.stderr and "Traceback" not in r.stderr
    r = run("serve", "--checkpoint", tiny_ckpt, "--lora", "no-equals-sign")
    assert r.returncode == 2 and "--lora needs NAME=DIR" in r.stderr
    r = run("serve", "--checkpoint", tiny_ckpt, "--media-dir", tmp_path / "nope")
    assert r.returncode == 2 and "no such folder" in r.stderr
    r = run("serve", "--checkpoint", tiny_ckpt, "--mode", "fused")  # the tiny checkpoint was never fine-tuned
    assert r.returncode == 2 and "never fine-tuned" in r.stderr and "Traceback" not in r.stderr
    r = run("serve", "--checkpoint", tiny_ckpt, env={"DEEMO_VLLM_PYTHON": str(tmp_path / "no-python")})
    assert r.returncode == 3 and "setup-vllm.sh" in r.stderr and "Traceback" not in r.stderr
