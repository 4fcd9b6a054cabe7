"""Decoding real containers made here (PyAV, espeak-ng) and every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from deemo_llama.errors import MediaError
from deemo_llama.media import load_clip, sample_times


def test_talking_clip_has_frames_and_audio(media_dir):
    clip = load_clip(media_dir / "talk.mp4", num_frames=5)
    assert clip.inputs_used == {"video": True, "audio": True}
    assert clip.frames.shape == (5, 360, 640, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == 25.0
    assert abs(clip.duration - 2.0) < 0.1
    assert abs(len(clip.audio) / 16000 - 2.0) < 0.1
    # Sampled at segment centres: 0.2, 0.6, ... 1.8 s (within a frame).
    np.testing.assert_allclose(clip.frame_times, [0.2, 0.6, 1.0, 1.4, 1.8], atol=0.041)
    # The face moves left to right: the non-grey columns shift right over time.
    centres = [np.nonzero((np.abs(f.astype(int) - 96).sum(-1) > 30).any(0))[0].mean() for f in clip.frames]
    assert all(b > a for a, b in zip(centres, centres[1:]))


def test_audio_only_file(media_dir):
    clip = load_clip(media_dir / "speech.wav")
    assert clip.inputs_used == {"video": False, "audio": True}
    assert clip.frames is None and clip.audio.dtype == np.float32 and clip.sample_rate == 16000


def test_video_without_audio(media_dir):
    clip = load_clip(media_dir / "silent.mp4", num_frames=4)
    assert clip.inputs_used == {"video": True, "audio": False}
    assert len(clip.frames) == 4


def test_sample_times():
    np.testing.assert_allclose(sample_times(4.0, 4), [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(sample_times(3.0, 8, "fps", 1.0), [0.5, 1.5, 2.5])
    assert len(sample_times(100.0, 8, "fps", 2.0)) == 8


@pytest.fixture(scope="module")
def bad_files(media_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    mp4 = (media_dir / "talk.mp4").read_bytes()
    wav = (media_dir / "speech.wav").read_bytes()
    rng = np.random.default_rng(0)
    corrupt = bytearray(mp4)
    a, b = int(len(mp4) * 0.1), int(len(mp4) * 0.9)
    corrupt[a:b] = rng.integers(0, 256, b - a, dtype=np.uint8).tobytes()
    files = {
        "empty.mp4": b"",
        "notes.mp4": b"this is a text file, not a video\n" * 20,
        "random.mov": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "truncated.mp4": mp4[: int(len(mp4) * 0.4)],
        "truncated.wav": wav[: int(len(wav) * 0.3)],
        "corrupt.mp4": bytes(corrupt),
        "zero_samples.wav": wav[:44],
        "subtitles.srt": b"1\n00:00:00,000 --> 00:00:01,000\nhello\n\n",
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing.mp4", "no such file"),
        ("empty.mp4", r"file is empty \(0 bytes\)"),
        ("notes.mp4", "not a readable media file"),
        ("random.mov", "not a readable media file"),
        ("truncated.mp4", "not a readable media file"),
        ("truncated.wav", "audio is truncated"),
        ("corrupt.mp4", "corrupt"),
        ("zero_samples.wav", "not a readable media file|no decodable"),
        ("subtitles.srt", "has neither a usable video nor audio stream"),
    ],
)
def test_bad_input_raises_one_line_media_error(bad_files, name, message):
    with pytest.raises(MediaError, match=message) as e:
        load_clip(bad_files / name)
    assert "\n" not in str(e.value) and name in str(e.value)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(MediaError, match="is a directory"):
        load_clip(tmp_path)


def test_too_long_is_rejected(media_dir):
    with pytest.raises(MediaError, match=r"clip is 2\.0 s long; the limit is 1 s"):
        load_clip(media_dir / "talk.mp4", max_seconds=1.0)


def test_enormous_frames_and_too_many_channels_are_refused_before_decoding(tmp_path):
    import av
    import soundfile as sf

    big = tmp_path / "8k.mkv"
    with av.open(str(big), "w") as out:
        s = out.add_stream("ffv1", rate=1)
        s.width, s.height, s.pix_fmt = 7680, 4320, "yuv420p"
        out.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((4320, 7680, 3), np.uint8), format="rgb24")))
        out.mux(s.encode())
    with pytest.raises(MediaError, match=r"video is 7680x4320; the limit is 8847360 pixels"):
        load_clip(big)
    many = tmp_path / "channels.wav"
    sf.write(str(many), np.zeros((1600, 64), np.float32), 16000)
    with pytest.raises(MediaError, match=r"audio has 64 channels; the limit is 32"):
        load_clip(many)


@pytest.mark.parametrize("ext", [".mov", ".mkv", ".webm", ".mp3", ".flac", ".ogg"])
def test_common_containers(tmp_path, ext):
    from deemo_llama.sample import moving_face_frames, speak, write_clip

    audio_only = ext in (".mp3", ".flac", ".ogg")
    wave = speak("hello there")
    path = write_clip(tmp_path / f"c{ext}", None if audio_only else moving_face_frames(25), wave[:16000])
    clip = load_clip(path, num_frames=4)
    assert clip.inputs_used == {"video": not audio_only, "audio": True}
    assert abs(len(clip.audio) / 16000 - 1.0) < 0.1
    if not audio_only:
        assert clip.frames.shape == (4, 360, 640, 3)


def test_iter_frames_windows_and_thins(media_dir):
    """The one frame decoder: every frame with its time and pts; a half-open window; max_fps thinning."""
    from deemo_llama.media import iter_frames, open_media

    path = media_dir / "talk.mp4"  # 2 s at 25 fps
    with open_media(path, 600.0) as (container, vs, _a, _d):
        every = list(iter_frames(container, vs))
        container.seek(0)
        part = list(iter_frames(container, vs, start_s=0.5, end_s=1.5, max_fps=10))
    assert len(every) == 50 and [f.index for f in every] == list(range(50))
    np.testing.assert_allclose([f.t for f in every], np.arange(50) / 25, atol=1e-6)
    assert every[0].rgb.shape == (360, 640, 3) and every[0].rgb.dtype == np.uint8 and every[0].pts is not None
    times = [f.t for f in part]
    assert times[0] == pytest.approx(0.52) and times[-1] < 1.5 and len(times) == 9  # every 3rd frame: 0.12 s >= 0.1 - 0.01
    assert all(b - a >= 0.09 for a, b in zip(times, times[1:]))
    with open_media(path, 600.0) as (container, vs, _a, _d):
        sampled = load_clip(path, num_frames=5)
        # load_clip keeps the first decoded frame at or after each sample time, converted the same way
        frames = {round(f.t, 3): f.rgb for f in iter_frames(container, vs)}
    for t, img in zip(sampled.frame_times, sampled.frames):
        np.testing.assert_array_equal(frames[round(float(t), 3)], img)


def test_corrupt_stream_error_names_the_file(bad_files):
    from deemo_llama.media import CorruptStream

    with pytest.raises(CorruptStream, match="corrupt") as e:
        load_clip(bad_files / "corrupt.mp4")
    assert isinstance(e.value, MediaError) and e.value.frames_decoded >= 0 and "corrupt.mp4" in str(e.value)
