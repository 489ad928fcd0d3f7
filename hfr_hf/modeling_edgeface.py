"""EdgeFace model: EdgeNeXt backbone with a 512-d face embedding head.

Paper: George et al., "EdgeFace: Efficient Face Recognition Model for Edge Devices", IEEE T-BIOM 2024.
Backbone: Maaz et al., "EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for Mobile Vision
Applications", ECCV-W 2022. Module names follow the official checkpoints (timm's EdgeNeXt layout under
`model.`), so converting them is a key rename, not code.

This file is self-contained (torch/transformers only) because it is shipped as Hub remote code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
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

__all__ = ["EdgeFaceModel", "EdgeFaceModelOutput", "EdgeFacePreTrainedModel", "EdgeFaceLowRankLinear"]


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


def lowrank_rank(in_features: int, out_features: int, ratio: float) -> int:
    """Rank of EdgeFace's low-rank linear: max(2, int(γ·min(in, out)))."""
    return max(2, int(ratio * min(in_features, out_features)))


class EdgeFaceLowRankLinear(nn.Module):
    """A linear layer factorised as `linear2(linear1(x))` of rank r (EdgeFace's LoRaLin)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        self.linear1 = nn.Linear(in_features, rank, bias=False)
        self.linear2 = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.linear1(x))


def make_linear(in_features: int, out_features: int, config: EdgeFaceConfig, bias: bool = True) -> nn.Module:
    """`nn.Linear`, or its low-rank pair when the config sets γ (every Linear, the head included)."""
    if config.lowrank_ratio is None:
        return nn.Linear(in_features, out_features, bias=bias)
    rank = lowrank_rank(in_features, out_features, config.lowrank_ratio)
    return EdgeFaceLowRankLinear(in_features, out_features, rank, bias=bias)


class EdgeFaceLayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class EdgeFaceDropPath(nn.Module):
    """Stochastic depth per sample (identity at inference)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class EdgeFaceMlp(nn.Module):
    """Inverted-bottleneck MLP on channels-last features."""

    def __init__(self, dim: int, hidden_dim: int, config: EdgeFaceConfig) -> None:
        super().__init__()
        self.fc1 = make_linear(dim, hidden_dim, config)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = make_linear(hidden_dim, dim, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def layer_scaled(gamma: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """x times the per-channel layer scale γ; γ is None once `hfr_hf.onnx_export` folded it into the linear layer."""
    return x if gamma is None else gamma * x


class EdgeFaceConvBlock(GradientCheckpointingLayer):
    """Depth-wise conv, LayerNorm, MLP, layer scale, residual (EdgeNeXt conv encoder)."""

    def __init__(self, dim: int, kernel_size: int, drop_path: float, config: EdgeFaceConfig) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = EdgeFaceMlp(dim, config.expand_ratio * dim, config)
        self.gamma = nn.Parameter(torch.full((dim,), config.layer_scale_init_value))
        self.drop_path = EdgeFaceDropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = layer_scaled(self.gamma, self.mlp(self.norm(self.conv_dw(x).permute(0, 2, 3, 1))))
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


class EdgeFacePositionalEncoding(nn.Module):
    """Fourier positional encoding projected to the channels (EdgeNeXt's PositionalEncodingFourier).

    The sine/cosine features depend on the feature-map size only, which the model fixes (`config.image_size`), so
    they are a non-persistent buffer: they follow `.to()`, offloading and `torch.export` like any tensor of the model,
    and the forward pass reads no other module's weights."""

    def __init__(self, dim: int, height: int, width: int, hidden_dim: int = 32, temperature: float = 10000.0) -> None:
        super().__init__()
        self.token_projection = nn.Conv2d(hidden_dim * 2, dim, kernel_size=1)
        self.hidden_dim = hidden_dim
        self.temperature = temperature
        self.register_buffer("fourier_features", self.compute_fourier_features(height, width), persistent=False)

    def compute_fourier_features(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """(1, 2·hidden_dim, H, W) float32 sine/cosine features of the positions of an H×W map."""
        eps, scale = 1e-6, 2 * math.pi
        y = torch.arange(1, height + 1, dtype=torch.float32, device=device).view(1, height, 1)
        x = torch.arange(1, width + 1, dtype=torch.float32, device=device).view(1, 1, width)
        y = (y / (height + eps) * scale).expand(1, height, width)
        x = (x / (width + eps) * scale).expand(1, height, width)
        dim_t = torch.arange(self.hidden_dim, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.hidden_dim)
        pos_x = x[..., None] / dim_t
        pos_y = y[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).contiguous()

    def forward(self, height: int, width: int) -> torch.Tensor:
        features = self.fourier_features
        if tuple(features.shape[-2:]) != (height, width):  # a map of another size than the config's
            features = self.compute_fourier_features(height, width, features.device)
        return self.token_projection(features.to(self.token_projection.weight.dtype))


class EdgeFaceCrossCovarianceAttention(nn.Module):
    """Transposed (channel) attention: a C×C attention map per head (XCiT's XCA)."""

    def __init__(self, dim: int, num_heads: int, config: EdgeFaceConfig) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = make_linear(dim, dim * 3, config)
        self.proj = make_linear(dim, dim, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        # (batch, heads, head_dim, tokens) for q, k and v. The same numbers as XCiT's reshape + 5-d permute +
        # unbind, written with one 3-d transpose each way: exported graphs run it much faster (onnxruntime has
        # no fast path for the 5-d permutation, nor for the Expand that F.normalize exports).
        qkv = self.qkv(x).transpose(1, 2)
        q, k, v = (part.reshape(batch, self.num_heads, -1, tokens) for part in qkv.chunk(3, dim=1))
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.reshape(batch, channels, tokens).transpose(1, 2))


class EdgeFaceSplitTransposeBlock(GradientCheckpointingLayer):
    """SDTA block: multi-scale depth-wise convs over channel groups, transposed attention, MLP."""

    def __init__(
        self,
        dim: int,
        num_scales: int,
        num_heads: int,
        use_pos_emb: bool,
        drop_path: float,
        config: EdgeFaceConfig,
        side: int,
    ) -> None:
        super().__init__()
        width = max(int(math.ceil(dim / num_scales)), int(math.floor(dim // num_scales)))
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, padding=1, groups=width) for _ in range(max(1, num_scales - 1))
        )
        # `side`: of this block's square feature map, the size of the positional encoding's features
        self.pos_embd = EdgeFacePositionalEncoding(dim, side, side) if use_pos_emb else None
        self.norm_xca = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.gamma_xca = nn.Parameter(torch.full((dim,), config.layer_scale_init_value))
        self.xca = EdgeFaceCrossCovarianceAttention(dim, num_heads, config)
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = EdgeFaceMlp(dim, config.expand_ratio * dim, config)
        self.gamma = nn.Parameter(torch.full((dim,), config.layer_scale_init_value))
        self.drop_path = EdgeFaceDropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        chunks = x.chunk(len(self.convs) + 1, dim=1)
        outputs = []
        sp = chunks[0]
        for i, conv in enumerate(self.convs):
            if i > 0:
                sp = sp + chunks[i]
            sp = conv(sp)
            outputs.append(sp)
        outputs.append(chunks[-1])
        x = torch.cat(outputs, dim=1)

        batch, channels, height, width = x.shape
        x = x.reshape(batch, channels, height * width).permute(0, 2, 1)
        if self.pos_embd is not None:
            x = x + self.pos_embd(height, width).reshape(1, channels, height * width).permute(0, 2, 1)
        x = x + self.drop_path(layer_scaled(self.gamma_xca, self.xca(self.norm_xca(x))))
        x = layer_scaled(self.gamma, self.mlp(self.norm(x.reshape(batch, height, width, channels))))
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


class EdgeFaceStage(nn.Module):
    """Optional downsampling (LayerNorm + 2×2 stride-2 conv), then conv blocks, then SDTA blocks."""

    def __init__(self, index: int, in_dim: int, drop_paths: list[float], config: EdgeFaceConfig) -> None:
        super().__init__()
        dim = config.dims[index]
        if index == 0:
            self.downsample = nn.Identity()
        else:
            self.downsample = nn.Sequential(
                EdgeFaceLayerNorm2d(in_dim, eps=config.layer_norm_eps),
                nn.Conv2d(in_dim, dim, kernel_size=2, stride=2),
            )
        depth, n_global = config.depths[index], config.global_block_counts[index]
        side = (config.image_size // 4) >> index  # stride-4 stem, then stride 2 per stage after the first
        blocks = []
        for i in range(depth):
            if i < depth - n_global:
                blocks.append(EdgeFaceConvBlock(dim, config.kernel_sizes[index], drop_paths[i], config))
            else:
                blocks.append(
                    EdgeFaceSplitTransposeBlock(
                        dim,
                        config.d2_scales[index],
                        config.heads[index],
                        config.use_pos_emb[index],
                        drop_paths[i],
                        config,
                        side,
                    )
                )
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class EdgeFaceHead(nn.Module):
    """Global average pooling, LayerNorm, linear projection to the embedding."""

    def __init__(self, config: EdgeFaceConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.dims[-1], eps=config.layer_norm_eps)
        self.fc = make_linear(config.dims[-1], config.embedding_size, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x.mean(dim=(2, 3))))


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
        self.stem = nn.Sequential(
            nn.Conv2d(config.num_channels, config.dims[0], kernel_size=4, stride=4),
            EdgeFaceLayerNorm2d(config.dims[0], eps=config.layer_norm_eps),
        )
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").split(config.depths)
        stages, in_dim = [], config.dims[0]
        for index in range(len(config.depths)):
            stages.append(EdgeFaceStage(index, in_dim, rates[index].tolist(), config))
            in_dim = config.dims[index]
        self.stages = nn.Sequential(*stages)
        self.head = EdgeFaceHead(config)
        self.post_init()

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        expected = (self.config.num_channels, self.config.image_size, self.config.image_size)
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(
                f"EdgeFaceModel expects pixel_values as a tensor of shape (batch, {expected[0]}, {expected[1]}, "
                f"{expected[2]}), got {shape}. Prepare images with EdgeFaceImageProcessor."
            )
        if pixel_values.shape[1] != expected[0]:
            raise ValueError(
                f"EdgeFaceModel expects {expected[0]} channels (RGB), got {pixel_values.shape[1]} in pixel_values of "
                f"shape {tuple(pixel_values.shape)}. Convert grey or RGBA images with EdgeFaceImageProcessor."
            )
        if tuple(pixel_values.shape[2:]) != expected[1:]:
            raise ValueError(
                f"EdgeFaceModel expects aligned {expected[1]}×{expected[2]} faces, got "
                f"{pixel_values.shape[2]}×{pixel_values.shape[3]}. Align or resize them with EdgeFaceImageProcessor."
            )

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

        x = self.stem(pixel_values)
        hidden_states = (x,) if output_hidden_states else None
        for stage in self.stages:
            x = stage(x)
            if output_hidden_states:
                hidden_states += (x,)
        embeddings = self.head(x)

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
