"""xEdgeFace adapters: what each preset trains, freezing, merge, save / load, base check, several adapters."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from hfr_hf import EdgeFaceConfig, EdgeFaceModel
from hfr_hf.adapters import (
    ADAPTER_PRESETS,
    ADAPTER_RECORD_NAME,
    DEFAULT_ADAPTER_PRESET,
    adapter_config,
    adapter_target_modules,
    add_adapter,
    base_fingerprint,
    check_adapter_folder,
    load_adapter,
    merge_adapter,
    parameter_report,
    save_adapter,
)

ADAPTER_ONLY = [name for name, spec in ADAPTER_PRESETS.items() if not spec.full]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(config: EdgeFaceConfig, seed: int = 0) -> EdgeFaceModel:
    torch.manual_seed(seed)
    model = EdgeFaceModel(config).eval()
    with torch.no_grad():  # LayerNorms start at (1, 0) and layer scales at 1e-6: make every part matter
        for param in model.parameters():
            param.add_(0.2 * torch.randn_like(param))
    return model


@pytest.fixture
def pixels(tiny_config) -> torch.Tensor:
    return torch.randn(4, 3, tiny_config.image_size, tiny_config.image_size, generator=torch.Generator().manual_seed(1))


def expected_trainable(model: EdgeFaceModel, preset: str) -> set[str]:
    """Parameter names a preset should train, derived from the plain model independently of adapters.py."""
    spec = ADAPTER_PRESETS[preset]
    names = set()
    for module_name, module in model.named_modules():
        own = {f"{module_name}.{p}" for p, _ in module.named_parameters(recurse=False)}
        if isinstance(module, torch.nn.LayerNorm):
            names |= own
    names |= {n for n, _ in model.named_parameters() if spec.stem and n.startswith("stem.0.")}
    names |= {n for n, _ in model.named_parameters() if any(n.startswith(f"stages.{i}.") for i in spec.stages)}
    return names if not spec.full else {n for n, _ in model.named_parameters()}


def trainable_as_base_names(model) -> set[str]:
    """Trainable parameters of a (PEFT) model under the base model's names."""
    names = set()
    for name, param in model.named_parameters():
        if param.requires_grad:
            name = name.removeprefix("base_model.model.")
            names.add(name.replace(".ln_tuning_layers.default.", "."))
    return names


def perturb_adapter(model: PeftModel, adapter_name: str, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if f".ln_tuning_layers.{adapter_name}." in name:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))


@pytest.mark.parametrize("preset", list(ADAPTER_PRESETS))
def test_preset_trains_exactly_its_modules(tiny_config, preset):
    model = tiny_model(tiny_config)
    expected = expected_trainable(model, preset)
    base_counts = {n: p.numel() for n, p in model.named_parameters()}
    adapted = add_adapter(model, preset)
    assert trainable_as_base_names(adapted) == expected
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    assert trainable == sum(base_counts[n] for n in expected)


@pytest.mark.parametrize("preset", ADAPTER_ONLY)
def test_preset_targets_are_disjoint_and_named(tiny_config, preset):
    targets = adapter_target_modules(preset, tiny_model(tiny_config))
    spec = ADAPTER_PRESETS[preset]
    assert ("stem.0" in targets) == spec.stem
    assert {t for t in targets if t.count(".") == 1 and t.startswith("stages.")} == {f"stages.{i}" for i in spec.stages}
    assert not any(a != b and b.startswith(a + ".") for a in targets for b in targets)  # no nested PEFT layers


def test_presets_grow(tiny_config):
    counts = [c.trainable for c in parameter_report(tiny_config).values()]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_unknown_preset_is_refused(tiny_config):
    with pytest.raises(ValueError, match="Unknown adapter preset 'ln_stem_s9'"):
        adapter_config("ln_stem_s9", tiny_model(tiny_config))


def test_full_preset_has_no_peft_config(tiny_config):
    with pytest.raises(ValueError, match="'full' preset"):
        adapter_config("full", tiny_model(tiny_config))


@pytest.mark.parametrize("preset", ADAPTER_ONLY)
def test_training_leaves_the_base_untouched(tiny_config, pixels, preset):
    model = tiny_model(tiny_config).train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapted = add_adapter(model, preset)
    adapter_before = {n: p.detach().clone() for n, p in adapted.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD([p for p in adapted.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    for _ in range(2):
        optimizer.zero_grad()
        adapted(pixel_values=pixels).embeddings.pow(2).mean().backward()
        optimizer.step()
    base = {n.removeprefix("base_model.model.").replace(".base_layer.", "."): p for n, p in adapted.named_parameters()}
    for name, before in frozen.items():
        assert base[name].grad is None, name
        assert torch.equal(base[name], before), name
    changed = [n for n, p in adapted.named_parameters() if p.requires_grad and not torch.equal(p, adapter_before[n])]
    assert changed  # the adapter did train
    assert base_fingerprint(adapted) == base_fingerprint(tiny_model(tiny_config))


@pytest.mark.parametrize("preset", ADAPTER_ONLY)
def test_merge_gives_plain_model_with_adapted_outputs(tiny_config, pixels, preset):
    base_outputs = tiny_model(tiny_config)(pixels).embeddings
    adapted = add_adapter(tiny_model(tiny_config), preset)
    perturb_adapter(adapted, "default")
    with torch.no_grad():
        unmerged = adapted(pixel_values=pixels).embeddings
    merged = merge_adapter(adapted)
    assert type(merged) is EdgeFaceModel
    assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in tiny_model(tiny_config).parameters())
    with torch.no_grad():
        outputs = merged(pixels).embeddings
    assert not torch.allclose(unmerged, base_outputs, atol=1e-3)  # the adapter changes the outputs
    torch.testing.assert_close(outputs, unmerged, atol=1e-5, rtol=0)


def test_merge_picks_the_named_adapter(tiny_config, pixels):
    adapted = add_adapter(tiny_model(tiny_config), "ln_stem_s0", adapter_name="thermal")
    add_adapter(adapted, "ln_stem_s0", adapter_name="nir")
    perturb_adapter(adapted, "thermal", seed=1)
    perturb_adapter(adapted, "nir", seed=2)
    adapted.set_adapter("nir")
    with torch.no_grad():
        nir = adapted(pixel_values=pixels).embeddings
    merged = merge_adapter(adapted, "nir")
    torch.testing.assert_close(merged(pixels).embeddings, nir, atol=1e-5, rtol=0)


def test_save_load_round_trip(tiny_config, pixels, tmp_path):
    adapted = add_adapter(tiny_model(tiny_config), "ln_stem_s01", adapter_name="thermal")
    perturb_adapter(adapted, "thermal")
    with torch.no_grad():
        expected = adapted(pixel_values=pixels).embeddings
    folder = save_adapter(adapted, tmp_path / "thermal")
    assert {p.name for p in folder.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
        ADAPTER_RECORD_NAME,
    }
    assert all(".base_layer." not in key for key in load_file(folder / "adapter_model.safetensors"))
    record = json.loads((folder / ADAPTER_RECORD_NAME).read_text())
    assert record["preset"] == "ln_stem_s01" and record["base_model_fingerprint"] == base_fingerprint(adapted)

    loaded = load_adapter(tiny_model(tiny_config), folder, adapter_name="thermal")
    assert isinstance(loaded, PeftModel) and loaded.active_adapter == "thermal"
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=pixels).embeddings, expected, atol=0, rtol=0)
    assert not any(p.requires_grad for p in loaded.parameters())  # loaded for inference by default


def test_wrong_base_is_refused(tiny_config, tmp_path):
    folder = save_adapter(add_adapter(tiny_model(tiny_config, seed=0), "ln"), tmp_path / "adapter")
    with pytest.raises(ValueError, match="only works on the exact base it was trained on"):
        load_adapter(tiny_model(tiny_config, seed=1), folder)


def test_adapter_without_record_loads_with_a_warning(tiny_config, tmp_path):
    adapted = add_adapter(tiny_model(tiny_config), "ln")
    adapted.save_pretrained(tmp_path)  # plain PEFT files, no record of the base
    with pytest.warns(UserWarning, match="cannot be checked"):
        load_adapter(tiny_model(tiny_config), tmp_path)


def test_two_named_adapters_switch(tiny_config, pixels, tmp_path):
    adapted = add_adapter(tiny_model(tiny_config), "ln_stem", adapter_name="thermal")
    add_adapter(adapted, "ln_stem", adapter_name="nir")
    assert adapted.active_adapter == "thermal"  # adding does not switch
    perturb_adapter(adapted, "thermal", seed=1)
    perturb_adapter(adapted, "nir", seed=2)
    outputs = {}
    for name in ("thermal", "nir"):
        adapted.set_adapter(name)
        with torch.no_grad():
            outputs[name] = adapted(pixel_values=pixels).embeddings
        trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
        assert trainable and all(f".ln_tuning_layers.{name}." in n for n in trainable)
    assert not torch.allclose(outputs["thermal"], outputs["nir"], atol=1e-3)

    # Saved separately, loaded side by side onto a fresh copy of the base: the same outputs per name.
    save_adapter(adapted, tmp_path / "thermal", "thermal")
    save_adapter(adapted, tmp_path / "nir", "nir")
    both = load_adapter(tiny_model(tiny_config), tmp_path / "thermal", adapter_name="thermal")
    load_adapter(both, tmp_path / "nir", adapter_name="nir")
    assert both.active_adapter == "thermal"
    for name in ("nir", "thermal"):
        both.set_adapter(name)
        with torch.no_grad():
            torch.testing.assert_close(both(pixel_values=pixels).embeddings, outputs[name], atol=0, rtol=0)


def test_full_size_adapters_record_their_preset_and_stack(tmp_path):
    # A real EdgeFace has 20+ targets, past which PEFT rewrites target_modules as name suffixes.
    adapted = add_adapter(EdgeFaceModel(EdgeFaceConfig.from_variant("xxs")).eval(), "ln_stem", adapter_name="thermal")
    assert len(adapted.peft_config["thermal"].target_modules) < len(adapter_target_modules("ln_stem", adapted))
    add_adapter(adapted, "ln_stem", adapter_name="nir")
    with pytest.raises(ValueError, match="must share a preset"):
        add_adapter(adapted, "ln", adapter_name="other")
    record = json.loads((save_adapter(adapted, tmp_path / "thermal", "thermal") / ADAPTER_RECORD_NAME).read_text())
    assert record["preset"] == "ln_stem"


def test_only_the_active_adapter_trains(tiny_config):
    adapted = add_adapter(tiny_model(tiny_config), "ln", adapter_name="thermal")
    add_adapter(adapted, "ln", adapter_name="nir")
    names = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert names and all(".ln_tuning_layers.thermal." in n for n in names)


def test_adapters_on_one_base_must_share_a_preset(tiny_config):
    adapted = add_adapter(tiny_model(tiny_config), "ln", adapter_name="thermal")
    with pytest.raises(ValueError, match="must share a preset"):
        add_adapter(adapted, "ln_stem_s0", adapter_name="nir")
    with pytest.raises(ValueError, match="already has an adapter named 'thermal'"):
        add_adapter(adapted, "ln", adapter_name="thermal")


def test_full_preset_is_plain_finetuning(tiny_config):
    model = tiny_model(tiny_config).requires_grad_(False)
    assert add_adapter(model, "full") is model
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.filterwarnings("ignore:Unsupported layer type", "ignore:`is_gradient_checkpointing` is deprecated")
@pytest.mark.parametrize("made_by", ["hfr_hf", "peft"])
def test_full_preset_refusal_names_calls_that_work(tiny_config, made_by):
    from peft import get_peft_model

    base = tiny_model(tiny_config)
    if made_by == "hfr_hf":
        adapted = add_adapter(base, "ln_stem_s01")
    else:
        adapted = get_peft_model(base, adapter_config("ln_stem_s01", base))
    with pytest.raises(ValueError, match=r"model\.merge_and_unload\(\) or model = model\.unload\(\)"):
        add_adapter(adapted, "full")
    plain = adapted.unload()  # the call the message names, on a whole-stage adapter
    assert add_adapter(plain, "full") is plain and isinstance(plain, EdgeFaceModel)


def test_fingerprint_tracks_the_base_weights(tiny_config):
    model = tiny_model(tiny_config)
    fingerprint = base_fingerprint(model)
    adapted = add_adapter(model, "ln_stem_s0")
    perturb_adapter(adapted, "default")
    assert base_fingerprint(adapted) == fingerprint  # adapters are not part of the base
    with torch.no_grad():
        adapted.get_base_model().head.fc.weight[0, 0] += 1e-3
    assert base_fingerprint(adapted) != fingerprint


@pytest.mark.parametrize(
    ("variant", "ln", "ln_stem"), [("xxs", 3_328, 4_504), ("xs", 5_080, 6_648), ("xs_gamma_06", 5_080, 6_648)]
)
def test_parameter_counts(variant, ln, ln_stem):
    report = parameter_report(variant, ["ln", "ln_stem", "full"])
    assert report["ln"].trainable == ln
    assert report["ln_stem"].trainable == ln_stem
    assert (
        report["full"].trainable
        == report["full"].total
        == sum(p.numel() for p in EdgeFaceModel(EdgeFaceConfig.from_variant(variant)).parameters())
    )


def test_xs_layernorms_and_stem_match_the_paper():
    # 6,648 parameters = 0.38 % of EdgeFace-XS(γ=0.6) (1,770,492); 0.30 % of the full-rank XS (2,242,620).
    report = parameter_report("xs_gamma_06", ["ln_stem"])["ln_stem"]
    assert (report.trainable, report.total, round(report.percent, 2)) == (6_648, 1_770_492, 0.38)
    report = parameter_report("xs", ["ln_stem"])["ln_stem"]
    assert (report.trainable, report.total, round(report.percent, 2)) == (6_648, 2_242_620, 0.30)


@pytest.mark.parametrize("variant", ["xxs", "xs"])
def test_default_preset_trains_under_one_percent(variant):
    assert parameter_report(variant, [DEFAULT_ADAPTER_PRESET])[DEFAULT_ADAPTER_PRESET].percent < 1.0


def test_real_xxs_merge_and_round_trip(xxs_folder, assets, tmp_path):
    pixels = load_file(assets / "golden/inputs.safetensors")["pixel_values"][:4]
    adapted = add_adapter(EdgeFaceModel.from_pretrained(xxs_folder).eval(), "ln_stem_s0", adapter_name="thermal")
    perturb_adapter(adapted, "thermal")
    with torch.no_grad():
        unmerged = adapted(pixel_values=pixels).embeddings
    folder = save_adapter(adapted, tmp_path / "thermal")
    assert json.loads((folder / ADAPTER_RECORD_NAME).read_text())["base_model_name_or_path"] == str(xxs_folder)

    loaded = load_adapter(EdgeFaceModel.from_pretrained(xxs_folder).eval(), folder, adapter_name="thermal")
    merged = merge_adapter(loaded)
    assert sum(p.numel() for p in merged.parameters()) == 1_244_744
    with torch.no_grad():
        torch.testing.assert_close(merged(pixels).embeddings, unmerged, atol=1e-5, rtol=0)


def test_only_an_adapter_folder_passes_as_an_adapter_and_a_whole_model_is_named(tiny_config, tmp_path):
    adapter = save_adapter(add_adapter(tiny_model(tiny_config), "ln_stem"), tmp_path / "adapter")
    assert check_adapter_folder(adapter) == adapter
    whole = tmp_path / "whole"
    tiny_model(tiny_config).save_pretrained(whole)  # what the `full` preset saves in adapter/
    with pytest.raises(ValueError, match="is a whole fine-tuned model .*: publish it with --model"):
        check_adapter_folder(whole, as_model="publish it with --model")
    with pytest.raises(ValueError, match="holds no adapter_config.json"):
        load_adapter(tiny_model(tiny_config), tmp_path)
    with pytest.raises(ValueError, match="is a whole fine-tuned model"):
        load_adapter(tiny_model(tiny_config), whole)
