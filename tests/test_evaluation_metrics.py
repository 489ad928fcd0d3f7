"""Verification and identification metrics: hand-computed cases and scikit-learn as an independent check."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from hfr_hf.evaluation import (
    bootstrap_ci,
    cmc,
    eer,
    far_frr,
    fnmr_at_fmr,
    identification_metrics,
    identification_ranks,
    mean_std,
    rank_k,
    roc,
    roc_auc,
    tar_at_far,
    threshold_at_far,
    verification_metrics,
)


def random_scores(seed, n_genuine=120, n_impostor=400, decimals=1):
    rng = np.random.default_rng(seed)
    return rng.normal(1.5, 1, n_genuine).round(decimals), rng.normal(0, 1, n_impostor).round(decimals)


def sklearn_roc(genuine, impostor):
    labels = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    return roc_curve(labels, np.r_[genuine, impostor], drop_intermediate=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_matches_sklearn(seed):
    genuine, impostor = random_scores(seed)  # rounded: many ties
    far, tar, thresholds = roc(genuine, impostor)
    sk_far, sk_tar, sk_thresholds = sklearn_roc(genuine, impostor)
    np.testing.assert_allclose(far, sk_far)
    np.testing.assert_allclose(tar, sk_tar)
    np.testing.assert_allclose(thresholds[1:], sk_thresholds[1:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn(seed):
    genuine, impostor = random_scores(seed)
    expected = roc_auc_score(np.r_[np.ones(len(genuine)), np.zeros(len(impostor))], np.r_[genuine, impostor])
    assert roc_auc(genuine, impostor) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_an_independent_crossing(seed):
    genuine, impostor = random_scores(seed)
    far, tar, _ = sklearn_roc(genuine, impostor)
    gap = (1 - tar) - far  # strictly decreasing along sklearn's curve
    position = np.interp(0.0, -gap, np.arange(gap.size))
    expected = np.interp(position, np.arange(far.size), far)
    assert eer(genuine, impostor) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("target", [0.1, 0.01, 0.005])
def test_tar_at_far_matches_the_best_sklearn_point(seed, target):
    genuine, impostor = random_scores(seed)
    far, tar, _ = sklearn_roc(genuine, impostor)
    assert tar_at_far(genuine, impostor, target) == pytest.approx(tar[far <= target].max())


def test_perfect_separation():
    genuine, impostor = [0.9, 0.8, 0.7], [0.1, 0.2, 0.3, 0.4]
    assert roc_auc(genuine, impostor) == 1.0
    assert eer(genuine, impostor) == 0.0
    assert tar_at_far(genuine, impostor, 1e-4) == 1.0
    assert fnmr_at_fmr(genuine, impostor, 1e-4) == 0.0


def test_identical_scores():
    genuine, impostor = np.full(5, 0.3), np.full(7, 0.3)
    assert roc_auc(genuine, impostor) == 0.5
    assert eer(genuine, impostor) == 0.5
    assert tar_at_far(genuine, impostor, 0.1) == 0.0  # only a threshold above everything keeps FAR ≤ 10 %


def test_eer_by_hand_interpolated():
    # ROC (FAR, FRR): inf (0, 1), 0.9 (0, .5), 0.85 (1/3, .5), 0.8 (1/3, 0) -> crossing at FAR = FRR = 1/3
    assert eer([0.9, 0.8], [0.85, 0.3, 0.1]) == pytest.approx(1 / 3)
    # ROC: inf (0, 1), 0.6 (.5, .5) lies on the diagonal
    assert eer([0.6, 0.4], [0.6, 0.2]) == 0.5
    # ROC: inf (0, 1), 0.8 (0, .5), 0.7 (1, .5): segment (0, .5)-(1, .5) crosses the diagonal at .5
    assert eer([0.8, 0.1], [0.7]) == pytest.approx(0.5)
    # ROC: inf (0,1), 0.9 (0, 2/3), 0.5 (1/2, 2/3), 0.4 (1/2, 1/3) -> FAR=FRR=1/2 at the vertical step
    assert eer([0.9, 0.4, 0.1], [0.5, 0.2]) == pytest.approx(0.5)


def test_tar_at_far_by_hand_with_ties():
    impostor = [0.1 * i for i in range(10)]  # 0.0 ... 0.9
    genuine = [0.95, 0.9, 0.85, 0.5]
    # FAR ≤ 10 %: one impostor (0.9) may pass, so the threshold sits just above 0.8
    assert threshold_at_far(impostor, 0.1) == pytest.approx(0.8) and threshold_at_far(impostor, 0.1) > 0.8
    assert tar_at_far(genuine, impostor, 0.1) == 0.75
    # FAR < 1/10: no impostor may pass; the genuine 0.9 ties the top impostor and is rejected with it
    assert tar_at_far(genuine, impostor, 0.05) == 0.25
    assert far_frr(genuine, impostor, threshold_at_far(impostor, 0.1)) == (0.1, 0.25)
    assert threshold_at_far(impostor, 1.0) == -np.inf


def test_verification_metrics_report():
    genuine, impostor = random_scores(3, decimals=3)
    metrics = verification_metrics(genuine, impostor, bootstrap=200)
    assert set(metrics["tar_at_far"]) == {"1e-1", "1e-2", "1e-3", "1e-4"}
    assert metrics["fnmr_at_fmr"]["1e-2"] == pytest.approx(1 - metrics["tar_at_far"]["1e-2"])
    low, high = metrics["ci"]["auc"]
    assert low <= metrics["auc"] <= high and high - low < 0.1
    assert metrics["ci"]["eer"][0] <= metrics["eer"] <= metrics["ci"]["eer"][1]


def test_bootstrap_of_constant_statistic_is_a_point():
    assert bootstrap_ci([1.0, 2.0], [0.0], lambda g, i: 0.25, n_resamples=20) == (0.25, 0.25)


def test_mean_std_over_folds():
    assert mean_std([0.9, 1.0]) == {"mean": pytest.approx(0.95), "std": pytest.approx(0.05), "n": 2}
    with pytest.raises(ValueError, match="at least one fold"):
        mean_std([])


@pytest.mark.parametrize(
    "genuine, impostor, message",
    [([0.5], [], "0 impostor"), ([], [0.5], "0 genuine"), ([0.5, np.nan], [0.1], "NaN")],
)
def test_verification_errors(genuine, impostor, message):
    with pytest.raises(ValueError, match=message):
        verification_metrics(genuine, impostor)


def test_ranks_by_hand():
    # gallery: two images of "a", one of "b", one of "c"; identity score = best image
    similarity = np.array(
        [
            [0.9, 0.1, 0.5, 0.2],  # a: 0.9 beats all -> rank 1
            [0.2, 0.3, 0.6, 0.4],  # a: 0.3 < b 0.6, c 0.4 -> rank 3
            [0.1, 0.7, 0.7, 0.0],  # b: ties a (0.7) -> rank 1 (ties count for the probe, as in bob)
            [0.5, 0.1, 0.6, 0.55],  # c: b 0.6 higher -> rank 2
        ]
    )
    ranks = identification_ranks(similarity, ["a", "a", "b", "c"], ["a", "a", "b", "c"])
    assert ranks.tolist() == [1, 3, 1, 2]
    assert rank_k(ranks, 1) == 0.5 and rank_k(ranks, 2) == 0.75 and rank_k(ranks, 3) == 1.0
    assert cmc(ranks).tolist() == [0.5, 0.75, 1.0]
    metrics = identification_metrics(similarity, ["a", "a", "b", "c"], ["a", "a", "b", "c"])
    assert metrics["rank1"] == 0.5 and metrics["gallery_identities"] == 3 and metrics["cmc"][-1] == 1.0


def test_rank_one_equals_argmax_on_random_scores():
    rng = np.random.default_rng(4)
    similarity = rng.normal(size=(50, 10))
    probes = rng.integers(0, 10, 50)
    ranks = identification_ranks(similarity, probes.tolist(), list(range(10)))
    assert rank_k(ranks, 1) == pytest.approx(np.mean(similarity.argmax(1) == probes))
    assert rank_k(ranks, 10) == 1.0


def test_identification_errors():
    with pytest.raises(ValueError, match="absent from the gallery"):
        identification_ranks(np.zeros((1, 2)), ["z"], ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        identification_ranks(np.array([[np.nan, 0.1]]), ["a"], ["a", "b"])
