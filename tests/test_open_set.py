"""Open-set identification metrics against a hand computation on hand-made scores."""

import numpy as np
import pytest

from hfr_hf.evaluation import DEFAULT_FPIRS, dir_at_fpir, dir_fpir_curve, open_set_metrics, open_set_scores, plot_dir

GALLERY = ["A", "A", "B", "C"]
PROBES = ["A", "B", "C", "X", "Y", "Z", "W"]  # X, Y, Z, W are nobody in the gallery
SIMILARITY = np.array(
    [
        [0.9, 0.5, 0.6, 0.1],  # A: fused A 0.9, best, by a margin
        [0.3, 0.7, 0.65, 0.2],  # B: fused A 0.7 beats B 0.65, so right only at rank 2
        [0.2, 0.1, 0.3, 0.4],  # C: right at rank 1, but only 0.4
        [0.5, 0.2, 0.1, 0.3],  # strangers' best scores: 0.5, 0.35, 0.45, 0.2
        [0.1, 0.35, 0.2, 0.2],
        [0.45, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.2],
    ]
)


def test_scores_by_hand():
    scores = open_set_scores(SIMILARITY, PROBES, GALLERY)
    np.testing.assert_allclose(scores.true, [0.9, 0.65, 0.4])
    np.testing.assert_array_equal(scores.above, [0, 1, 0])
    np.testing.assert_allclose(np.sort(scores.stranger_best), [0.2, 0.35, 0.45, 0.5])


@pytest.mark.parametrize(
    ("fpir", "rank", "expected"),
    [
        (0.1, 1, 1 / 3),  # no stranger may pass: threshold just above 0.5, only A (0.9) is detected
        (0.25, 1, 1 / 3),  # one of four strangers: just above 0.45; C (0.4) still below
        (0.5, 1, 2 / 3),  # two strangers: just above 0.35; C (0.4) now detected, B still wrong at rank 1
        (0.5, 2, 1.0),  # ... and at rank 2 B counts too
        (1.0, 1, 2 / 3),  # every stranger passes: the closed-set rank-1 rate
    ],
)
def test_dir_at_fpir_by_hand(fpir, rank, expected):
    assert dir_at_fpir(SIMILARITY, PROBES, GALLERY, fpir, rank) == pytest.approx(expected)


def test_calibrated_threshold_reaches_at_most_the_target():
    metrics = open_set_metrics(SIMILARITY, PROBES, GALLERY, fpirs=(0.25, 0.5))
    assert (metrics["enrolled_probes"], metrics["non_enrolled_probes"]) == (3, 4)
    assert metrics["at_fpir"]["0.25"]["fpir"] == 0.25 and metrics["at_fpir"]["0.5"]["fpir"] == 0.5
    assert 0.45 < metrics["at_fpir"]["0.25"]["threshold"] < 0.4500001


def test_curve_follows_bob_log_values_and_never_falls():
    fpirs, dirs, thresholds = dir_fpir_curve(SIMILARITY, PROBES, GALLERY)
    assert len(DEFAULT_FPIRS) == 17 and fpirs[0] == pytest.approx(1e-4) and fpirs[-1] == 1.0
    assert np.all(np.diff(dirs) >= 0) and np.all(np.diff(thresholds) <= 0)
    assert dirs[-1] == pytest.approx(2 / 3)


def test_needs_both_kinds_of_probe():
    with pytest.raises(ValueError, match="both enrolled and non-enrolled"):
        open_set_scores(SIMILARITY[:3], PROBES[:3], GALLERY)


def test_plot_dir(tmp_path):
    fpirs, dirs, _ = dir_fpir_curve(SIMILARITY, PROBES, GALLERY)
    path = plot_dir({"frozen": (fpirs, dirs), "adapted": (fpirs, np.minimum(1, dirs + 0.1))}, tmp_path / "dir.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
