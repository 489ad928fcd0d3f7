"""transformers' own common tests (ModelTesterMixin, ConfigTester, ImageProcessingTestMixin) run on EdgeFace.

They come from the installed transformers version's source distribution (tests/upstream_suites.py), so a
transformers release that changes a convention fails here first. The tester classes follow transformers'
tests/models/convnext/ files; tests that do not apply to an embedding model are skipped with the reason, as
transformers' own model tests do. Without the package registry the module is skipped, and
tests/test_upstream_suites.py fails in CI (HFR_HF_REQUIRE_ASSETS=1), so the check cannot silently vanish there.
"""

from __future__ import annotations

import unittest
import warnings

import pytest
import torch

from hfr_hf import EdgeFaceConfig, EdgeFaceImageProcessor, EdgeFaceModel
from tests.upstream_suites import UpstreamUnavailable, common_module

try:
    with warnings.catch_warnings():  # transformers' own pytest marks (torch_compile_test, ...), unknown here
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        modeling_common = common_module("test_modeling_common")
        configuration_common = common_module("test_configuration_common")
        image_processing_common = common_module("test_image_processing_common")
except UpstreamUnavailable as error:  # a collection error would stop the whole run; one test fails instead
    pytest.skip(f"{error} (tests/test_upstream_suites.py fails on this in CI)", allow_module_level=True)

ModelTesterMixin = modeling_common.ModelTesterMixin
floats_tensor = modeling_common.floats_tensor
ConfigTester = configuration_common.ConfigTester
ImageProcessingTester = image_processing_common.ImageProcessingTester
ImageProcessingTestMixin = image_processing_common.ImageProcessingTestMixin


class EdgeFaceModelTester:
    """A tiny EdgeFace (32×32 input, four stages of 8–32 channels), as ConvNext's tester."""

    def __init__(self, parent, batch_size: int = 4, image_size: int = 32, num_channels: int = 3) -> None:
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_channels = num_channels
        self.depths = [1, 1, 2, 1]
        self.dims = [8, 16, 24, 32]
        self.num_stages = len(self.depths)
        self.embedding_size = 16
        self.is_training = True

    def get_config(self) -> EdgeFaceConfig:
        return EdgeFaceConfig(
            variant=None,
            image_size=self.image_size,
            num_channels=self.num_channels,
            depths=self.depths,
            dims=self.dims,
            heads=[2, 2, 2, 2],
            kernel_sizes=[3, 3, 3, 3],
            embedding_size=self.embedding_size,
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), pixel_values

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}


class EdgeFaceModelTest(ModelTesterMixin, unittest.TestCase):
    """
    transformers' ModelTesterMixin on EdgeFaceModel.

    Skipped by the mixin itself, as for any model without these features: attention outputs and attention
    implementations (SDPA, Flash Attention 2/3/4, kernels: EdgeFace's cross-covariance attention is its own code
    and returns no attention maps), token embeddings and their resizing, RoPE, caches and generation, MoE experts,
    tensor parallelism, DeepSpeed, fp32-kept modules, sub-configs, key-conversion mappings, and the tests that need
    an accelerator (CPU/disk offload and model parallelism among them: test_modeling.py offloads on CPU itself).
    Skipped here, below: the training tests, which need a loss (EdgeFaceModel is a base model), and the embedding
    and feed-forward-chunking tests of text models.
    """

    all_model_classes = (EdgeFaceModel,)
    has_attentions = False  # XCA attention maps are channel×channel per head; the model returns none
    test_resize_embeddings = False  # no token embeddings
    test_torch_exportable = True

    def setUp(self):
        self.model_tester = EdgeFaceModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=EdgeFaceConfig, has_text_modality=False, common_properties=["num_channels", "dims"]
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        config, pixel_values = self.model_tester.prepare_config_and_inputs()
        model = EdgeFaceModel(config).eval()
        with torch.no_grad():
            result = model(pixel_values)
        tester = self.model_tester
        self.assertEqual(result.embeddings.shape, (tester.batch_size, tester.embedding_size))
        self.assertEqual(
            result.last_hidden_state.shape,
            (tester.batch_size, tester.dims[-1], tester.image_size // 32, tester.image_size // 32),
        )

    def test_hidden_states_output(self):
        def check(inputs_dict, config):
            model = EdgeFaceModel(config).eval()
            with torch.no_grad():
                hidden_states = model(**inputs_dict).hidden_states
            self.assertEqual(len(hidden_states), self.model_tester.num_stages + 1)
            side = self.model_tester.image_size // 4
            self.assertListEqual(list(hidden_states[0].shape[-2:]), [side, side])

        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        check({**inputs_dict, "output_hidden_states": True}, config)
        config.output_hidden_states = True  # and through the config
        check(inputs_dict, config)

    # transformers skips these four for its own base models (ConvNextModel, ...: the names in MODEL_MAPPING_NAMES); a
    # registered custom model is not among those names. test_modeling.py compares checkpointed gradients itself.
    @unittest.skip(reason="EdgeFaceModel is a base model: it returns embeddings and no loss to train on")
    def test_training(self):
        pass

    @unittest.skip(reason="EdgeFaceModel is a base model: no loss (test_modeling.py checks checkpointed gradients)")
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(reason="EdgeFaceModel is a base model: no loss (test_modeling.py checks checkpointed gradients)")
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(reason="EdgeFaceModel is a base model: no loss (test_modeling.py checks checkpointed gradients)")
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass

    @unittest.skip(reason="EdgeFace takes pixel_values, not inputs_embeds")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="EdgeFace has no input or output token embeddings")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(reason="EdgeFace does not use feed-forward chunking")
    def test_feed_forward_chunking(self):
        pass


class EdgeFaceImageProcessingTester(ImageProcessingTester):
    """Random images of 30 to 400 pixels a side, brought to 32×32 crops."""

    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"height": 32, "width": 32})
        kwargs.setdefault("do_resize", True)
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])
        kwargs.setdefault("image_std", [0.5, 0.5, 0.5])
        kwargs.setdefault("resample", "bilinear")
        super().__init__(parent, **kwargs)

    def _get_image_processing_classes(self):
        # transformers finds a model's processors from the name of the test file's folder (tests/models/<type>/);
        # EdgeFace is registered from outside, so it is named here (PIL is its backend).
        return {"pil": EdgeFaceImageProcessor}


class EdgeFaceImageProcessingTest(ImageProcessingTestMixin, unittest.TestCase):
    """transformers' ImageProcessingTestMixin on EdgeFaceImageProcessor."""

    image_processor_tester_class = EdgeFaceImageProcessingTester
    test_cast_dtype = True

    def test_image_processing_classes_are_found(self):
        # the mixin loops over these classes: an empty dict would pass every test without running one
        self.assertEqual(self.image_processing_classes, {"pil": EdgeFaceImageProcessor})

    @unittest.skip(
        reason="A rule for models added to transformers' own repository since 2025-09 (a torchvision backend); "
        "EdgeFace's processor is Hub remote code on numpy and PIL, which transformers itself depends on, so that "
        "loading a model repository needs no torchvision"
    )
    def test_new_models_require_torchvision_backend(self):
        pass

    @unittest.skip(
        reason="Loads the saved processor in a fresh process without trust_remote_code; saved from outside "
        "transformers, EdgeFace's processor is remote code there, which transformers rightly refuses without "
        "trust_remote_code=True (test_remote_code.py loads it that way in a process where hfr_hf cannot be imported)"
    )
    def test_pil_can_run_without_torchvision(self):
        pass
