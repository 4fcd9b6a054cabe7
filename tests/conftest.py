"""Shared fixtures. Unit tests use tiny random-initialised parts; ``weights`` tests use the real
embedded default (built by ``deemo models prepare``) and run as their own stage (scripts/test.sh)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory):
    from tiny import make_parts

    return make_parts(tmp_path_factory.mktemp("parts"))


@pytest.fixture(scope="session")
def tiny_spec(tiny_parts):
    from deemo_llama.build import ComponentSpec

    return ComponentSpec(llm=str(tiny_parts["llm"]), audio=str(tiny_parts["audio"]), video=str(tiny_parts["video"]), num_frames=3, video_tokens=4, audio_tokens=5)


@pytest.fixture
def tiny(tiny_spec):
    """A fresh (model, processor) per test: tests may wrap or train it."""
    from deemo_llama.build import create_model

    return create_model(tiny_spec)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_spec, tmp_path_factory):
    """A saved tiny checkpoint (untrained projectors) for the Analyzer and the gateway."""
    from deemo_llama.build import create_model, save_checkpoint

    return save_checkpoint(*create_model(tiny_spec), tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    """Small synthetic clips: talking face (mp4), speech only (wav), face only (mp4, no audio)."""
    from deemo_llama.sample import make_sample_clip

    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (scripts/setup.sh installs it)")
    d = tmp_path_factory.mktemp("media")
    make_sample_clip(d / "talk.mp4", seconds=2.0, text="I am so happy today.")
    make_sample_clip(d / "speech.wav", text="I am so happy today.", video=False)
    make_sample_clip(d / "silent.mp4", seconds=1.5, audio=False)
    return d
