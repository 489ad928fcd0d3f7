"""Closed-set identification: ranks of the true identity, rank-k rates and the CMC curve.

A probe is compared with every gallery image; the score of a gallery identity is the highest score among
its images (max fusion). The rank of a probe is 1 + the number of other gallery identities whose score is
strictly higher than the true identity's, so ties count in the probe's favour, as in bob.measure's
`recognition_rate` and `cmc` (the true identity is found "when its score is greater than or equal to" all
others). Higher score = more similar.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "cmc",
    "identification_metrics",
    "identification_ranks",
    "identity_scores",
    "probe_gallery_scores",
    "rank_k",
]


def identity_scores(similarity: np.ndarray, gallery_ids: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores): the distinct gallery identities and each probe's score for each, the maximum over its images."""
    labels, inverse = np.unique(np.asarray(gallery_ids), return_inverse=True)
    scores = np.full((similarity.shape[0], labels.size), -np.inf)
    for j in range(labels.size):
        scores[:, j] = similarity[:, inverse == j].max(axis=1)
    return labels, scores


def identification_ranks(similarity, probe_ids: Sequence, gallery_ids: Sequence) -> np.ndarray:
    """(n_probe,) rank (1 = best) of each probe's true identity among the gallery identities, from a
    (n_probe, n_gallery) similarity matrix."""
    similarity = np.asarray(similarity, np.float64)
    if similarity.shape != (len(probe_ids), len(gallery_ids)):
        raise ValueError(
            f"similarity of shape {similarity.shape} does not match {len(probe_ids)} probes × "
            f"{len(gallery_ids)} gallery images."
        )
    if similarity.size == 0:
        raise ValueError("Identification needs at least one probe and one gallery image.")
    if np.isnan(similarity).any():
        raise ValueError(f"Scores contain NaN ({int(np.isnan(similarity).sum())} of them); check the embeddings.")
    labels, scores = identity_scores(similarity, gallery_ids)
    index = {label: i for i, label in enumerate(labels.tolist())}
    absent = sorted({str(p) for p in probe_ids if p not in index})
    if absent:
        raise ValueError(
            f"{len(absent)} probe identities are absent from the gallery ({', '.join(absent[:10])}"
            f"{', ...' if len(absent) > 10 else ''}); closed-set identification needs each in the gallery."
        )
    true = np.array([index[p] for p in probe_ids])
    true_scores = scores[np.arange(len(true)), true]
    return 1 + (scores > true_scores[:, None]).sum(axis=1)


def rank_k(ranks, k: int = 1) -> float:
    """Fraction of probes whose true identity is among the top k."""
    ranks = np.asarray(ranks)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    return float(np.mean(ranks <= k))


def cmc(ranks, max_rank: int | None = None) -> np.ndarray:
    """Cumulative match characteristic: entry k-1 is the rank-k identification rate, k = 1..max_rank
    (default: the worst rank observed)."""
    ranks = np.asarray(ranks)
    max_rank = int(max_rank or ranks.max())
    return np.array([np.mean(ranks <= k) for k in range(1, max_rank + 1)])


def probe_gallery_scores(similarity, probe_ids: Sequence, gallery_ids: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Genuine (same identity) and impostor scores of every probe × gallery-image comparison."""
    similarity = np.asarray(similarity, np.float64)
    same = np.asarray(probe_ids)[:, None] == np.asarray(gallery_ids)[None, :]
    return similarity[same], similarity[~same]


def identification_metrics(similarity, probe_ids: Sequence, gallery_ids: Sequence, ks=(1, 5, 10)) -> dict:
    """Probe and gallery counts, rank-k rates (keys "rank1", ...) and the CMC up to the gallery size."""
    ranks = identification_ranks(similarity, probe_ids, gallery_ids)
    identities = len(set(gallery_ids))
    return {
        "probes": len(probe_ids),
        "gallery_images": len(gallery_ids),
        "gallery_identities": identities,
        **{f"rank{k}": rank_k(ranks, k) for k in ks},
        "cmc": cmc(ranks, identities).tolist(),
    }
