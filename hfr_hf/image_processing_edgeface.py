"""EdgeFace image processor: any face image → `pixel_values` (N, 3, 112, 112) in [-1, 1].

EdgeFace was trained on 8-bit RGB crops aligned to the 112×112 ArcFace template, normalised with mean 0.5 and
std 0.5. This processor accepts PIL images, numpy arrays and torch tensors in grey, RGB, RGBA, 16-bit or float
(thermal sensors often give those), brings them to 8-bit RGB, resizes (bicubic, as the reference pipeline)
when the crop is not 112×112, and scales to [-1, 1]. Alignment itself is a separate step.

This file is self-contained (numpy/PIL/transformers only) because it is shipped as Hub remote code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.processing_utils import ImagesKwargs
from transformers.utils import filter_out_non_signature_kwargs

__all__ = ["EdgeFaceImageProcessor", "EdgeFaceImageProcessorKwargs"]

INTENSITY_MODES = ("auto", "minmax", "dtype")

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


def _to_numpy(image: Any) -> np.ndarray:
    """A PIL image, numpy array or torch tensor as a numpy array (no copy where possible)."""
    if isinstance(image, Image.Image):
        if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
            image = image.convert("RGBA" if image.mode in ("P", "PA") else "RGB")
        return np.asarray(image)
    if isinstance(image, np.ndarray):
        return image
    if type(image).__module__.startswith("torch"):
        return image.detach().cpu().numpy()
    raise TypeError(
        f"EdgeFaceImageProcessor takes PIL images, numpy arrays or torch tensors, got {type(image).__name__}."
    )


def _channels_last(array: np.ndarray, channels_first: bool | None) -> np.ndarray:
    """(H, W) or (H, W, C) with C in {1, 2, 3, 4}; guesses the layout of 3-d arrays unless told."""
    if array.ndim == 2:
        array = array[..., None]
    elif array.ndim != 3:
        raise ValueError(f"An image must have 2 (H, W) or 3 (H, W, C) / (C, H, W) dimensions, got shape {array.shape}.")
    else:
        if channels_first is None:
            channels_first = array.shape[0] in (1, 2, 3, 4) and array.shape[-1] not in (1, 2, 3, 4)
        if channels_first:
            array = np.moveaxis(array, 0, -1)
    if array.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(
            f"An image must have 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) channels, got shape "
            f"{array.shape}; pass input_data_format='channels_first' or 'channels_last' if the layout was guessed wrong."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"The image is empty (shape {array.shape}); there is no face to process.")
    return array


def _to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """Intensities to 8 bits. `auto`: uint8 kept, other integers and out-of-[0, 1] floats stretched min–max
    per image (raw thermal counts or temperatures), floats in [0, 1] scaled; `minmax`: always stretched;
    `dtype`: integers by their dtype's range, floats taken as [0, 1]."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint8 and mode in ("auto", "dtype"):
        return array  # already 8 bits: the float pass below would give back the same values
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"Image pixels must be integers or floats, got dtype {array.dtype}.")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("The image contains NaN or infinite values; replace them before preprocessing.")
    if mode == "dtype" or (mode == "auto" and array.dtype == np.uint8):
        if np.issubdtype(array.dtype, np.integer):
            info = np.iinfo(array.dtype)
            unit = (values - info.min) / (info.max - info.min)
        else:
            unit = np.clip(values, 0.0, 1.0)
    elif mode == "auto" and np.issubdtype(array.dtype, np.floating) and values.min() >= 0 and values.max() <= 1:
        unit = values
    else:
        low, high = values.min(), values.max()
        unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.round(unit * 255.0).astype(np.uint8)


def _rgb(array: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 with C in 1..4 → (H, W, 3): grey repeated, alpha dropped."""
    channels = array.shape[-1]
    if channels in (1, 2):
        return np.repeat(array[..., :1], 3, axis=-1)
    return array[..., :3]


def _resize(array: np.ndarray, height: int, width: int, resample: str) -> np.ndarray:
    """(H, W, C) uint8 → (height, width, C) with PIL (modes L, LA, RGB, RGBA)."""
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    resized = np.asarray(image.resize((width, height), _RESAMPLE[resample]))
    return resized.reshape(height, width, array.shape[-1])


class EdgeFaceImageProcessorKwargs(ImagesKwargs, total=False):
    """
    intensity_normalization (`str`, *optional*, defaults to `self.intensity_normalization`):
        How non-8-bit images reach 8 bits: `auto`, `minmax` or `dtype`.
    aligner (`Callable`, *optional*):
        Takes one raw image and returns its aligned face crop; applied to every image first.
    """

    intensity_normalization: str
    aligner: Any


class EdgeFaceImageProcessor(BaseImageProcessor):
    r"""
    Prepares face crops for [`EdgeFaceModel`].

    Args:
        do_convert_rgb (`bool`, defaults to `True`): bring grey, grey + alpha and RGBA images to RGB, as the model
            expects. With `False` the channels are kept as given (`image_mean` / `image_std` then need one value per
            channel), for models or tools that take other channel counts.
        do_resize (`bool`, defaults to `True`): resize crops that are not `size` (they should already be aligned).
        size (`dict`, defaults to `{"height": 112, "width": 112}`): output size.
        resample (`str`, defaults to `"bicubic"`): PIL filter for resizing (`nearest`, `bilinear`, `bicubic`,
            `lanczos`, `box`); bicubic matches the reference pipeline.
        do_rescale (`bool`, defaults to `True`): multiply the 8-bit pixels by `rescale_factor`.
        rescale_factor (`float`, defaults to `1/255`): the scale that brings 8-bit pixels to [0, 1].
        do_normalize (`bool`, defaults to `True`): normalise the pixels by `(x - image_mean) / image_std`.
        image_mean, image_std (`list[float]`, default `[0.5] * 3`): normalisation giving [-1, 1].
        intensity_normalization (`str`, defaults to `"auto"`): how non-8-bit images reach 8 bits: `auto`,
            `minmax` or `dtype` (see `_to_uint8`).
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = EdgeFaceImageProcessorKwargs

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | None = None,
        resample: str = "bicubic",
        do_normalize: bool = True,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        intensity_normalization: str = "auto",
        do_convert_rgb: bool = True,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.do_convert_rgb = do_convert_rgb
        self.do_resize = do_resize
        self.size = dict(size) if size is not None else {"height": 112, "width": 112}
        self.resample = resample
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean) if image_mean is not None else [0.5, 0.5, 0.5]
        self.image_std = list(image_std) if image_std is not None else [0.5, 0.5, 0.5]
        self.intensity_normalization = intensity_normalization
        self._check_settings(self.size, resample, intensity_normalization)

    @staticmethod
    def _check_settings(size: dict[str, int], resample: str, intensity_normalization: str) -> None:
        if set(size) != {"height", "width"} or not all(isinstance(v, int) and v > 0 for v in size.values()):
            raise ValueError(f"size must be {{'height': int, 'width': int}} with positive sides, got {size!r}.")
        if resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {', '.join(_RESAMPLE)}, got {resample!r}.")
        if intensity_normalization not in INTENSITY_MODES:
            raise ValueError(
                f"intensity_normalization must be one of {', '.join(INTENSITY_MODES)}, got {intensity_normalization!r}."
            )

    def to_uint8(
        self, image: Any, input_data_format: str | None = None, intensity_normalization: str | None = None
    ) -> np.ndarray:
        """One image of any supported kind → (H, W, C) uint8 with its own channels (C in 1..4)."""
        channels_first = {None: None, "channels_first": True, "channels_last": False}[input_data_format]
        array = _channels_last(_to_numpy(image), channels_first)
        return _to_uint8(array, intensity_normalization or self.intensity_normalization)

    def to_rgb_uint8(
        self, image: Any, input_data_format: str | None = None, intensity_normalization: str | None = None
    ) -> np.ndarray:
        """One image of any supported kind → (H, W, 3) uint8 RGB."""
        return _rgb(self.to_uint8(image, input_data_format, intensity_normalization))

    def _split_batch(self, images: Any, input_data_format: str | None) -> list:
        """A single image, a list of images or a 4-d batch → list of single images."""
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("No images were given to EdgeFaceImageProcessor.")
            return [image for item in images for image in self._split_batch(item, input_data_format)]
        if isinstance(images, Image.Image):
            return [images]
        ndim = getattr(images, "ndim", None)
        if ndim == 4:
            if len(images) == 0:
                raise ValueError(
                    f"The batch of images is empty (shape {tuple(images.shape)}); there is no face to process."
                )
            return list(images)
        return [images]

    # Unknown keyword arguments are dropped with a warning that names them (transformers' convention), so a typo
    # such as `do_normalise=False` does not pass silently.
    @filter_out_non_signature_kwargs()
    def preprocess(
        self,
        images: Any,
        do_convert_rgb: bool | None = None,
        do_resize: bool | None = None,
        size: dict[str, int] | None = None,
        resample: str | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: float | list[float] | None = None,
        image_std: float | list[float] | None = None,
        intensity_normalization: str | None = None,
        input_data_format: str | None = None,
        data_format: str | None = "channels_first",
        return_tensors: str | None = None,
        aligner: Any = None,
    ) -> BatchFeature:
        """Images → `BatchFeature` with `pixel_values` of shape (N, 3, height, width).

        Every argument left as None takes the processor's own setting. `data_format="channels_last"` gives
        (N, height, width, 3) instead. `aligner`: optional callable taking one raw image and returning its aligned
        face crop (for example `hfr_hf.alignment.FaceAligner()`), applied to every image first, so raw photos can
        be given."""
        do_convert_rgb = self.do_convert_rgb if do_convert_rgb is None else do_convert_rgb
        do_resize = self.do_resize if do_resize is None else do_resize
        size = self.size if size is None else size
        resample = self.resample if resample is None else resample
        do_rescale = self.do_rescale if do_rescale is None else do_rescale
        rescale_factor = self.rescale_factor if rescale_factor is None else rescale_factor
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        mean = np.asarray(self.image_mean if image_mean is None else image_mean, dtype=np.float32).reshape(-1)
        std = np.asarray(self.image_std if image_std is None else image_std, dtype=np.float32).reshape(-1)
        intensity_normalization = intensity_normalization or self.intensity_normalization
        self._check_settings(size, resample, intensity_normalization)
        for name, value in (("input_data_format", input_data_format), ("data_format", data_format)):
            if value not in (None, "channels_first", "channels_last"):
                raise ValueError(f"{name} must be 'channels_first', 'channels_last' or None, got {value!r}.")

        target = (size["height"], size["width"])
        batch = []
        for image in self._split_batch(images, input_data_format):
            layout = input_data_format
            if aligner is not None:
                image, layout = aligner(image), "channels_last"
            pixels = self.to_uint8(image, layout, intensity_normalization)
            pixels = _rgb(pixels) if do_convert_rgb else pixels
            if pixels.shape[:2] != target:
                if not do_resize:
                    raise ValueError(
                        f"Image of size {pixels.shape[0]}×{pixels.shape[1]} is not {target[0]}×{target[1]} and "
                        "do_resize is False; align the face to the template or allow resizing."
                    )
                pixels = _resize(pixels, *target, resample)
            batch.append(pixels)
        channels = {pixels.shape[-1] for pixels in batch}
        if len(channels) > 1:
            raise ValueError(
                f"With do_convert_rgb=False the images keep their channels, and these have {sorted(channels)} "
                "channels, which cannot form one batch; convert them to one channel count or keep do_convert_rgb=True."
            )
        pixel_values = np.stack(batch).astype(np.float32)
        if do_rescale:  # a division, as the reference pipeline's x / 255 (a product by 1/255 rounds differently)
            pixel_values = pixel_values / np.float32(1.0 / rescale_factor)
        if do_normalize:
            (num_channels,) = channels
            for name, values in (("image_mean", mean), ("image_std", std)):
                if values.size not in (1, num_channels):
                    raise ValueError(
                        f"{name} has {values.size} values but the images have {num_channels} channels; pass one "
                        "value per channel (or a single value), or keep do_convert_rgb=True for RGB."
                    )
            pixel_values = (pixel_values - mean) / std
        if data_format != "channels_last":
            pixel_values = np.ascontiguousarray(pixel_values.transpose(0, 3, 1, 2))
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)
