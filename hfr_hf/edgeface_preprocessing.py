"""EdgeFace's preprocessing as numpy/PIL array work: any face image → float32 pixels in [-1, 1].

EdgeFace was trained on 8-bit RGB crops aligned to the 112×112 ArcFace template, normalised with mean 0.5 and
std 0.5. These functions accept PIL images, numpy arrays and torch tensors in grey, RGB, RGBA, 16-bit or float
(thermal sensors often give those), bring them to 8-bit RGB, resize (bicubic, as the reference pipeline) when the
crop is not 112×112, and scale to [-1, 1]. Alignment itself is a separate step.

`EdgeFaceImageProcessor` (image_processing_edgeface.py, the transformers processor) and `EdgeFacePreprocessor`
(here, for the read-only commands, which load a model folder without importing transformers) both call
`preprocess_pixels`, so they cannot drift apart. Shipped as Hub remote code beside the processor: self-contained,
numpy/PIL only, no `hfr_hf` imports.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "INTENSITY_MODES",
    "PREPROCESSING_DEFAULTS",
    "EdgeFaceBatch",
    "EdgeFacePreprocessor",
    "ImageConversion",
    "check_settings",
    "preprocess_pixels",
    "resolve_settings",
    "split_batch",
    "to_rgb",
    "to_uint8",
]

INTENSITY_MODES = ("auto", "minmax", "dtype")

# The processor's settings and their defaults (the keys of preprocessor_config.json that preprocessing reads).
PREPROCESSING_DEFAULTS = {
    "do_convert_rgb": True,
    "do_resize": True,
    "size": {"height": 112, "width": 112},
    "resample": "bicubic",
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "intensity_normalization": "auto",
}

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


def to_rgb(array: np.ndarray) -> np.ndarray:
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


def to_uint8(image: Any, input_data_format: str | None, intensity_normalization: str) -> np.ndarray:
    """One image of any supported kind → (H, W, C) uint8 with its own channels (C in 1..4)."""
    channels_first = {None: None, "channels_first": True, "channels_last": False}[input_data_format]
    return _to_uint8(_channels_last(_to_numpy(image), channels_first), intensity_normalization)


def check_settings(size: dict[str, int], resample: str, intensity_normalization: str) -> None:
    """A ValueError that names the setting unless size, resample filter and intensity mode are valid."""
    if set(size) != {"height", "width"} or not all(isinstance(v, int) and v > 0 for v in size.values()):
        raise ValueError(f"size must be {{'height': int, 'width': int}} with positive sides, got {size!r}.")
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {', '.join(_RESAMPLE)}, got {resample!r}.")
    if intensity_normalization not in INTENSITY_MODES:
        raise ValueError(
            f"intensity_normalization must be one of {', '.join(INTENSITY_MODES)}, got {intensity_normalization!r}."
        )


def resolve_settings(processor: Any, **overrides: Any) -> dict[str, Any]:
    """The preprocessing settings of one call: each override left as None takes the processor's own setting."""
    return {
        name: getattr(processor, name) if overrides.get(name) is None else overrides[name]
        for name in PREPROCESSING_DEFAULTS
    }


def split_batch(images: Any) -> list:
    """A single image, a list of images or a 4-d batch → list of single images."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("No images were given to EdgeFaceImageProcessor.")
        return [image for item in images for image in split_batch(item)]
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


def preprocess_pixels(
    images: Any,
    do_convert_rgb: bool,
    do_resize: bool,
    size: dict[str, int],
    resample: str,
    do_rescale: bool,
    rescale_factor: float,
    do_normalize: bool,
    image_mean: float | list[float],
    image_std: float | list[float],
    intensity_normalization: str,
    input_data_format: str | None = None,
    data_format: str | None = "channels_first",
    aligner: Any = None,
) -> np.ndarray:
    """Images → float32 pixels (N, C, height, width), or (N, height, width, C) with `data_format="channels_last"`.
    The arguments are `EdgeFaceImageProcessor.preprocess`'s, every one given."""
    mean = np.asarray(image_mean, dtype=np.float32).reshape(-1)
    std = np.asarray(image_std, dtype=np.float32).reshape(-1)
    check_settings(size, resample, intensity_normalization)
    for name, value in (("input_data_format", input_data_format), ("data_format", data_format)):
        if value not in (None, "channels_first", "channels_last"):
            raise ValueError(f"{name} must be 'channels_first', 'channels_last' or None, got {value!r}.")

    target = (size["height"], size["width"])
    batch = []
    for image in split_batch(images):
        layout = input_data_format
        if aligner is not None:
            image, layout = aligner(image), "channels_last"
        pixels = to_uint8(image, layout, intensity_normalization)
        pixels = to_rgb(pixels) if do_convert_rgb else pixels
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
    return pixel_values


class EdgeFaceBatch(dict):
    """`{"pixel_values": ...}`, also readable as `.pixel_values` (as transformers' BatchFeature)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class ImageConversion:
    """`to_uint8` / `to_rgb_uint8` of an image processor that has `intensity_normalization` (shared by
    `EdgeFacePreprocessor` and `EdgeFaceImageProcessor`)."""

    intensity_normalization: str

    def to_uint8(
        self, image: Any, input_data_format: str | None = None, intensity_normalization: str | None = None
    ) -> np.ndarray:
        """One image of any supported kind → (H, W, C) uint8 with its own channels (C in 1..4)."""
        return to_uint8(image, input_data_format, intensity_normalization or self.intensity_normalization)

    def to_rgb_uint8(
        self, image: Any, input_data_format: str | None = None, intensity_normalization: str | None = None
    ) -> np.ndarray:
        """One image of any supported kind → (H, W, 3) uint8 RGB."""
        return to_rgb(self.to_uint8(image, input_data_format, intensity_normalization))


class EdgeFacePreprocessor(ImageConversion):
    """`EdgeFaceImageProcessor`'s preprocessing without transformers: the same settings (see its docstring), the
    same `to_uint8` / `to_rgb_uint8` / call, for inference (`hfr_hf.inference.load_model` of a model folder)."""

    model_input_names = ["pixel_values"]

    def __init__(self, **settings: Any) -> None:
        unknown = set(settings) - set(PREPROCESSING_DEFAULTS)
        if unknown:
            raise TypeError(f"EdgeFacePreprocessor takes no setting {', '.join(sorted(unknown))}.")
        for name, default in PREPROCESSING_DEFAULTS.items():
            value = settings.get(name)
            value = default if value is None else value
            setattr(self, name, type(value)(value) if isinstance(value, (dict, list)) else value)
        check_settings(self.size, self.resample, self.intensity_normalization)

    def __call__(
        self,
        images: Any,
        return_tensors: str | None = None,
        input_data_format: str | None = None,
        data_format: str | None = "channels_first",
        aligner: Any = None,
        **overrides: Any,
    ) -> EdgeFaceBatch:
        """Images → `{"pixel_values": (N, 3, height, width)}`, numpy or (`return_tensors="pt"`) a torch tensor."""
        unknown = set(overrides) - set(PREPROCESSING_DEFAULTS)
        if unknown:
            raise TypeError(f"EdgeFacePreprocessor takes no setting {', '.join(sorted(unknown))}.")
        if return_tensors not in (None, "np", "pt"):
            raise ValueError(f"return_tensors must be None, 'np' or 'pt', got {return_tensors!r}.")
        settings = resolve_settings(self, **overrides)
        pixel_values = preprocess_pixels(
            images, **settings, input_data_format=input_data_format, data_format=data_format, aligner=aligner
        )
        if return_tensors == "pt":
            import torch

            pixel_values = torch.from_numpy(pixel_values)
        return EdgeFaceBatch(pixel_values=pixel_values)

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in PREPROCESSING_DEFAULTS)
        return f"EdgeFacePreprocessor({settings})"
