"""The read-only path: a plain model folder loads as `EdgeFaceNetwork` + `EdgeFacePreprocessor` without transformers,
with the numbers of `EdgeFaceModel` + `EdgeFaceImageProcessor`; anything else falls back to those."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from hfr_hf import EdgeFaceImageProcessor, EdgeFaceModel
from hfr_hf.edgeface_layers import EdgeFaceNetwork
from hfr_hf.edgeface_preprocessing import EdgeFacePreprocessor
from hfr_hf.images import load_image
from hfr_hf.inference import embed_images, load_model

from .conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def s_gamma_05_folder(assets, tmp_path_factory):
    """The low-rank S(γ=0.5) layout (seeded random weights in the official format), converted once."""
    from hfr_hf.convert import convert_checkpoint

    checkpoint = assets / "golden/edgeface_s_gamma_05_official.pt"
    return convert_checkpoint(checkpoint, tmp_path_factory.mktemp("models") / "s_gamma_05")


@pytest.fixture(scope="module")
def images(assets):
    """Aligned 112×112 crops of real faces, the raw photos they come from (grey AT&T, colour deepface), and the
    crops as 16-bit, float and grey + alpha images (the kinds thermal sensors and tools give)."""
    from hfr_hf.alignment import FaceAligner

    raw = [assets / "faces/att/s1/1.pgm", assets / "faces/att/s2/1.pgm", assets / "faces/deepface/img1.jpg"]
    crops = [FaceAligner()(load_image(path)) for path in raw]
    grey = crops[0].mean(axis=-1)
    return {
        "crops": crops,
        "raw": raw,
        "other kinds": [
            (grey * 257).astype(np.uint16),  # 16-bit counts: stretched min–max
            (grey / 255.0 * 30.0 + 290.0).astype(np.float32),  # temperatures in kelvin
            np.stack([grey.astype(np.uint8), np.full_like(grey, 255, np.uint8)], axis=-1),  # grey + alpha
            Image.fromarray(crops[1]).convert("L"),  # grey PIL
        ],
    }


@pytest.mark.parametrize("variant", ["xxs", "s_gamma_05"])
def test_light_path_embeds_as_the_transformers_classes(variant, xxs_folder, s_gamma_05_folder, images):
    folder = {"xxs": xxs_folder, "s_gamma_05": s_gamma_05_folder}[variant]
    network, preprocessor = load_model(folder, light=True)
    assert type(network) is EdgeFaceNetwork and type(preprocessor) is EdgeFacePreprocessor
    model = EdgeFaceModel.from_pretrained(folder).eval()
    processor = EdgeFaceImageProcessor.from_pretrained(folder)
    for kind, batch in images.items():
        light = embed_images(network, preprocessor, batch, progress=False)
        full = embed_images(model, processor, batch, progress=False)
        torch.testing.assert_close(light, full, atol=1e-5, rtol=0, msg=f"{variant}, {kind}")


def test_light_preprocessor_gives_the_processors_pixels(images):
    preprocessor, processor = EdgeFacePreprocessor(), EdgeFaceImageProcessor()
    resized = [Image.fromarray(images["crops"][2]).resize((100, 90)), images["crops"][1][:100]]  # not 112×112
    batch = images["crops"] + images["other kinds"] + resized
    for image in batch:
        np.testing.assert_array_equal(preprocessor(image).pixel_values, processor(image).pixel_values)
        np.testing.assert_array_equal(preprocessor.to_rgb_uint8(image), processor.to_rgb_uint8(image))
    channels_first = torch.from_numpy(images["crops"][0]).permute(2, 0, 1)
    light = preprocessor(channels_first, return_tensors="pt", data_format="channels_last").pixel_values
    assert isinstance(light, torch.Tensor)
    torch.testing.assert_close(
        light, processor(channels_first, return_tensors="pt", data_format="channels_last")["pixel_values"]
    )


def test_light_path_reads_the_folders_processor_settings(xxs_folder, images, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(xxs_folder, folder)
    EdgeFaceImageProcessor(resample="bilinear", intensity_normalization="dtype").save_pretrained(folder)
    _, preprocessor = load_model(folder, light=True)
    assert (preprocessor.resample, preprocessor.intensity_normalization) == ("bilinear", "dtype")
    image = images["other kinds"][0]
    expected = EdgeFaceImageProcessor.from_pretrained(folder)(image).pixel_values
    np.testing.assert_array_equal(preprocessor(image).pixel_values, expected)
    assert not np.array_equal(EdgeFacePreprocessor()(image).pixel_values, expected)  # the settings matter here


def test_a_folder_missing_an_architecture_key_falls_back(xxs_folder, images, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(xxs_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["hidden_act"]  # EdgeFaceConfig's default fills it in; the light path does not guess
    (folder / "config.json").write_text(json.dumps(config))
    model, processor = load_model(folder, light=True)
    assert type(model) is EdgeFaceModel and type(processor) is EdgeFaceImageProcessor
    network, preprocessor = load_model(xxs_folder, light=True)
    torch.testing.assert_close(
        embed_images(model, processor, images["crops"], progress=False),
        embed_images(network, preprocessor, images["crops"], progress=False),
        atol=1e-5,
        rtol=0,
    )


def test_a_folder_with_an_adapter_falls_back_and_keeps_the_adapter(xxs_folder, images, tmp_path):
    from hfr_hf.adapters import add_adapter, save_adapter

    folder = tmp_path / "m"
    shutil.copytree(xxs_folder, folder)
    adapted = add_adapter(EdgeFaceModel.from_pretrained(folder))
    with torch.no_grad():
        for parameter in adapted.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1)
    save_adapter(adapted, folder)
    model, processor = load_model(folder, light=True)
    assert type(model) is EdgeFaceModel  # transformers' loading, which applies the adapter in the folder
    with_adapter = embed_images(model, processor, images["crops"], progress=False)
    base = embed_images(*load_model(xxs_folder, light=True), images["crops"], progress=False)
    assert np.abs(with_adapter - base).max() > 1e-2


def test_load_model_gives_the_transformers_classes_unless_asked(xxs_folder):
    model, processor = load_model(xxs_folder)  # what PEFT adapters, training and export take
    assert type(model) is EdgeFaceModel and type(processor) is EdgeFaceImageProcessor


VERIFY_WITHOUT_TRANSFORMERS = """
import sys
sys.argv[0] = "hfr-hf"  # as the console script runs it
from hfr_hf.cli import main
code = main(["verify", *sys.argv[1:3], "--model", sys.argv[3]])
assert code == 0, code
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("transformers", "peft", "scipy"))
assert not loaded, loaded[:10]
"""


def test_verify_of_two_crops_imports_no_transformers(xxs_folder, images, tmp_path):
    paths = []
    for i, crop in enumerate(images["crops"][:2]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(crop).save(paths[-1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", VERIFY_WITHOUT_TRANSFORMERS, *map(str, paths), str(xxs_folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    network, preprocessor = load_model(xxs_folder, light=True)
    expected = embed_images(network, preprocessor, images["crops"][:2], progress=False)
    assert result.stdout.strip() == f"cosine similarity {float(expected[0] @ expected[1]):.4f}"


def test_a_gallery_fingerprints_the_light_network_as_the_transformers_model(xxs_folder, s_gamma_05_folder):
    from hfr_hf.gallery import Embedder

    light = Embedder.load(xxs_folder)
    assert type(light.model) is EdgeFaceNetwork
    assert light.fingerprint == Embedder(*load_model(xxs_folder, light=False)).fingerprint
    assert light.fingerprint != Embedder.load(s_gamma_05_folder).fingerprint


LOAD_HUB_ID = """
import sys
sys.argv[0] = "hfr-hf"  # no Auto-class registration at import, which imports transformers
from hfr_hf.inference import load_model

model, processor = load_model(sys.argv[1], light=True)
print(type(model).__name__, type(processor).__name__, "transformers" in sys.modules)
"""


def test_a_hub_repository_in_the_cache_takes_the_light_path(xxs_folder, tmp_path):
    commit = "0" * 40
    repository = tmp_path / "hub" / "models--org--edgeface-xxs"
    shutil.copytree(xxs_folder, repository / "snapshots" / commit)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(commit)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", LOAD_HUB_ID, "org/edgeface-xxs"], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["EdgeFaceNetwork", "EdgeFacePreprocessor", "False"]


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_tanh", "relu", "silu"])
def test_every_activation_the_config_allows_builds_and_runs_alike(hidden_act, tiny_config):
    config = tiny_config.__class__(**{**tiny_config.to_dict(), "hidden_act": hidden_act})
    model = EdgeFaceModel(config).eval()
    network = EdgeFaceNetwork(config).eval()
    network.load_state_dict(model.state_dict(), strict=True)
    pixel_values = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(network(pixel_values).embeddings, model(pixel_values=pixel_values).embeddings)
