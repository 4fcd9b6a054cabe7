"""Batch evaluation (``deemo eval``): label extraction, the resumable runner (killed with SIGKILL),
the reports, re-scoring, comparison and CLI errors, over a scripted system; the judge against a real
(tiny) OpenAI-compatible model server. The gateway-vs-in-process parity is in test_gateway.py, the
run against the real served default in the serving stage (test_serving_vllm.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi import Request  # at module level: FastAPI resolves the endpoint's string annotation here

from eval_fixtures import MER, ScriptedBackend, corrected, planted_label, write_rows

HERE = Path(__file__).resolve().parent


def _truth(rows):
    return {r["id"]: r["label"] for r in rows}


# -- label extraction ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "label", "how"), [
    ("Emotion: joy. Reasoning: the smile.", "happy", "answer"),          # synonym in the answer line
    ("They are not happy at all.", None, "none named"),                   # negated: no label
    ("Happy or sad? Hard to say.", None, "several: happy, sad"),          # two labels named
    ("I cannot tell from this clip.", None, "none named"),                # none named
    ("The person is happy; they are not sad.", "happy", "mention"),       # the negated one drops out
    ("They are not just happy, they are also sad.", None, "several: happy, sad"),  # "not just" does not negate
    ("HAPPINESS shows in the eyes.", "happy", "mention"),                  # case and synonym
    ("They seem unhappy.", None, "none named"),                            # a word containing a label is not it
])
def test_label_extraction_on_adversarial_free_text(text, label, how):
    from deemo_llama.data.labels import get_label_set
    from deemo_llama.evaluation.extract import extract_label

    ex = extract_label(text, get_label_set("mer"))
    assert (ex.label, ex.how) == (label, how)


def test_multiword_labels_and_their_negation():
    from deemo_llama.data.labels import get_label_set
    from deemo_llama.evaluation.extract import extract_label

    bah = get_label_set("bah")
    assert extract_label("Emotion: not ambivalent.", bah).label == "not ambivalent"
    assert extract_label("The speaker is not hesitant.", bah).label == "not ambivalent"
    assert extract_label("The speaker sounds hesitant.", bah).label == "ambivalent"


# -- the runner and its store ---------------------------------------------------------------------------
def test_run_scores_every_item_once_and_reports(tmp_path):
    from deemo_llama.evaluation.runner import run

    rows = write_rows(tmp_path / "rows.jsonl", 24)
    be = ScriptedBackend(_truth(rows))
    s = run(tmp_path / "rows.jsonl", "recognition", tmp_path / "run", be, progress=False)
    assert (s.asked, s.done, s.errors) == (24, 24, 0) and sorted(be.asked) == sorted(_truth(rows))
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    right = sum(planted_label(r["id"], r["label"]) == r["label"] for r in rows)
    m = rep["metrics"]
    assert m["accuracy"]["value"] == pytest.approx(right / 24) and m["accuracy"]["low"] <= m["accuracy"]["value"] <= m["accuracy"]["high"]
    assert m["parsed_from"] == {"scores": 24} and m["unparsed"] == 0
    assert m["verdicts_corrected"] == pytest.approx(sum(corrected(r["id"]) for r in rows) / 24) and 0 < m["verdicts_corrected"] < 1
    assert sum(map(sum, m["confusion"])) == 24 and set(m["per_class"]) == set(MER)
    assert set(m["fairness"]) == {"gender"} and set(m["fairness"]["gender"]["per_group"]) == {"f", "m"}
    assert sum(d["n"] for d in m["fairness"]["gender"]["per_group"].values()) == 24
    html = (tmp_path / "run" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "http://" not in html and "https://" not in html  # self-contained
    md = (tmp_path / "run" / "report.md").read_text()
    assert "Confusion (rows true" in md and "Fairness across `gender`" in md
    # a second start asks nothing
    again = ScriptedBackend(_truth(rows))
    assert run(tmp_path / "rows.jsonl", "recognition", tmp_path / "run", again, progress=False).asked == 0 and again.asked == []


def test_text_only_replies_are_read_by_extraction(tmp_path):
    from deemo_llama.evaluation.runner import run

    rows = write_rows(tmp_path / "rows.jsonl", 12, groups=None)
    run(tmp_path / "rows.jsonl", "recognition", tmp_path / "run", ScriptedBackend(_truth(rows), mode="text"), progress=False)
    m = json.loads((tmp_path / "run" / "report.json").read_text())["metrics"]
    right = sum(planted_label(r["id"], r["label"]) == r["label"] for r in rows)
    assert m["parsed_from"] == {"mention": 12} and m["accuracy"]["value"] == pytest.approx(right / 12)
    assert m["fairness"] == {}  # no demographics in the rows: no fairness section (never inferred)
    assert m["verdicts_corrected"] is None  # a text-only system does not report its corrections


def test_a_run_killed_with_sigkill_resumes_without_loss_or_duplicates(tmp_path):
    write_rows(tmp_path / "rows.jsonl", 30)
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, str(HERE / "eval_fixtures.py"), str(tmp_path / "rows.jsonl")]
    proc = subprocess.Popen([*cmd, str(tmp_path / "killed"), "0.15"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = tmp_path / "killed" / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not results.exists() or results.read_text().count("\n") < 8):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = results.read_text().count("\n")
    assert 8 <= before < 30, before  # killed half way
    with open(results, "a") as f:
        f.write('{"id": "c0')  # and as if killed mid-line: a torn last line
    out = subprocess.run([*cmd, str(tmp_path / "killed"), "0"], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == {"asked": 30 - before, "done": 30}
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert len(lines) == 30 and len({x["id"] for x in lines}) == 30  # nothing lost, no duplicates, the torn line cut
    subprocess.run([*cmd, str(tmp_path / "whole"), "0"], env=env, capture_output=True, check=True)
    a, b = (json.loads((tmp_path / d / "report.json").read_text())["metrics"] for d in ("killed", "whole"))
    assert a == b  # the resumed run's numbers equal the uninterrupted run's


def test_failed_items_are_recorded_and_asked_again(tmp_path):
    from deemo_llama.evaluation.runner import run

    rows = write_rows(tmp_path / "rows.jsonl", 6)

    class Flaky(ScriptedBackend):
        async def ask(self, item):
            if item.id.startswith("c001"):
                raise ConnectionError("backend went away")
            return await super().ask(item)

    s = run(tmp_path / "rows.jsonl", "recognition", tmp_path / "run", Flaky(_truth(rows)), progress=False)
    assert (s.done, s.errors) == (5, 1)
    assert json.loads((tmp_path / "run" / "report.json").read_text())["failed_items"] == ["c001/recognition"]
    s = run(tmp_path / "rows.jsonl", "recognition", tmp_path / "run", ScriptedBackend(_truth(rows)), progress=False)
    assert (s.asked, s.done, s.errors) == (1, 6, 0)
    assert json.loads((tmp_path / "run" / "report.json").read_text())["failed_items"] == []


def test_a_folder_holding_another_run_is_refused(tmp_path):
    from deemo_llama.errors import DeemoError
    from deemo_llama.evaluation.runner import run

    rows = write_rows(tmp_path / "rows.jsonl", 6)
    run(tmp_path / "rows.jsonl", "recognition", tmp_path / "run", ScriptedBackend(_truth(rows)), progress=False)
    with pytest.raises(DeemoError, match="holds another run"):
        run(tmp_path / "rows.jsonl", "recognition", tmp_path / "run", ScriptedBackend(_truth(rows), mode="text"), progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DeemoError, match="not empty"):
        run(tmp_path / "rows.jsonl", "recognition", tmp_path / "other", ScriptedBackend(_truth(rows)), progress=False)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_rescoring_reads_the_stored_replies_only(tmp_path, monkeypatch):
    from deemo_llama.evaluation.report import write_report
    from deemo_llama.evaluation.runner import run

    rows = write_rows(tmp_path / "rows.jsonl", 12)
    run(tmp_path / "rows.jsonl", "recognition", tmp_path / "run", ScriptedBackend(_truth(rows)), progress=False)
    first = json.loads((tmp_path / "run" / "report.json").read_text())["metrics"]
    # the stored line keeps the request, the raw reply, the parsed label and scores
    line = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    assert {"request", "reply", "prediction", "row"} <= set(line) and line["reply"]["scores"] and line["prediction"]["label"] in MER
    (tmp_path / "rows.jsonl").unlink()  # neither the data nor a model is needed to re-score
    assert write_report(tmp_path / "run")["metrics"] == first


def test_compare_two_runs(tmp_path):
    from deemo_llama.evaluation.compare import compare, plot
    from deemo_llama.evaluation.runner import run

    rows = write_rows(tmp_path / "rows.jsonl", 60)
    run(tmp_path / "rows.jsonl", "recognition", tmp_path / "good", ScriptedBackend(_truth(rows), accuracy_mod=10), progress=False)
    run(tmp_path / "rows.jsonl", "recognition", tmp_path / "bad", ScriptedBackend(_truth(rows), accuracy_mod=2), progress=False)
    res = compare(tmp_path / "good", tmp_path / "bad")
    acc = res["figures"]["accuracy"]
    assert res["items"] == 60 and acc["diff"] == pytest.approx(acc["a"] - acc["b"]) and acc["diff"] > 0.2
    assert acc["low"] > 0 and acc["p"] < 0.01
    same = compare(tmp_path / "good", tmp_path / "good")["figures"]["accuracy"]
    assert same["diff"] == 0 and same["p"] == 1.0
    assert plot(res, tmp_path / "cmp.png").stat().st_size > 1000


def test_reasoning_proxies(tmp_path):
    from deemo_llama.evaluation.runner import run

    rows = write_rows(tmp_path / "rows.jsonl", 6, kind="reasoning")
    run(tmp_path / "rows.jsonl", "reasoning", tmp_path / "run", ScriptedBackend(_truth(rows)), progress=False)
    recs = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    for r in recs:
        p = r["prediction"]
        # reply "Emotion: X. Reasoning: The face shows a smile." vs reference "...face shows a smile and the voice pitch is raised."
        assert p["cues"] == ["face", "smile"] and p["reference_cues"] == ["face", "pitch", "smile", "voice"]
        assert p["clue_set_f1"] == pytest.approx(2 * 2 / (2 + 4))
        assert p["label_set_f1"] == (1.0 if planted_label(r["id"], r["row"]["label"]) == r["row"]["label"] else 0.0)


def test_cli_errors_are_one_line(tmp_path):
    rows = write_rows(tmp_path / "rows.jsonl", 3)
    bad = dict(rows[0], label="ecstatic")
    (tmp_path / "bad.jsonl").write_text(json.dumps(rows[1]) + "\n" + json.dumps(bad) + "\n")
    deemo = [sys.executable, "-m", "deemo_llama.cli"]
    cases = [
        (["--data", str(tmp_path / "rows.jsonl"), "--task", "recognition", "--out", str(tmp_path / "o")], "give exactly one of --endpoint"),
        (["--data", str(tmp_path / "bad.jsonl"), "--task", "recognition", "--out", str(tmp_path / "o"), "--endpoint", "http://127.0.0.1:9/v1"], "bad.jsonl:2: c000/recognition: label 'ecstatic'"),
        (["--data", str(tmp_path / "rows.jsonl"), "--task", "poetry", "--out", str(tmp_path / "o"), "--endpoint", "http://127.0.0.1:9/v1"], "unknown task 'poetry'"),
        (["--data", str(tmp_path / "nope.jsonl"), "--task", "recognition", "--out", str(tmp_path / "o"), "--endpoint", "http://127.0.0.1:9/v1"], "no such file"),
        (["--data", str(tmp_path / "rows.jsonl"), "--task", "reasoning", "--out", str(tmp_path / "o"), "--endpoint", "http://127.0.0.1:9/v1"], "none of its 3 rows is a reasoning row"),
        (["--data", str(tmp_path / "rows.jsonl"), "--task", "recognition", "--out", str(tmp_path / "o"), "--endpoint", "127.0.0.1:9"], "not an http(s) URL"),
    ]
    for args, msg in cases:
        r = subprocess.run([*deemo, "eval", "run", *args], capture_output=True, text=True)
        assert r.returncode != 0 and msg in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([*deemo, "eval", "report", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0 and "not an evaluation run folder" in r.stderr


# -- the judge, against a real model server (the tiny HF model behind an OpenAI-compatible API) ---------
def test_judge_stores_raw_replies_and_counts_unparseable_ones(tmp_path, tiny_checkpoint):
    from hf_server import HFScript, make_hf_app
    from scripted_backend import ServerThread

    from deemo_llama.build import load_checkpoint
    from deemo_llama.evaluation.judge import JUDGE_VERSION, judge_run, parse_score
    from deemo_llama.evaluation.runner import run

    assert [parse_score(x) for x in ("7", "Score: 8/10", "eleven", "42 points", "  3.5 because")] == [7.0, 8.0, None, None, 3.5]
    rows = write_rows(tmp_path / "rows.jsonl", 3, kind="reasoning")
    run(tmp_path / "rows.jsonl", "reasoning", tmp_path / "run", ScriptedBackend(_truth(rows)), progress=False)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with ServerThread(make_hf_app(HFScript(*load_checkpoint(tiny_checkpoint))), port):
        n = judge_run(tmp_path / "run", f"http://127.0.0.1:{port}/v1", "deemo", progress=False)
        assert n == 6  # two metrics per item
        assert judge_run(tmp_path / "run", f"http://127.0.0.1:{port}/v1", "deemo", progress=False) == 0  # done: nothing re-asked
    log = [json.loads(x) for x in (tmp_path / "run" / "judge.jsonl").read_text().splitlines()]
    assert {x["version"] for x in log} == {JUDGE_VERSION} and all("Reference:" in x["prompt"] for x in log)
    j = json.loads((tmp_path / "run" / "report.json").read_text())["metrics"]["judge"]
    for metric in ("clue_overlap", "label_overlap"):
        parsed = [parse_score(x["reply"]) for x in log if x["metric"] == metric]
        assert j[f"{metric}_unparsed"] == sum(p is None for p in parsed)  # the random tiny model mostly rambles
        if metric in j:
            assert j[metric]["value"] == pytest.approx(sum(p for p in parsed if p is not None) / sum(p is not None for p in parsed))


def test_ambivalence_and_valence_arousal_tasks(tmp_path):
    """BAH rows: macro-F1 / AP from P(ambivalent); valence rows (MER's -5..5): from the circumplex
    position of the predicted distribution (happy +0.8 -> +4.0 on MER's scale, sad -0.7 -> -3.5)."""
    from deemo_llama.evaluation.runner import run

    rows = write_rows(tmp_path / "rows.jsonl", 8, groups=None)
    bah = ["not ambivalent", "ambivalent"]
    for i, r in enumerate(rows):
        r["label_set"] = {"name": "bah", "labels": bah}
        r["label"] = bah[i % 2]
        r["messages"][-1]["content"][0]["text"] = f"Emotion: {r['label']}."
    (tmp_path / "bah.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    class Always(ScriptedBackend):  # P(ambivalent) 0.9 on the ambivalent rows, 0.3 on the others
        async def ask(self, item):
            from deemo_llama.evaluation.tasks import Reply

            p = 0.9 if self.truth[item.id] == "ambivalent" else 0.3
            return Reply("", None, {"not ambivalent": 1 - p, "ambivalent": p})

    run(tmp_path / "bah.jsonl", "ambivalence", tmp_path / "bah", Always(_truth(rows)), progress=False)
    m = json.loads((tmp_path / "bah" / "report.json").read_text())["metrics"]
    assert m["bah"] == {"macro_f1": 1.0, "ap_positive": 1.0} and m["accuracy"]["value"] == 1.0

    rows = write_rows(tmp_path / "va.jsonl", 4, groups=None)
    for r, (label, v) in zip(rows, [("happy", 4.0), ("sad", -3.5), ("happy", 3.0), ("sad", -2.0)]):
        r["label"], r["valence"] = label, v
        r["messages"][-1]["content"][0]["text"] = f"Emotion: {label}."
    (tmp_path / "va.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run(tmp_path / "va.jsonl", "valence_arousal", tmp_path / "va", ScriptedBackend(_truth(rows), accuracy_mod=10**9), progress=False)
    m = json.loads((tmp_path / "va" / "report.json").read_text())["metrics"]["valence"]
    # predictions are all right (one-hot-ish 0.6 / 0.08 x 5 distributions): E[valence] per label, on -5..5
    recs = [json.loads(x) for x in (tmp_path / "va" / "results.jsonl").read_text().splitlines()]
    for r in recs:
        sign = 1 if r["row"]["label"] == "happy" else -1
        assert sign * r["prediction"]["valence01"] > 0.2
    assert m["scale"] == "mer" and m["high_low_accuracy"] == 1.0 and m["ccc"]["value"] > 0.5
    assert "Valence / arousal" in (tmp_path / "va" / "report.md").read_text()


def test_the_eval_notebook_reproduces_a_runs_report(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    from deemo_llama.evaluation.runner import run

    rows = write_rows(tmp_path / "rows.jsonl", 12)
    run(tmp_path / "rows.jsonl", "recognition", tmp_path / "run", ScriptedBackend(_truth(rows)), progress=False)
    monkeypatch.setenv("DEEMO_EVAL_RUN", str(tmp_path / "run"))
    path = HERE.parent / "notebooks" / "eval_report.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "same figures as the stored report.json: True" in text and "plots: confusion, per_class_recall, fairness_gender" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3


def test_spotting_task_counts_megc_matches(tmp_path):
    """Annotated micro-expressions vs the face expert's spotted ones (stored with each reply)."""
    from deemo_llama.evaluation.runner import run
    from deemo_llama.evaluation.tasks import Reply

    rows = write_rows(tmp_path / "rows.jsonl", 3, groups=None)
    rows[0]["micro_expressions"] = [{"onset_s": 1.0, "offset_s": 1.4}, {"onset_s": 3.0, "offset_s": 3.3}]
    rows[1]["micro_expressions"] = []  # annotated: none
    rows[2]["micro_expressions"] = None  # not annotated: not a spotting row
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spotted = {rows[0]["id"]: [[1.05, 1.45], [2.0, 2.2]], rows[1]["id"]: [[0.5, 0.7]]}

    class Face(ScriptedBackend):
        async def ask(self, item):
            r = await super().ask(item)
            return Reply(r.text, r.label, r.scores, {"findings": [], "transcript": "", "spotted": spotted[item.id]})

    run(tmp_path / "rows.jsonl", "spotting", tmp_path / "run", Face(_truth(rows), accuracy_mod=10**9), progress=False)
    m = json.loads((tmp_path / "run" / "report.json").read_text())["metrics"]
    # clip 0: (1.05, 1.45) matches (1.0, 1.4) at IoU 0.35/0.45 = 0.78; (2.0, 2.2) FP; (3.0, 3.3) missed; clip 1: FP
    assert m["n"] == 2 and {k: m["spotting"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 2, "fn": 1}
    assert m["spotting"]["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert m["strs"]["recognition_f1"] == 1.0 and m["strs"]["strs"] == pytest.approx(m["spotting"]["f1"])


def test_endpoint_backend_retries_429_and_5xx_then_answers_in_text(tmp_path):
    """A plain OpenAI-compatible server (no deemo extension) that answers 429 (with Retry-After),
    then 503, then the answer: every item ends answered, the label extracted from the text."""
    import socket

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from scripted_backend import ServerThread

    from deemo_llama.evaluation.runner import EndpointBackend, run

    rows = write_rows(tmp_path / "rows.jsonl", 3, groups=None)
    truth = _truth(rows)
    calls: dict[str, int] = {}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        assert body["temperature"] == 0 and body["seed"] == 0 and "deemo" not in body  # --plain: no extension
        q = body["messages"][0]["content"][-1]["text"]
        calls[q] = calls.get(q, 0) + 1
        n = sum(calls.values())
        if n % 3 == 1:
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0"})
        if n % 3 == 2:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        label = MER[n // 3 % len(MER)]
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": f"The person seems {label}."}}]}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with ServerThread(app, port):
        s = run(tmp_path / "rows.jsonl", "recognition", tmp_path / "run", EndpointBackend(f"http://127.0.0.1:{port}/v1", "m", concurrency=1, retries=3, deemo_extension=False), progress=False)
    assert (s.done, s.errors) == (3, 0) and sum(calls.values()) == 9
    m = json.loads((tmp_path / "run" / "report.json").read_text())["metrics"]
    assert m["parsed_from"] == {"mention": 3} and m["unparsed"] == 0
    assert len(truth) == 3


def test_compare_counts_a_judge_score_of_zero():
    """A judge score of 0 is a score (it once counted as missing, so [0, 10] averaged 10)."""
    from deemo_llama.evaluation.compare import _judge_mean

    recs = [{"judge": {"clue_overlap": {"score": 0}}}, {"judge": {"clue_overlap": {"score": 10}}}, {"judge": {"clue_overlap": {"score": None, "raw": "n/a"}}}, {}]
    assert _judge_mean(recs, "clue_overlap") == 5.0
    assert np.isnan(_judge_mean(recs, "label_overlap"))
