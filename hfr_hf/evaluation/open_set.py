"""Open-set identification: detection and identification rate (DIR) at a false positive identification rate
(FPIR), and the DIR–FPIR curve.

Some probes belong to nobody in the gallery ("non-enrolled"). Following bob.measure
(`detection_identification_rate`, `false_alarm_rate`, and the curve `bob bio dir` plots) and Li & Jain's
*Handbook of Face Recognition* ch. 14.1, with identity scores fused over each person's images (max, as in
`identification`) and a probe accepted when its score `>= threshold`:

    FPIR(t) = #{non-enrolled probes whose best identity score >= t} / #non-enrolled
    DIR(t, k) = #{enrolled probes whose true identity scores >= t and has fewer than k other identities
                scoring >= it} / #enrolled

The threshold for a target FPIR is `threshold_at_far` over the best scores of the non-enrolled probes (bob's
`far_threshold`), and the curve is read at bob's `log_values()`: 10^(i/4), i = -16..0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .identification import identity_scores
from .verification import threshold_at_far

__all__ = ["DEFAULT_FPIRS", "OpenSetScores", "dir_at_fpir", "dir_fpir_curve", "open_set_metrics", "open_set_scores"]

DEFAULT_FPIRS = tuple(10 ** (i / 4) for i in range(-16, 0)) + (1.0,)  # bob.measure.plot.log_values()


class OpenSetScores:
    """Per probe the numbers open-set rates need: for enrolled probes the true identity's fused score and how many
    other identities score at least as high; for non-enrolled probes the best identity score."""

    def __init__(self, true: np.ndarray, above: np.ndarray, stranger_best: np.ndarray):
        self.true, self.above, self.stranger_best = true, above, stranger_best

    def fpir(self, threshold: float) -> float:
        return float(np.mean(self.stranger_best >= threshold))

    def dir(self, threshold: float, rank: int = 1) -> float:
        return float(np.mean((self.true >= threshold) & (self.above < rank)))

    def threshold(self, fpir: float) -> float:
        """The lowest threshold whose FPIR is at most `fpir`."""
        return threshold_at_far(self.stranger_best, fpir)


def open_set_scores(similarity, probe_ids: Sequence, gallery_ids: Sequence) -> OpenSetScores:
    """`OpenSetScores` from a (n_probe, n_gallery) similarity matrix; a probe whose identity is not among
    `gallery_ids` is non-enrolled."""
    similarity = np.asarray(similarity, np.float64)
    if similarity.shape != (len(probe_ids), len(gallery_ids)) or similarity.size == 0:
        raise ValueError(
            f"similarity of shape {similarity.shape} does not match {len(probe_ids)} probes × {len(gallery_ids)} "
            "gallery images; open-set identification needs at least one of each."
        )
    if np.isnan(similarity).any():
        raise ValueError(f"Scores contain NaN ({int(np.isnan(similarity).sum())} of them); check the embeddings.")
    labels, scores = identity_scores(similarity, gallery_ids)
    index = {label: i for i, label in enumerate(labels.tolist())}
    enrolled = np.array([p in index for p in probe_ids], bool)
    if enrolled.all() or not enrolled.any():
        raise ValueError(
            f"Open-set identification needs both enrolled and non-enrolled probes, got {int(enrolled.sum())} enrolled "
            f"and {int((~enrolled).sum())} non-enrolled; add probes of people who are not in the gallery."
        )
    rows = np.flatnonzero(enrolled)
    true = scores[rows, [index[probe_ids[r]] for r in rows]]
    above = (scores[rows] >= true[:, None]).sum(axis=1) - 1  # bob counts ties against the probe
    return OpenSetScores(true, above, scores[~enrolled].max(axis=1))


def dir_at_fpir(similarity, probe_ids: Sequence, gallery_ids: Sequence, fpir: float, rank: int = 1) -> float:
    """DIR at rank `rank` at the threshold where at most a fraction `fpir` of non-enrolled probes is accepted."""
    scores = open_set_scores(similarity, probe_ids, gallery_ids)
    return scores.dir(scores.threshold(fpir), rank)


def dir_fpir_curve(
    similarity, probe_ids: Sequence, gallery_ids: Sequence, fpirs: Sequence[float] = DEFAULT_FPIRS, rank: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpirs, dirs, thresholds): DIR at each target FPIR, as `bob bio dir` plots it."""
    scores = open_set_scores(similarity, probe_ids, gallery_ids)
    thresholds = np.array([scores.threshold(f) for f in fpirs])
    return np.asarray(fpirs, float), np.array([scores.dir(t, rank) for t in thresholds]), thresholds


def open_set_metrics(similarity, probe_ids: Sequence, gallery_ids: Sequence, fpirs=(0.01, 0.1), rank: int = 1) -> dict:
    """Probe counts and, per target FPIR, the calibrated threshold, the FPIR it reaches and the DIR."""
    scores = open_set_scores(similarity, probe_ids, gallery_ids)
    at = {}
    for target in fpirs:
        threshold = scores.threshold(target)
        at[f"{target:g}"] = {"threshold": threshold, "fpir": scores.fpir(threshold), "dir": scores.dir(threshold, rank)}
    return {
        "enrolled_probes": int(scores.true.size),
        "non_enrolled_probes": int(scores.stranger_best.size),
        "at_fpir": at,
    }
