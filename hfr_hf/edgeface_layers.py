"""EdgeFace's network in plain torch: the EdgeNeXt blocks, the low-rank linear, and the network they make.

Paper: George et al., "EdgeFace: Efficient Face Recognition Model for Edge Devices", IEEE T-BIOM 2024.
Backbone: Maaz et al., "EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for Mobile Vision
Applications", ECCV-W 2022. Module names follow the official checkpoints (timm's EdgeNeXt layout under
`model.`), so converting them is a key rename, not code.

`EdgeFaceModel` (modeling_edgeface.py, the transformers model) and `EdgeFaceNetwork` (here) are built and run by
the same two functions, `build_edgeface` and `run_edgeface`, so their weights and numbers cannot drift apart
(the model passes subclasses of the two block classes that transformers' gradient checkpointing recomputes).
This file imports torch only: the read-only commands load a model folder through `EdgeFaceNetwork` without
importing transformers (seconds of start-up). It is Hub remote code too (modeling_edgeface.py imports it), so
it stays self-contained, with no `hfr_hf` imports.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURE_KEYS",
    "EdgeFaceLowRankLinear",
    "EdgeFaceNetwork",
    "EdgeFaceNetworkOutput",
    "build_edgeface",
    "check_pixel_values",
    "lowrank_rank",
    "run_edgeface",
]

# An `EdgeFaceConfig`, or any object with its attributes (`EdgeFaceNetwork` takes a namespace of config.json).
Config = Any

# The config fields the network's shape and numbers depend on.
ARCHITECTURE_KEYS = (
    "num_channels",
    "image_size",
    "depths",
    "dims",
    "heads",
    "kernel_sizes",
    "global_block_counts",
    "d2_scales",
    "use_pos_emb",
    "expand_ratio",
    "lowrank_ratio",
    "embedding_size",
    "layer_norm_eps",
    "layer_scale_init_value",
    "drop_path_rate",
    "hidden_act",
)

# The activations `EdgeFaceConfig.hidden_act` allows (transformers' ACT2FN has no `gelu_tanh`).
ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_tanh": functools.partial(nn.GELU, approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
}


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


def make_linear(in_features: int, out_features: int, config: Config, bias: bool = True) -> nn.Module:
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

    def __init__(self, dim: int, hidden_dim: int, config: Config) -> None:
        super().__init__()
        self.fc1 = make_linear(dim, hidden_dim, config)
        self.act = ACTIVATIONS[config.hidden_act]()
        self.fc2 = make_linear(hidden_dim, dim, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def layer_scaled(gamma: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """x times the per-channel layer scale γ; γ is None once `hfr_hf.onnx_export` folded it into the linear layer."""
    return x if gamma is None else gamma * x


class EdgeFaceConvBlock(nn.Module):
    """Depth-wise conv, LayerNorm, MLP, layer scale, residual (EdgeNeXt conv encoder)."""

    def __init__(self, dim: int, kernel_size: int, drop_path: float, config: Config) -> None:
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

    def __init__(self, dim: int, num_heads: int, config: Config) -> None:
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


class EdgeFaceSplitTransposeBlock(nn.Module):
    """SDTA block: multi-scale depth-wise convs over channel groups, transposed attention, MLP."""

    def __init__(
        self,
        dim: int,
        num_scales: int,
        num_heads: int,
        use_pos_emb: bool,
        drop_path: float,
        config: Config,
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

    def __init__(
        self, index: int, in_dim: int, drop_paths: list[float], config: Config, blocks: tuple[type, type] | None = None
    ) -> None:
        super().__init__()
        conv_block, sdta_block = blocks or (EdgeFaceConvBlock, EdgeFaceSplitTransposeBlock)
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
        layers = []
        for i in range(depth):
            if i < depth - n_global:
                layers.append(conv_block(dim, config.kernel_sizes[index], drop_paths[i], config))
            else:
                layers.append(
                    sdta_block(
                        dim,
                        config.d2_scales[index],
                        config.heads[index],
                        config.use_pos_emb[index],
                        drop_paths[i],
                        config,
                        side,
                    )
                )
        self.blocks = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class EdgeFaceHead(nn.Module):
    """Global average pooling, LayerNorm, linear projection to the embedding."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.dims[-1], eps=config.layer_norm_eps)
        self.fc = make_linear(config.dims[-1], config.embedding_size, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x.mean(dim=(2, 3))))


def build_edgeface(module: nn.Module, config: Config, blocks: tuple[type, type] | None = None) -> None:
    """Give `module` EdgeFace's `stem`, `stages` and `head` (the official checkpoints' layout). `blocks`: the conv
    and SDTA block classes (default `EdgeFaceConvBlock`, `EdgeFaceSplitTransposeBlock`; `EdgeFaceModel` gives
    subclasses that gradient checkpointing can recompute)."""
    module.stem = nn.Sequential(
        nn.Conv2d(config.num_channels, config.dims[0], kernel_size=4, stride=4),
        EdgeFaceLayerNorm2d(config.dims[0], eps=config.layer_norm_eps),
    )
    rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").split(list(config.depths))
    stages, in_dim = [], config.dims[0]
    for index in range(len(config.depths)):
        stages.append(EdgeFaceStage(index, in_dim, rates[index].tolist(), config, blocks))
        in_dim = config.dims[index]
    module.stages = nn.Sequential(*stages)
    module.head = EdgeFaceHead(config)


def check_pixel_values(pixel_values: torch.Tensor, config: Config) -> None:
    """A ValueError that says what is wrong unless `pixel_values` is a (N, channels, size, size) tensor."""
    expected = (config.num_channels, config.image_size, config.image_size)
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


def run_edgeface(
    module: nn.Module, pixel_values: torch.Tensor, output_hidden_states: bool = False
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """(embeddings, last feature map, feature maps after the stem and each stage or None) of a module that
    `build_edgeface` built."""
    x = module.stem(pixel_values)
    hidden_states = (x,) if output_hidden_states else None
    for stage in module.stages:
        x = stage(x)
        if output_hidden_states:
            hidden_states += (x,)
    return module.head(x), x, hidden_states


class EdgeFaceNetworkOutput(NamedTuple):
    """What `EdgeFaceNetwork` returns: the fields of `EdgeFaceModelOutput` that inference reads."""

    embeddings: torch.Tensor
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor


class EdgeFaceNetwork(nn.Module):
    """EdgeFace without transformers: the same modules and numbers as `EdgeFaceModel`, for inference from a
    state dict. `config`: an `EdgeFaceConfig` or any object with its architecture attributes."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        build_edgeface(self, config)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, pixel_values: torch.Tensor) -> EdgeFaceNetworkOutput:
        """Embed a batch of aligned faces, `pixel_values` of shape (N, 3, 112, 112) in [-1, 1]."""
        check_pixel_values(pixel_values, self.config)
        embeddings, x, _ = run_edgeface(self, pixel_values)
        return EdgeFaceNetworkOutput(embeddings=embeddings, last_hidden_state=x, pooler_output=embeddings)

    @torch.no_grad()
    def get_embeddings(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(N, embedding_size) embeddings without gradients, L2-normalised unless `normalize=False`."""
        embeddings = self(pixel_values=pixel_values).embeddings
        return F.normalize(embeddings, dim=-1) if normalize else embeddings
