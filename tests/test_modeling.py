import json

import pytest
import torch

from hfr_hf import EDGEFACE_VARIANTS, EdgeFaceConfig, EdgeFaceModel
from hfr_hf.modeling_edgeface import EdgeFaceLowRankLinear, lowrank_rank

OFFICIAL_PARAMETERS = {
    "xxs": 1_244_744,
    "xs": 2_242_620,
    "xs_gamma_06": 1_770_492,
    "s_gamma_05": 3_652_520,
    "base": 18_225_812,
}


@pytest.fixture
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return EdgeFaceModel(tiny_config).eval()


def test_every_variant_is_covered():
    assert set(OFFICIAL_PARAMETERS) == set(EDGEFACE_VARIANTS)


@pytest.mark.parametrize("variant", list(EDGEFACE_VARIANTS))
def test_parameter_counts_equal_the_official_ones(variant):
    with torch.device("meta"):
        model = EdgeFaceModel(EdgeFaceConfig.from_variant(variant))
    assert model.num_parameters() == OFFICIAL_PARAMETERS[variant]


def test_lowrank_variant_factorises_every_linear_including_the_head():
    with torch.device("meta"):
        model = EdgeFaceModel(EdgeFaceConfig.from_variant("xs_gamma_06"))
    assert not any(
        isinstance(m, torch.nn.Linear) and "linear" not in n.rsplit(".", 1)[-1] for n, m in model.named_modules()
    )
    assert isinstance(model.head.fc, EdgeFaceLowRankLinear)
    assert model.head.fc.rank == lowrank_rank(192, 512, 0.6) == 115


def test_lowrank_rank_has_a_floor_of_two():
    assert lowrank_rank(3, 100, 0.5) == 2
    assert lowrank_rank(100, 64, 0.5) == 32


def test_base_structure_accepts_the_official_state_dict_shapes(assets):
    manifest = json.loads((assets / "golden/base_manifest.json").read_text())
    state_dict = {key.removeprefix("model."): torch.zeros(shape) for key, shape in manifest.items()}
    model = EdgeFaceModel(EdgeFaceConfig.from_variant("base"))
    result = model.load_state_dict(state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_output_shapes(tiny_model, tiny_config):
    pixel_values = torch.randn(3, 3, 32, 32)
    out = tiny_model(pixel_values, output_hidden_states=True)
    assert out.embeddings.shape == (3, tiny_config.embedding_size)
    assert out.last_hidden_state.shape == (3, tiny_config.dims[-1], 1, 1)
    assert out.pooler_output is out.embeddings
    assert [h.shape[1] for h in out.hidden_states] == [tiny_config.dims[0], *tiny_config.dims]


def test_tuple_output_starts_with_the_embeddings(tiny_model):
    pixel_values = torch.randn(2, 3, 32, 32)
    as_tuple = tiny_model(pixel_values, return_dict=False)
    torch.testing.assert_close(as_tuple[0], tiny_model(pixel_values).embeddings)


def test_batch_items_are_independent(tiny_model):
    pixel_values = torch.randn(4, 3, 32, 32)
    batched = tiny_model(pixel_values).embeddings
    single = torch.cat([tiny_model(pixel_values[i : i + 1]).embeddings for i in range(4)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_get_embeddings_normalises(tiny_model):
    pixel_values = torch.randn(2, 3, 32, 32)
    normalised = tiny_model.get_embeddings(pixel_values)
    raw = tiny_model.get_embeddings(pixel_values, normalize=False)
    torch.testing.assert_close(normalised.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(normalised, raw / raw.norm(dim=-1, keepdim=True))


def test_save_and_load_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    loaded = EdgeFaceModel.from_pretrained(tmp_path).eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(pixel_values).embeddings, tiny_model(pixel_values).embeddings)
    assert (tmp_path / "model.safetensors").is_file()


def test_gradients_reach_every_parameter(tiny_config):
    model = EdgeFaceModel(tiny_config).train()
    model(torch.randn(2, 3, 32, 32)).embeddings.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_drop_path_is_active_only_in_training(tiny_config):
    config = EdgeFaceConfig(**{**tiny_config.to_dict(), "drop_path_rate": 0.5})
    torch.manual_seed(0)
    model = EdgeFaceModel(config)
    pixel_values = torch.randn(8, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(pixel_values).embeddings, model(pixel_values).embeddings)
    model.train()
    assert not torch.allclose(model(pixel_values).embeddings, model(pixel_values).embeddings)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 1, 32, 32), "expects 3 channels"),
        ((2, 4, 32, 32), "expects 3 channels"),
        ((2, 3, 64, 64), "expects aligned 32×32 faces, got 64×64"),
        ((3, 32, 32), "tensor of shape"),
    ],
)
def test_bad_input_is_named(tiny_model, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(torch.randn(*shape))


@pytest.mark.parametrize("flag", [True, False])
def test_output_hidden_states_falls_back_to_the_config(tiny_config, flag):
    config = EdgeFaceConfig(**{**tiny_config.to_dict(), "output_hidden_states": flag})
    model = EdgeFaceModel(config).eval()
    pixel_values = torch.randn(1, 3, 32, 32)
    assert (model(pixel_values).hidden_states is not None) is flag
    assert (model(pixel_values, output_hidden_states=not flag).hidden_states is not None) is (not flag)


def test_return_dict_falls_back_to_the_config(tiny_config):
    model = EdgeFaceModel(EdgeFaceConfig(**{**tiny_config.to_dict(), "return_dict": False})).eval()
    assert isinstance(model(torch.randn(1, 3, 32, 32)), tuple)


def test_positional_encoding_is_a_buffer_rebuilt_on_loading(tiny_model, tmp_path):
    encoding = tiny_model.stages[1].blocks[-1].pos_embd
    assert "fourier_features" in dict(encoding.named_buffers())
    assert not any("fourier" in key for key in tiny_model.state_dict())  # not saved: it is computed
    tiny_model.save_pretrained(tmp_path)
    loaded = EdgeFaceModel.from_pretrained(tmp_path).stages[1].blocks[-1].pos_embd.fourier_features
    torch.testing.assert_close(loaded, encoding.compute_fourier_features(4, 4), rtol=0, atol=0)


def _offload_cases(tmp_path):
    from accelerate import cpu_offload, disk_offload

    yield "cpu_offload", lambda: cpu_offload(EdgeFaceModel.from_pretrained(tmp_path), execution_device="cpu")
    yield "disk_offload", lambda: disk_offload(EdgeFaceModel.from_pretrained(tmp_path), tmp_path / "disk", "cpu")
    # stage 1 holds the positional encoding; its weights on disk, the others in memory
    device_map = {"stem": "cpu", "stages.0": "cpu", "stages.1": "disk", "stages.2": "cpu", "stages.3": "cpu"}
    yield (
        "device_map",
        lambda: EdgeFaceModel.from_pretrained(
            tmp_path, device_map={**device_map, "head": "cpu"}, offload_folder=tmp_path / "map"
        ),
    )
    yield (
        "max_memory",
        lambda: EdgeFaceModel.from_pretrained(
            tmp_path, device_map="auto", max_memory={"cpu": 20_000}, offload_folder=tmp_path / "auto"
        ),
    )


def test_offloaded_model_gives_the_same_embeddings(tiny_model, tmp_path, one_torch_thread):
    tiny_model.save_pretrained(tmp_path)
    pixel_values = torch.randn(2, 3, 32, 32)
    expected = tiny_model(pixel_values).embeddings
    for name, load in _offload_cases(tmp_path):
        model = load().eval()
        offloaded = model.stages[1].blocks[-1].pos_embd.token_projection.weight
        assert offloaded.device.type == "meta", name  # really offloaded: weights arrive at forward time only
        torch.testing.assert_close(model(pixel_values).embeddings, expected, msg=name)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_gives_the_plain_gradients(tiny_config, use_reentrant, one_torch_thread):
    torch.manual_seed(0)
    model = EdgeFaceModel(tiny_config).train()
    pixel_values = torch.randn(2, 3, 32, 32)

    def gradients():
        model.zero_grad()
        model(pixel_values).embeddings.square().sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain = gradients()
    calls = []  # of a layer inside a checkpointed block
    model.stages[1].blocks[-1].xca.register_forward_pre_hook(lambda *_: calls.append(1))
    model.activation_checkpointing_enable({"use_reentrant": use_reentrant})
    assert model.is_activation_checkpointing
    checkpointed = gradients()
    assert len(calls) == 2  # the block ran again in the backward pass: its activations were not kept
    assert checkpointed.keys() == plain.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_torch_export_matches_eager_and_warns_of_nothing(tiny_model, recwarn):
    pixel_values = torch.randn(2, 3, 32, 32)
    program = torch.export.export(tiny_model, (pixel_values,))
    assert not [w for w in recwarn if "fourier" in str(w.message)], [str(w.message) for w in recwarn]
    assert any("fourier_features" in name for name in program.graph_signature.buffers)
    exported = program.module()(pixel_values)
    torch.testing.assert_close(exported["embeddings"], tiny_model(pixel_values).embeddings)
