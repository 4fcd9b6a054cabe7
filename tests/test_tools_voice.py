"""analyze_voice on espeak-ng speech with planted pitch, rate and loudness (real openSMILE)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deemo_llama.errors import MediaError
from deemo_llama.metrics import event_f1
from deemo_llama.sample import speak, write_clip

SR = 16000
SENTENCES = [
    "I was walking home yesterday and thinking about the long day at work.",
    "And then suddenly I saw it!",
    "It was just a cat sitting on the wall.",
    "Nobody expected that at all!",
    "We went to the market early in the morning to buy some bread.",
]
TEXT = "The quick brown fox jumps over the lazy dog while the children play in the garden near the river."


@pytest.fixture(scope="module")
def voice():
    from deemo_llama.tools import get_tool

    return get_tool("analyze_voice")


def _run(voice, tmp_path, wave, name="v.wav"):
    path = write_clip(tmp_path / name, None, np.clip(wave, -1, 1))
    return voice.run(clip=str(path)).to_dict()


def test_pitch_level_follows_espeak_pitch(voice, tmp_path):
    med = [_run(voice, tmp_path, speak(TEXT, pitch=p))["estimates"]["pitch_median_semitones"] for p in (25, 50, 75)]
    assert med[0] + 2 < med[1] and med[1] + 2 < med[2], med


def test_speech_rate_follows_espeak_rate(voice, tmp_path):
    slow = _run(voice, tmp_path, speak(TEXT, words_per_minute=110))
    fast = _run(voice, tmp_path, speak(TEXT, words_per_minute=230))
    assert fast["estimates"]["syllable_rate_per_s"] > 1.8 * slow["estimates"]["syllable_rate_per_s"]
    assert "speech is slow" in slow["summary"] and "speech is fast" in fast["summary"]


def test_planted_pitch_rises_are_found(voice, tmp_path):
    """Four clips, each a calm sentence, an excited one ~45 espeak pitch steps higher, a calm one:
    the higher_pitch event matches the excited sentence (IoU >= 0.5); event F1 over all >= 0.75."""
    gt, pred = [], []
    for i, base in enumerate((30, 35, 40, 45)):
        parts = [speak(SENTENCES[0], pitch=base), speak(SENTENCES[1 + 2 * (i % 2)], pitch=base + 45), speak(SENTENCES[2 + 2 * (i % 2)], pitch=base)]
        r = _run(voice, tmp_path, np.concatenate(parts), f"p{i}.wav")
        t0 = 100.0 * i  # one timeline, clips side by side, so that events of different clips never match
        a, b = len(parts[0]) / SR, (len(parts[0]) + len(parts[1])) / SR
        gt.append((t0 + a, t0 + b, "higher_pitch"))
        pred += [(t0 + e["start_s"], t0 + e["end_s"], e["type"]) for e in r["events"] if e["type"].endswith("_pitch")]
    score = event_f1(gt, pred)
    assert score.f1 >= 0.75, (gt, pred)


def test_planted_loud_and_quiet_sentences(voice, tmp_path):
    a, b, c = (speak(s, pitch=45) for s in SENTENCES[:3])
    loud = _run(voice, tmp_path, np.concatenate([a, 4 * b, c]), "loud.wav")
    quiet = _run(voice, tmp_path, np.concatenate([a, 0.25 * b, c]), "quiet.wav")
    span = (len(a) / SR, (len(a) + len(b)) / SR, "x")
    for r, kind in ((loud, "higher_loudness"), (quiet, "lower_loudness")):
        found = [(e["start_s"], e["end_s"], "x") for e in r["events"] if e["type"] == kind]
        assert event_f1([span], found).tp == 1, (kind, r["events"])
    assert "higher loudness" in loud["summary"]


def test_envelope_is_aggregate_only(voice, tmp_path):
    r = _run(voice, tmp_path, speak(TEXT))
    assert r["status"] == "ok" and r["tool"] == "analyze_voice" and r["window"][0] == 0.0
    assert r["quality"]["mcadams_alpha"] == 0.9 and 0.2 < r["quality"]["voiced_share"] < 0.9
    # nothing array-like (spectra, MFCCs, waveforms) leaves the tool
    def longest_list(x):
        if isinstance(x, dict):
            return max([0] + [longest_list(v) for v in x.values()])
        if isinstance(x, list):
            return max([len(x)] + [longest_list(v) for v in x])
        return 0
    assert longest_list(r["estimates"]) == 0 and longest_list(r["quality"]) == 0
    json.dumps(r)  # plain JSON


def test_reads_only_anonymised_audio(voice, tmp_path, monkeypatch):
    import deemo_llama.privacy.voice as pv

    seen = []
    real = pv.mcadams
    monkeypatch.setattr(pv, "mcadams", lambda x, sr, alpha: seen.append(alpha) or real(x, sr, alpha))
    _run(voice, tmp_path, speak(TEXT))
    assert seen == [0.9]


def test_unusable_inputs(voice, tmp_path):
    from deemo_llama.sample import moving_face_frames

    silent_video = write_clip(tmp_path / "mute.mp4", moving_face_frames(10), None)
    with pytest.raises(MediaError, match="no audio track"):
        voice.run(clip=str(silent_video))
    short = _run(voice, tmp_path, speak("Hi.")[: SR // 2], "short.wav")
    assert short["status"] == "no_signal" and "under 1 s" in short["summary"]
    silence = _run(voice, tmp_path, np.zeros(3 * SR, dtype=np.float32), "silence.wav")
    assert silence["status"] == "no_signal"
    with pytest.raises(MediaError, match="holds no audio"):
        voice.run(clip=str(tmp_path / "silence.wav"), start_s=5.0)


def test_analyze_audio_on_decoded_audio_equals_run(voice, tmp_path):
    """The decoded-input entry point (raw 16 kHz wave, anonymised inside) gives run()'s envelope,
    for the whole clip and for a window (event times on the clip's time line)."""
    from deemo_llama.media import load_clip

    path = write_clip(tmp_path / "v.wav", None, np.clip(np.concatenate([speak(SENTENCES[0], pitch=30), speak(SENTENCES[1], pitch=75)]), -1, 1))
    wave = load_clip(path, num_frames=1, video=False).audio
    assert voice.analyze_audio(wave, SR).to_dict() == voice.run(clip=str(path)).to_dict()
    a, b = int(0.7 * SR), int(4.2 * SR)
    part = voice.analyze_audio(wave[a:b], SR, start_s=a / SR).to_dict()
    assert part == voice.run(clip=str(path), start_s=0.7, end_s=4.2).to_dict()
    assert part["window"] == [0.7, 4.2] and all(e["start_s"] >= 0.7 for e in part["events"])
