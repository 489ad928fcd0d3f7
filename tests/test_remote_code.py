"""Saved folders load in a fresh process where `hfr_hf` cannot be imported (the Hub's remote-code path)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import pipeline

from hfr_hf import EdgeFaceImageProcessor, EdgeFaceModel

from .conftest import HFR_HF_BLOCKED

LOADER = HFR_HF_BLOCKED + textwrap.dedent(
    """
    import torch
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import AutoImageProcessor, AutoModel, pipeline

    folder, image_dir, output = sys.argv[1:4]
    images = [Image.open(f"{image_dir}/{i}.png") for i in range(3)]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    with torch.no_grad():
        auto = model(**processor(images, return_tensors="pt")).embeddings
    extractor = pipeline("image-feature-extraction", model=folder, trust_remote_code=True)
    piped = torch.cat([extractor(image, return_tensors=True) for image in images])
    save_file({"auto": auto.contiguous(), "pipeline": piped.contiguous()}, output)
    """
)


def save_images(folder, size, count=3):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size + 7, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return [Image.open(folder / f"{i}.png") for i in range(count)]


def remote_embeddings(folder, image_dir, tmp_path):
    output = tmp_path / "remote.safetensors"
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(folder), str(image_dir), str(output)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return load_file(output)


def local_embeddings(folder, images):
    model = EdgeFaceModel.from_pretrained(folder).eval()
    processor = EdgeFaceImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        return model(**processor(images, return_tensors="pt")).embeddings


@pytest.fixture
def tiny_folder(tiny_config, tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "tiny"
    EdgeFaceModel(tiny_config).save_pretrained(folder)
    EdgeFaceImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_tiny_model_loads_without_the_package(tiny_folder, tmp_path):
    images = save_images(tmp_path / "images", 32)
    remote = remote_embeddings(tiny_folder, tmp_path / "images", tmp_path)
    expected = local_embeddings(tiny_folder, images)
    torch.testing.assert_close(remote["auto"], expected)
    torch.testing.assert_close(remote["pipeline"], expected)


def test_converted_model_loads_without_the_package(xxs_folder, tmp_path):
    images = save_images(tmp_path / "images", 112)
    remote = remote_embeddings(xxs_folder, tmp_path / "images", tmp_path)
    expected = local_embeddings(xxs_folder, images)
    torch.testing.assert_close(remote["auto"], expected)
    torch.testing.assert_close(remote["pipeline"], expected)


def test_pipeline_in_process(xxs_folder):
    extractor = pipeline("image-feature-extraction", model=str(xxs_folder))
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8))
    features = extractor(image, return_tensors=True)
    pooled = extractor(image, pool=True, return_tensors=True)
    torch.testing.assert_close(features, local_embeddings(xxs_folder, [image]))
    torch.testing.assert_close(pooled, features)
