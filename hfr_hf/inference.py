"""From image files to embeddings: loading, batching, cosine scores."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .edgeface_layers import ARCHITECTURE_KEYS, EdgeFaceNetwork
from .edgeface_preprocessing import PREPROCESSING_DEFAULTS, EdgeFacePreprocessor
from .images import UnusableImagesError, load_image
from .sources import resolve_model_name

if TYPE_CHECKING:  # transformers takes seconds to import; a plain model folder loads without it
    from .image_processing_edgeface import EdgeFaceImageProcessor
    from .modeling_edgeface import EdgeFaceModel

__all__ = [
    "ALIGN_MODES",
    "UnusableImagesError",
    "cosine_similarity",
    "embed_images",
    "face_crops",
    "load_model",
    "no_progress_bars",
]


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """Hide transformers' and the Hub's progress bars: these models load in a blink (a bar for well under a
    second of work is noise), and a command's output should be its result."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging

    transformers_on, hub_off = logging.is_progress_bar_enabled(), are_progress_bars_disabled()
    logging.disable_progress_bar()
    disable_progress_bars()
    try:
        yield
    finally:
        if transformers_on:
            logging.enable_progress_bar()
        if not hub_off:
            enable_progress_bars()


def load_model(
    model: str | os.PathLike, device: str = "cpu", light: bool = False
) -> tuple[EdgeFaceModel | EdgeFaceNetwork, EdgeFaceImageProcessor | EdgeFacePreprocessor]:
    """An EdgeFace model (eval mode) and its image processor from a folder or Hub repo id, or an `.onnx` file
    (then an `hfr_hf.onnx_inference.OnnxEdgeFace` on onnxruntime, called the same way).

    With `light=True`, a plain model folder (config.json of an EdgeFace, model.safetensors in float32, no adapter)
    loads as an `EdgeFaceNetwork` and an `EdgeFacePreprocessor`: the same modules, weights and numbers as
    `EdgeFaceModel` and `EdgeFaceImageProcessor`, for inference only, without importing transformers (seconds of a
    command's start-up; the read-only commands ask for it). Any other folder, and the default `light=False`, give
    the transformers classes, which PEFT adapters, training, export and saving need."""
    path = Path(model)
    if path.suffix == ".onnx":
        from .onnx_inference import load_onnx_model

        return load_onnx_model(path, device)
    model, options = resolve_model_name(model)
    if Path(model).is_dir() and not (Path(model) / "config.json").is_file():
        raise FileNotFoundError(f"{model} is not a model folder (no config.json); make one with `hfr-hf convert`.")
    loaded = _load_plain_folder(model, options) if light else None
    if loaded is not None:
        network, processor = loaded
        return network.to(device).eval(), processor
    from .image_processing_edgeface import EdgeFaceImageProcessor
    from .modeling_edgeface import EdgeFaceModel

    with no_progress_bars():
        network = EdgeFaceModel.from_pretrained(model, **options).to(device).eval()
    try:
        processor = EdgeFaceImageProcessor.from_pretrained(model, **options)
    except OSError:  # a bare model folder (no preprocessor_config.json): the processor follows the model's input
        size = network.config.image_size
        processor = EdgeFaceImageProcessor(size={"height": size, "width": size})
    return network, processor


# Keys of the saved files that say nothing about the numbers (written by transformers' save_pretrained).
_CONFIG_BOOKKEEPING = {"image_processor_type", "auto_map", "processor_class"}
_PLAIN_FILES = ["config.json", "model.safetensors", "preprocessor_config.json", "adapter_config.json"]


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _snapshot(name: str, options: dict) -> Path | None:
    """The local folder of a Hub repository's model files (downloaded to the cache as from_pretrained would),
    or None when they cannot be had (transformers' loading then says why)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=_PLAIN_FILES, **options))
    except (OSError, ValueError):  # the Hub's errors are OSErrors (not found, not cached, HTTP)
        return None


def _load_plain_folder(name: str, options: dict) -> tuple[EdgeFaceNetwork, EdgeFacePreprocessor] | None:
    """A plain EdgeFace folder (or Hub repository) as an `EdgeFaceNetwork` and `EdgeFacePreprocessor`, or None
    for anything else (an adapter, missing architecture keys, other dtypes, unknown processor settings, weights
    that do not fit), which `load_model` leaves to transformers."""
    folder = Path(name) if Path(name).is_dir() else _snapshot(name, options)
    if folder is None or (folder / "adapter_config.json").exists() or not (folder / "model.safetensors").is_file():
        return None
    config = _read_json(folder / "config.json")
    if (
        config is None
        or config.get("model_type") != "edgeface"
        or not all(key in config for key in ARCHITECTURE_KEYS)
        or "quantization_config" in config
        or config.get("dtype", config.get("torch_dtype")) not in (None, "float32")
    ):
        return None
    if (folder / "preprocessor_config.json").exists():
        settings = _read_json(folder / "preprocessor_config.json")
        if (
            settings is None
            or settings.get("image_processor_type", "EdgeFaceImageProcessor") != "EdgeFaceImageProcessor"
        ):
            return None
        settings = {key: value for key, value in settings.items() if key not in _CONFIG_BOOKKEEPING}
        if not set(settings) <= set(PREPROCESSING_DEFAULTS):
            return None
    else:  # a bare model folder: the processor follows the model's input
        settings = {"size": {"height": config["image_size"], "width": config["image_size"]}}
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(folder / "model.safetensors")
        if any(tensor.dtype != torch.float32 for tensor in state.values()):
            return None
        network = EdgeFaceNetwork(SimpleNamespace(**config))
        network.load_state_dict(state, strict=True)
        processor = EdgeFacePreprocessor(**settings)
    except (SafetensorError, OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError, ZeroDivisionError):
        return None  # a config or weights out of the ordinary: transformers' loading validates and says what is wrong
    return network, processor


def _name(image, index: int) -> str:
    return str(image) if isinstance(image, (str, os.PathLike)) else f"image {index + 1}"


ALIGN_MODES = ("auto", "always", "never")


@functools.lru_cache(maxsize=2)
def _default_aligner(size: int):
    from .alignment import FaceAligner

    return FaceAligner(image_size=size)


def _crop(image, processor: EdgeFaceImageProcessor, align: str, aligner):
    """One image → its face crop (see `face_crops`); raises AlignmentError / ValueError / TypeError."""
    from .alignment import AlignmentError

    loaded = load_image(image) if isinstance(image, (str, os.PathLike)) else image
    size = (processor.size["height"], processor.size["width"])
    if align != "always":
        rgb = processor.to_rgb_uint8(loaded)
        if rgb.shape[:2] == size or align == "never":
            return rgb
        loaded = rgb
    if aligner is None:
        if size[0] != size[1]:
            raise AlignmentError(f"the processor's crop size {size} is not square; give an aligner")
        aligner = _default_aligner(size[0])
    return aligner(loaded)


def _crops(images: Sequence, processor, align: str, aligner, first: int = 0) -> tuple[list, list[str]]:
    """The crops of the images that can be used, and one line for each that cannot (numbered from `first`)."""
    from .alignment import AlignmentError

    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {', '.join(ALIGN_MODES)}, got {align!r}.")
    crops, failed = [], []
    for index, image in enumerate(images, start=first):
        try:
            crops.append(_crop(image, processor, align, aligner))
        except (AlignmentError, ValueError, TypeError) as error:
            failed.append(f"{_name(image, index)} ({str(error).rstrip('.')})")
    return crops, failed


def face_crops(images: Sequence, processor: EdgeFaceImageProcessor, align: str = "auto", aligner=None) -> list:
    """The face crop of each image (paths or in-memory images), ready for the processor.

    `align`: `"auto"` (default) takes images of the processor's crop size (112×112) as aligned crops and detects
    and aligns the others; `"always"` aligns every image; `"never"` aligns none and leaves the processor to resize
    whatever they hold (only for images known to be tight face crops: a resized photo scores like a face).
    `aligner`: the `hfr_hf.alignment.FaceAligner` (or any callable image → crop) to align with; default
    `FaceAligner()`. Every image that cannot be used is named in one `UnusableImagesError` (a `ValueError`).
    """
    crops, failed = _crops(images, processor, align, aligner)
    if failed:
        raise UnusableImagesError(failed, len(images))
    return crops


@torch.inference_mode()
def embed_images(
    model: EdgeFaceModel,
    processor: EdgeFaceImageProcessor,
    images: Sequence,
    batch_size: int = 64,
    normalize: bool = True,
    progress: bool = True,
    aligner=None,
    align: str = "auto",
) -> np.ndarray:
    """(N, embedding_size) float32 embeddings of images (paths or in-memory images), in batches.

    Raw photos are detected and aligned by default (with `aligner`, default `FaceAligner()`); images of the crop
    size (112×112) are taken as aligned crops (`align`: see `face_crops`). Images that cannot be used raise one
    `UnusableImagesError` naming all of them, after every image has been tried."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    device = model.device
    chunks, failed = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="embedding", unit="batch", disable=not progress):
        batch, problems = _crops(images[start : start + batch_size], processor, align, aligner, start)
        failed.extend(problems)
        if failed:  # keep going without embedding, so that the one error names every unusable image
            continue
        pixel_values = processor(batch, return_tensors="pt").pixel_values.to(device)
        embeddings = model(pixel_values=pixel_values).embeddings
        chunks.append((F.normalize(embeddings, dim=-1) if normalize else embeddings).float().cpu().numpy())
    if failed:
        raise UnusableImagesError(failed, len(images))
    return np.concatenate(chunks) if chunks else np.zeros((0, model.config.embedding_size), np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix (len(a), len(b)) of two sets of embeddings."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T
