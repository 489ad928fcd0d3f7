"""Model cards: Hub metadata (`ModelCardData`, model-index from an evaluation report) and a body rendered from the
Jinja templates in `hfr_hf/model_cards/` (`base.md`, `adapter.md`, `merged.md` and their `_*.md` parts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from huggingface_hub import ModelCard, ModelCardData

from ..configuration_edgeface import EDGEFACE_VARIANTS, EdgeFaceConfig
from ..convert import OFFICIAL_HUB_FILES
from .cost import PAPER_MFLOPS, model_cost, variant_costs
from .reports import EvaluationReport

__all__ = [
    "CARD_KINDS",
    "CITATIONS",
    "LICENSE",
    "AdapterDetails",
    "converted_model_card",
    "model_card",
    "variant_label",
]

CardKind = Literal["base", "adapter", "merged"]
CARD_KINDS = ("base", "adapter", "merged")
# Inherited from the EdgeFace weights (Idiap Research Institute): converted and adapted copies are derivatives.
LICENSE = "cc-by-nc-sa-4.0"
TAGS = ["face-recognition", "heterogeneous-face-recognition", "cross-spectral", "edgeface", "peft", "hfr-hf"]
# Shown in code snippets when the card is written before the model has a repository.
PLACEHOLDER_REPO = "path/or/repo"

_VARIANT_LABELS = {"xxs": "XXS", "xs": "XS", "xs_gamma_06": "XS(γ=0.6)", "s_gamma_05": "S(γ=0.5)", "base": "Base"}

CITATIONS = """```bibtex
@article{george2024edgeface,
  title   = {EdgeFace: Efficient Face Recognition Model for Edge Devices},
  author  = {George, Anjith and Ecabert, Christophe and Otroshi Shahreza, Hatef and Kotwal, Ketan and Marcel, S{\\'e}bastien},
  journal = {IEEE Transactions on Biometrics, Behavior, and Identity Science},
  year    = {2024}
}
@article{george2026lightweight,
  title   = {Lightweight Cross-Spectral Face Recognition via Contrastive Alignment and Distillation},
  author  = {George, Anjith and Marcel, S{\\'e}bastien},
  journal = {arXiv preprint arXiv:2605.04769},
  year    = {2026}
}
@article{george2025xedgeface,
  title   = {xEdgeFace: Efficient Cross-Spectral Face Recognition for Edge Devices},
  author  = {George, Anjith and Marcel, S{\\'e}bastien},
  journal = {arXiv preprint arXiv:2504.19646},
  year    = {2025}
}
```"""


def variant_label(variant: str | None) -> str:
    """EdgeFace-XS(γ=0.6) style name of a variant; "EdgeFace (custom)" for a configuration of no official variant."""
    return f"EdgeFace-{_VARIANT_LABELS[variant]}" if variant in _VARIANT_LABELS else "EdgeFace (custom)"


@dataclass(frozen=True)
class AdapterDetails:
    """What the adapter and merged cards say about an xEdgeFace adapter."""

    name: str
    preset: str | None
    description: str | None
    trainable_parameters: int
    target_modules: int
    base_fingerprint: str | None


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("hfr_hf", "model_cards"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,  # a misspelt variable fails the render instead of vanishing from the card
        autoescape=False,
    )


def _variants_rows(config: EdgeFaceConfig) -> list[dict]:
    current = getattr(config, "variant", None)
    rows = []
    for name, cost in variant_costs().items():
        rows.append(
            {
                "label": variant_label(name),
                "name": name,
                "current": name == current,
                "parameters": f"{cost.parameters:,}",
                "mflops": f"{cost.mflops:.1f}",
                "paper_mflops": f"{PAPER_MFLOPS[name]:.2f}" if name in PAPER_MFLOPS else "–",
                "official_repo": OFFICIAL_HUB_FILES.get(name, (None,))[0],
            }
        )
    if current not in EDGEFACE_VARIANTS:
        cost = model_cost(config)
        rows.append(
            {
                "label": "this model (custom configuration)",
                "name": None,
                "current": True,
                "parameters": f"{cost.parameters:,}",
                "mflops": f"{cost.mflops:.1f}",
                "paper_mflops": "–",
                "official_repo": None,
            }
        )
    return rows


def _evaluation_context(report: EvaluationReport | None, kind: CardKind) -> dict | None:
    if report is None:
        return None
    columns, rows = report.table()
    labels = {"frozen": "EdgeFace, frozen (no adapter)", "adapted": "with the xEdgeFace adapter", "model": "this model"}
    this_system = report.system_for(adapted=kind != "base")
    return {
        "protocol": report.protocol_name,
        "dataset": report.dataset,
        "split": report.split,
        "synthetic": report.synthetic,
        "modality": report.modality,
        "identities": report.identities,
        "counts": {k: v for k, v in report.counts.items() if v is not None},
        "folds": report.folds,
        "kind": report.kind,
        "columns": columns,
        "rows": [
            {"label": labels.get(system, system), "cells": values, "current": system == this_system}
            for system, values in rows
        ],
        "thresholds": report.thresholds,
        "training": report.training,
        "adapter_preset": report.adapter_preset,
    }


def _card_data(
    kind: CardKind,
    config: EdgeFaceConfig,
    repo_id: str | None,
    base_repo: str | None,
    report: EvaluationReport | None,
    title: str,
) -> ModelCardData:
    variant = getattr(config, "variant", None)
    official = OFFICIAL_HUB_FILES.get(variant, (None,))[0]
    extra = {}
    if kind == "adapter":
        base_model, extra["base_model_relation"] = base_repo, "adapter"
    elif kind == "merged":
        base_model, extra["base_model_relation"] = base_repo or official, "finetune"
    else:
        base_model = official
    eval_results, metrics, datasets = None, None, None
    tags = list(TAGS)
    if report is not None:
        eval_results = report.eval_results(report.system_for(adapted=kind != "base"))
        metrics = list(dict.fromkeys(result.metric_type for result in eval_results))
        if report.modality:
            tags.append(report.modality)
        if kind != "base" and report.kind == "xedgeface_experiment":
            datasets = [report.dataset]  # the adapter's training data: the protocol's training identities
    return ModelCardData(
        license=LICENSE,
        library_name="peft" if kind == "adapter" else "transformers",
        pipeline_tag="image-feature-extraction",
        base_model=base_model,
        tags=tags,
        datasets=datasets,
        metrics=metrics,
        model_name=(repo_id.split("/")[-1] if repo_id else title) if eval_results else None,
        eval_results=eval_results,
        **extra,
    )


def model_card(
    kind: CardKind,
    config: EdgeFaceConfig,
    *,
    repo_id: str | None = None,
    base_repo: str | None = None,
    report: EvaluationReport | None = None,
    adapter: AdapterDetails | None = None,
    source: str | None = None,
) -> ModelCard:
    """The card of a base model, an adapter repository or a merged model.

    Args:
        kind: "base" (EdgeFace as converted), "adapter" (PEFT adapter files, loaded onto `base_repo`) or "merged"
            (an adapter folded into EdgeFace).
        config: the EdgeFace configuration of the model (of the base, for an adapter).
        repo_id: the repository the card is for; snippets show it (a placeholder when None).
        base_repo: the repository of the base model (required for an adapter).
        report: evaluation report whose results fill the model-index and the results table.
        adapter: the adapter's details (adapter and merged cards).
        source: the official checkpoint file the base was converted from, when known.
    """
    if kind not in CARD_KINDS:
        raise ValueError(f"Unknown card kind {kind!r}: choose one of {', '.join(CARD_KINDS)}.")
    if kind == "adapter" and not base_repo:
        raise ValueError("An adapter card needs the base model's repository id (base_repo).")
    if kind != "base" and adapter is None:
        raise ValueError(f"A {kind} card needs the adapter's details.")
    variant = getattr(config, "variant", None)
    label = variant_label(variant)
    modality = (report.modality if report is not None else None) or (adapter.name if adapter else None)
    title = {
        "base": label,
        "adapter": f"xEdgeFace {modality} adapter for {label}",
        "merged": f"xEdgeFace {label}, {modality}-adapted (merged)",
    }[kind]
    cost = model_cost(config)
    data = _card_data(kind, config, repo_id, base_repo, report, title)
    context = {
        "title": title,
        "kind": kind,
        "repo": repo_id or PLACEHOLDER_REPO,
        "base_repo": base_repo or (repo_id if kind == "base" else None) or PLACEHOLDER_REPO,
        "card_base_repo": data.base_model,
        "model": {
            "label": label,
            "variant": variant,
            "parameters": f"{cost.parameters:,}",
            "mflops": f"{cost.mflops:.1f}",
            "image_size": config.image_size,
            "embedding_size": config.embedding_size,
        },
        "official_repo": OFFICIAL_HUB_FILES.get(variant, (None,))[0],
        "source": source,
        "variants": _variants_rows(config),
        "adapter": adapter,
        "modality": modality,
        "evaluation": _evaluation_context(report, kind),
        "license": LICENSE,
        "citations": CITATIONS,
    }
    body = _environment().get_template(f"{kind}.md").render(card_data=data.to_yaml(), **context)
    return ModelCard(body)


def converted_model_card(variant: str, source: str) -> str:
    """README.md of a converted model folder: the base card, before the model has a repository or a report."""
    return str(model_card("base", EdgeFaceConfig.from_variant(variant), source=source))
