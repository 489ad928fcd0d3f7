"""Biometric verification metrics for `evaluate`: AUC, EER and TAR at fixed FAR from similarity scores.

Scores follow bob's convention (higher = more similar, accept when score >= threshold); references are 1
for genuine (same person) and 0 for impostor pairs. The figures come from `hfr_hf.evaluation`, so they
are the same as those of `hfr-hf evaluate`.
"""

import datasets
import evaluate

from hfr_hf.evaluation import DEFAULT_FARS, verification_metrics

_DESCRIPTION = """
Face verification metrics under the conventions of Idiap's bob toolkit: area under the ROC curve, equal
error rate (the piecewise-linear ROC crossed with FAR = FRR), and the true accept rate (verification rate)
at false accept rates 1e-1 ... 1e-4 with the thresholds that reach them.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): similarity scores (e.g. cosine), higher = more similar.
    references (`list` of `int`): 1 for a genuine pair (same person), 0 for an impostor pair.
    fars (`list` of `float`, optional): false accept rates at which to report TAR; default 1e-1 ... 1e-4.
    bootstrap (`int`, optional): resamples for 95 % confidence intervals of AUC, EER and TAR (default 0: none).
Returns:
    auc, eer, eer_threshold, tar@far=<far> and threshold@far=<far> for each far, genuine_pairs, impostor_pairs
    (and ci when bootstrap > 0).
Examples:
    >>> metric = evaluate.load(hfr_hf.metrics.HFR_VERIFICATION)
    >>> metric.compute(predictions=[0.9, 0.8, 0.3, 0.1], references=[1, 1, 0, 0])["eer"]
    0.0
"""

_CITATION = """
@article{george2024edgeface,
  title={EdgeFace: Efficient Face Recognition Model for Edge Devices},
  author={George, Anjith and Ecabert, Christophe and Otroshi Shahreza, Hatef and Kotwal, Ketan and Marcel, S{\\'e}bastien},
  journal={IEEE Transactions on Biometrics, Behavior, and Identity Science},
  year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HfrVerification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int32")}
            ),
            reference_urls=["https://gitlab.idiap.ch/bob/bob.measure"],
        )

    def _compute(self, predictions, references, fars=DEFAULT_FARS, bootstrap=0):
        labels = [int(r) for r in references]
        if set(labels) - {0, 1}:
            raise ValueError("references must be 1 (genuine pair) or 0 (impostor pair).")
        genuine = [s for s, r in zip(predictions, labels) if r == 1]
        impostor = [s for s, r in zip(predictions, labels) if r == 0]
        metrics = verification_metrics(genuine, impostor, fars, bootstrap=bootstrap)
        result = {k: metrics[k] for k in ("auc", "eer", "eer_threshold", "genuine_pairs", "impostor_pairs")}
        result.update({f"tar@far={k}": v for k, v in metrics["tar_at_far"].items()})
        result.update({f"threshold@far={k}": v for k, v in metrics["threshold_at_far"].items()})
        if "ci" in metrics:
            result["ci"] = metrics["ci"]
        return result
