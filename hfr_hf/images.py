"""Reading image files and listing image folders: the bottom floor that alignment, data, evaluation, inference
and quantisation all stand on. One pixel limit for every reader."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "UnusableImagesError",
    "check_pixels",
    "is_image",
    "list_images",
    "load_image",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".gif", ".webp"}
# Larger images are refused from their header, before decoding: a 50-megapixel RGB image already takes 150 MB
# decoded, and a small file can claim far more (a decompression bomb). Face photos need a few megapixels.
MAX_PIXELS = 50_000_000


def check_pixels(width: int, height: int, name: str | os.PathLike = "The image") -> None:
    """Refuse an image of more than `MAX_PIXELS` pixels, with a sentence."""
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"{name} is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); images up to "
            f"{MAX_PIXELS // 10**6} megapixels are read. Downscale it first."
        )


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file of any format PIL reads (the format is taken from the content, not the name), up to
    `MAX_PIXELS` pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_pixels(*image.size, name=path)
                image.load()
                return image
    except FileNotFoundError:
        raise FileNotFoundError(f"Image {path} does not exist.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"{path} is too large to read ({error}); images up to {MAX_PIXELS // 10**6} megapixels are read."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:  # PIL raises SyntaxError for some corrupt files
        raise ValueError(f"{path} could not be read as an image ({error}).") from error


def is_image(path: str | os.PathLike) -> bool:
    """Whether a file is an image: by its suffix, else (names such as Yale's `subject01.glasses`) by its header."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        return False


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files under `root`, sorted; hidden files are skipped, files with other suffixes kept when PIL
    recognises them."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder.")
    return [p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".") and is_image(p)]


class UnusableImagesError(ValueError):
    """Images that cannot be used as faces (unreadable, no face found, not a crop); `failed` names each."""

    def __init__(self, failed: list[str], total: int) -> None:
        self.failed = failed
        shown = "; ".join(failed[:10]) + (f"; ... ({len(failed) - 10} more)" if len(failed) > 10 else "")
        super().__init__(f"{len(failed)} of {total} images cannot be used as faces: {shown}.")
