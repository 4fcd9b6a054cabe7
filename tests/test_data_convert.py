"""Dataset converters (deemo_llama.data.convert): synthetic annotation files in each public layout -> manifest.

Every fixture is invented (names like sample_00001, subjects p001/sub01); media files are empty placeholders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deemo_llama.data.convert import FORMATS, convert
from deemo_llama.data.manifest import ManifestError, read_manifest


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def by_id(rows):
    return {r.id: r for r in rows}


# ---------------------------------------------------------------- MER2023 / MER2024

def _mer_tree(root: Path) -> Path:
    write(root / "train-label.csv", "name,discrete,valence\n"
          "sample_00001,happy,2.5\n"
          "sample_00002,Worried,-1.0\n"
          "sample_00003,anxious,-2\n")
    write(root / "test1-label.csv", "name,discrete,valence\nsample_00004,neutral,0\n")
    write(root / "transcription.csv", "name,chinese,english\n"
          "sample_00001,我们今天去公园吧,\"Let's go to the park, today\"\n"
          "sample_00004,好的,Okay\n")
    touch(root, "train/sample_00001.mp4", "train/sample_00002.avi", "train/sample_00003.mp4", "test1/sample_00004.mp4",
          "audio/sample_00001.wav")
    return root


def test_mer2023_folder(tmp_path):
    src = _mer_tree(tmp_path / "MER2023")
    out = tmp_path / "out" / "mer.jsonl"
    rows = convert("mer2023", src, out)
    assert len(rows) == 4 and rows.skipped == []
    back = by_id(read_manifest(out))
    assert set(back) == {"sample_00001", "sample_00002", "sample_00003", "sample_00004"}
    r1 = back["sample_00001"]
    assert r1.label == "happy" and r1.split == "train" and r1.valence == 2.5
    assert r1.transcript == "Let's go to the park, today"
    assert r1.clip == str((src / "train" / "sample_00001.mp4").resolve())  # the video, not the .wav
    assert Path(r1.clip).is_absolute()
    assert r1.source == "MER2023" and r1.license == "MER2023 EULA (research only)" and r1.label_set == "mer"
    assert back["sample_00002"].label == "worried" and back["sample_00002"].clip.endswith("sample_00002.avi")
    assert back["sample_00003"].label == "worried"  # synonym
    assert back["sample_00004"].split == "test" and back["sample_00004"].transcript == "Okay"
    assert back["sample_00002"].transcript is None


def test_mer2024_alias_chinese_transcript_and_csv_output(tmp_path):
    src = _mer_tree(tmp_path / "MER2024")
    out = tmp_path / "mer.csv"
    convert("mer2024", src, out, transcript_language="chinese")
    back = by_id(read_manifest(out))
    assert back["sample_00001"].transcript == "我们今天去公园吧"
    assert back["sample_00001"].source == "MER2024" and back["sample_00001"].license == "MER2024 EULA (research only)"


def test_mer_label_outside_set_names_file_and_line(tmp_path):
    src = _mer_tree(tmp_path / "MER")
    write(src / "train-label.csv", "name,discrete,valence\nsample_00001,happy,1\nsample_00002,joyful,1\n")
    with pytest.raises(ManifestError) as e:
        convert("mer2023", src / "train-label.csv", tmp_path / "m.jsonl")
    msg = str(e.value)
    assert f"{src / 'train-label.csv'}:3: label 'joyful' is not in label set 'mer'" in msg
    assert "neutral, angry, happy, sad, worried, surprise" in msg
    assert not (tmp_path / "m.jsonl").exists()


def test_mer_wrong_header_names_file_expected_and_found(tmp_path):
    src = tmp_path / "MER"
    bad = write(src / "train-label.csv", "name,emotion,valence\nsample_00001,happy,1\n")
    touch(src, "sample_00001.mp4")
    for given in (bad, src):  # the file itself, or found in the folder
        with pytest.raises(ManifestError) as e:
            convert("mer2023", given, tmp_path / "m.jsonl")
        msg = str(e.value)
        assert str(bad) in msg and "expected columns name, discrete" in msg and "'emotion'" in msg


def test_missing_clip_names_file_and_line_and_skip(tmp_path):
    src = _mer_tree(tmp_path / "MER")
    (src / "train" / "sample_00002.avi").unlink()
    with pytest.raises(ManifestError) as e:
        convert("mer2023", src, tmp_path / "m.jsonl")
    assert f"{src / 'train-label.csv'}:3: no media file for clip 'sample_00002'" in str(e.value)
    out = tmp_path / "m.jsonl"
    rows = convert("mer2023", src, out, missing="skip")
    assert len(rows) == 3 and len(rows.skipped) == 1 and rows.skipped[0].startswith(f"{src / 'train-label.csv'}:3")
    assert {r.id for r in read_manifest(out)} == {"sample_00001", "sample_00003", "sample_00004"}


# ---------------------------------------------------------------- DFEW

def test_dfew_fold_maps_train_and_test(tmp_path):
    src = tmp_path / "DFEW"
    split = src / "EmoLabel_DataSplit"
    write(split / "train(single-labeled)" / "set_1.csv", "video_name,label\n1,1\n2,2\n")
    write(split / "test(single-labeled)" / "set_1.csv", "video_name,label\n3,3\n")
    write(split / "train(single-labeled)" / "set_2.csv", "video_name,label\n1,1\n3,7\n")
    write(split / "test(single-labeled)" / "set_2.csv", "video_name,label\n2,4\n")
    touch(src, "Clip/original/00001.mp4", "Clip/original/00002.mp4", "Clip/original/00003.mp4")
    out = tmp_path / "dfew.jsonl"
    rows = convert("dfew", src, out, fold=2)
    back = by_id(read_manifest(out))
    assert len(rows) == 3
    assert (back["00001"].label, back["00001"].split) == ("happy", "train")
    assert (back["00003"].label, back["00003"].split) == ("fear", "train")
    assert (back["00002"].label, back["00002"].split) == ("angry", "test")
    assert back["00002"].clip == str((src / "Clip/original/00002.mp4").resolve())
    assert back["00001"].source == "DFEW" and back["00001"].license == "DFEW licence (research only)" and back["00001"].label_set == "dfew"
    rows1 = convert("dfew", src, out)  # default fold 1
    assert {(r.id, r.label, r.split) for r in rows1} == {("00001", "happy", "train"), ("00002", "sad", "train"), ("00003", "neutral", "test")}
    with pytest.raises(ManifestError, match="fold must be 1-5"):
        convert("dfew", src, out, fold=6)


def test_dfew_bad_label_and_header(tmp_path):
    src = tmp_path / "DFEW"
    f = write(src / "set_1.csv", "video_name,label\n1,1\n2,9\n")
    touch(src, "00001.mp4", "00002.mp4")
    with pytest.raises(ManifestError, match=rf"{f}:3: label '9' is not in label set 'dfew'".replace("(", r"\(")):
        convert("dfew", f, tmp_path / "d.jsonl")
    g = write(src / "other.csv", "clip_id;emotion\n1;1\n")
    with pytest.raises(ManifestError) as e:
        convert("dfew", g, tmp_path / "d.jsonl")
    assert str(g) in str(e.value) and "expected columns name, label" in str(e.value) and "clip_id;emotion" in str(e.value)


# ---------------------------------------------------------------- MAFW

def test_mafw_single_fold_files(tmp_path):
    src = tmp_path / "MAFW"
    sets = src / "Train & Test Set"
    write(sets / "single/no_caption/set_1/train.txt", "00025.mp4 anger\n00026.mp4 helplessness\n\n00027.mp4 4\n")
    write(sets / "single/no_caption/set_1/test.txt", "00028.mp4 Disappointed\n")
    write(sets / "compound/no_caption/set_1/train.txt", "00025.mp4 anger_disgust\n")  # the compound set is not read
    touch(src, "data/clips/00025.mp4", "data/clips/00026.mp4", "data/clips/00027.mp4", "data/clips/00028.webm")  # 00028 re-encoded
    out = tmp_path / "mafw.jsonl"
    rows = convert("mafw", src, out, fold=1)
    back = by_id(read_manifest(out))
    assert len(rows) == 4
    assert (back["00025"].label, back["00025"].split) == ("anger", "train")
    assert back["00026"].label == "helplessness"
    assert back["00027"].label == "happiness"  # numeric class 4
    assert back["00027"].line == 3
    assert (back["00028"].label, back["00028"].split) == ("disappointment", "test")
    assert back["00025"].clip == str((src / "data/clips/00025.mp4").resolve())
    assert back["00028"].clip == str((src / "data/clips/00028.webm").resolve())  # listed as .mp4, found by name
    assert back["00025"].source == "MAFW" and back["00025"].label_set == "mafw"


def test_mafw_csv_label_list_with_split_option(tmp_path):
    src = tmp_path / "MAFW"
    f = write(src / "labels.csv", "clip,label\n00031,sadness\n00032,contempt\n")
    touch(src, "clips/00031.mp4", "clips/00032.mp4")
    rows = convert("mafw", f, tmp_path / "m.jsonl", split="test")
    assert [(r.id, r.label, r.split) for r in rows] == [("00031", "sadness", "test"), ("00032", "contempt", "test")]
    bad = write(src / "bad.txt", "00031.mp4 joy\n")
    with pytest.raises(ManifestError, match=r"bad.txt:1: label 'joy' is not in label set 'mafw'"):
        convert("mafw", bad, tmp_path / "m.jsonl")


# ---------------------------------------------------------------- BAH

def test_bah_split_files(tmp_path):
    src = tmp_path / "BAH"
    write(src / "train.txt", "p001/p001_q1.mp4,0,I walk every day, mostly in the morning\n"
                             "p001/p001_q2.mp4,1,I want to stop but I also don't\n")
    write(src / "val.txt", "video_path,label,transcript\np002/p002_q1.mp4,1,Maybe. I am not sure\n")
    write(src / "test.txt", "p003/p003_q1.mp4,0,\n")
    touch(src, "p001/p001_q1.mp4", "p001/p001_q2.mp4", "p002/p002_q1.mp4", "p003/p003_q1.mp4")
    out = tmp_path / "bah.jsonl"
    rows = convert("bah", src, out, subject_from_folder=True)
    back = by_id(read_manifest(out))
    assert len(rows) == 4
    r = back["p001_p001_q1"]
    assert (r.label, r.split, r.subject) == ("not ambivalent", "train", "p001")
    assert r.transcript == "I walk every day, mostly in the morning"
    assert back["p001_p001_q2"].label == "ambivalent"
    assert (back["p002_p002_q1"].split, back["p002_p002_q1"].label) == ("validation", "ambivalent")
    assert back["p003_p003_q1"].split == "test" and back["p003_p003_q1"].transcript is None
    assert r.clip == str((src / "p001/p001_q1.mp4").resolve())
    assert r.source == "BAH" and r.label_set == "bah"
    # subjects only on request; videos may live in another folder
    vids = tmp_path / "videos"
    touch(vids, "p001/p001_q1.mp4", "p001/p001_q2.mp4")
    rows = convert("bah", src / "train.txt", tmp_path / "b.jsonl", videos_root=str(vids))
    assert [r.subject for r in rows] == [None, None]
    assert rows[0].clip == str((vids / "p001/p001_q1.mp4").resolve())


def test_bah_bad_line_and_label(tmp_path):
    src = tmp_path / "BAH"
    f = write(src / "train.txt", "p001/p001_q1.mp4,0,ok\np001/p001_q2.mp4,2,odd\n")
    touch(src, "p001/p001_q1.mp4", "p001/p001_q2.mp4")
    with pytest.raises(ManifestError, match=rf"{f}:2: label '2' is not in label set 'bah'"):
        convert("bah", f, tmp_path / "b.jsonl")
    g = write(src / "test.txt", "just-one-field\n")
    with pytest.raises(ManifestError) as e:
        convert("bah", g, tmp_path / "b.jsonl")
    assert str(g) in str(e.value) and "video_path,label,transcript" in str(e.value)


# ---------------------------------------------------------------- MERR (Emotion-LLaMA)

def test_merr(tmp_path):
    src = tmp_path / "MERR"
    write(src / "MERR_fine_grained.txt", "sample_00001 45 happy\nsample_00002 60 sad\nsample_00003 30 neutral\n")
    write(src / "reason.json", json.dumps({
        "sample_00001": {"smp_reason_caption": "She smiles widely and her voice rises.", "reason_caption": "older caption"},
        "sample_00002": {"reason_caption": "He looks down and speaks slowly."}}))
    write(src / "au_caption.json", json.dumps({"sample_00003": {"caption": "Relaxed face, even tone."},
                                               "sample_00001": {"caption": "lower priority"}}))
    write(src / "transcription_en_all.csv", "name,sentence\nsample_00001,That is great news\nsample_00002,I guess it is over\n")
    touch(src, "video/sample_00001.mp4", "video/sample_00002.mp4", "video/sample_00003.avi")
    out = tmp_path / "merr.jsonl"
    rows = convert("merr", src, out)
    back = by_id(read_manifest(out))
    assert len(rows) == 3
    assert back["sample_00001"].label == "happy"
    assert back["sample_00001"].clues == ["She smiles widely and her voice rises."]
    assert back["sample_00001"].transcript == "That is great news"
    assert back["sample_00001"].meta == {"n_frames": 45}
    assert back["sample_00002"].clues == ["He looks down and speaks slowly."]
    assert back["sample_00003"].clues == ["Relaxed face, even tone."] and back["sample_00003"].transcript is None
    assert back["sample_00003"].clip.endswith("sample_00003.avi")
    assert back["sample_00001"].source == "MERR" and back["sample_00001"].label_set == "mer"


def test_merr_labels_beyond_mer_and_custom_set(tmp_path):
    src = tmp_path / "MERR"
    ann = write(src / "ann.txt", "sample_00001 45 happy\nsample_00002 60 doubt\n")
    touch(src, "sample_00001.mp4", "sample_00002.mp4")
    with pytest.raises(ManifestError, match=rf"{ann}:2: label 'doubt' is not in label set 'mer'"):
        convert("merr", src, tmp_path / "m.jsonl")
    labels = "neutral,angry,happy,sad,worried,surprise,fear,contempt,doubt"
    rows = convert("merr", src, tmp_path / "m.jsonl", label_set="custom", labels=labels)
    assert [(r.label, r.label_set) for r in rows] == [("happy", "custom"), ("doubt", "custom")]
    bad = write(tmp_path / "x" / "ann.txt", "sample_00001 happy\n")
    with pytest.raises(ManifestError, match="expected `name n_frames label`"):
        convert("merr", bad, tmp_path / "m.jsonl")


# ---------------------------------------------------------------- CASME II

CASME_HEADER = "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units,Estimated Emotion\n"


def test_casme2_frames_folder_and_video(tmp_path):
    src = tmp_path / "CASME2"
    write(src / "coding.csv", CASME_HEADER +
          "1,EP02_01f,46,59,86,4+7,repression\n"
          "2,EP02_01f,10,30,50,12,happiness\n"
          "02,EP05_03,100,/,140,R14,others\n")
    touch(src, "CASME2_RAW_selected/sub01/EP02_01f/img46.jpg", "CASME2_RAW_selected/sub01/EP02_01f/img47.jpg",
          "videos/sub02/EP02_01f.avi", "videos/sub02/EP05_03.avi")
    out = tmp_path / "casme.jsonl"
    rows = convert("casme2", src, out)
    back = by_id(read_manifest(out))
    assert len(rows) == 3
    r = back["sub01_EP02_01f"]
    assert r.subject == "sub01" and r.label == "repression"
    assert r.clip == str((src / "CASME2_RAW_selected/sub01/EP02_01f").resolve())  # the frame folder
    me = r.micro_expressions[0]
    assert (me["onset_s"], me["apex_s"], me["offset_s"], me["aus"]) == (0.23, 0.295, 0.43, "4+7")
    assert (me["onset_frame"], me["apex_frame"], me["offset_frame"]) == (46, 59, 86)
    r2 = back["sub02_EP02_01f"]  # same file name, other subject: its own video
    assert r2.clip == str((src / "videos/sub02/EP02_01f.avi").resolve()) and r2.label == "happiness"
    r3 = back["sub02_EP05_03"]
    assert "apex_s" not in r3.micro_expressions[0] and r3.micro_expressions[0]["offset_s"] == 0.7 and r3.label == "others"
    assert r.source == "CASME II" and r.license == "CASME II licence (research only)" and r.label_set == "casme"
    rows = convert("casme2", src / "coding.csv", out, fps=100)
    assert by_id(rows)["sub01_EP02_01f"].micro_expressions[0]["onset_s"] == 0.46


def test_casme2_errors(tmp_path):
    src = tmp_path / "CASME2"
    touch(src, "sub01/EP02_01f/img1.jpg")
    bad = write(src / "coding.csv", "Subject,Filename,Onset,Emotion\n1,EP02_01f,1,happiness\n")
    with pytest.raises(ManifestError) as e:
        convert("casme2", bad, tmp_path / "c.jsonl")
    assert str(bad) in str(e.value) and "expected columns subject, filename, onset, offset, emotion" in str(e.value)
    f = write(src / "coding2.csv", CASME_HEADER + "1,EP02_01f,46,59,86,4,joy\n")
    with pytest.raises(ManifestError, match=rf"{f}:2: label 'joy' is not in label set 'casme'"):
        convert("casme2", f, tmp_path / "c.jsonl")
    g = write(src / "coding3.csv", CASME_HEADER + "1,EP02_01f,46,59,86,4,disgust\n3,EP09_09,1,2,3,4,disgust\n")
    with pytest.raises(ManifestError, match=rf"{g}:3: no media file for clip 'sub03/EP09_09'"):
        convert("casme2", g, tmp_path / "c.jsonl")
    rows = convert("casme2", g, tmp_path / "c.jsonl", missing="skip")
    assert [r.id for r in rows] == ["sub01_EP02_01f"] and len(rows.skipped) == 1
    h = write(src / "coding4.csv", CASME_HEADER + "1,EP02_01f,46,90,86,4,disgust\n")
    with pytest.raises(ManifestError, match=rf"{h}:2: apex frame 90 is outside"):
        convert("casme2", h, tmp_path / "c.jsonl")
    xl = src / "CASME2-coding.xlsx"
    xl.write_bytes(b"PK\x03\x04")
    with pytest.raises(ManifestError, match="export the sheet as CSV"):
        convert("casme2", xl, tmp_path / "c.jsonl")


# ---------------------------------------------------------------- CAS(ME)^2

def test_casme_sq(tmp_path):
    src = tmp_path / "CASME_sq"
    write(src / "code_final.csv",
          "1,anger1_1,30,45,60,4+10,negative,macro-expression,angry\n"
          "1,anger1_1,300,309,315,4,others,micro-expression,\n"
          "2,happy2_1,90,0,0,12,positive,macro-expression,happy\n")
    touch(src, "rawvideo/s01/anger1_1.mp4", "rawvideo/s02/happy2_1.mp4")
    out = tmp_path / "sq.jsonl"
    rows = convert("casme_sq", src, out)
    back = by_id(read_manifest(out))
    assert len(rows) == 3
    a = back["s01_anger1_1_30"]
    assert a.subject == "s01" and a.label == "others"  # negative -> others in the casme set
    assert a.micro_expressions[0] == {"onset_s": 1.0, "apex_s": 1.5, "offset_s": 2.0, "aus": "4+10", "type": "macro",
                                      "onset_frame": 30, "apex_frame": 45, "offset_frame": 60}
    assert a.meta == {"self_report": "angry"}
    b = back["s01_anger1_1_300"]
    assert b.micro_expressions[0]["type"] == "micro" and b.micro_expressions[0]["onset_s"] == 10.0 and b.clip == a.clip
    c = back["s02_happy2_1_90"]
    assert c.label == "happiness" and c.micro_expressions[0]["onset_s"] == 3.0
    assert "apex_s" not in c.micro_expressions[0] and "offset_s" not in c.micro_expressions[0]
    assert c.clip == str((src / "rawvideo/s02/happy2_1.mp4").resolve())
    assert a.source == "CAS(ME)^2" and a.label_set == "casme"
    rows = convert("casme_sq", src / "code_final.csv", out, fps=60)
    assert by_id(rows)["s01_anger1_1_30"].micro_expressions[0]["onset_s"] == 0.5


def test_casme_sq_header_row_rejected(tmp_path):
    src = tmp_path / "CASME_sq"
    bad = write(src / "sheet.csv", "participant,video name,start,peak,end,AU,emotion,type,report\n1,a,1,2,3,4,positive,micro,x\n")
    with pytest.raises(ManifestError) as e:
        convert("casme_sq", bad, tmp_path / "s.jsonl")
    assert str(bad) in str(e.value) and "headerless" in str(e.value)


# ---------------------------------------------------------------- generic CSV / JSONL

def test_generic_csv_with_column_mapping(tmp_path):
    src = tmp_path / "mine"
    f = write(src / "annotations.csv", "path,emotion,speaker,fold,text,v\n"
              "media/sample_00001.mp4,Happiness,spk1,train,hello there,0.5\n"
              "sample_00002,sad,spk2,val,,-0.25\n"
              "media/sample_00003.wav,angry,spk1,dev,,\n")
    touch(src, "media/sample_00001.mp4", "media/other/sample_00002.webm", "media/sample_00003.wav")
    out = tmp_path / "g.jsonl"
    rows = convert("csv", f, out, label_set="mer", source="MyCorpus",
                   columns={"clip": "path", "label": "emotion", "subject": "speaker", "split": "fold", "transcript": "text", "valence": "v"})
    back = by_id(read_manifest(out))
    assert len(rows) == 3
    r1 = back["sample_00001"]
    assert (r1.label, r1.subject, r1.split, r1.transcript, r1.valence) == ("happy", "spk1", "train", "hello there", 0.5)
    assert r1.clip == str((src / "media/sample_00001.mp4").resolve())
    assert back["sample_00002"].clip == str((src / "media/other/sample_00002.webm").resolve())  # found by name
    assert (back["sample_00002"].split, back["sample_00002"].valence) == ("validation", -0.25)
    assert back["sample_00003"].split == "validation"
    assert r1.source == "MyCorpus" and r1.license == "see the dataset's licence" and r1.label_set == "mer"


def test_generic_jsonl_custom_labels_and_errors(tmp_path):
    src = tmp_path / "mine"
    f = write(src / "rows.jsonl", json.dumps({"clip": "a/sample_00001.mp4", "label": "Calm", "clues": ["slow breathing"]}) + "\n"
              + json.dumps({"clip": "a/sample_00002.mp4", "label": "2"}) + "\n")
    touch(src, "a/sample_00001.mp4", "a/sample_00002.mp4")
    out = tmp_path / "g.csv"
    rows = convert("csv", f, out, label_set="custom", labels=["calm", "tense"], label_map={"2": "tense"}, license="CC BY 4.0")
    back = by_id(read_manifest(out))
    assert (back["sample_00001"].label, back["sample_00001"].clues) == ("calm", ["slow breathing"])
    assert back["sample_00002"].label == "tense" and back["sample_00002"].label_set == "custom"
    assert back["sample_00001"].license == "CC BY 4.0" and len(rows) == 2
    with pytest.raises(ManifestError, match="needs option label_set"):
        convert("csv", f, out)
    g = write(src / "bad.csv", "file,emotion\nx.mp4,happy\n")
    with pytest.raises(ManifestError) as e:
        convert("csv", g, out, label_set="mer")
    assert str(g) in str(e.value) and "'clip'" in str(e.value) and "'file'" in str(e.value)
    h = write(src / "lab.csv", "clip,label\na/sample_00001.mp4,happy\na/sample_00002.mp4,elated\n")
    with pytest.raises(ManifestError, match=rf"{h}:3: label 'elated' is not in label set 'mer'"):
        convert("csv", h, out, label_set="mer")


def test_formats_unknown_format_and_option(tmp_path):
    assert {"mer2023", "mer2024", "dfew", "mafw", "bah", "merr", "casme2", "casme_sq", "csv"} <= set(FORMATS)
    assert all(isinstance(v, str) and v for v in FORMATS.values())
    src = _mer_tree(tmp_path / "MER")
    with pytest.raises(ManifestError, match="unknown dataset format 'affectnet'"):
        convert("affectnet", src, tmp_path / "m.jsonl")
    with pytest.raises(ManifestError, match="unknown option"):
        convert("mer2023", src, tmp_path / "m.jsonl", fold=1)
    with pytest.raises(ManifestError, match=r"\.csv or \.jsonl"):
        convert("mer2023", src, tmp_path / "m.txt")


def test_duplicate_ids_are_an_error(tmp_path):
    src = _mer_tree(tmp_path / "MER")
    write(src / "test2-label.csv", "name,discrete\nsample_00001,sad\n")
    with pytest.raises(ManifestError) as e:
        convert("mer2023", src, tmp_path / "m.jsonl")
    msg = str(e.value)
    assert "duplicate clip id 'sample_00001'" in msg
    assert f"{src / 'train-label.csv'}:2" in msg and f"{src / 'test2-label.csv'}:2" in msg


def test_command_line_style_options(tmp_path):
    """Options as a command line passes them: strings for numbers, booleans and mappings."""
    src = tmp_path / "DFEW"
    f = write(src / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_3.csv", "video_name,label\n12,5\n")
    touch(src, "00012.mp4")
    with pytest.raises(ManifestError, match="set option media_root"):
        convert("dfew", f, tmp_path / "d.jsonl")  # media are looked for next to a SRC file by default
    rows = convert("dfew", f, tmp_path / "d.jsonl", media_root=str(src))  # one split file: its folder names the split
    assert [(r.id, r.label, r.split) for r in rows] == [("00012", "surprise", "test")]
    write(src / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_3.csv", "video_name,label\n13,6\n")
    touch(src, "00013.mp4")
    rows = convert("dfew", src, tmp_path / "d.jsonl", fold="3")
    assert {(r.id, r.label, r.split) for r in rows} == {("00012", "surprise", "test"), ("00013", "disgust", "train")}
    bah = tmp_path / "BAH"
    write(bah / "train.txt", "p001/p001_q1.mp4,1,well\n")
    touch(bah, "p001/p001_q1.mp4")
    assert convert("bah", bah, tmp_path / "b.jsonl", subject_from_folder="false")[0].subject is None
    assert convert("bah", bah, tmp_path / "b.jsonl", subject_from_folder="true")[0].subject == "p001"
    g = write(tmp_path / "mine" / "a.csv", "path,emotion\nsample_00001.mp4,0\n")
    touch(tmp_path / "mine", "sample_00001.mp4")
    rows = convert("csv", g, tmp_path / "g.jsonl", columns="clip=path,label=emotion", label_set="mer", label_map='{"0": "neutral"}')
    assert (rows[0].label, rows[0].id) == ("neutral", "sample_00001")
    with pytest.raises(ManifestError, match="key=value"):
        convert("csv", g, tmp_path / "g.jsonl", columns="clip:path", label_set="mer")
