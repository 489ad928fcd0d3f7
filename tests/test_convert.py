import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from hfr_hf import EdgeFaceModel
from hfr_hf.convert import CheckpointError, convert_checkpoint, infer_variant, load_official_state_dict

from .conftest import TESTED_VARIANTS


def embeddings_of(folder, pixel_values):
    model = EdgeFaceModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(pixel_values).embeddings


@pytest.fixture(scope="module")
def golden_inputs(assets):
    return load_file(assets / "golden/inputs.safetensors")["pixel_values"]


@pytest.mark.parametrize("variant", TESTED_VARIANTS)
def test_fp32_checkpoint_reproduces_the_reference(variant, assets, golden_inputs, tmp_path):
    folder = convert_checkpoint(assets / f"golden/edgeface_{variant}_official.pt", tmp_path / variant)
    golden = load_file(assets / f"golden/edgeface_{variant}.safetensors")["embeddings"]
    assert (embeddings_of(folder, golden_inputs) - golden).abs().max().item() <= 1e-4
    assert json.loads((folder / "config.json").read_text())["variant"] == variant


@pytest.mark.parametrize("variant", ["xxs", "xs"])
def test_int8_checkpoint_reproduces_the_reference(variant, assets, golden_inputs, tmp_path):
    folder = convert_checkpoint(assets / f"weights/edgeface/edgeface_{variant}_q.pt", tmp_path / variant)
    golden = load_file(assets / f"golden/edgeface_{variant}.safetensors")["embeddings"]
    assert (embeddings_of(folder, golden_inputs) - golden).abs().max().item() <= 1e-4


def test_int8_weights_are_dequantised_to_the_fp32_ones(assets):
    quantised = load_official_state_dict(assets / "weights/edgeface/edgeface_xxs_q.pt")
    official = load_official_state_dict(assets / "golden/edgeface_xxs_official.pt")
    assert quantised.keys() == official.keys()
    assert all(torch.equal(quantised[k], official[k]) for k in official)


@pytest.mark.parametrize("variant", TESTED_VARIANTS)
def test_variant_is_inferred_from_keys_and_shapes(variant, assets):
    assert infer_variant(load_official_state_dict(assets / f"golden/edgeface_{variant}_official.pt")) == variant


def test_output_folder_contents(xxs_folder):
    names = {p.name for p in xxs_folder.iterdir()}
    assert names == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "configuration_edgeface.py",
        "modeling_edgeface.py",
        "edgeface_layers.py",
        "image_processing_edgeface.py",
        "edgeface_preprocessing.py",
        "README.md",
    }
    config = json.loads((xxs_folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_edgeface.EdgeFaceConfig",
        "AutoModel": "modeling_edgeface.EdgeFaceModel",
    }
    processor = json.loads((xxs_folder / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == {"AutoImageProcessor": "image_processing_edgeface.EdgeFaceImageProcessor"}


def test_model_card_stub(xxs_folder):
    card = ModelCard.load(xxs_folder / "README.md")
    assert card.data.license == "cc-by-nc-sa-4.0"
    assert card.data.base_model == "Idiap/EdgeFace-XXS"
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert "CC BY-NC-SA 4.0" in card.text and "George et al." in card.text


def test_explicit_variant_that_does_not_fit(assets, tmp_path):
    with pytest.raises(CheckpointError, match=r"(?s)does not fit EdgeFace-xs:.*missing.*wrong shape"):
        convert_checkpoint(assets / "golden/edgeface_xxs_official.pt", tmp_path / "out", variant="xs")
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint(assets, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((assets / "golden/edgeface_xxs_official.pt").read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="is not an EdgeFace checkpoint: it is not a complete PyTorch"):
        convert_checkpoint(truncated, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"these are not weights", bytes(range(101, 200))], ids=["text", "bytes"])
def test_file_that_is_not_a_checkpoint(tmp_path, content):
    """torch's own messages (`KeyError: 101`, or a paragraph suggesting weights_only=False) never reach the user."""
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="is not an EdgeFace checkpoint") as error:
        load_official_state_dict(path)
    assert "KeyError" not in str(error.value) and "weights_only" not in str(error.value)


class Code:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_code_running_pickle_is_refused_without_suggesting_to_run_it(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Code()}, path)
    with pytest.raises(CheckpointError, match="Python objects beyond tensors, which a safe load refuses") as error:
        load_official_state_dict(path)
    assert "weights_only" not in str(error.value)


def test_pickle_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_official_state_dict(path)


def test_checkpoint_of_another_architecture(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Linear(8, 10))
    path = tmp_path / "resnetish.pt"
    torch.save({f"model.{k}": v for k, v in other.state_dict().items()}, path)
    with pytest.raises(
        CheckpointError,
        match=r"(?s)fits no EdgeFace variant.*Closest is .xxs.*missing \(160\).*unexpected \(9\): 0.bias",
    ):
        convert_checkpoint(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_official_state_dict(tmp_path / "nowhere.pt")


def test_refuses_to_overwrite_without_asking(assets, xxs_folder):
    with pytest.raises(FileExistsError, match=r"not empty; choose another folder or allow overwriting \(--overwrite\)"):
        convert_checkpoint(assets / "weights/edgeface/edgeface_xxs_q.pt", xxs_folder)


# The refusals below name a checkpoint that does not exist: they must come before it is read.
def test_overwrite_never_replaces_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is the current folder or one above it"):
        convert_checkpoint(tmp_path / "missing.pt", ".", overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("output", ["..", "../.."])
def test_overwrite_never_replaces_a_parent_of_the_current_folder(output, tmp_path, monkeypatch):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    with pytest.raises(FileExistsError, match="is the current folder or one above it"):
        convert_checkpoint(tmp_path / "missing.pt", output, overwrite=True)
    assert cwd.is_dir()


def test_overwrite_never_replaces_a_folder_that_is_not_a_model(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(FileExistsError, match="is not a previous model folder"):
        convert_checkpoint(tmp_path / "missing.pt", folder, overwrite=True)
    assert {p.name for p in folder.iterdir()} == {"notes.txt", "config.json"}


def test_overwrite_replaces_a_previous_model_folder(assets, xxs_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(xxs_folder, folder)
    (folder / "stale.txt").write_text("from the last conversion")
    assert convert_checkpoint(assets / "golden/edgeface_xs_official.pt", folder, overwrite=True) == folder
    assert EdgeFaceModel.from_pretrained(folder).config.variant == "xs"
    assert not (folder / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or old folder left beside it


def test_a_failed_replacement_keeps_the_previous_model_folder(assets, xxs_folder, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(xxs_folder, folder)
    rename = Path.rename

    def failing_rename(self, target):  # the old folder has moved aside; moving the new one in fails
        if Path(target) == folder and not self.name.endswith(".old"):
            raise OSError("disk trouble")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="disk trouble"):
        convert_checkpoint(assets / "golden/edgeface_xs_official.pt", folder, overwrite=True)
    assert EdgeFaceModel.from_pretrained(folder).config.variant == "xxs"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
