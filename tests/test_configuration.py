import pytest

from hfr_hf import EDGEFACE_VARIANTS, EdgeFaceConfig


@pytest.mark.parametrize("variant", list(EDGEFACE_VARIANTS))
def test_presets_round_trip_through_json(variant, tmp_path):
    config = EdgeFaceConfig.from_variant(variant)
    config.save_pretrained(tmp_path)
    loaded = EdgeFaceConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.variant == variant


def test_preset_fields():
    assert EdgeFaceConfig.from_variant("xs_gamma_06").lowrank_ratio == 0.6
    assert EdgeFaceConfig.from_variant("s_gamma_05").dims == [48, 96, 160, 304]
    assert EdgeFaceConfig.from_variant("base").dims == [80, 160, 288, 584]
    assert EdgeFaceConfig.from_variant("xxs").depths == [2, 2, 6, 2]


def test_from_variant_overrides_single_fields():
    config = EdgeFaceConfig.from_variant("xs", drop_path_rate=0.1)
    assert config.drop_path_rate == 0.1 and config.dims == [32, 64, 100, 192]


def test_unknown_variant():
    with pytest.raises(ValueError, match="Unknown EdgeFace variant 'xl'"):
        EdgeFaceConfig.from_variant("xl")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(dims=(24, 48, 88)), "dims"),
        (dict(depths=()), "depths"),
        (dict(heads=(4, 4, 5, 4)), "heads"),
        (dict(kernel_sizes=(3, 4, 7, 9)), "kernel_sizes"),
        (dict(global_block_counts=(0, 3, 1, 1)), "global_block_counts"),
        (dict(lowrank_ratio=1.5), "lowrank_ratio"),
        (dict(lowrank_ratio=0.0), "lowrank_ratio"),
        (dict(image_size=16), "image_size"),
        (dict(embedding_size=0), "embedding_size"),
        (dict(num_channels=2.5), "num_channels"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
        (dict(hidden_act="swishy"), "hidden_act"),
        (dict(layer_norm_eps=0), "layer_norm_eps"),
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"EdgeFaceConfig\.{field}"):
        EdgeFaceConfig(**kwargs)
