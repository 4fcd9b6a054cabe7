"""One golden number per metric, computed by hand in the comments."""

from __future__ import annotations

import pytest

from deemo_llama import metrics as M


def test_uar_war_weighted_f1():
    y_true, y_pred = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 0, 2]
    assert M.uar(y_true, y_pred) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # 0.7222
    assert M.war(y_true, y_pred) == pytest.approx(4 / 6)
    # per class F1: c0 2/3 (P 2/3, R 2/3), c1 1/2, c2 1; weights 3, 2, 1 over 6
    assert M.weighted_f1(y_true, y_pred) == pytest.approx((3 * 2 / 3 + 2 * 0.5 + 1) / 6)


def test_iou():
    assert M.iou((0, 10), (0, 5)) == pytest.approx(0.5)
    assert M.iou((10, 20), (12, 22)) == pytest.approx(8 / 12)
    assert M.iou((0, 1), (2, 3)) == 0.0


def test_megc_spotting_f1():
    gt = {"v1": [(10, 20), (50, 60)], "v2": [(0, 10)]}
    pred = {"v1": [(12, 22), (30, 40)], "v2": [(0, 4)], "v3": [(5, 9)]}
    s = M.spotting_f1(gt, pred)
    # v1: (12,22) hits (10,20) at IoU 0.67, (30,40) is a FP, (50,60) missed; v2: IoU 0.4 < 0.5; v3: FP
    assert (s.tp, s.fp, s.fn) == (1, 3, 2)
    assert s.f1 == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))  # 0.2857
    assert M.spotting_f1({"v": [(0, 10)]}, {"v": [(0, 5)]}).tp == 1  # IoU exactly 0.5 counts


def test_one_prediction_matches_one_interval():
    s = M.spotting_f1({"v": [(0, 10), (0, 10)]}, {"v": [(0, 10)]})
    assert (s.tp, s.fp, s.fn) == (1, 0, 1)


def test_strs():
    gt = {"v1": [(10, 20, "happy"), (50, 60, "sad")]}
    pred = {"v1": [(11, 21, "happy"), (50, 58, "happy"), (80, 90, "sad")]}
    out = M.strs(gt, pred)
    # spotting: 2 TP, 1 FP, 0 FN -> F1 0.8; recognition over TPs: true [happy, sad], pred [happy, happy]
    # -> F1 happy 2/3, sad 0 -> macro 1/3; STRS = 0.8 / 3
    assert out["spotting_f1"] == pytest.approx(0.8)
    assert out["recognition_f1"] == pytest.approx(1 / 3)
    assert out["strs"] == pytest.approx(0.8 / 3)


def test_event_f1_matches_within_type():
    gt = [(0, 2, "self_manipulation"), (5, 8, "self_protection")]
    pred = [(0.2, 2, "self_manipulation"), (5, 8, "self_manipulation")]
    s = M.event_f1(gt, pred)
    assert (s.tp, s.fp, s.fn) == (1, 1, 1) and s.f1 == pytest.approx(0.5)


def test_bah_scores():
    out = M.bah_scores([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8])
    assert out["macro_f1"] == pytest.approx(0.5)
    assert out["ap_positive"] == pytest.approx((1 / 1 + 2 / 3) / 2)  # positives ranked 1st and 3rd


def test_binarize_and_subject_independent():
    assert M.binarize_ratings([4.9, 5, 9], "deap").tolist() == [0, 1, 1]
    assert M.binarize_ratings([2, 3, 5], "dreamer").tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="unknown rating scale"):
        M.binarize_ratings([1], "seed")
    out = M.subject_independent_scores([1, 0, 1, 1], [1, 1, 1, 0], subjects=["s1", "s1", "s2", "s2"], test_subjects=["s2"])
    assert out == {"accuracy": 0.5, "f1": pytest.approx(2 / 3), "n": 2}
