"""Verification metrics and summaries (the full toolkit of protocols, score files and plots grows here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import mannwhitneyu

__all__ = ["VerificationSummary", "all_pairs_scores", "roc_auc", "verification_summary"]


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a genuine score beats an impostor score, ties counting
    one half (the Mann–Whitney U statistic over n_genuine · n_impostor)."""
    genuine, impostor = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError(
            f"AUC needs genuine and impostor scores, got {genuine.size} genuine and {impostor.size} impostor."
        )
    if np.isnan(genuine).any() or np.isnan(impostor).any():
        raise ValueError("Scores contain NaN; check the embeddings that produced them.")
    return float(mannwhitneyu(genuine, impostor, alternative="greater").statistic / (genuine.size * impostor.size))


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
    return VerificationSummary(
        genuine_pairs=int(genuine.size),
        impostor_pairs=int(impostor.size),
        genuine_mean=float(np.mean(genuine)),
        genuine_std=float(np.std(genuine)),
        impostor_mean=float(np.mean(impostor)),
        impostor_std=float(np.std(impostor)),
        auc=auc,
    )
