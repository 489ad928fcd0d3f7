"""What an EdgeFace costs to run: parameters and FLOPs of one forward pass, counted rather than quoted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..configuration_edgeface import EDGEFACE_VARIANTS, EdgeFaceConfig
from ..modeling_edgeface import EdgeFaceModel

__all__ = ["PAPER_MFLOPS", "ModelCost", "model_cost", "variant_costs"]

# MFLOPs the official EdgeFace repository quotes per variant (otroshi/edgeface README, "Performance benchmarks of
# different variants"); cards show them beside the counted figure. `xs` (full rank) has no published figure.
PAPER_MFLOPS = {"xxs": 94.72, "xs_gamma_06": 154.00, "s_gamma_05": 306.12, "base": 1398.83}


@dataclass(frozen=True)
class ModelCost:
    """Parameters and FLOPs (multiply and add counted separately, as the EdgeFace paper does) of one image."""

    parameters: int
    flops: int
    image_size: int

    @property
    def mflops(self) -> float:
        return self.flops / 1e6


def _count(config: EdgeFaceConfig) -> ModelCost:
    # On the meta device nothing is allocated or computed: the counter only sees the shapes of each op.
    with torch.device("meta"):
        model = EdgeFaceModel(config).eval()
        pixels = torch.empty(1, config.num_channels, config.image_size, config.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(pixel_values=pixels)
    parameters = sum(p.numel() for p in model.parameters())
    return ModelCost(parameters=parameters, flops=int(counter.get_total_flops()), image_size=config.image_size)


@lru_cache(maxsize=32)
def _count_cached(config_json: str) -> ModelCost:
    return _count(EdgeFaceConfig.from_dict(json.loads(config_json)))


def model_cost(config: EdgeFaceConfig) -> ModelCost:
    """Parameters and FLOPs of one forward pass of a 1×C×H×W image through the network `config` describes.

    FLOPs are `torch.utils.flop_counter.FlopCounterMode`'s: 2 per multiply-accumulate of every convolution and matrix
    product (normalisations and activations are not counted, as in the paper's figures)."""
    return _count_cached(config.to_json_string(use_diff=False))


def variant_costs() -> dict[str, ModelCost]:
    """The cost of every official EdgeFace variant, in `EDGEFACE_VARIANTS` order."""
    return {name: model_cost(EdgeFaceConfig.from_variant(name)) for name in EDGEFACE_VARIANTS}
