"""EdgeFace image processor: any face image → `pixel_values` (N, 3, 112, 112) in [-1, 1].

EdgeFace was trained on 8-bit RGB crops aligned to the 112×112 ArcFace template, normalised with mean 0.5 and
std 0.5. This processor accepts PIL images, numpy arrays and torch tensors in grey, RGB, RGBA, 16-bit or float
(thermal sensors often give those), brings them to 8-bit RGB, resizes (bicubic, as the reference pipeline)
when the crop is not 112×112, and scales to [-1, 1]. Alignment itself is a separate step. The array work is
edgeface_preprocessing.py's (numpy/PIL only), which the transformers-free inference path shares.

This file and the one it imports are self-contained (numpy/PIL/transformers only) because they are shipped as Hub
remote code.
"""

from __future__ import annotations

from typing import Any

from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.processing_utils import ImagesKwargs
from transformers.utils import filter_out_non_signature_kwargs

from .edgeface_preprocessing import (
    ImageConversion,
    check_settings,
    preprocess_pixels,
    resolve_settings,
    split_batch,
)

__all__ = ["EdgeFaceImageProcessor", "EdgeFaceImageProcessorKwargs"]


class EdgeFaceImageProcessorKwargs(ImagesKwargs, total=False):
    """
    intensity_normalization (`str`, *optional*, defaults to `self.intensity_normalization`):
        How non-8-bit images reach 8 bits: `auto`, `minmax` or `dtype`.
    aligner (`Callable`, *optional*):
        Takes one raw image and returns its aligned face crop; applied to every image first.
    """

    intensity_normalization: str
    aligner: Any


class EdgeFaceImageProcessor(ImageConversion, BaseImageProcessor):
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
        check_settings(size, resample, intensity_normalization)

    def _split_batch(self, images: Any, input_data_format: str | None) -> list:
        """A single image, a list of images or a 4-d batch → list of single images."""
        return split_batch(images)

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
        settings = resolve_settings(
            self,
            do_convert_rgb=do_convert_rgb,
            do_resize=do_resize,
            size=size,
            resample=resample,
            do_rescale=do_rescale,
            rescale_factor=rescale_factor,
            do_normalize=do_normalize,
            image_mean=image_mean,
            image_std=image_std,
            intensity_normalization=intensity_normalization,
        )
        pixel_values = preprocess_pixels(
            images, **settings, input_data_format=input_data_format, data_format=data_format, aligner=aligner
        )
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)
