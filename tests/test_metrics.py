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


# Three groups, two classes (rows true, columns predicted, each row normalised):
#   A: true x x y y, pred x x y y -> CM [[1, 0], [0, 1]],      P(pred) x .50 y .50
#   B: true x x y y, pred x y y y -> CM [[.5, .5], [0, 1]],    P(pred) x .25 y .75
#   C: true x x x y, pred x x y x -> CM [[2/3, 1/3], [1, 0]],  P(pred) x .75 y .25
FAIR = dict(
    y_true=list("xxyy" "xxyy" "xxxy"),
    y_pred=list("xxyy" "xyyy" "xxyx"),
    groups=list("AAAA" "BBBB" "CCCC"),
)


def test_confusion_and_per_class():
    cm = M.confusion(FAIR["y_true"], FAIR["y_pred"], ["x", "y"])
    assert cm.tolist() == [[5, 2], [1, 4]]  # x: A 2/2, B 1/2, C 2/3 right; y: A 2/2, B 2/2, C 0/1
    rep = M.per_class(FAIR["y_true"], FAIR["y_pred"], ["x", "y"])
    assert rep["x"]["recall"] == pytest.approx(5 / 7) and rep["y"]["precision"] == pytest.approx(4 / 6)
    assert rep["x"]["support"] == 7 and rep["x"]["predicted"] == pytest.approx(6 / 12)
    assert M.confusion(["x"], ["unparsed"], ["x", "y"]).sum() == 0  # an unparseable reply is in no column


def test_fairness_formulas():
    out = M.fairness(labels=["x", "y"], **FAIR)
    # EqOpp: recall x (1, .5, 2/3) spread .5; recall y (1, 1, 0) spread 1 -> .75
    assert out["eqopp"] == pytest.approx(0.75)
    # TTEqOdds: cells [0,0] (1, .5, 2/3) .5; [0,1] (0, .5, 1/3) .5; [1,0] (0, 0, 1) 1; [1,1] (1, 1, 0) 1 -> .75
    assert out["tteqodds"] == pytest.approx(0.75)
    # DemPar: P(pred=x) (.5, .25, .75) .5; P(pred=y) (.5, .75, .25) .5 -> .5
    assert out["dempar"] == pytest.approx(0.5)
    # Overall Disparity: x: (0 + .5 + 1/3) / 2 = 5/12; y: (0 + 0 + 1) / 2 = 1/2 -> 11/24
    assert out["overall_disparity"] == pytest.approx(11 / 24)
    same = M.fairness(["x", "y"] * 2, ["x", "y"] * 2, ["A", "A", "B", "B"], ["x", "y"])
    assert same == {"eqopp": 0.0, "tteqodds": 0.0, "dempar": 0.0, "overall_disparity": 0.0}
    with pytest.raises(ValueError, match="at least 2 groups"):
        M.fairness(["x"], ["x"], ["A"], ["x", "y"])


def test_fairness_skips_a_class_one_group_lacks():
    # group B has no y rows: class y enters no spread (one group), class x does: recall 1 vs .5
    out = M.fairness(list("xyxx"), list("xyxy"), list("AABB"), ["x", "y"])
    assert out["eqopp"] == pytest.approx(0.5)
    assert out["overall_disparity"] == pytest.approx(0.5)


def test_dataset_bias():
    out = M.dataset_bias(list("xxxy"), list("AAAB"))
    # shares .75/.25: entropy .5623 nats / ln 2 = .8113 -> representational .1887; labels split by group -> V = 1
    assert out["representational"] == pytest.approx(1 - 0.8112781, abs=1e-6)
    assert out["stereotypical"] == pytest.approx(1.0)
    assert out["groups"] == {"A": 3, "B": 1} and out["label_given_group"]["A"] == {"x": 1.0, "y": 0.0}
    fair = M.dataset_bias(list("xyxyxy"), list("AAAABB"))
    assert fair["stereotypical"] == pytest.approx(0.0) and fair["representational"] > 0


def test_bootstrap_intervals():
    right = (__import__("numpy").arange(100) % 2 == 0).astype(float)  # 50 of 100 right
    point, lo, hi = M.bootstrap_ci(lambda ix: right[ix].mean(), 100, seed=0)
    assert point == 0.5 and 0.38 < lo < 0.5 < hi < 0.62  # binomial SE 0.05: about +-0.1
    assert M.bootstrap_ci(lambda ix: 1.0, 10) == (1.0, 1.0, 1.0)
    a = lambda ix: 1.0  # noqa: E731
    b = lambda ix: right[ix].mean()  # noqa: E731
    out = M.paired_bootstrap(a, b, 100)
    assert out["diff"] == 0.5 and out["p"] == 0.0 and out["low"] > 0.3
    assert M.paired_bootstrap(b, b, 100)["p"] == 1.0
