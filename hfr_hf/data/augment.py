"""On-the-fly augmentation of face crops (numpy/cv2 only), deterministic given a seed, and the transform that
renders pseudo-spectral targets and augments pairs inside a `datasets` `set_transform`/`with_transform`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .renderers import NIRRenderer, ThermalRenderer, get_renderer, to_uint8_rgb

__all__ = ["Augment", "PairTransform"]


@dataclass
class Augment:
    """Random flip, small affine (rotation, scale, shift), brightness/contrast, blur and noise.

    Call it on one (H, W, 3) uint8 image with a seed or a `numpy.random.Generator`; the same seed gives the
    same result. Magnitudes are the largest values drawn (uniformly, symmetric about no change).
    """

    flip: float = 0.5  # probability of a horizontal flip
    rotate: float = 8.0  # degrees
    scale: float = 0.06  # fraction
    shift: float = 0.04  # fraction of the side
    brightness: float = 0.15  # fraction of full scale
    contrast: float = 0.2  # fraction
    blur: float = 0.3  # probability of a Gaussian blur
    blur_sigma: float = 1.2  # largest σ in pixels
    noise: float = 0.02  # largest noise σ, fraction of full scale

    def __call__(self, image: Any, seed: int | np.random.Generator | None = None) -> np.ndarray:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        array = to_uint8_rgb(image)
        h, w = array.shape[:2]
        # draw every parameter whatever is enabled, so one setting does not shift the others' random stream
        flip = rng.random() < self.flip
        angle = rng.uniform(-self.rotate, self.rotate)
        scale = 1.0 + rng.uniform(-self.scale, self.scale)
        tx, ty = rng.uniform(-self.shift, self.shift, 2) * (w, h)
        brightness = rng.uniform(-self.brightness, self.brightness)
        contrast = 1.0 + rng.uniform(-self.contrast, self.contrast)
        blur = rng.random() < self.blur
        sigma = rng.uniform(0.3, max(self.blur_sigma, 0.3))
        noise = rng.uniform(0.0, self.noise)
        if flip:
            array = array[:, ::-1]
        if self.rotate or self.scale or self.shift:
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
            matrix[:, 2] += (tx, ty)
            array = cv2.warpAffine(
                np.ascontiguousarray(array), matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        out = array.astype(np.float32)
        mean = out.mean()
        out = (out - mean) * contrast + mean + brightness * 255.0
        if blur:
            out = cv2.GaussianBlur(out, (0, 0), sigma)
        if noise > 0:
            out += rng.normal(0.0, noise * 255.0, out.shape[:2])[..., None].astype(np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class PairTransform:
    """Batch transform for paired `datasets` rows (use with `set_transform` / `with_transform`, or call it on
    a dict of lists).

    Rows with a `target_source` column (lazy pseudo-spectral sets) get `target` rendered from it with
    `renderer`; then `vis` and `target` are augmented independently with `augment`. Randomness comes from
    the row's `seed` column, the transform's `seed` and its `epoch` (`set_epoch`), so a row looks the same
    whenever it is read in one epoch and differently in the next. Images come out as (112, 112, 3) uint8
    numpy arrays (`output="pil"` for PIL images).
    """

    def __init__(
        self,
        renderer: str | ThermalRenderer | NIRRenderer | None = None,
        augment: Augment | None = None,
        seed: int = 0,
        output: str = "numpy",
    ) -> None:
        if output not in ("numpy", "pil"):
            raise ValueError(f"output must be 'numpy' or 'pil', got {output!r}.")
        self.renderer = None if renderer is None else get_renderer(renderer)
        self.augment, self.seed, self.output, self.epoch = augment, seed, output, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw new renders and augmentations for this epoch."""
        self.epoch = int(epoch)

    def _out(self, image: np.ndarray) -> Any:
        if self.output == "pil":
            from PIL import Image

            return Image.fromarray(image)
        return image

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if "seed" not in batch:
            raise ValueError("PairTransform needs a 'seed' column in the rows; add one with add_row_seeds(dataset).")
        out = dict(batch)
        seeds = batch["seed"]
        if "target_source" in batch:
            if self.renderer is None:
                raise ValueError("These rows hold target_source images to render; give PairTransform a renderer.")
            out.pop("target_source")
            out["target"] = [
                self.renderer(image, np.random.default_rng([self.seed, self.epoch, int(s), 0]))
                for image, s in zip(batch["target_source"], seeds)
            ]
        for column, stream in (("vis", 1), ("target", 2)):
            if column not in out:
                continue
            images = []
            for image, s in zip(out[column], seeds):
                if self.augment is not None:
                    image = self.augment(image, np.random.default_rng([self.seed, self.epoch, int(s), stream]))
                else:
                    image = to_uint8_rgb(image)
                images.append(self._out(image))
            out[column] = images
        return out
