"""From image files to embeddings: loading, batching, cosine scores."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from .image_processing_edgeface import EdgeFaceImageProcessor
from .modeling_edgeface import EdgeFaceModel

__all__ = ["IMAGE_SUFFIXES", "cosine_similarity", "embed_images", "list_images", "load_image", "load_model"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".gif", ".webp"}


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file of any format PIL reads (the format is taken from the content, not the name)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise FileNotFoundError(f"Image {path} does not exist.") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path} could not be read as an image ({error}).") from error


def _is_image(path: Path) -> bool:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:  # unusual names (the Yale faces are `subject01.glasses`): read the header only
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError):
        return False


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files under `root`, sorted; files with other suffixes are kept when PIL recognises them."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder.")
    return [p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".") and _is_image(p)]


def load_model(model: str | os.PathLike, device: str = "cpu") -> tuple[EdgeFaceModel, EdgeFaceImageProcessor]:
    """An EdgeFace model (eval mode) and its image processor from a folder or Hub repo id, or an `.onnx` file
    (then an `hfr_hf.onnx_inference.OnnxEdgeFace` on onnxruntime, called the same way)."""
    path = Path(model)
    if path.suffix == ".onnx":
        from .onnx_inference import load_onnx_model

        return load_onnx_model(path, device)
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a model folder (no config.json); make one with `hfr-hf convert`.")
    return EdgeFaceModel.from_pretrained(model).to(device).eval(), EdgeFaceImageProcessor.from_pretrained(model)


@torch.inference_mode()
def embed_images(
    model: EdgeFaceModel,
    processor: EdgeFaceImageProcessor,
    images: Sequence,
    batch_size: int = 64,
    normalize: bool = True,
    progress: bool = True,
    aligner=None,
) -> np.ndarray:
    """(N, embedding_size) float32 embeddings of images (paths or in-memory images), in batches; raw photos
    are aligned first when an `aligner` (e.g. `hfr_hf.alignment.FaceAligner()`) is given."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    device = model.device
    chunks = []
    for start in tqdm(range(0, len(images), batch_size), desc="embedding", unit="batch", disable=not progress):
        batch = [load_image(i) if isinstance(i, (str, os.PathLike)) else i for i in images[start : start + batch_size]]
        pixel_values = processor(batch, return_tensors="pt", aligner=aligner).pixel_values.to(device)
        embeddings = model(pixel_values=pixel_values).embeddings
        chunks.append((F.normalize(embeddings, dim=-1) if normalize else embeddings).float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, model.config.embedding_size), np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix (len(a), len(b)) of two sets of embeddings."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T
