"""Instruction data: manifests, label sets, the builder (cached, resumable), rows, validate, stats, loader."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deemo_llama.data.manifest import ManifestError, ManifestRow, read_manifest, write_manifest

DEEMO = [sys.executable, "-m", "deemo_llama.cli"]
SAID = {"talk": "I got the job, this is wonderful news!", "speech": "My old dog died last night and I miss him."}


def deemo(*args, **kw):
    return subprocess.run([*DEEMO, *map(str, args)], capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)


# -- manifests and label sets ---------------------------------------------------------------------------
def test_manifest_round_trip_csv_and_jsonl(tmp_path):
    rows = [ManifestRow(clip="a.mp4", label="happy", subject="s1", clues=["smiles", "laughs"], body_language=[{"type": "self-manipulation", "label": "touching face", "start_s": 1.0, "end_s": 2.0}], demographics={"gender": "f"}, valence=0.5),
            ManifestRow(clip="b.wav", label="sad", id="b-1")]
    for name in ("m.csv", "m.jsonl"):
        back = read_manifest(write_manifest(rows, tmp_path / name))
        assert [r.to_dict() for r in back] == [{**rows[0].to_dict(), "id": "a"}, rows[1].to_dict()]
    # CSV written by hand: " | " separates clues, JSON cells for objects
    (tmp_path / "h.csv").write_text('clip,label,clues,demographics\nx.mp4,angry,frowns | shouts,"{""age_group"": ""18-30""}"\n')
    (r,) = read_manifest(tmp_path / "h.csv")
    assert r.clues == ["frowns", "shouts"] and r.demographics == {"age_group": "18-30"} and r.line == 2 and r.id == "x"


@pytest.mark.parametrize("text,name,message", [
    ("clip,label,mood\na.mp4,happy,x\n", "m.csv", "m.csv:2: unknown column(s) 'mood'"),
    ("clip,label\n", "m.csv", "m.csv: empty manifest (no rows)"),
    ("", "m.csv", "m.csv: empty manifest (no header row)"),
    ('{"clip": "a.mp4", "label": "happy"}\n{"clip": "b.mp4"\n', "m.jsonl", "m.jsonl:2: not valid JSON"),
    ('{"clip": "a.mp4"}\n', "m.jsonl", "m.jsonl:1: column 'label' is empty or missing"),
    ("clip,label\na.mp4,happy\na.mp4,sad\n", "m.csv", "m.csv:3: duplicate clip id 'a' (first on line 2)"),
    ("clip,label,split\na.mp4,happy,dev\n", "m.csv", "m.csv:2: split 'dev' is not one of train, validation, test"),
    ("clip,label,valence\na.mp4,happy,high\n", "m.csv", "m.csv:2: column 'valence' must be a number"),
    ("clip,label\n", "m.txt", "m.txt: a manifest is .csv, .tsv or .jsonl"),
])
def test_manifest_errors_name_file_and_line(tmp_path, text, name, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ManifestError) as e:
        read_manifest(tmp_path / name)
    assert str(e.value).startswith(str(tmp_path / message.split(":")[0]) + message[len(message.split(":")[0]):]), str(e.value)


def test_label_sets():
    from deemo_llama.data.labels import get_label_set
    from deemo_llama.errors import DeemoError

    mer = get_label_set("mer")
    assert mer.labels == ("neutral", "angry", "happy", "sad", "worried", "surprise")
    assert mer.normalise(" Happiness ") == "happy" and mer.normalise("anxious") == "worried" and mer.normalise("joyful") is None
    assert len(get_label_set("dfew").labels) == 7 and len(get_label_set("mafw").labels) == 11
    assert get_label_set("bah").normalise("1") == "ambivalent"
    assert get_label_set("custom", ["Calm", "tense", "calm"]).labels == ("calm", "tense")
    with pytest.raises(DeemoError, match="at least two"):
        get_label_set("custom", ["calm"])
    with pytest.raises(DeemoError, match="fixed labels"):
        get_label_set("mer", ["a", "b"])
    with pytest.raises(DeemoError, match="unknown label set 'xyz'"):
        get_label_set("xyz")


def test_splits_are_subject_independent_deterministic_and_keep_given_folds():
    from deemo_llama.data.build import assign_splits

    clips = [(f"c{s}_{i}", f"s{s}", None) for s in range(30) for i in range(4)] + [("x1", "sx", "test"), ("x2", "sx", None), ("solo", None, None)]
    a = assign_splits(clips, (0.8, 0.1, 0.1), seed=0)
    assert a == assign_splits(list(reversed(clips)), (0.8, 0.1, 0.1), seed=0)  # order-free
    assert a != assign_splits(clips, (0.8, 0.1, 0.1), seed=1)
    by_subject: dict[str, set] = {}
    for cid, subj, _ in clips:
        by_subject.setdefault(subj or cid, set()).add(a[cid])
    assert all(len(v) == 1 for v in by_subject.values())
    assert a["x1"] == a["x2"] == "test"  # a subject follows its official fold
    shares = {s: sum(v == s for v in a.values()) / len(a) for s in ("train", "validation", "test")}
    assert abs(shares["train"] - 0.8) < 0.06 and abs(shares["validation"] - 0.1) < 0.06, shares
    # three subjects: one per split rather than all in train
    small = assign_splits([(f"c{s}_{i}", f"s{s}", None) for s in range(3) for i in range(6)], (0.8, 0.1, 0.1))
    assert sorted(set(small.values())) == ["test", "train", "validation"]


# -- the builder -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(media_dir, tmp_path_factory):
    """Three real clips through `build_dataset` (real experts, given transcripts instead of Whisper),
    all in the manifest's own train split."""
    from deemo_llama.data.build import BuildOptions, build_dataset

    d = tmp_path_factory.mktemp("build")
    rows = [ManifestRow(clip=str(media_dir / "talk.mp4"), label="Happiness", subject="s1", split="train", transcript=SAID["talk"], clues=["The person says they got the job."], demographics={"gender": "f"}),
            ManifestRow(clip=str(media_dir / "speech.wav"), label="sad", subject="s2", split="train", transcript=SAID["speech"]),
            ManifestRow(clip=str(media_dir / "silent.mp4"), label="neutral", subject="s3", split="train", body_language=[{"type": "self-protection", "label": "arms crossed", "start_s": 0.2, "end_s": 1.0}])]
    manifest = write_manifest(rows, d / "manifest.csv")
    report = build_dataset(manifest, d / "out", BuildOptions(label_set="mer"), progress=False)
    return d, report


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for s in ("train", "validation", "test") for line in (out / f"{s}.jsonl").read_text().splitlines()]


def test_build_writes_rows_of_three_kinds_from_the_one_prompt(built):
    from deemo_llama.evidence import Evidence
    from deemo_llama.prompting import evidence_text, reasoning_lead

    d, report = built
    out = d / "out"
    assert (report.clips, report.built, report.failed) == (3, 3, 0)
    rows = _rows(out)
    by = {r["id"]: r for r in rows}
    assert {r["kind"] for r in rows} == {"recognition", "reasoning", "tool_use"}
    assert sorted(by) == sorted(f"{c}/{k}" for c in ("talk", "speech", "silent") for k in ("recognition", "reasoning", "tool_use"))
    assert by["talk/recognition"]["label"] == "happy"  # normalised from "Happiness"
    for r in rows:
        ev = Evidence.from_dict(json.loads((out / r["evidence"]).read_text()))
        user = next(m for m in r["messages"] if m["role"] == "user")
        if r["kind"] != "tool_use":  # the analyzer's and the server's prompt, word for word
            q = user["content"][-1]["text"].split("\n")[-1].split(" Choose one of:")[0]
            assert user["content"][-1]["text"] == evidence_text(ev, r["label_set"]["labels"], q)
        answer = r["messages"][-1]["content"][0]["text"]
        assert answer.startswith(f"Emotion: {r['label']}.")
    # the reasoning is composed from the evidence that exists (the gold clues are kept as the reference);
    # --reasoning clues answers with the clues where a row has them
    talk = by["talk/reasoning"]
    said = talk["messages"][-1]["content"][0]["text"]
    assert talk["reasoning"] == "silver" and talk["clues"] == ["The person says they got the job."] and "The person says" not in said
    ev_talk = Evidence.from_dict(json.loads((out / talk["evidence"]).read_text()))
    assert said.startswith("Emotion: happy. Reasoning: " + reasoning_lead(ev_talk)) and f'"{SAID["talk"].rstrip(".!?")}' in said
    from deemo_llama.data.labels import get_label_set
    from deemo_llama.data.rows import make_rows

    mrow = ManifestRow(clip="talk.mp4", label="happy", id="talk", clues=["The person says they got the job"])
    gold = {r["kind"]: r for r in make_rows(mrow, ev_talk, "happy", get_label_set("mer"), None, None, reasoning_from="clues")}
    assert gold["reasoning"]["reasoning"] == "gold" and gold["reasoning"]["messages"][-1]["content"][0]["text"] == "Emotion: happy. Reasoning: The person says they got the job."
    silent = by["silent/reasoning"]
    text = silent["messages"][-1]["content"][0]["text"]
    ev = Evidence.from_dict(json.loads((out / silent["evidence"]).read_text()))
    assert silent["reasoning"] == "silver" and text.startswith("Emotion: neutral. Reasoning: " + reasoning_lead(ev))
    assert "voice" not in text.lower() and "words" not in text.lower()  # no audio in that clip: not named
    assert "arms crossed from 0.2 s to 1.0 s" in text  # the manifest's body-language annotation
    speech = by["speech/reasoning"]["messages"][-1]["content"][0]["text"]
    assert "face" not in speech.lower() and "Their voice" in speech and "negative, which fits sad" in speech
    # media parts follow the clip's streams; stored media is the de-identified copy
    parts = lambda r: [p["type"] for p in next(m for m in r["messages"] if m["role"] == "user")["content"] if p["type"] != "text"]  # noqa: E731
    assert parts(by["talk/recognition"]) == ["video", "audio"] and parts(by["speech/recognition"]) == ["audio"] and parts(by["silent/recognition"]) == ["video"]
    assert by["talk/recognition"]["media"].endswith("video.mp4") and by["speech/recognition"]["media"].endswith("audio.wav")
    assert by["talk/recognition"]["demographics"] == {"gender": "f"} and by["talk/recognition"]["source"]["clip"] == "talk.mp4"


def test_built_media_is_deidentified_and_nothing_identifying_is_stored(built, media_dir):
    import numpy as np

    from deemo_llama.media import load_clip
    from deemo_llama.privacy.faces import CenterFaceDetector

    d, _ = built
    clip_dir = next(p for p in (d / "out" / "clips").iterdir() if p.name.startswith("talk-"))
    assert sorted(p.name for p in clip_dir.iterdir()) == ["audio.wav", "evidence.json", "record.json", "report.json", "video.mp4"]
    raw, anon = load_clip(media_dir / "talk.mp4", num_frames=4), load_clip(clip_dir / "video.mp4", num_frames=4)
    det = CenterFaceDetector()
    assert all(det(f) for f in raw.frames) and not any(det(f) for f in anon.frames)  # the face is blurred
    n = min(len(raw.audio), len(anon.audio))
    assert np.corrcoef(raw.audio[:n], anon.audio[:n])[0, 1] < 0.9  # McAdams, not the raw voice
    video = json.loads((clip_dir / "report.json").read_text())["video"]
    assert video["frames"] <= video["duration_s"] * 10 + 1 < raw.duration * 25  # --video-fps 10 thins the 25 fps clip
    ev = json.loads((clip_dir / "evidence.json").read_text())

    def keys(x):
        if isinstance(x, dict):
            for k, v in x.items():
                yield k
                yield from keys(v)
        elif isinstance(x, list):
            for v in x:
                yield from keys(v)

    assert not [k for k in keys(ev) if any(w in k.lower() for w in ("landmark", "embedding", "crop", "box", "pixel"))]


def test_tool_use_rows_answer_every_call_with_the_tool_loop_message(built):
    from deemo_llama.evidence import Evidence
    from deemo_llama.tools.loop import ToolStep

    d, _ = built
    by = {r["id"]: r for r in _rows(d / "out")}
    row = by["talk/tool_use"]
    ev = Evidence.from_dict(json.loads((d / "out" / row["evidence"]).read_text()))
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "assistant"]
    calls = row["messages"][2]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["analyze_facial_expression", "analyze_voice"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"max_fps": 5.0}  # what the fast profile ran
    for call, result in zip(calls, row["messages"][3:5]):
        env = ev.experts[call["function"]["name"]]
        expected = ToolStep(call["id"], call["function"]["name"], {}, env["status"], env["summary"], 0.0, False, env).message()
        assert result["tool_call_id"] == call["id"] and result["content"][0]["text"] == expected["content"]
    assert "Observations" in row["messages"][1]["content"][-1]["text"] and "- Face:" not in row["messages"][1]["content"][-1]["text"]
    assert {t["function"]["name"] for t in row["tools"]} >= {"analyze_facial_expression", "analyze_voice"}


def test_rows_validate_and_load_with_datasets(built):
    import datasets

    from deemo_llama.data import load_rows
    from deemo_llama.data.validate import validate_file

    d, _ = built
    out = d / "out"
    n, problems = validate_file(out / "train.jsonl")
    assert n == 9 and problems == []
    plain = datasets.load_dataset("json", data_files=str(out / "train.jsonl"))["train"]
    assert plain.num_rows == 9 and plain[0]["media"].startswith("clips/")
    dd = load_rows(out)
    assert list(dd) == ["train"]
    ds = dd["train"].filter(lambda r: r["kind"] == "reasoning")
    assert ds.num_rows == 3 and all(Path(m).is_absolute() and Path(m).is_file() for m in ds["media"])


def test_training_reads_built_rows_with_their_tools(built, tiny):
    from deemo_llama.training import encode_record, load_records

    d, _ = built
    _, proc = tiny
    records = load_records(d / "out" / "train.jsonl")
    tool_row = next(r for r in records if r["kind"] == "tool_use")
    ex = encode_record(tool_row, proc, d / "out")
    text = proc.tokenizer.decode(ex["input_ids"])
    assert "<tools>" in text and "<tool_response>" in text and len(ex["videos"]) == 1 and len(ex["audios"]) == 1
    trained = [t for t, l in zip(ex["input_ids"], ex["labels"]) if l != -100]
    assert "Emotion: happy." in proc.tokenizer.decode(trained)  # the answer is trained on, the tool results are not
    assert "summary" not in proc.tokenizer.decode(trained)


def test_stats_prints_tables_and_writes_a_png(built):
    d, _ = built
    r = deemo("data", "stats", d / "out", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["splits"]["train"] == {"happy": 1, "sad": 1, "neutral": 1} and s["clips"] == 3 and s["rows"] == 9
    assert s["subjects"]["s2"] == {"sad": 1} and s["subjects_in_several_splits"] == []
    assert (d / "out" / "stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = deemo("data", "stats", d / "out")
    assert "clips per label and split" in r.stdout and "worried" in r.stdout


# -- failure, resume, bad input ---------------------------------------------------------------------------
def test_a_bad_clip_goes_to_errors_json_and_the_build_goes_on(tmp_path, media_dir):
    (tmp_path / "broken.mp4").write_bytes(os.urandom(4096))
    shutil.copy(media_dir / "speech.wav", tmp_path / "ok.wav")
    (tmp_path / "m.csv").write_text(f"clip,label,transcript\nbroken.mp4,happy,hello\nok.wav,sad,{SAID['speech']}\n")
    r = deemo("data", "build", tmp_path / "m.csv", tmp_path / "out", "--label-set", "mer", "--no-progress")
    assert r.returncode == 0, r.stderr
    errors = json.loads((tmp_path / "out" / "errors.json").read_text())
    assert [(e["clip_id"], e["line"]) for e in errors] == [("broken", 2)] and "broken.mp4" in errors[0]["error"]
    assert "1 clip(s) could not be processed" in r.stderr and f"{tmp_path / 'm.csv'}:2: broken.mp4" in r.stderr
    assert {json.loads(x)["clip_id"] for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()} == {"ok"}


@pytest.mark.parametrize("manifest,args,message", [
    ("clip,label\nmissing.mp4,happy\n", ["--label-set", "mer"], "m.csv:2: clip 'missing.mp4' does not exist"),
    ("clip,label\nok.wav,joyful\n", ["--label-set", "mer"], "m.csv:2: label 'joyful' is not in label set 'mer' (neutral, angry, happy, sad, worried, surprise)"),
    ("clip,label,colour\nok.wav,happy,red\n", ["--label-set", "mer"], "m.csv:2: unknown column(s) 'colour'"),
    ("clip,label\n", ["--label-set", "mer"], "m.csv: empty manifest (no rows)"),
    ("clip,label\nok.wav,happy\n", [], "m.csv: name the label set with --label-set"),
    ("clip,label\nok.wav,happy\n", ["--label-set", "custom", "--labels", "calm"], "the custom label set needs at least two labels"),
    ("clip,label\nok.wav,happy\n", ["--label-set", "mer", "--kinds", "recognition,essay"], "unknown row kind(s) ['essay']"),
    ("clip,label\nok.wav,happy\n", ["--label-set", "mer", "--transcribe-from", "clean"], "--transcribe-from must be one of anonymised, raw, not 'clean'"),
])
def test_build_input_errors_are_one_line_and_lose_nothing(tmp_path, media_dir, manifest, args, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text('{"kept": true}\n')  # an earlier build's output
    shutil.copy(media_dir / "speech.wav", tmp_path / "ok.wav")
    (tmp_path / "m.csv").write_text(manifest)
    r = deemo("data", "build", tmp_path / "m.csv", out, *args, "--no-progress")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.strip().startswith("error: ") and message in r.stderr, r.stderr
    assert (out / "train.jsonl").read_text() == '{"kept": true}\n' and sorted(p.name for p in out.iterdir()) == ["train.jsonl"]


def test_build_resumes_after_sigkill_without_redoing_or_losing_a_clip(tmp_path, media_dir):
    """Kill -9 the build once some clips are done; the rerun does only the rest, and the rows are
    complete and unique."""
    n = 6
    lines = ["clip,label,subject,transcript"]
    for i in range(n):
        shutil.copy(media_dir / "talk.mp4", tmp_path / f"c{i}.mp4")
        lines.append(f"c{i}.mp4,{['happy', 'sad', 'neutral'][i % 3]},s{i},Sentence number {i}.")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    args = [*DEEMO, "data", "build", str(tmp_path / "m.csv"), str(out), "--label-set", "mer", "--experts", "none", "--kinds", "recognition,reasoning", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("clips/*/record.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p: p.stat().st_mtime_ns for p in out.glob("clips/*/record.json")}
    assert 2 <= len(done_before) < n, "the build finished before it could be killed; make the clips longer"
    assert not (out / "build.json").exists()
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "build.json").read_text())
    assert (summary["cached"], summary["built"], summary["failed"]) == (len(done_before), n - len(done_before), 0)
    assert all(p.stat().st_mtime_ns == m for p, m in done_before.items())  # no finished clip redone
    rows = _rows(out)
    assert sorted(r["id"] for r in rows) == sorted(f"c{i}/{k}" for i in range(n) for k in ("recognition", "reasoning"))
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    # a third run with nothing to do rewrites identical files
    before = (out / "train.jsonl").read_bytes()
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and json.loads((out / "build.json").read_text())["cached"] == n
    assert (out / "train.jsonl").read_bytes() == before


# -- validate ---------------------------------------------------------------------------------------------
def test_validate_reports_every_bad_row_with_line_and_reason(built, tmp_path):
    d, _ = built
    good = [json.loads(x) for x in (d / "out" / "train.jsonl").read_text().splitlines()]
    rec, tool = next(r for r in good if r["kind"] == "recognition" and r["clip_id"] == "talk"), next(r for r in good if r["kind"] == "tool_use")
    for r in (rec, tool):
        for col in ("media", "evidence"):
            r[col] = str(d / "out" / r[col])
    bad_label = {**rec, "id": "x1", "label": "joyful"}
    no_media = {**rec, "id": "x2", "media": str(tmp_path / "gone.mp4")}
    no_answer = {**rec, "id": "x3", "messages": rec["messages"][:-1]}
    dangling = {**tool, "id": "x4", "messages": [m for m in tool["messages"] if m["role"] != "tool" or m["tool_call_id"] != tool["messages"][2]["tool_calls"][0]["id"]]}
    empty_conv = {**rec, "id": "x5", "messages": []}
    wrong_set = {**rec, "id": "x6", "label_set": {"name": "mer", "labels": ["happy", "sad"]}}
    lines = [json.dumps(rec), "{not json", json.dumps(bad_label), json.dumps(no_media), json.dumps(no_answer), json.dumps(dangling), json.dumps(empty_conv), json.dumps(rec), json.dumps(wrong_set)]
    f = tmp_path / "rows.jsonl"
    f.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "caf\xe9"}\n')
    r = deemo("data", "validate", f)
    assert r.returncode == 1
    out = r.stdout
    expect = {
        2: "not valid JSON", 3: "label 'joyful' is not in label set 'mer'", 4: "media '" + str(tmp_path / "gone.mp4") + "' does not exist",
        5: "conversation does not end with an assistant answer", 6: "have no tool result", 7: "messages: [] is too short",
        8: "duplicate id (first on line 1)", 9: "label_set 'mer' must list", 10: "not UTF-8 text",
    }
    for line, reason in expect.items():
        assert any(x.startswith(f"{f}:{line}:") and reason in x for x in out.splitlines()), (line, reason, out)
    assert not any(x.startswith(f"{f}:1:") for x in out.splitlines())
    assert f"{f}: 10 rows, 9 bad" in r.stderr
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps(rec) + "\n")
    r = deemo("data", "validate", ok)
    assert r.returncode == 0 and "1 rows, 0 bad, all valid" in r.stdout


def test_convert_command_writes_a_manifest_the_builder_reads(tmp_path):
    (tmp_path / "ds" / "video").mkdir(parents=True)
    (tmp_path / "ds" / "train-label.csv").write_text("name,discrete,valence\nsample_00001,Happy,2.5\nsample_00002,worried,-1\n")
    for n in ("sample_00001", "sample_00002"):
        (tmp_path / "ds" / "video" / f"{n}.mp4").write_bytes(b"\0")
    r = deemo("data", "convert", "mer2023", tmp_path / "ds", tmp_path / "m.jsonl")
    assert r.returncode == 0, r.stderr
    rows = read_manifest(tmp_path / "m.jsonl")
    assert [(x.id, x.label, x.split, x.label_set, x.valence) for x in rows] == [("sample_00001", "happy", "train", "mer", 2.5), ("sample_00002", "worried", "train", "mer", -1.0)]
    r = deemo("data", "convert", "affectnet", tmp_path / "ds", tmp_path / "x.jsonl")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown format 'affectnet'; expected one of mer2023") and not (tmp_path / "x.jsonl").exists()
    r = deemo("data", "convert", "csv", tmp_path / "ds" / "train-label.csv", tmp_path / "y.jsonl", "-o", "label_set=mer")
    assert r.returncode == 2 and "clip" in r.stderr and len(r.stderr.strip().splitlines()) == 1
