"""xEdgeFace losses on hand-made embeddings, and the teacher taken from the PEFT model with its adapter disabled."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from hfr_hf import EdgeFaceModel
from hfr_hf.adapters import add_adapter
from hfr_hf.losses import (
    XEdgeFaceLoss,
    XEdgeFaceLossConfig,
    contrastive_alignment_loss,
    cross_modal_distillation_loss,
    self_distillation_loss,
    teacher_embeddings,
)

E = torch.eye(4)  # four orthonormal embeddings


def pair_loss(vis: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
    return contrastive_alignment_loss(vis, target, **kwargs)[0]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- contrastive alignment --------------------------------------------------------------------------------------


def test_identical_pairs_with_orthogonal_impostors_cost_nothing():
    assert pair_loss(E, E, negatives_per_positive=None).item() == 0.0


def test_positive_pair_costs_one_minus_cosine():
    vis, opposite, orthogonal = E[:1], -E[:1], E[1:2]
    assert pair_loss(vis, opposite).item() == pytest.approx(2.0)
    assert pair_loss(vis, orthogonal).item() == pytest.approx(1.0)
    assert pair_loss(3.0 * vis, 0.5 * vis).item() == pytest.approx(0.0, abs=1e-7)  # scale does not matter


def test_negative_pair_hinge_at_the_margin():
    # Row 1's target lies at cosine 0.5 from vis 0; every other cross pair is orthogonal, positives identical.
    vis = E[:2]
    target = torch.stack([E[0], 0.5 * E[0] + math.sqrt(0.75) * E[1]])
    _, stats = contrastive_alignment_loss(vis, target, margin=0.3, negatives_per_positive=None)
    assert stats["negative_cosine"].item() == pytest.approx(0.25)  # pairs (0, 1) at 0.5 and (1, 0) at 0
    # Two positives (0 and 1 − √0.75), two negatives (max(0, 0.5 − 0.3) and 0), averaged over the four pairs.
    expected = ((1 - math.sqrt(0.75)) + 0.2) / 4
    assert pair_loss(vis, target, margin=0.3, negatives_per_positive=None).item() == pytest.approx(expected)
    expected_at_wide_margin = (1 - math.sqrt(0.75)) / 4  # cos 0.5 ≤ m = 0.6: the negative is free
    assert pair_loss(vis, target, margin=0.6, negatives_per_positive=None).item() == pytest.approx(
        expected_at_wide_margin
    )


def test_opposite_negative_is_free_and_identical_negative_costs_one_minus_margin():
    _, stats = contrastive_alignment_loss(E[:2], torch.stack([E[0], -E[0]]), negatives_per_positive=None)
    assert stats["negative"].item() == 0.0  # negatives at cosine −1 and 0, both below the margin
    same = torch.stack([E[0], E[0]])  # two people with one embedding: both negatives at cosine 1
    _, stats = contrastive_alignment_loss(same, same, identities=[0, 1], margin=0.3)
    assert stats["negative"].item() == pytest.approx(0.7)


@pytest.mark.parametrize(("k", "symmetric", "count"), [(0, False, 0), (1, False, 4), (2, False, 8), (None, False, 12)])
def test_negatives_per_positive(k, symmetric, count):
    _, stats = contrastive_alignment_loss(E, E, negatives_per_positive=k, symmetric=symmetric)
    assert stats["num_negatives"].item() == count


def test_symmetric_mining_adds_the_targets_hardest_and_counts_a_pair_once():
    vis = E
    target = E.clone()
    target[3] = 0.9 * E[0] + math.sqrt(1 - 0.81) * E[3]  # target 3 looks like vis 0
    one_sided = contrastive_alignment_loss(vis, target, negatives_per_positive=1, symmetric=False)[1]
    both = contrastive_alignment_loss(vis, target, negatives_per_positive=1, symmetric=True)[1]
    assert one_sided["num_negatives"].item() == 4
    assert 4 < both["num_negatives"].item() <= 8


def test_hard_sampling_picks_the_most_similar_impostor():
    target = E.clone()
    target[2] = 0.8 * E[0] + 0.6 * E[2]  # for vis 0, target 2 is the hardest impostor (cosine 0.8)
    _, stats = contrastive_alignment_loss(E, target, negatives_per_positive=1, symmetric=False, margin=0.3)
    assert stats["active_negatives"].item() == pytest.approx(0.25)  # only (0, 2) is above the margin
    assert stats["negative"].item() == pytest.approx(0.5 / 4)


def test_random_sampling_is_deterministic_given_a_generator():
    vis, target = torch.randn(8, 16, generator=torch.Generator().manual_seed(0)).chunk(2, dim=1)

    def run(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return pair_loss(vis, target, negatives_per_positive=2, negative_sampling="random", generator=generator)

    assert torch.equal(run(3), run(3))
    assert len({run(seed).item() for seed in range(6)}) > 1  # it does sample


def test_same_identity_pairs_are_not_negatives():
    _, stats = contrastive_alignment_loss(E, E, identities=["a", "a", "b", "b"], negatives_per_positive=None)
    assert stats["num_negatives"].item() == 8  # 12 off-diagonal pairs minus the 4 within a person


def test_impostor_rows_are_negatives():
    vis = torch.stack([E[0], E[1]])
    target = torch.stack([E[0], E[0]])  # row 1 pairs vis of "b" with a target image of "a"
    loss, stats = contrastive_alignment_loss(
        vis, target, identities=["a", "b"], target_identities=["a", "a"], negatives_per_positive=None, margin=0.3
    )
    # Positive (0, 0) costs 0; negatives (1, 0) and (1, 1) both at cosine 0; pair (0, 1) is "a"–"a", not used.
    assert stats["num_negatives"].item() == 2
    assert loss.item() == 0.0


def test_contrastive_gradient_reaches_both_sides():
    vis = torch.randn(4, 8, requires_grad=True)
    target = torch.randn(4, 8, requires_grad=True)
    pair_loss(vis, target, margin=-1.0).backward()
    assert vis.grad.abs().sum() > 0 and target.grad.abs().sum() > 0


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="of one shape"):
        pair_loss(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="one identity per pair"):
        pair_loss(E, E, identities=[0, 1])


# --- distillation ---------------------------------------------------------------------------------------------------


def test_self_distillation_values():
    assert self_distillation_loss(E, 2.0 * E).item() == pytest.approx(0.0, abs=1e-7)
    assert self_distillation_loss(E, -E).item() == pytest.approx(2.0)
    assert self_distillation_loss(E, E.roll(1, dims=0)).item() == pytest.approx(1.0)


def test_distillation_gradient_stops_at_the_teacher():
    student = torch.randn(4, 8, requires_grad=True)
    teacher = torch.randn(4, 8, requires_grad=True)
    (self_distillation_loss(student, teacher) + cross_modal_distillation_loss(student, teacher)).backward()
    assert student.grad is not None and teacher.grad is None


# --- the combined loss ----------------------------------------------------------------------------------------------


def test_total_is_the_weighted_sum_of_the_terms():
    generator = torch.Generator().manual_seed(0)
    vis, target, teacher = torch.randn(3, 6, 8, generator=generator)
    config = XEdgeFaceLossConfig(
        margin=0.2, contrastive_weight=0.5, self_distillation_weight=2.0, cross_distillation_weight=0.25
    )
    out = XEdgeFaceLoss(config)(vis, target, teacher_vis_embeddings=teacher)
    expected = 0.5 * out["contrastive"] + 2.0 * out["self_distillation"] + 0.25 * out["cross_modal_distillation"]
    torch.testing.assert_close(out["loss"], expected)
    torch.testing.assert_close(out["self_distillation"], self_distillation_loss(vis, teacher))
    torch.testing.assert_close(out["cross_modal_distillation"], cross_modal_distillation_loss(target, teacher))
    assert {"contrastive/positive", "contrastive/negative", "contrastive/num_negatives"} <= set(out)


def test_cross_modal_distillation_can_be_turned_off():
    out = XEdgeFaceLoss(XEdgeFaceLossConfig(cross_distillation_weight=0.0))(E, E, teacher_vis_embeddings=E)
    assert "cross_modal_distillation" not in out and out["loss"].item() == 0.0
    out = XEdgeFaceLoss()(E, -E, teacher_vis_embeddings=E)  # on by default: a flipped target costs 2 per row
    assert out["cross_modal_distillation"].item() == pytest.approx(2.0)


def test_distillation_without_a_teacher_is_refused():
    with pytest.raises(ValueError, match="need teacher_vis_embeddings"):
        XEdgeFaceLoss()(E, E)
    out = XEdgeFaceLoss(XEdgeFaceLossConfig(self_distillation_weight=0.0, cross_distillation_weight=0.0))(E, E)
    assert set(out) >= {"loss", "contrastive"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("margin", 1.5, "margin is a cosine"),
        ("self_distillation_weight", -1.0, "must be non-negative"),
        ("negatives_per_positive", -1, "non-negative integer or None"),
        ("negative_sampling", "semi-hard", "'hard' or 'random'"),
    ],
)
def test_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        XEdgeFaceLossConfig(**{field: value})


# --- the teacher ----------------------------------------------------------------------------------------------------


def test_teacher_is_the_base_model(tiny_config):
    torch.manual_seed(0)
    base = EdgeFaceModel(tiny_config).eval()
    pixels = torch.randn(3, 3, tiny_config.image_size, tiny_config.image_size)
    with torch.no_grad():
        expected = base(pixels).embeddings
    model = add_adapter(base, "ln_stem_s0").train()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".ln_tuning_layers." in name:
                param.add_(0.1 * torch.randn_like(param))
    student = model(pixel_values=pixels).embeddings
    assert not torch.allclose(student, expected, atol=1e-3)

    teacher = teacher_embeddings(model, pixels)
    torch.testing.assert_close(teacher, expected, atol=0, rtol=0)
    assert not teacher.requires_grad
    assert model.training  # modes and trainable flags are put back
    trainable = [p for n, p in model.named_parameters() if ".ln_tuning_layers." in n]
    assert all(p.requires_grad for p in trainable)

    # The teacher ran between the student's forward and backward: the adapter still gets its gradients.
    self_distillation_loss(student, teacher).backward()
    assert all(p.grad is not None for p in trainable)


def test_teacher_needs_a_peft_model(tiny_config):
    with pytest.raises(ValueError, match="keep a frozen copy"):
        teacher_embeddings(EdgeFaceModel(tiny_config), torch.zeros(1, 3, 32, 32))


def test_real_xxs_teacher(xxs_folder, assets):
    pixels = load_file(assets / "golden/inputs.safetensors")["pixel_values"][:4]
    base = EdgeFaceModel.from_pretrained(xxs_folder).eval()
    with torch.no_grad():
        expected = base(pixels).embeddings
    model = add_adapter(base, "ln_stem")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".ln_tuning_layers." in name:
                param.mul_(1.1)
    torch.testing.assert_close(teacher_embeddings(model, pixels), expected, atol=0, rtol=0)
    with torch.no_grad():
        student = model(pixel_values=pixels).embeddings
    assert self_distillation_loss(student, expected).item() > 1e-4  # the adapter moved the embeddings


def test_teacher_leaves_a_frozen_adapter_frozen(tiny_config):
    model = add_adapter(EdgeFaceModel(tiny_config), "ln").eval().requires_grad_(False)  # as loaded for inference
    teacher_embeddings(model, torch.zeros(1, 3, tiny_config.image_size, tiny_config.image_size))
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training


# --- real target data without visible twins ----------------------------------------------------------------------


def test_target_identity_loss_is_low_for_separated_people_and_high_for_mixed_ones():
    from hfr_hf.losses import target_identity_loss

    ids = ["a", "a", "b", "b"]
    separated = torch.stack([E[0], E[0], E[1], E[1]])
    swapped = torch.stack([E[0], E[1], E[0], E[1]])  # each image sits on the other person
    low, high = target_identity_loss(separated, ids, 0.1), target_identity_loss(swapped, ids, 0.1)
    # separated: log(1 + 2·exp(−10)) per anchor; swapped: the positive is 10 below the impostor
    assert low.item() == pytest.approx(math.log(1 + 2 * math.exp(-10)), rel=1e-2)
    assert high.item() > 9.0


def test_target_identity_loss_skips_people_with_one_image():
    from hfr_hf.losses import target_identity_loss

    assert target_identity_loss(E, ["a", "b", "c", "d"]).item() == 0.0
    one_pair = target_identity_loss(torch.stack([E[0], E[0], E[2], E[3]]), ["a", "a", "c", "d"], 0.1)
    assert one_pair.item() == pytest.approx(math.log(1 + 2 * math.exp(-10)), rel=1e-2)


def test_moment_matching_is_zero_for_one_distribution_and_grows_with_a_shift():
    from hfr_hf.losses import moment_matching_loss

    points = torch.stack([E[0], E[1], E[2], E[3]])
    assert moment_matching_loss(points, points.flip(0)).item() == pytest.approx(0.0, abs=1e-7)
    # same spread, mean moved: the mean term alone is ‖μ_s − μ_r‖²
    a = torch.stack([E[0], E[1]])
    b = torch.stack([E[2], E[3]])
    expected_mean = (((E[0] + E[1]) - (E[2] + E[3])) / 2).pow(2).sum().item()
    cov = lambda x: (x - x.mean(0)).T @ (x - x.mean(0))  # noqa: E731
    expected = expected_mean + (cov(a) - cov(b)).pow(2).sum().item() / 4
    assert moment_matching_loss(a, b).item() == pytest.approx(expected, rel=1e-5)


def test_moment_matching_gradient_stops_at_the_reference():
    from hfr_hf.losses import moment_matching_loss

    source = torch.randn(6, 8, requires_grad=True)
    reference = torch.randn(6, 8, requires_grad=True)
    moment_matching_loss(source, reference).backward()
    assert source.grad is not None and source.grad.abs().sum() > 0 and reference.grad is None


def test_real_target_terms_are_weighted_into_the_total_and_logged():
    cfg = XEdgeFaceLossConfig(target_identity_weight=0.5, alignment_weight=2.0)
    vis = torch.randn(4, 8)
    real = torch.randn(6, 8)
    out = XEdgeFaceLoss(cfg)(
        vis, torch.randn(4, 8), vis.clone(), real_target_embeddings=real, real_target_identities=list("aabbcc")
    )
    expected = (
        out["contrastive"]
        + out["self_distillation"]
        + out["cross_modal_distillation"]
        + 0.5 * out["target_identity"]
        + 2.0 * out["distribution_alignment"]
    )
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    off = XEdgeFaceLoss(XEdgeFaceLossConfig())(vis, torch.randn(4, 8), vis.clone(), real_target_embeddings=real)
    assert "target_identity" not in off and "distribution_alignment" not in off
