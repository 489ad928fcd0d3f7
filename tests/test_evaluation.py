import numpy as np
import pytest

from hfr_hf.evaluation import all_pairs_scores, roc_auc, verification_summary


def test_auc_cases_by_hand():
    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.1], [0.9]) == 0.0
    assert roc_auc([0.5, 0.5], [0.5]) == 0.5  # ties count one half
    assert roc_auc([0.9, 0.3], [0.5, 0.1]) == 0.75  # 3 of 4 pairs ordered


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(1, 1, 50).round(1), rng.normal(0, 1, 70).round(1)
    diff = genuine[:, None] - impostor[None, :]
    assert roc_auc(genuine, impostor) == pytest.approx(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auc_refuses_empty_or_nan():
    with pytest.raises(ValueError, match="0 impostor"):
        roc_auc([0.5], [])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([np.nan], [0.1])


def test_all_pairs_split():
    similarity = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    genuine, impostor = all_pairs_scores(similarity, ["a", "a", "b"])
    assert genuine.tolist() == [0.9] and sorted(impostor.tolist()) == [0.1, 0.2]
    summary = verification_summary(genuine, impostor)
    assert summary.auc == 1.0 and summary.impostor_pairs == 2
