"""xEdgeFace losses: cross-modal contrastive alignment and self-distillation.

xEdgeFace (George & Marcel, arXiv 2504.19646 / 2605.04769) adapts a frozen RGB face model to NIR / thermal with

- contrastive alignment over cross-modal pairs, `y·(1 − cos) + (1 − y)·max(0, cos − m)`: a VIS embedding is pulled
  onto the target-spectrum embedding of the same person (y = 1) and pushed below cosine `m` from other people's
  (y = 0);
- self-distillation, `1 − cos(f_θ(x_vis), f_θ0(x_vis))`: the adapted model's VIS embedding stays where the frozen
  model put it, so visible-light accuracy is not forgotten. The teacher f_θ0 is the same PEFT model with its adapter
  disabled ([`teacher_embeddings`]), not a second copy of the network;
- optionally cross-modal distillation, `1 − cos(f_θ(x_target), f_θ0(x_vis))`: the target-spectrum embedding is pulled
  straight onto the frozen VIS embedding, the fixed anchor of the gallery.

Real target-spectrum images without visible twins (e.g. the PUJ training people) add two optional terms:

- target identity ([`target_identity_loss`]), supervised contrastive among the real target images: images of one
  person (from any camera) are pulled together, other people's pushed apart — what the spectrum itself teaches;
- distribution alignment ([`moment_matching_loss`]): the mean and covariance of the real target embeddings are
  matched to those of the frozen VIS embeddings (CORAL), so the real spectrum lands where the gallery lives.

The paper leaves the margin, the weights and the negative sampling open. The defaults of [`XEdgeFaceLossConfig`] come
from the pseudo-thermal benchmark (EdgeFace-XXS, LayerNorms + stem, 15 epochs, test identities unseen; frozen EER
0.250): margin 0.1, one hard negative per anchor, one-sided, cross-modal distillation 1 → EER 0.095; without the
cross-modal term 0.135; with margin 0.3, three negatives, both sides and the cross-modal term 0.108.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "XEdgeFaceLoss",
    "XEdgeFaceLossConfig",
    "contrastive_alignment_loss",
    "cross_modal_distillation_loss",
    "moment_matching_loss",
    "self_distillation_loss",
    "target_identity_loss",
    "teacher_embeddings",
]


@dataclass
class XEdgeFaceLossConfig:
    """
    Margin, weights and negative sampling of [`XEdgeFaceLoss`]. Defaults are provisional (see the module docstring).
    """

    margin: float = field(
        default=0.1,
        metadata={
            "help": "Cosine m below which a negative pair costs nothing: `max(0, cos − m)`. Cross-spectral impostor "
            "cosines of the frozen EdgeFace sit near 0.1, so the closest ones are pushed apart."
        },
    )
    contrastive_weight: float = field(default=1.0, metadata={"help": "Weight of the contrastive alignment term."})
    self_distillation_weight: float = field(
        default=1.0, metadata={"help": "Weight of `1 − cos(f_θ(x_vis), f_θ0(x_vis))`; keeps VIS accuracy."}
    )
    cross_distillation_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of `1 − cos(f_θ(x_target), f_θ0(x_vis))`: the target embedding is pulled onto the frozen "
            "VIS embedding, a fixed anchor (the largest single gain in the adaptation benchmark); 0 turns it off."
        },
    )
    negatives_per_positive: int | None = field(
        default=1,
        metadata={
            "help": "In-batch negatives (vis_i, target_j), j of another identity, kept for each anchor; `None` keeps "
            "them all. Fewer are kept where the batch has fewer."
        },
    )
    negative_sampling: Literal["hard", "random"] = field(
        default="hard",
        metadata={
            "help": "`hard`: the highest-cosine negatives of each anchor (deterministic). `random`: uniform without "
            "replacement, drawn from the `generator` given to the loss (deterministic given its seed)."
        },
    )
    symmetric: bool = field(
        default=False,
        metadata={
            "help": "Mine negatives for every target embedding too (its closest VIS embeddings of other people), "
            "not only for every VIS embedding; a pair picked from both sides counts once."
        },
    )

    target_identity_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the supervised contrastive loss among real target images with identities (no visible "
            "twins; TrainingConfig.real_target_data); 0 turns it off."
        },
    )
    target_temperature: float = field(
        default=0.1, metadata={"help": "Temperature of the target identity loss (cosines divided by it)."}
    )
    alignment_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of moment matching (mean + covariance, CORAL) between the real target embeddings and the "
            "frozen VIS embeddings of the batch; 0 turns it off."
        },
    )

    def __post_init__(self) -> None:
        if not -1.0 <= self.margin <= 1.0:
            raise ValueError(f"XEdgeFaceLossConfig.margin is a cosine and must be in [-1, 1], got {self.margin!r}.")
        if not self.target_temperature > 0:
            raise ValueError(
                f"XEdgeFaceLossConfig.target_temperature must be positive, got {self.target_temperature!r}."
            )
        for name in (
            "contrastive_weight",
            "self_distillation_weight",
            "cross_distillation_weight",
            "target_identity_weight",
            "alignment_weight",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"XEdgeFaceLossConfig.{name} must be non-negative, got {getattr(self, name)!r}.")
        k = self.negatives_per_positive
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
            raise ValueError(
                f"XEdgeFaceLossConfig.negatives_per_positive must be a non-negative integer or None (all), got {k!r}."
            )
        if self.negative_sampling not in ("hard", "random"):
            raise ValueError(
                f"XEdgeFaceLossConfig.negative_sampling must be 'hard' or 'random', got {self.negative_sampling!r}."
            )

    def to_dict(self) -> dict:
        return asdict(self)


def _identity_ids(identities: torch.Tensor | Sequence | None, batch: int, device: torch.device) -> torch.Tensor:
    """Identities as an integer tensor; labels of any hashable type are numbered in order of appearance."""
    if identities is None:
        return torch.arange(batch, device=device)
    if isinstance(identities, torch.Tensor):
        ids = identities.to(device).reshape(-1)
    else:
        numbering: dict = {}
        ids = torch.tensor([numbering.setdefault(label, len(numbering)) for label in identities], device=device)
    if ids.numel() != batch:
        raise ValueError(f"Got {ids.numel()} identities for a batch of {batch} pairs; give one identity per pair.")
    return ids


def _pair_identities(
    identities: torch.Tensor | Sequence | None,
    target_identities: torch.Tensor | Sequence | None,
    batch: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Identity numbers of the VIS and the target side of each row (the target side defaults to the VIS side)."""
    if target_identities is None:
        vis_ids = _identity_ids(identities, batch, device)
        return vis_ids, vis_ids
    if identities is None:
        raise ValueError("target_identities needs identities too: give the identity of every VIS image as well.")
    if isinstance(identities, torch.Tensor) != isinstance(target_identities, torch.Tensor):
        raise ValueError("Give identities and target_identities in one form: both tensors, or both label sequences.")
    if isinstance(identities, torch.Tensor):
        return _identity_ids(identities, batch, device), _identity_ids(target_identities, batch, device)
    # Number both sides together, so that equal labels get equal numbers.
    both = _identity_ids(list(identities) + list(target_identities), 2 * batch, device)
    return both[:batch], both[batch:]


def _select(scores: torch.Tensor, candidates: torch.Tensor, k: int | None) -> torch.Tensor:
    """Boolean mask of the `k` highest-scoring candidates in each row (all candidates when `k` is None)."""
    if k is None:
        return candidates.clone()
    k = min(k, scores.shape[1])
    if k == 0:
        return torch.zeros_like(candidates)
    masked = scores.masked_fill(~candidates, float("-inf"))
    top = masked.topk(k, dim=1).indices
    chosen = torch.zeros_like(candidates).scatter_(1, top, True)
    return chosen & candidates  # rows with fewer than k candidates picked some non-candidates: drop them


def contrastive_alignment_loss(
    vis_embeddings: torch.Tensor,
    target_embeddings: torch.Tensor,
    identities: torch.Tensor | Sequence | None = None,
    target_identities: torch.Tensor | Sequence | None = None,
    margin: float = 0.3,
    negatives_per_positive: int | None = 3,
    negative_sampling: Literal["hard", "random"] = "hard",
    symmetric: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """
    Contrastive alignment `y·(1 − cos) + (1 − y)·max(0, cos − m)`, averaged over the selected pairs.

    Row i of the batch is a cross-modal pair (vis_i, target_i). It is a positive (y = 1) when both sides are of the
    same identity (always, unless `target_identities` says otherwise). Negatives (y = 0) are the pairs
    (vis_i, target_j) of different identities, the in-batch ones sampled per anchor (see `XEdgeFaceLossConfig`);
    off-diagonal pairs of the same identity are not used.

    Args:
        vis_embeddings, target_embeddings (`torch.Tensor` of shape `(batch, dim)`): raw or normalised embeddings.
        identities (`torch.Tensor` or sequence, *optional*): identity of each row (of its VIS side); labels of any
            hashable type. `None`: every row a different person.
        target_identities (*optional*): identity of each target image, when it can differ from its VIS image
            (impostor rows); defaults to `identities`.
        generator (`torch.Generator`, *optional*): random source of `negative_sampling="random"`.

    Returns:
        The loss (a scalar), and detached statistics: `positive` (mean 1 − cos), `negative` (mean hinge),
        `negative_cosine` (mean cosine of the selected negatives), `num_negatives`, `active_negatives` (fraction of
        selected negatives above the margin).
    """
    if vis_embeddings.shape != target_embeddings.shape or vis_embeddings.ndim != 2:
        raise ValueError(
            f"vis_embeddings and target_embeddings must both be (batch, dim) and of one shape, got "
            f"{tuple(vis_embeddings.shape)} and {tuple(target_embeddings.shape)}."
        )
    batch, device = vis_embeddings.shape[0], vis_embeddings.device
    vis_ids, tgt_ids = _pair_identities(identities, target_identities, batch, device)

    cos = F.normalize(vis_embeddings, dim=-1) @ F.normalize(target_embeddings, dim=-1).T  # (vis, target)
    different = vis_ids[:, None] != tgt_ids[None, :]
    diagonal = torch.eye(batch, dtype=torch.bool, device=device)
    positives = diagonal & ~different

    if negative_sampling == "hard":
        scores = cos.detach()
    elif negative_sampling == "random":
        scores = torch.rand((batch, batch), generator=generator).to(device)
    else:
        raise ValueError(f"negative_sampling must be 'hard' or 'random', got {negative_sampling!r}.")
    negatives = _select(scores, different, negatives_per_positive)
    if symmetric:
        negatives |= _select(scores.T, different.T, negatives_per_positive).T
    negatives |= diagonal & different  # impostor rows are negatives in their own right

    positive_terms = 1.0 - cos[positives]
    negative_cos = cos[negatives]
    negative_terms = (negative_cos - margin).clamp_min(0.0)
    count = positive_terms.numel() + negative_terms.numel()
    loss = (positive_terms.sum() + negative_terms.sum()) / max(count, 1)

    zero = cos.new_zeros(())
    stats = {
        "positive": positive_terms.mean().detach() if positive_terms.numel() else zero,
        "negative": negative_terms.mean().detach() if negative_terms.numel() else zero,
        "negative_cosine": negative_cos.mean().detach() if negative_cos.numel() else zero,
        "num_negatives": torch.tensor(float(negative_terms.numel()), device=device),
        "active_negatives": (negative_terms > 0).float().mean().detach() if negative_terms.numel() else zero,
    }
    return loss, stats


def _one_minus_cosine(student: torch.Tensor, teacher: torch.Tensor, what: str) -> torch.Tensor:
    if student.shape != teacher.shape:
        raise ValueError(
            f"{what}: student and teacher embeddings must have one shape, got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}."
        )
    return (1.0 - F.cosine_similarity(student, teacher.detach(), dim=-1)).mean()


def self_distillation_loss(student_vis: torch.Tensor, teacher_vis: torch.Tensor) -> torch.Tensor:
    """Mean `1 − cos(f_θ(x_vis), f_θ0(x_vis))`; no gradient flows into the teacher."""
    return _one_minus_cosine(student_vis, teacher_vis, "self_distillation_loss")


def cross_modal_distillation_loss(student_target: torch.Tensor, teacher_vis: torch.Tensor) -> torch.Tensor:
    """Mean `1 − cos(f_θ(x_target), f_θ0(x_vis))` over pairs of the same person; no gradient into the teacher."""
    return _one_minus_cosine(student_target, teacher_vis, "cross_modal_distillation_loss")


def target_identity_loss(
    embeddings: torch.Tensor, identities: torch.Tensor | Sequence, temperature: float = 0.1
) -> torch.Tensor:
    """
    Supervised contrastive loss (Khosla et al., 2020) among target-spectrum images: for each image with another
    image of its identity in the batch, `−mean_p log(exp(cos_ip/τ) / Σ_{a≠i} exp(cos_ia/τ))` over those positives p;
    images without one are left out (zero when none has one).
    """
    if embeddings.ndim != 2:
        raise ValueError(f"target_identity_loss needs (batch, dim) embeddings, got {tuple(embeddings.shape)}.")
    batch, device = embeddings.shape[0], embeddings.device
    ids = _identity_ids(identities, batch, device)
    normed = F.normalize(embeddings, dim=-1)
    logits = (normed @ normed.T) / temperature
    self_mask = torch.eye(batch, dtype=torch.bool, device=device)
    log_prob = logits.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    positives = (ids[:, None] == ids[None, :]) & ~self_mask
    anchors = positives.any(dim=1)
    if not anchors.any():
        return embeddings.new_zeros(())
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(dim=1) / positives.sum(dim=1).clamp_min(1))
    return per_anchor[anchors].mean()


def moment_matching_loss(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """
    `‖μ_s − μ_r‖² + ‖C_s − C_r‖²_F / 4` of the L2-normalised embeddings (CORAL, Sun & Saenko 2016, with the mean
    term; the covariance norm is not divided by d², as unit vectors' covariances are small): zero when both sets have
    one mean and covariance. No gradient flows into `reference` (the frozen VIS embeddings).
    """
    if source.ndim != 2 or reference.ndim != 2 or source.shape[1] != reference.shape[1]:
        raise ValueError(
            f"moment_matching_loss needs (n, dim) and (m, dim) embeddings of one dim, got {tuple(source.shape)} and "
            f"{tuple(reference.shape)}."
        )
    if source.shape[0] < 2 or reference.shape[0] < 2:
        raise ValueError("moment_matching_loss needs at least two embeddings on each side to estimate a covariance.")
    s, r = F.normalize(source, dim=-1), F.normalize(reference.detach(), dim=-1)
    mean_s, mean_r = s.mean(0), r.mean(0)
    cov_s = (s - mean_s).T @ (s - mean_s) / (s.shape[0] - 1)
    cov_r = (r - mean_r).T @ (r - mean_r) / (r.shape[0] - 1)
    return (mean_s - mean_r).pow(2).sum() + (cov_s - cov_r).pow(2).sum() / 4


@torch.no_grad()
def teacher_embeddings(peft_model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """
    Embeddings of the frozen base, f_θ0: the same PEFT model run with its adapters disabled, without gradients.

    The model is run in eval mode (no stochastic depth), and its train/eval modes and `requires_grad` flags are put
    back afterwards (PEFT's `disable_adapter` would otherwise mark an inference-mode adapter trainable again). It may
    be called before or after the student's forward pass of the same step.
    """
    from peft import PeftModel  # local: the losses need no PEFT unless a teacher is asked for

    if not isinstance(peft_model, PeftModel):
        raise ValueError(
            f"teacher_embeddings needs a PeftModel whose adapter can be disabled, got {type(peft_model).__name__}. "
            "For full fine-tuning (no adapter), keep a frozen copy of the base model and call it under torch.no_grad()."
        )
    modes = [(module, module.training) for module in peft_model.modules()]
    grads = [(param, param.requires_grad) for param in peft_model.parameters()]
    peft_model.eval()
    try:
        with peft_model.disable_adapter():
            embeddings = peft_model(pixel_values=pixel_values).embeddings
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in grads:
            param.requires_grad_(requires_grad)
    return embeddings


class XEdgeFaceLoss(nn.Module):
    """
    The xEdgeFace objective: weighted contrastive alignment, self-distillation and (optional) cross-modal
    distillation.

    `forward` returns a dict: `loss` (the weighted total, to back-propagate), each term unweighted (`contrastive`,
    `self_distillation`, `cross_modal_distillation`, the last two only when teacher embeddings are given) and
    detached contrastive statistics under `contrastive/...`, for logging.

    Example:

    ```py
    >>> loss_fn = XEdgeFaceLoss(XEdgeFaceLossConfig(margin=0.3))
    >>> teacher = teacher_embeddings(model, batch["vis"])  # adapter disabled, no_grad
    >>> out = loss_fn(model(pixel_values=batch["vis"]).embeddings, model(pixel_values=batch["target"]).embeddings,
    ...               teacher_vis_embeddings=teacher, identities=batch["identity"])
    >>> out["loss"].backward()
    ```
    """

    def __init__(self, config: XEdgeFaceLossConfig | None = None) -> None:
        super().__init__()
        self.config = config or XEdgeFaceLossConfig()

    def forward(
        self,
        vis_embeddings: torch.Tensor,
        target_embeddings: torch.Tensor,
        teacher_vis_embeddings: torch.Tensor | None = None,
        identities: torch.Tensor | Sequence | None = None,
        target_identities: torch.Tensor | Sequence | None = None,
        generator: torch.Generator | None = None,
        real_target_embeddings: torch.Tensor | None = None,
        real_target_identities: torch.Tensor | Sequence | None = None,
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            vis_embeddings (`(batch, dim)`): student embeddings of the VIS images, f_θ(x_vis).
            target_embeddings (`(batch, dim)`): student embeddings of the paired NIR / thermal images, f_θ(x_target).
            teacher_vis_embeddings (`(batch, dim)`, *optional*): frozen-model embeddings of the VIS images,
                f_θ0(x_vis), from [`teacher_embeddings`]; needed when a distillation weight is positive.
            identities, target_identities, generator: see [`contrastive_alignment_loss`].
            real_target_embeddings (`(n, dim)`, *optional*): student embeddings of real target images without visible
                twins, for the target identity and alignment terms (when their weights are positive).
            real_target_identities (*optional*): the identity of each of those images.
        """
        config = self.config
        if teacher_vis_embeddings is None and (
            config.self_distillation_weight > 0 or config.cross_distillation_weight > 0
        ):
            raise ValueError(
                "The distillation terms need teacher_vis_embeddings (the frozen model's VIS embeddings, from "
                "teacher_embeddings(model, vis_pixel_values)); pass them, or set the distillation weights to 0."
            )
        contrastive, stats = contrastive_alignment_loss(
            vis_embeddings,
            target_embeddings,
            identities=identities,
            target_identities=target_identities,
            margin=config.margin,
            negatives_per_positive=config.negatives_per_positive,
            negative_sampling=config.negative_sampling,
            symmetric=config.symmetric,
            generator=generator,
        )
        out = {"contrastive": contrastive}
        total = config.contrastive_weight * contrastive
        if teacher_vis_embeddings is not None:
            out["self_distillation"] = self_distillation_loss(vis_embeddings, teacher_vis_embeddings)
            total = total + config.self_distillation_weight * out["self_distillation"]
            if config.cross_distillation_weight > 0:
                # Only pairs of one person: an impostor's target image has no reason to sit on this VIS embedding.
                vis_ids, tgt_ids = _pair_identities(
                    identities, target_identities, vis_embeddings.shape[0], vis_embeddings.device
                )
                same = vis_ids == tgt_ids
                out["cross_modal_distillation"] = (
                    cross_modal_distillation_loss(target_embeddings[same], teacher_vis_embeddings[same])
                    if same.any()
                    else vis_embeddings.new_zeros(())
                )
                total = total + config.cross_distillation_weight * out["cross_modal_distillation"]
        if real_target_embeddings is not None:
            if config.target_identity_weight > 0:
                if real_target_identities is None:
                    raise ValueError("The target identity term needs real_target_identities, one per real image.")
                out["target_identity"] = target_identity_loss(
                    real_target_embeddings, real_target_identities, config.target_temperature
                )
                total = total + config.target_identity_weight * out["target_identity"]
            if config.alignment_weight > 0:
                if teacher_vis_embeddings is None:
                    raise ValueError("The alignment term needs teacher_vis_embeddings (the frozen VIS embeddings).")
                out["distribution_alignment"] = moment_matching_loss(real_target_embeddings, teacher_vis_embeddings)
                total = total + config.alignment_weight * out["distribution_alignment"]
        out["loss"] = total
        out.update({f"contrastive/{key}": value for key, value in stats.items()})
        return out
