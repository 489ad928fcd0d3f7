"""EdgeFace model: EdgeNeXt backbone with a 512-d face embedding head, as a transformers `PreTrainedModel`.

Paper: George et al., "EdgeFace: Efficient Face Recognition Model for Edge Devices", IEEE T-BIOM 2024.
The network's blocks live in edgeface_layers.py (torch only), which builds and runs this model and the
transformers-free `EdgeFaceNetwork` alike; module names follow the official checkpoints.

This file and the two it imports are self-contained (torch/transformers only) because they are shipped as Hub
remote code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

try:  # transformers >= 5: init functions that leave loaded weights alone
    from transformers import initialization as init
except ImportError:  # transformers 4.x
    from torch.nn import init

try:  # transformers >= 4.52: the layer class `gradient_checkpointing_enable()` switches on
    from transformers.modeling_layers import GradientCheckpointingLayer
except ImportError:  # older transformers set `gradient_checkpointing` on any module that has the attribute

    class GradientCheckpointingLayer(nn.Module):
        """A block that recomputes its activations in the backward pass once gradient checkpointing is enabled."""

        gradient_checkpointing = False

        def __call__(self, *args, **kwargs):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                return self._gradient_checkpointing_func(super().__call__, *args, **kwargs)
            return super().__call__(*args, **kwargs)


from .configuration_edgeface import EdgeFaceConfig
from .edgeface_layers import EdgeFaceConvBlock as _ConvBlock
from .edgeface_layers import (  # noqa: F401 -- re-exported: the blocks keep their old import path
    EdgeFaceCrossCovarianceAttention,
    EdgeFaceDropPath,
    EdgeFaceHead,
    EdgeFaceLayerNorm2d,
    EdgeFaceLowRankLinear,
    EdgeFaceMlp,
    EdgeFacePositionalEncoding,
    EdgeFaceStage,
    build_edgeface,
    check_pixel_values,
    layer_scaled,
    lowrank_rank,
    make_linear,
    run_edgeface,
)
from .edgeface_layers import EdgeFaceSplitTransposeBlock as _SplitTransposeBlock

__all__ = ["EdgeFaceModel", "EdgeFaceModelOutput", "EdgeFacePreTrainedModel", "EdgeFaceLowRankLinear"]


class EdgeFaceConvBlock(GradientCheckpointingLayer, _ConvBlock):
    """EdgeNeXt's conv block (edgeface_layers.py), recomputed in the backward pass under gradient checkpointing."""


class EdgeFaceSplitTransposeBlock(GradientCheckpointingLayer, _SplitTransposeBlock):
    """EdgeNeXt's SDTA block (edgeface_layers.py), recomputed in the backward pass under gradient checkpointing."""


@dataclass
class EdgeFaceModelOutput(ModelOutput):
    """
    Output of [`EdgeFaceModel`].

    Args:
        embeddings (`torch.FloatTensor` of shape `(batch_size, embedding_size)`):
            Raw face embeddings, as the official network returns them (not L2-normalised); compare by cosine.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, dims[-1], height, width)`):
            Feature map of the last stage, before pooling.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, embedding_size)`):
            The embeddings again, under the name `pipeline(..., pool=True)` reads.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            Feature maps after the stem and after each stage.
    """

    embeddings: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class EdgeFacePreTrainedModel(PreTrainedModel):
    config_class = EdgeFaceConfig
    base_model_prefix = "edgeface"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["EdgeFaceConvBlock", "EdgeFaceSplitTransposeBlock"]
    supports_gradient_checkpointing = True  # per block (EdgeFaceConvBlock, EdgeFaceSplitTransposeBlock)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (EdgeFaceConvBlock, EdgeFaceSplitTransposeBlock)):
            init.constant_(module.gamma, self.config.layer_scale_init_value)
            if isinstance(module, EdgeFaceSplitTransposeBlock):
                init.constant_(module.gamma_xca, self.config.layer_scale_init_value)
        elif isinstance(module, EdgeFaceCrossCovarianceAttention):
            init.ones_(module.temperature)
        elif isinstance(module, EdgeFacePositionalEncoding):  # a buffer, rebuilt after meta-device loading
            features = module.compute_fourier_features(*module.fourier_features.shape[-2:])
            if hasattr(init, "copy_"):
                init.copy_(module.fourier_features, features)
            else:
                with torch.no_grad():
                    module.fourier_features.copy_(features)


class EdgeFaceModel(EdgeFacePreTrainedModel):
    """EdgeFace: an aligned 112×112 RGB face in [-1, 1] → a 512-d embedding, compared by cosine."""

    def __init__(self, config: EdgeFaceConfig) -> None:
        super().__init__(config)
        build_edgeface(self, config, blocks=(EdgeFaceConvBlock, EdgeFaceSplitTransposeBlock))
        self.post_init()

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        check_pixel_values(pixel_values, self.config)

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> EdgeFaceModelOutput | tuple:
        """Embed a batch of aligned faces, `pixel_values` of shape (N, 3, 112, 112) in [-1, 1]."""
        self._check_pixel_values(pixel_values)
        # Arguments left as None fall back to the config, as in every transformers model.
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        embeddings, x, hidden_states = run_edgeface(self, pixel_values, bool(output_hidden_states))

        if not return_dict:
            return tuple(v for v in (embeddings, x, embeddings, hidden_states) if v is not None)
        return EdgeFaceModelOutput(
            embeddings=embeddings, last_hidden_state=x, pooler_output=embeddings, hidden_states=hidden_states
        )

    @torch.no_grad()
    def get_embeddings(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(N, embedding_size) embeddings without gradients, L2-normalised unless `normalize=False`."""
        embeddings = self(pixel_values=pixel_values).embeddings
        return F.normalize(embeddings, dim=-1) if normalize else embeddings
