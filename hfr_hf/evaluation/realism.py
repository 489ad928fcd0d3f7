"""How real a renderer looks to the face model: can real target-spectrum faces be told from rendered ones?

Two measures on the frozen model's embeddings of real and rendered faces:

- realism AUC: a logistic regression trained to tell real from rendered, scored by cross-validation (every
  embedding judged by a classifier that never saw it; given the people's identities, never saw the person either,
  so that it cannot tell the sets apart by who is in them); 0.5 = indistinguishable, 1 = always told apart;
- Fréchet distance between the two embedding distributions, each taken as a Gaussian (as FID does with Inception
  features): `‖μ_r − μ_g‖² + Tr(C_r + C_g − 2 (C_r C_g)^½)`; 0 for one distribution.

Both are evidence for judging a renderer change (`scripts/realism.py`), not a proof: a renderer can look real to
the model and still miss what matters for matching.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from .verification import roc_auc

__all__ = ["frechet_distance", "realism_auc", "realism_score"]


def _check(real: np.ndarray, rendered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    real, rendered = np.asarray(real, np.float64), np.asarray(rendered, np.float64)
    if real.ndim != 2 or rendered.ndim != 2 or real.shape[1] != rendered.shape[1]:
        raise ValueError(
            f"The realism score needs two (n, dim) sets of embeddings of one dim, got {real.shape} and "
            f"{rendered.shape}."
        )
    if min(len(real), len(rendered)) < 10:
        raise ValueError(
            f"The realism score needs at least 10 embeddings on each side, got {len(real)} real and "
            f"{len(rendered)} rendered; give it more faces."
        )
    return real, rendered


def frechet_distance(real: np.ndarray, rendered: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of (L2-normalised) embeddings."""
    real, rendered = _check(real, rendered)
    mu_r, mu_g = real.mean(0), rendered.mean(0)
    cov_r, cov_g = np.cov(real, rowvar=False), np.cov(rendered, rowvar=False)
    root = linalg.sqrtm(cov_r @ cov_g)
    root = root.real  # numerical noise gives a tiny imaginary part to a product of two PSD matrices
    return float(np.sum((mu_r - mu_g) ** 2) + np.trace(cov_r + cov_g - 2.0 * root))


def realism_auc(
    real: np.ndarray, rendered: np.ndarray, folds: int = 5, seed: int = 0, groups=None
) -> tuple[float, float]:
    """(mean, std over folds) cross-validated AUC of a logistic regression telling real (positive) from rendered
    embeddings; classes weighted to balance, folds stratified and seeded. `groups` (one identity per real row, then
    per rendered row): each person's embeddings all fall in one fold."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    except ImportError as error:
        raise ImportError(
            "The realism score uses scikit-learn; install it with `pip install hfr-hf[train]` (or scikit-learn)."
        ) from error
    real, rendered = _check(real, rendered)
    x = np.concatenate([real, rendered])
    y = np.concatenate([np.ones(len(real), bool), np.zeros(len(rendered), bool)])
    if groups is not None and len(groups) != len(x):
        raise ValueError(f"groups must name one identity per embedding ({len(x)}), got {len(groups)}.")
    splitter = (StratifiedKFold if groups is None else StratifiedGroupKFold)(folds, shuffle=True, random_state=seed)
    aucs = []
    for train, test in splitter.split(x, y, groups):
        classifier = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(x[train], y[train])
        score = classifier.decision_function(x[test])
        aucs.append(roc_auc(score[y[test]], score[~y[test]]))
    return float(np.mean(aucs)), float(np.std(aucs))


def realism_score(
    real: np.ndarray,
    rendered: np.ndarray,
    folds: int = 5,
    seed: int = 0,
    real_ids=None,
    rendered_ids=None,
    same_people: bool = False,
) -> dict:
    """`{"auc", "auc_std", "frechet", "real", "rendered"}` of two sets of embeddings (rows L2-normalised here);
    with `real_ids` and `rendered_ids` (the person of each row) the AUC's folds keep each person on one side.
    `same_people`: the two sets' ids name the same people (e.g. two real cameras), whose rows on both sides then
    share one fold, so that a classifier is never tested on a person it was trained on."""
    real, rendered = _check(real, rendered)
    real = real / np.linalg.norm(real, axis=1, keepdims=True)
    rendered = rendered / np.linalg.norm(rendered, axis=1, keepdims=True)
    groups = None
    if (real_ids is None) != (rendered_ids is None):
        raise ValueError("Give the identities of both sets (real_ids and rendered_ids) or of neither.")
    if real_ids is not None:
        # unless they are the same people, the two sets' people are told apart even when their names coincide
        sides = ("", "") if same_people else ("real/", "rendered/")
        groups = [f"{sides[0]}{i}" for i in real_ids] + [f"{sides[1]}{i}" for i in rendered_ids]
    auc, std = realism_auc(real, rendered, folds, seed, groups)
    return {
        "auc": auc,
        "auc_std": std,
        "frechet": frechet_distance(real, rendered),
        "real": len(real),
        "rendered": len(rendered),
    }
