"""Evaluation reports → what a model card says: the protocol, a results table and the Hub's `model-index`.

Two report kinds are read:

- the adaptation experiment's `report.json` (`"kind": "xedgeface_experiment"`): frozen and adapted EdgeFace on one
  cross-spectral protocol (visible gallery vs NIR/thermal probes, and visible vs visible);
- `hfr-hf evaluate --report`'s JSON (`EvaluationResult.report`): one model on one protocol, mean over folds.

The model-index values are the report's floats, unrounded; the card's table rounds them for reading.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult

__all__ = ["EXPERIMENT_KIND", "EvaluationReport", "ReportError", "load_report"]

EXPERIMENT_KIND = "xedgeface_experiment"
# The task the Hub lists these results under: embeddings compared by cosine are image feature extraction.
TASK_TYPE = "image-feature-extraction"
FARS = ("1e-2", "1e-3")
TRAINING_KEYS = (
    "trainable_parameters",
    "total_parameters",
    "trainable_percent",
    "epochs",
    "time_per_epoch_s",
    "wall_time_s",
    "peak_rss_mb",
)


class ReportError(ValueError):
    """A report that is neither an xEdgeFace experiment report nor an `hfr-hf evaluate` report."""


def _get(report: dict, path: str, kind: type = float, source: str = "the report"):
    """`report[a][b]...` for `path` "a.b...", checked to be a number (`kind=float`), `str` or `bool`."""
    value = report
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise ReportError(
                f"{source[:1].upper()}{source[1:]} has no {path!r}; is it a report of `hfr-hf experiment` or "
                "`hfr-hf evaluate`?"
            )
        value = value[key]
    if kind is float:
        valid = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        valid = isinstance(value, kind)
    if not valid:
        expected = "a number" if kind is float else f"a {kind.__name__}"
        raise ReportError(f"{path!r} in {source} is {value!r}, expected {expected}.")
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "protocol"


@dataclass(frozen=True)
class Metric:
    """One model-index metric: Hub metric type, readable name, the report's value."""

    type: str
    name: str
    value: float


@dataclass(frozen=True)
class ResultGroup:
    """Metrics measured on one task / dataset configuration (one `model-index` result)."""

    task_name: str
    dataset_config: str | None
    metrics: tuple[Metric, ...]


class EvaluationReport:
    """A validated evaluation report: `systems` (e.g. "frozen", "adapted") each with groups of metrics."""

    def __init__(self, report: dict, source: str = "the report"):
        if not isinstance(report, dict):
            raise ReportError(f"{source[:1].upper()}{source[1:]} holds a {type(report).__name__}, not a JSON object.")
        self.raw = report
        self.source = source
        self.kind = report.get("kind")
        if self.kind == EXPERIMENT_KIND:
            self._read_experiment()
        elif self.kind in ("verification", "identification") and "summary" in report:
            self._read_evaluation()
        else:
            raise ReportError(
                f"{source[:1].upper()}{source[1:]} is neither an xEdgeFace experiment report (kind {EXPERIMENT_KIND!r}) nor an "
                f"`hfr-hf evaluate` report (kind 'verification' or 'identification' with a summary); "
                f"its kind is {self.kind!r}."
            )

    # -- the two schemas ------------------------------------------------------------------------------------------

    def _read_experiment(self) -> None:
        r, src = self.raw, self.source
        self.variant = _get(r, "variant", str, src)
        self.protocol_name = _get(r, "protocol.name", str, src)
        self.dataset = _get(r, "protocol.dataset", str, src)
        self.split = _get(r, "protocol.split", str, src)
        self.synthetic = _get(r, "protocol.synthetic", bool, src)
        self.modality = _get(r, "protocol.modality", str, src)
        self.identities = {
            side: r["protocol"][f"{side}_identities"]
            for side in ("train", "test")
            if isinstance(r["protocol"].get(f"{side}_identities"), int)
        }
        adapted = r.get("results", {}).get("adapted", {})
        self.counts = {
            "genuine_pairs": adapted.get("cross", {}).get("genuine_pairs"),
            "impostor_pairs": adapted.get("cross", {}).get("impostor_pairs"),
            "probes": adapted.get("identification", {}).get("probes"),
            "gallery": adapted.get("identification", {}).get("gallery"),
        }
        self.folds = 1
        self.adapter_preset = r.get("adapter_preset")
        self.adapter_name = r.get("adapter_name")
        self.thresholds = None
        if "thresholds" in r:
            self.thresholds = {
                name: {far: _get(r, f"thresholds.{name}.{far}", source=src) for far in FARS}
                for name in _get(r, "thresholds", dict, src)
            }
        self.training = None
        if "training" in r:
            self.training = {key: _get(r, f"training.{key}", source=src) for key in TRAINING_KEYS}
        modality = self.modality
        self.systems: dict[str, list[ResultGroup]] = {}
        for system in ("frozen", "adapted"):
            base = f"results.{system}"

            def metric(path: str, type_: str, name: str, base: str = base) -> Metric:
                return Metric(type_, name, _get(r, f"{base}.{path}", source=src))

            cross = [
                metric("cross.eer", "eer", "EER"),
                *(metric(f"cross.tar_at_far.{far}", f"tar_at_far_{far}", f"TAR@FAR={far}") for far in FARS),
                metric("cross.auc", "roc_auc", "AUC"),
                metric("identification.rank1", "rank1", f"Rank-1 identification ({modality} probes)"),
                metric("identification.rank5", "rank5", f"Rank-5 identification ({modality} probes)"),
            ]
            visible = [metric("vis.auc", "roc_auc", "VIS→VIS AUC"), metric("vis.eer", "eer", "VIS→VIS EER")]
            self.systems[system] = [
                ResultGroup(
                    f"Cross-spectral face verification (visible gallery, {modality} probes)",
                    f"vis-{modality}",
                    tuple(cross),
                ),
                ResultGroup("Visible face verification (VIS→VIS)", "vis-vis", tuple(visible)),
            ]

    def _read_evaluation(self) -> None:
        r, src = self.raw, self.source
        self.variant = None
        self.protocol_name = _get(r, "protocol", str, src)
        self.dataset = _slug(self.protocol_name)
        self.split = "test"
        self.synthetic = False  # the report does not say; the card does not claim it either way
        self.identities = {}
        self.counts = {}
        self.adapter_preset = self.adapter_name = None
        self.thresholds = self.training = None
        folds = r.get("folds") if isinstance(r.get("folds"), dict) else {}
        self.folds = len(folds) or 1
        probe_modalities = sorted(
            {m for fold in folds.values() for m in fold.get("identification", {}).get("probe_modalities", [])}
        )
        gallery_modalities = sorted(
            {m for fold in folds.values() for m in fold.get("identification", {}).get("gallery_modalities", [])}
        )
        self.modality = "/".join(probe_modalities) or None

        def metric(key: str, type_: str, name: str) -> Metric:
            return Metric(type_, name, _get(r, f"summary.{key}.mean", source=src))

        metrics = [metric("eer", "eer", "EER")]
        metrics += [
            metric(f"tar_at_far_{far}", f"tar_at_far_{far}", f"TAR@FAR={far}")
            for far in FARS
            if f"tar_at_far_{far}" in r["summary"]
        ]
        metrics.append(metric("auc", "roc_auc", "AUC"))
        if self.kind == "identification":
            metrics.append(metric("rank1", "rank1", "Rank-1 identification"))
            if "rank5" in r["summary"]:
                metrics.append(metric("rank5", "rank5", "Rank-5 identification"))
            sides = (
                f" ({'/'.join(gallery_modalities)} gallery, {'/'.join(probe_modalities)} probes)"
                if probe_modalities
                else ""
            )
            task = f"Face identification{sides}"
        else:
            task = "Face verification"
        config = "-".join(gallery_modalities + probe_modalities) or None
        self.systems = {"model": [ResultGroup(task, config, tuple(metrics))]}

    # -- what cards use -------------------------------------------------------------------------------------------

    def system_for(self, adapted: bool) -> str:
        """The system whose results belong to a card: the adapted one for adapters and merged models."""
        if "model" in self.systems:
            return "model"
        return "adapted" if adapted else "frozen"

    def eval_results(self, system: str) -> list[EvalResult]:
        """The `model-index` entries of one system, as huggingface_hub `EvalResult`s."""
        return [
            EvalResult(
                task_type=TASK_TYPE,
                task_name=group.task_name,
                dataset_type=self.dataset,
                dataset_name=self.protocol_name,
                dataset_config=group.dataset_config,
                dataset_split=self.split,
                metric_type=metric.type,
                metric_name=metric.name + (" (mean over folds)" if self.folds > 1 else ""),
                metric_value=metric.value,
            )
            for group in self.systems[system]
            for metric in group.metrics
        ]

    def table(self) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """(column names, rows of (system, formatted values)) for the card's results table."""
        columns, rows = [], []
        for system, groups in self.systems.items():
            values = []
            for group in groups:
                for metric in group.metrics:
                    if metric.name not in columns:
                        columns.append(metric.name)
                    values.append((metric.name, metric.value))
            found = dict(values)
            rows.append((system, [f"{found[c]:.4f}" if c in found else "–" for c in columns]))
        return columns, rows


def load_report(report: str | os.PathLike | dict) -> EvaluationReport:
    """An `EvaluationReport` from a JSON file or an already-loaded dict."""
    if isinstance(report, dict):
        return EvaluationReport(report)
    path = Path(report)
    if not path.is_file():
        raise ReportError(f"Report {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"Report {path} is not valid JSON ({error}).") from error
    return EvaluationReport(data, source=str(path))
