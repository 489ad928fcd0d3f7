import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoImageProcessor

from hfr_hf import EdgeFaceImageProcessor


@pytest.fixture
def processor():
    return EdgeFaceImageProcessor()


def pixel_values(processor, images, **kwargs):
    return processor(images, return_tensors="pt", **kwargs).pixel_values


def test_reproduces_the_reference_preprocessing(processor, assets):
    golden = load_file(assets / "golden/inputs.safetensors")["pixel_values"]
    files = [assets / f"faces/att/s{person}/{image}.pgm" for person in range(1, 7) for image in (1, 2)]
    torch.testing.assert_close(pixel_values(processor, [Image.open(f) for f in files]), golden[:12], atol=0, rtol=0)


def test_output_shape_and_range(processor):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (130, 100, 3), dtype=np.uint8))
    out = pixel_values(processor, [rgb, rgb])
    assert out.shape == (2, 3, 112, 112) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


def test_uint8_extremes_map_to_minus_one_and_one(processor):
    image = np.zeros((112, 112, 3), np.uint8)
    image[:, 56:] = 255
    out = pixel_values(processor, image)
    assert out[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0] and out[0, :, 0, -1].tolist() == [1.0, 1.0, 1.0]


def test_grey_becomes_three_equal_channels(processor):
    grey = Image.fromarray(np.arange(112 * 112, dtype=np.uint32).reshape(112, 112).astype(np.uint8), mode="L")
    out = pixel_values(processor, grey)
    torch.testing.assert_close(out[0, 0], out[0, 1])
    torch.testing.assert_close(out[0, 0], out[0, 2])


def test_rgba_drops_alpha(processor):
    rgb = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((112, 112, 1), 7, np.uint8)], axis=-1)
    torch.testing.assert_close(pixel_values(processor, Image.fromarray(rgba, "RGBA")), pixel_values(processor, rgb))


def test_sixteen_bit_thermal_is_stretched_to_full_range(processor):
    raw = np.linspace(7000, 7400, 112 * 112).reshape(112, 112).astype(np.uint16)  # narrow band of sensor counts
    out = pixel_values(processor, raw)
    assert out.min().item() == -1.0 and out.max().item() == 1.0
    from_pil = pixel_values(processor, Image.fromarray(raw))  # PIL mode I;16
    torch.testing.assert_close(from_pil, out)


def test_dtype_mode_keeps_sixteen_bit_scale(processor):
    raw = np.full((112, 112), 65535 // 2, np.uint16)
    out = pixel_values(processor, raw, intensity_normalization="dtype")
    assert abs(out.mean().item()) < 0.01


def test_float_temperatures_and_unit_floats(processor):
    celsius = np.random.default_rng(2).uniform(22.0, 36.5, (112, 112)).astype(np.float32)
    out = pixel_values(processor, celsius)
    assert out.min().item() == -1.0 and out.max().item() == 1.0
    unit = np.full((112, 112, 3), 0.5, np.float32)
    assert abs(pixel_values(processor, unit).mean().item()) < 0.01  # kept, not stretched


def test_layouts_agree(processor):
    hwc = np.random.default_rng(3).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    reference = pixel_values(processor, hwc)
    torch.testing.assert_close(pixel_values(processor, chw), reference)
    torch.testing.assert_close(pixel_values(processor, chw[None]), reference)
    torch.testing.assert_close(pixel_values(processor, Image.fromarray(hwc)), reference)


def test_resize_can_be_refused(processor):
    with pytest.raises(ValueError, match="is not 112×112 and do_resize is False"):
        processor(np.zeros((100, 90, 3), np.uint8), do_resize=False)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((5, 112, 112, 3, 1), np.uint8), "dimensions"),
        (np.zeros((112, 112, 7), np.uint8), "channels"),
        (np.full((112, 112), np.nan, np.float32), "NaN"),
        ("not an image", "takes PIL images"),
        ([], "No images"),
    ],
)
def test_bad_images_are_named(processor, image, message):
    with pytest.raises((ValueError, TypeError), match=message):
        processor(image)


def test_invalid_settings():
    with pytest.raises(ValueError, match="resample"):
        EdgeFaceImageProcessor(resample="cubic-ish")
    with pytest.raises(ValueError, match="intensity_normalization"):
        EdgeFaceImageProcessor(intensity_normalization="gamma")


def test_save_and_load_through_auto_class(tmp_path):
    processor = EdgeFaceImageProcessor(resample="bilinear")
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, EdgeFaceImageProcessor) and loaded.resample == "bilinear"


def test_unknown_arguments_are_named_in_a_warning(processor):
    with pytest.warns(UserWarning, match="do_normalise"):
        out = pixel_values(processor, np.zeros((112, 112, 3), np.uint8), do_normalise=False)
    assert out.min().item() == -1.0  # the misspelt option was not applied


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_do_convert_rgb_false_keeps_the_channels(processor, channels):
    image = np.random.default_rng(4).integers(0, 256, (112, 112, channels), dtype=np.uint8)
    kept = pixel_values(processor, image, do_convert_rgb=False, image_mean=[0.5], image_std=[0.5])
    assert kept.shape == (1, channels, 112, 112)
    torch.testing.assert_close(kept[0, 0], pixel_values(processor, image)[0, 0])
    assert (
        EdgeFaceImageProcessor(do_convert_rgb=False)(image, image_mean=0.5, image_std=0.5).pixel_values.shape[1]
        == channels
    )


def test_do_convert_rgb_false_refuses_a_mean_of_another_length(processor):
    with pytest.raises(ValueError, match="image_mean has 3 values but the images have 4 channels"):
        processor(np.zeros((112, 112, 4), np.uint8), do_convert_rgb=False)
    with pytest.raises(ValueError, match=r"have \[1, 3\] channels, which cannot form one batch"):
        processor([np.zeros((112, 112), np.uint8), np.zeros((112, 112, 3), np.uint8)], do_convert_rgb=False)


def test_rescale_and_layout_options_are_honoured(processor):
    image = np.full((112, 112, 3), 51, np.uint8)
    assert pixel_values(processor, image, do_rescale=False, do_normalize=False).unique().tolist() == [51.0]
    assert pixel_values(processor, image, rescale_factor=1 / 51, do_normalize=False).unique().tolist() == [1.0]
    assert pixel_values(processor, image, data_format="channels_last").shape == (1, 112, 112, 3)


def test_options_round_trip_through_the_config(tmp_path):
    EdgeFaceImageProcessor(do_convert_rgb=False, do_rescale=False).save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert loaded.do_convert_rgb is False and loaded.do_rescale is False


def test_registered_as_the_pil_backend():
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

    from hfr_hf import EdgeFaceConfig
    from hfr_hf.image_processing_edgeface import EdgeFaceImageProcessorKwargs

    assert IMAGE_PROCESSOR_MAPPING[EdgeFaceConfig] == {"pil": EdgeFaceImageProcessor}
    assert EdgeFaceImageProcessor.valid_kwargs is EdgeFaceImageProcessorKwargs
