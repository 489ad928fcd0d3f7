"""Verification metrics from genuine and impostor scores: ROC, AUC, EER, TAR at FAR, thresholds, bootstrap.

Conventions are those of Idiap's bob.measure: a higher score means more similar, and a pair is accepted
when `score >= threshold`. So at a threshold t

    FAR(t) = FMR(t) = #{impostor >= t} / #impostor        TAR(t) = VR(t) = #{genuine >= t} / #genuine
    FRR(t) = FNMR(t) = 1 - TAR(t)

The ROC is evaluated exactly at every distinct score (the points scikit-learn's `roc_curve` gives with
`drop_intermediate=False`), from a searchsorted count over the sorted scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import mannwhitneyu

__all__ = [
    "DEFAULT_FARS",
    "VerificationSummary",
    "all_pairs_scores",
    "bootstrap_ci",
    "eer",
    "eer_threshold",
    "far_frr",
    "fnmr_at_fmr",
    "mean_std",
    "roc",
    "roc_auc",
    "tar_at_far",
    "threshold_at_far",
    "verification_metrics",
    "verification_summary",
]

DEFAULT_FARS = (1e-1, 1e-2, 1e-3, 1e-4)


def _scores(genuine, impostor) -> tuple[np.ndarray, np.ndarray]:
    genuine = np.asarray(genuine, np.float64).ravel()
    impostor = np.asarray(impostor, np.float64).ravel()
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError(
            f"Verification metrics need genuine and impostor scores, got {genuine.size} genuine and "
            f"{impostor.size} impostor; check that the protocol has both same-person and different-person pairs."
        )
    bad = int(np.isnan(genuine).sum() + np.isnan(impostor).sum())
    if bad:
        raise ValueError(f"Scores contain NaN ({bad} of them); check the embeddings that produced them.")
    return genuine, impostor


def far_frr(genuine, impostor, threshold: float) -> tuple[float, float]:
    """(FAR, FRR) of accepting `score >= threshold`."""
    genuine, impostor = _scores(genuine, impostor)
    return float(np.mean(impostor >= threshold)), float(np.mean(genuine < threshold))


def roc(genuine, impostor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds) at every distinct score, thresholds decreasing, starting at +inf (far = tar = 0)
    and ending at the lowest score (far = tar = 1)."""
    genuine, impostor = _scores(genuine, impostor)
    thresholds = np.concatenate([[np.inf], np.unique(np.concatenate([genuine, impostor]))[::-1]])
    sorted_genuine, sorted_impostor = np.sort(genuine), np.sort(impostor)
    tar = (genuine.size - np.searchsorted(sorted_genuine, thresholds, side="left")) / genuine.size
    far = (impostor.size - np.searchsorted(sorted_impostor, thresholds, side="left")) / impostor.size
    return far, tar, thresholds


def roc_auc(genuine, impostor) -> float:
    """Area under the ROC curve: the probability that a genuine score beats an impostor score, ties counting
    one half (the Mann–Whitney U statistic over n_genuine · n_impostor; equal to the trapezoidal area)."""
    genuine, impostor = _scores(genuine, impostor)
    return float(mannwhitneyu(genuine, impostor, alternative="greater").statistic / (genuine.size * impostor.size))


def _eer_point(genuine, impostor) -> tuple[float, float]:
    far, tar, thresholds = roc(genuine, impostor)
    frr = 1.0 - tar
    i = int(np.argmax(far >= frr))  # first ROC point past the crossing; exists since the last has far=1, frr=0
    if far[i] == frr[i]:
        return float(far[i]), float(thresholds[i])
    gap_before, gap_after = frr[i - 1] - far[i - 1], far[i] - frr[i]  # both > 0
    p = gap_before / (gap_before + gap_after)
    return float(far[i - 1] + p * (far[i] - far[i - 1])), float(thresholds[i])


def eer(genuine, impostor) -> float:
    """Equal error rate.

    Interpolation rule: the ROC points (FAR, FRR) at every distinct score are joined by straight segments
    (the same piecewise-linear curve whose area is the AUC), and the EER is where that curve crosses
    FAR = FRR. When a ROC point lies exactly on the diagonal its value is returned; otherwise the segment
    between the last point with FAR < FRR and the first with FAR > FRR is intersected with the diagonal.
    So identical genuine and impostor scores give 0.5, perfectly separated scores give 0.0, and the value
    never depends on a threshold grid.
    """
    return _eer_point(genuine, impostor)[0]


def eer_threshold(genuine, impostor) -> float:
    """The score threshold of the first ROC point at or past the EER crossing (FAR ≥ FRR there)."""
    return _eer_point(genuine, impostor)[1]


def _impostor_rank(impostor: np.ndarray, far: float) -> int:
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"A false accept rate must lie in [0, 1], got {far}.")
    return int(np.floor(far * impostor.size + 1e-9))  # impostors allowed at or above the threshold


def threshold_at_far(impostor, far: float) -> float:
    """The lowest threshold whose FAR is at most `far` (bob's `far_threshold` rule, calibration of a
    deployment threshold): with m = ⌊far · n_impostor⌋ impostors allowed through, the threshold sits just
    above the (m+1)-th highest impostor score. When the target is below 1/n_impostor that is just above the
    highest impostor (FAR 0); when every impostor may pass it is -inf."""
    impostor = np.asarray(impostor, np.float64).ravel()
    _scores([0.0], impostor)
    m = _impostor_rank(impostor, far)
    if m >= impostor.size:
        return -np.inf
    return float(np.nextafter(np.sort(impostor)[::-1][m], np.inf))


def tar_at_far(genuine, impostor, far: float) -> float:
    """True accept rate (verification rate) at the threshold `threshold_at_far(impostor, far)`: the best TAR
    whose FAR does not exceed `far` (no interpolation between ROC points)."""
    genuine, impostor = _scores(genuine, impostor)
    return float(np.mean(genuine >= threshold_at_far(impostor, far)))


def fnmr_at_fmr(genuine, impostor, fmr: float) -> float:
    """False non-match rate at a false match rate: 1 - TAR at FAR (ISO/IEC 19795 names)."""
    return 1.0 - tar_at_far(genuine, impostor, fmr)


def bootstrap_ci(
    genuine,
    impostor,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(genuine, impostor)`, resampling genuine and impostor
    scores independently with replacement."""
    genuine, impostor = _scores(genuine, impostor)
    if n_resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"Bootstrap needs n_resamples ≥ 1 and 0 < level < 1, got {n_resamples} and {level}.")
    rng = np.random.default_rng(seed)
    values = [
        statistic(rng.choice(genuine, genuine.size), rng.choice(impostor, impostor.size)) for _ in range(n_resamples)
    ]
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _far_key(far: float) -> str:
    return f"{far:.0e}".replace("e-0", "e-")


def verification_metrics(
    genuine, impostor, fars: Sequence[float] = DEFAULT_FARS, bootstrap: int = 0, seed: int = 0
) -> dict:
    """All verification figures as a JSON-ready dict: pair counts, score means, AUC, EER (+ threshold),
    TAR and threshold at each FAR (keys like "1e-3"), FNMR at each FMR; with `bootstrap` resamples, 95 %
    confidence intervals of AUC, EER and TAR under "ci"."""
    genuine, impostor = _scores(genuine, impostor)
    eer_value, eer_at = _eer_point(genuine, impostor)
    result = {
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
        "genuine_mean": float(genuine.mean()),
        "impostor_mean": float(impostor.mean()),
        "auc": roc_auc(genuine, impostor),
        "eer": eer_value,
        "eer_threshold": eer_at,
        "tar_at_far": {_far_key(f): tar_at_far(genuine, impostor, f) for f in fars},
        "threshold_at_far": {_far_key(f): threshold_at_far(impostor, f) for f in fars},
        "fnmr_at_fmr": {_far_key(f): fnmr_at_fmr(genuine, impostor, f) for f in fars},
    }
    if bootstrap:
        result["ci"] = {
            "level": 0.95,
            "auc": bootstrap_ci(genuine, impostor, roc_auc, bootstrap, seed=seed),
            "eer": bootstrap_ci(genuine, impostor, eer, bootstrap, seed=seed),
            **{
                f"tar_at_far_{_far_key(f)}": bootstrap_ci(
                    genuine, impostor, lambda g, i, f=f: tar_at_far(g, i, f), bootstrap, seed=seed
                )
                for f in fars
            },
        }
    return result


def mean_std(values: Iterable[float]) -> dict:
    """{"mean", "std", "n"} over folds (population std, ddof=0, as in most HFR papers' "mean ± std")."""
    values = np.asarray(list(values), np.float64)
    if values.size == 0:
        raise ValueError("mean ± std needs at least one fold.")
    return {"mean": float(values.mean()), "std": float(values.std()), "n": int(values.size)}


def all_pairs_scores(similarity: np.ndarray, identities: list) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores of every unordered pair of a square similarity matrix."""
    labels = np.asarray(identities)
    if similarity.shape != (labels.size, labels.size):
        raise ValueError(f"similarity of shape {similarity.shape} does not match {labels.size} identities.")
    upper = np.triu(np.ones_like(similarity, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    return similarity[upper & same], similarity[upper & ~same]


@dataclass
class VerificationSummary:
    genuine_pairs: int
    impostor_pairs: int
    genuine_mean: float
    genuine_std: float
    impostor_mean: float
    impostor_std: float
    auc: float

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        return "\n".join(
            [
                f"{'':10} {'pairs':>8} {'mean cos':>9} {'std':>7}",
                f"{'genuine':10} {self.genuine_pairs:>8} {self.genuine_mean:>9.4f} {self.genuine_std:>7.4f}",
                f"{'impostor':10} {self.impostor_pairs:>8} {self.impostor_mean:>9.4f} {self.impostor_std:>7.4f}",
                f"AUC {self.auc:.4f}",
            ]
        )


def verification_summary(genuine: np.ndarray, impostor: np.ndarray) -> VerificationSummary:
    """Counts, mean ± std of genuine and impostor cosine scores, and the ROC AUC."""
    auc = roc_auc(genuine, impostor)
    genuine, impostor = np.asarray(genuine), np.asarray(impostor)
    return VerificationSummary(
        genuine_pairs=int(genuine.size),
        impostor_pairs=int(impostor.size),
        genuine_mean=float(np.mean(genuine)),
        genuine_std=float(np.std(genuine)),
        impostor_mean=float(np.mean(impostor)),
        impostor_std=float(np.std(impostor)),
        auc=auc,
    )
