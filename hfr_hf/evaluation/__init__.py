"""Evaluation toolkit: verification and identification metrics, protocols, bob-compatible score files, plots.

One concept per module: `verification` (ROC, AUC, EER, TAR@FAR, thresholds, bootstrap), `identification`
(rank-k, CMC), `open_set` (DIR at FPIR, the DIR–FPIR curve), `protocols` (pair lists and gallery/probe CSVs with
folds), `score_files` (bob's four-column and CSV formats), `plots` (ROC, DET, CMC, DIR–FPIR as PNG), `runner` (a
protocol run from embeddings to a report), `real_thermal` (PUJ-T360 / PUJ-FONE measures on the people kept for
measuring), `realism` (how well real target faces can be told from rendered ones: cross-validated AUC, Fréchet
distance).
Scores follow bob's convention: higher = more similar, accept when score >= threshold.
"""

from .identification import (
    cmc,
    identification_metrics,
    identification_ranks,
    identity_scores,
    probe_gallery_scores,
    rank_k,
)
from .open_set import DEFAULT_FPIRS, OpenSetScores, dir_at_fpir, dir_fpir_curve, open_set_metrics, open_set_scores
from .plots import plot_cmc, plot_det, plot_dir, plot_roc
from .protocols import (
    IdentificationProtocol,
    VerificationProtocol,
    check_files,
    read_protocol,
    write_identification_protocol,
    write_verification_protocol,
)
from .runner import EmbeddingCache, EvaluationResult, evaluate_protocol, resolve_images
from .score_files import Scores, read_scores, write_scores
from .verification import (
    DEFAULT_FARS,
    VerificationSummary,
    all_pairs_scores,
    bootstrap_ci,
    eer,
    eer_threshold,
    far_frr,
    fnmr_at_fmr,
    mean_std,
    roc,
    roc_auc,
    tar_at_far,
    threshold_at_far,
    verification_metrics,
    verification_summary,
)

__all__ = [
    "identity_scores",
    "plot_dir",
    "open_set_scores",
    "open_set_metrics",
    "dir_fpir_curve",
    "dir_at_fpir",
    "OpenSetScores",
    "DEFAULT_FPIRS",
    "DEFAULT_FARS",
    "EmbeddingCache",
    "EvaluationResult",
    "IdentificationProtocol",
    "Scores",
    "VerificationProtocol",
    "VerificationSummary",
    "all_pairs_scores",
    "bootstrap_ci",
    "check_files",
    "cmc",
    "eer",
    "eer_threshold",
    "evaluate_protocol",
    "far_frr",
    "fnmr_at_fmr",
    "identification_metrics",
    "identification_ranks",
    "mean_std",
    "plot_cmc",
    "plot_det",
    "plot_roc",
    "probe_gallery_scores",
    "rank_k",
    "read_protocol",
    "read_scores",
    "resolve_images",
    "roc",
    "roc_auc",
    "tar_at_far",
    "threshold_at_far",
    "verification_metrics",
    "verification_summary",
    "write_identification_protocol",
    "write_scores",
    "write_verification_protocol",
]
