"""Tests of recrl_cli.evaluation.metrics against sklearn, torch and naive pair-loop references."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from recrl_cli.evaluation.metrics import auc, gauc, logloss, mtf_gauc, session_logloss, task_metrics


def _data(n: int, seed: int, n_groups: int = 40):
    """Scores rounded to 1 decimal (many ties), 0/1 labels, positive weights, unsorted sparse group ids."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, generator=g).round(decimals=1)
    labels = (torch.rand(n, generator=g) < 0.35).long()
    weights = torch.rand(n, generator=g) * 3 + 0.1
    groups = torch.randint(0, n_groups, (n,), generator=g) * 7919 - 12345  # sparse, negative ids too
    return scores, labels, weights, groups


def _naive_wauc(s, y, w) -> float:
    """O(n²) pair loop: Σ_pos Σ_neg ω_i ω_j [1(s_i>s_j) + ½ 1(s_i=s_j)] / (Σ_pos ω · Σ_neg ω)."""
    num = den = 0.0
    for i in range(len(s)):
        for j in range(len(s)):
            if y[i] == 1 and y[j] == 0:
                num += w[i] * w[j] * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
                den += w[i] * w[j]
    return num / den if den > 0 else float("nan")


# ---------------------------------------------------------------- AUC


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_ties(seed):
    s, y, w, _ = _data(3000, seed)
    assert auc(s, y) == pytest.approx(roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    ref = roc_auc_score(y.numpy(), s.numpy(), sample_weight=w.numpy())
    assert auc(s, y, w) == pytest.approx(ref, abs=1e-12)


def test_auc_matches_naive_pair_loop():
    s, y, w, _ = _data(60, 3)
    ones = [1.0] * 60
    assert auc(s, y) == pytest.approx(_naive_wauc(s.tolist(), y.tolist(), ones), abs=1e-12)
    assert auc(s, y, w) == pytest.approx(_naive_wauc(s.tolist(), y.tolist(), w.tolist()), abs=1e-12)


def test_auc_hand_computed_with_tie():
    # pos scores {0.8, 0.4}, neg {0.4, 0.1}: pairs (0.8>0.4)=1, (0.8>0.1)=1, (0.4=0.4)=½, (0.4>0.1)=1 -> 3.5/4
    s = torch.tensor([0.4, 0.8, 0.1, 0.4])
    y = torch.tensor([0, 1, 0, 1])
    assert auc(s, y) == 0.875
    # weight 3 on the tied negative: (3 + 1 + 1.5 + 1) / (2 · 4) = 6.5 / 8
    assert auc(s, y, torch.tensor([3.0, 1.0, 1.0, 1.0])) == pytest.approx(6.5 / 8)


def test_auc_accepts_bool_float_labels_and_int_scores():
    s = torch.tensor([3, 1, 2, 2])
    assert auc(s, torch.tensor([True, False, True, False])) == 0.875
    assert auc(s, torch.tensor([1.0, 0.0, 1.0, 0.0])) == 0.875


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0], []])
def test_auc_single_class_or_empty_is_nan(labels):
    s = torch.rand(len(labels))
    assert math.isnan(auc(s, torch.tensor(labels)))


def test_auc_zero_weight_class_and_nan_score_are_nan():
    s, y = torch.tensor([0.1, 0.9, 0.5]), torch.tensor([0, 1, 1])
    assert math.isnan(auc(s, y, torch.tensor([0.0, 1.0, 1.0])))
    assert math.isnan(auc(torch.tensor([0.1, float("nan"), 0.5]), y))


def test_auc_rejects_bad_input():
    s = torch.rand(4)
    with pytest.raises(ValueError, match="0 or 1"):
        auc(s, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="rows"):
        auc(s, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="1-D"):
        auc(s.reshape(2, 2), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="non-negative"):
        auc(s, torch.tensor([0, 1, 0, 1]), torch.tensor([1.0, -1.0, 1.0, 1.0]))


# ---------------------------------------------------------------- logloss


def test_logloss_matches_sklearn_away_from_the_clip():
    # sklearn clips p to [eps, 1-eps] (float64 eps ≈ 2.2e-16), torch floors the log at -100:
    # identical on (eps, 1-eps), so compare there.
    g = torch.Generator().manual_seed(0)
    p = torch.rand(5000, generator=g, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    y = (torch.rand(5000, generator=g) < p).long()
    assert logloss(p, y) == pytest.approx(log_loss(y.numpy(), p.numpy()), rel=1e-12)


def test_logloss_matches_torch_bce_including_exact_zero_and_one():
    p = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.3, 0.999999, 1e-30])
    y = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    ref = torch.nn.functional.binary_cross_entropy(p.double(), y.double()).item()
    assert logloss(p, y) == pytest.approx(ref, rel=1e-12)
    assert logloss(torch.tensor([0.0]), torch.tensor([1])) == 100.0  # the torch floor, not sklearn's 36.04
    # float32 input is computed in float64: matches torch's float64 BCE, not the float32 one's rounding.
    p32 = torch.rand(1000, generator=torch.Generator().manual_seed(1))
    y32 = (p32 > 0.5).float()
    assert logloss(p32, y32) == pytest.approx(
        torch.nn.functional.binary_cross_entropy(p32.double(), y32.double()).item(), rel=1e-13
    )


def test_logloss_soft_labels_nan_and_errors():
    assert logloss(torch.tensor([0.5]), torch.tensor([0.3])) == pytest.approx(math.log(2))
    assert math.isnan(logloss(torch.tensor([0.5, float("nan")]), torch.tensor([1, 0])))
    assert math.isnan(logloss(torch.zeros(0), torch.zeros(0)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        logloss(torch.tensor([1.2]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        logloss(torch.tensor([0.2]), torch.tensor([2]))


# ---------------------------------------------------------------- s-logloss


def test_session_logloss_matches_naive_loop_on_unsorted_sparse_ids():
    g = torch.Generator().manual_seed(5)
    p = torch.rand(2000, generator=g).clamp(0.01, 0.99)
    y = (torch.rand(2000, generator=g) < 0.3).long()
    sid = torch.randint(0, 300, (2000,), generator=g) * 1_000_003 - 7  # arbitrary int64, shuffled
    per_row = -(y * np.log(p.double().numpy()) + (1 - y.numpy()) * np.log1p(-p.double().numpy())).numpy()
    means = [per_row[(sid == k).numpy()].mean() for k in set(sid.tolist())]
    assert session_logloss(p, y, sid) == pytest.approx(float(np.mean(means)), rel=1e-12)
    # Different from the row mean whenever sessions differ in size: the test could tell them apart.
    assert session_logloss(p, y, sid) != pytest.approx(logloss(p, y), rel=1e-6)


def test_session_logloss_hand_computed_two_sessions():
    # session 9: one row, BCE = -log 0.5; session -3: two rows, BCE -log 0.8 and -log 0.8 (label 0, p 0.2)
    p = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    sid = torch.tensor([-3, 9, -3])
    expected = (math.log(2) + (-math.log(0.8))) / 2
    assert session_logloss(p, y, sid) == pytest.approx(expected, rel=1e-12)


def test_session_logloss_length_mismatch():
    with pytest.raises(ValueError, match="session_ids"):
        session_logloss(torch.rand(3), torch.ones(3), torch.zeros(2, dtype=torch.long))


# ---------------------------------------------------------------- GAUC


def _naive_gauc(s, y, grp, weighting):
    num = den = 0.0
    for gid in torch.unique(grp).tolist():
        m = (grp == gid).numpy()
        yy, ss = y.numpy()[m], s.numpy()[m]
        if yy.min() == yy.max():
            continue
        w = yy.sum() if weighting == "positives" else len(yy)
        num += w * roc_auc_score(yy, ss)
        den += w
    return num / den


@pytest.mark.parametrize("weighting", ["positives", "impressions"])
def test_gauc_matches_naive_per_group_sklearn(weighting):
    s, y, _, grp = _data(4000, 7, n_groups=120)
    # Add single-class groups that must be skipped.
    s = torch.cat([s, torch.tensor([0.1, 0.9, 0.3])])
    y = torch.cat([y, torch.tensor([1, 1, 0])])
    grp = torch.cat([grp, torch.tensor([10**12, 10**12, -(10**12)])])
    assert gauc(s, y, grp, weighting) == pytest.approx(_naive_gauc(s, y, grp, weighting), abs=1e-12)


def test_gauc_hand_computed():
    # user 5: pos 0.9 vs negs {0.9, 0.2} -> (½ + 1)/2 = 0.75, 1 positive, 3 rows
    # user 2: pos {0.1, 0.6} vs neg 0.5 -> 1/2 = 0.5, 2 positives, 3 rows
    # user 8: only positives -> skipped
    s = torch.tensor([0.9, 0.1, 0.9, 0.6, 0.2, 0.5, 0.3])
    y = torch.tensor([1, 1, 0, 1, 0, 0, 1])
    u = torch.tensor([5, 2, 5, 2, 5, 2, 8])
    assert gauc(s, y, u) == pytest.approx((1 * 0.75 + 2 * 0.5) / 3)
    assert gauc(s, y, u, weighting="impressions") == pytest.approx((3 * 0.75 + 3 * 0.5) / 6)


def test_gauc_no_two_class_group_and_bad_weighting():
    s, y, u = torch.rand(4), torch.tensor([1, 1, 0, 0]), torch.tensor([1, 1, 2, 2])
    assert math.isnan(gauc(s, y, u))
    with pytest.raises(ValueError, match="weighting"):
        gauc(s, y, u, weighting="users")


# ---------------------------------------------------------------- MTF-GAUC


def test_mtf_gauc_matches_naive_double_loop():
    s, y, w, grp = _data(600, 11, n_groups=15)
    num = den = 0.0
    for gid in torch.unique(grp).tolist():
        m = grp == gid
        if y[m].min() == y[m].max():
            continue
        n_u = int(m.sum())
        num += n_u * _naive_wauc(s[m].tolist(), y[m].tolist(), w[m].tolist())
        den += n_u
    assert mtf_gauc(s, y, w, grp) == pytest.approx(num / den, abs=1e-12)


def test_mtf_gauc_hand_computed():
    # user 1: pos (0.7, ω=2), negs (0.7, ω=1), (0.1, ω=3): (2·1·½ + 2·3·1) / (2 · 4) = 7/8, 3 rows
    # user 4: pos (0.2, ω=1), neg (0.6, ω=5): 0, 2 rows; user 6: single class, skipped
    s = torch.tensor([0.7, 0.2, 0.7, 0.6, 0.1, 0.4])
    y = torch.tensor([1, 1, 0, 0, 0, 0])
    w = torch.tensor([2.0, 1.0, 1.0, 5.0, 3.0, 9.0])
    u = torch.tensor([1, 4, 1, 4, 1, 6])
    assert mtf_gauc(s, y, w, u) == pytest.approx((3 * 7 / 8 + 2 * 0.0) / 5)
    # Unit weights reduce it to impression-weighted GAUC.
    assert mtf_gauc(s, y, torch.ones(6), u) == pytest.approx(gauc(s, y, u, weighting="impressions"))


# ---------------------------------------------------------------- task_metrics


def test_task_metrics_keys_and_values_match_single_task_functions():
    g = torch.Generator().manual_seed(3)
    probs = torch.rand(500, 2, generator=g).clamp(0.01, 0.99)
    labels = (torch.rand(500, 2, generator=g) < probs).long()
    sid = torch.randint(0, 60, (500,), generator=g)
    uid = sid // 3
    out = task_metrics(probs, labels, task_names=["ctr", "ctcvr"], session_ids=sid, user_ids=uid)
    kinds = ["auc", "logloss", "s_logloss", "gauc"]
    assert set(out) == {f"{t}/{k}" for t in ["ctr", "ctcvr", "mean"] for k in kinds}
    for k, t in enumerate(["ctr", "ctcvr"]):
        p, y = probs[:, k], labels[:, k]
        assert out[f"{t}/auc"] == auc(p, y)
        assert out[f"{t}/logloss"] == pytest.approx(logloss(p, y), rel=1e-14)
        assert out[f"{t}/s_logloss"] == pytest.approx(session_logloss(p, y, sid), rel=1e-14)
        assert out[f"{t}/gauc"] == gauc(p, y, uid)
    for kind in kinds:
        assert out[f"mean/{kind}"] == pytest.approx((out[f"ctr/{kind}"] + out[f"ctcvr/{kind}"]) / 2)
    no_users = task_metrics(probs, labels, task_names=["a", "b"], session_ids=sid)
    assert "a/gauc" not in no_users and "mean/gauc" not in no_users


def test_task_metrics_nan_task_makes_mean_nan():
    probs = torch.tensor([[0.2, 0.3], [0.7, 0.4]])
    labels = torch.tensor([[0, 1], [1, 1]])  # task b has one class
    out = task_metrics(probs, labels, task_names=["a", "b"], session_ids=torch.tensor([0, 0]))
    assert out["a/auc"] == 1.0 and math.isnan(out["b/auc"]) and math.isnan(out["mean/auc"])


@pytest.mark.parametrize(
    ("probs", "labels", "names", "sid"),
    [
        (torch.rand(4, 2), torch.ones(4, 3), ["a", "b"], torch.zeros(4)),
        (torch.rand(4), torch.ones(4), ["a"], torch.zeros(4)),
        (torch.rand(4, 2), torch.ones(4, 2), ["a"], torch.zeros(4)),
        (torch.rand(4, 2), torch.ones(4, 2), ["a", "a"], torch.zeros(4)),
        (torch.rand(4, 2), torch.ones(4, 2), ["a", "b"], torch.zeros(3)),
    ],
)
def test_task_metrics_invalid_input(probs, labels, names, sid):
    with pytest.raises(ValueError):
        task_metrics(probs, labels, task_names=names, session_ids=sid)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_metrics_on_cuda_match_cpu():
    s, y, w, grp = _data(5000, 13)
    cuda = [t.cuda() for t in (s, y, w, grp)]
    assert auc(cuda[0], cuda[1], cuda[2]) == pytest.approx(auc(s, y, w), abs=1e-12)
    assert gauc(cuda[0], cuda[1], cuda[3]) == pytest.approx(gauc(s, y, grp), abs=1e-12)
    assert mtf_gauc(*cuda) == pytest.approx(mtf_gauc(s, y, w, grp), abs=1e-12)
    p = s.clamp(0.05, 0.95)
    assert session_logloss(p.cuda(), cuda[1], cuda[3]) == pytest.approx(session_logloss(p, y, grp), rel=1e-12)
