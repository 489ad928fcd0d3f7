"""EdgeFace configuration.

EdgeFace (George, Ecabert, Otroshi Shahreza, Kotwal, Marcel, "EdgeFace: Efficient Face Recognition
Model for Edge Devices", IEEE T-BIOM 2024) is an EdgeNeXt hybrid CNN-transformer with a 512-d
embedding head; the gamma variants replace every linear layer by a rank-reduced pair.

This file is self-contained (torch/transformers only) because it is shipped as Hub remote code.
"""

from __future__ import annotations

import copy

from transformers import PretrainedConfig

__all__ = ["EdgeFaceConfig", "EDGEFACE_VARIANTS"]


_EDGENEXT_COMMON = dict(
    global_block_counts=(0, 1, 1, 1),
    kernel_sizes=(3, 5, 7, 9),
    d2_scales=(2, 2, 3, 4),
    use_pos_emb=(False, True, False, False),
)

# Architectures of the official checkpoints. Parameter counts are those of the official networks.
EDGEFACE_VARIANTS: dict[str, dict] = {
    # 1,244,744 params; timm edgenext_xx_small + 512-d head
    "xxs": dict(_EDGENEXT_COMMON, depths=(2, 2, 6, 2), dims=(24, 48, 88, 168), heads=(4, 4, 4, 4), lowrank_ratio=None),
    # 2,242,620 params; timm edgenext_x_small + 512-d head, full rank
    "xs": dict(_EDGENEXT_COMMON, depths=(3, 3, 9, 3), dims=(32, 64, 100, 192), heads=(4, 4, 4, 4), lowrank_ratio=None),
    # 1,770,492 params; EdgeFace-XS(γ=0.6), every Linear rank-reduced
    "xs_gamma_06": dict(
        _EDGENEXT_COMMON, depths=(3, 3, 9, 3), dims=(32, 64, 100, 192), heads=(4, 4, 4, 4), lowrank_ratio=0.6
    ),
    # 3,652,520 params; EdgeFace-S(γ=0.5), timm edgenext_small
    "s_gamma_05": dict(
        _EDGENEXT_COMMON, depths=(3, 3, 9, 3), dims=(48, 96, 160, 304), heads=(8, 8, 8, 8), lowrank_ratio=0.5
    ),
    # 18,225,812 params; timm edgenext_base + 512-d head
    "base": dict(
        _EDGENEXT_COMMON, depths=(3, 3, 9, 3), dims=(80, 160, 288, 584), heads=(8, 8, 8, 8), lowrank_ratio=None
    ),
}


class EdgeFaceConfig(PretrainedConfig):
    r"""
    Configuration of an [`EdgeFaceModel`]. Defaults give EdgeFace-XXS; `EdgeFaceConfig.from_variant(name)`
    gives any official variant (`xxs`, `xs`, `xs_gamma_06`, `s_gamma_05`, `base`).

    Args:
        variant (`str`, *optional*): name of the official variant this configuration describes (informative).
        num_channels (`int`, defaults to 3): input channels (RGB).
        image_size (`int`, defaults to 112): side of the square aligned face crop.
        depths (`tuple[int]`): blocks per stage.
        dims (`tuple[int]`): channels per stage.
        heads (`tuple[int]`): attention heads of the SDTA (split depth-wise transpose attention) blocks per stage.
        kernel_sizes (`tuple[int]`): depth-wise kernel size of the conv blocks per stage.
        global_block_counts (`tuple[int]`): how many SDTA blocks close each stage (the rest are conv blocks).
        d2_scales (`tuple[int]`): channel splits of the SDTA multi-scale depth-wise convolutions per stage.
        use_pos_emb (`tuple[bool]`): whether the SDTA block of a stage adds a Fourier positional encoding.
        expand_ratio (`int`, defaults to 4): inverted-bottleneck expansion of the MLPs.
        lowrank_ratio (`float`, *optional*): γ of the low-rank variants; every `nn.Linear` becomes two linears
            of rank `max(2, int(γ·min(in, out)))`. `None` means full rank.
        embedding_size (`int`, defaults to 512): size of the face embedding.
        layer_norm_eps (`float`, defaults to 1e-6): epsilon of every LayerNorm.
        layer_scale_init_value (`float`, defaults to 1e-6): initial value of the layer-scale parameters.
        drop_path_rate (`float`, defaults to 0.0): stochastic depth rate, linearly increasing over blocks.
        hidden_act (`str`, defaults to `"gelu"`): activation of the MLPs.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation of conv/linear weights.
    """

    model_type = "edgeface"

    def __init__(
        self,
        variant: str | None = "xxs",
        num_channels: int = 3,
        image_size: int = 112,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        dims: tuple[int, ...] = (24, 48, 88, 168),
        heads: tuple[int, ...] = (4, 4, 4, 4),
        kernel_sizes: tuple[int, ...] = (3, 5, 7, 9),
        global_block_counts: tuple[int, ...] = (0, 1, 1, 1),
        d2_scales: tuple[int, ...] = (2, 2, 3, 4),
        use_pos_emb: tuple[bool, ...] = (False, True, False, False),
        expand_ratio: int = 4,
        lowrank_ratio: float | None = None,
        embedding_size: int = 512,
        layer_norm_eps: float = 1e-6,
        layer_scale_init_value: float = 1e-6,
        drop_path_rate: float = 0.0,
        hidden_act: str = "gelu",
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.variant = variant
        self.num_channels = num_channels
        self.image_size = image_size
        self.depths = list(depths)
        self.dims = list(dims)
        self.heads = list(heads)
        self.kernel_sizes = list(kernel_sizes)
        self.global_block_counts = list(global_block_counts)
        self.d2_scales = list(d2_scales)
        self.use_pos_emb = [bool(v) for v in use_pos_emb]
        self.expand_ratio = expand_ratio
        self.lowrank_ratio = lowrank_ratio
        self.embedding_size = embedding_size
        self.layer_norm_eps = layer_norm_eps
        self.layer_scale_init_value = layer_scale_init_value
        self.drop_path_rate = drop_path_rate
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self._validate()
        super().__init__(**kwargs)

    @classmethod
    def from_variant(cls, variant: str, **kwargs) -> EdgeFaceConfig:
        """Configuration of an official EdgeFace variant; keyword arguments override single fields."""
        if variant not in EDGEFACE_VARIANTS:
            raise ValueError(f"Unknown EdgeFace variant {variant!r}: choose one of {', '.join(EDGEFACE_VARIANTS)}.")
        preset = copy.deepcopy(EDGEFACE_VARIANTS[variant])
        preset.update(kwargs)
        return cls(variant=variant, **preset)

    def _validate(self) -> None:
        def fail(field: str, why: str) -> None:
            raise ValueError(f"EdgeFaceConfig.{field} {why}")

        def positive_int(field: str, value) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                fail(field, f"must be a positive integer, got {value!r}.")

        for field in ("num_channels", "image_size", "expand_ratio", "embedding_size"):
            positive_int(field, getattr(self, field))
        num_stages = len(self.depths)
        if num_stages == 0:
            fail("depths", "must name at least one stage.")
        per_stage = ("depths", "dims", "heads", "kernel_sizes", "global_block_counts", "d2_scales", "use_pos_emb")
        for field in per_stage:
            value = getattr(self, field)
            if len(value) != num_stages:
                fail(field, f"must have one entry per stage ({num_stages}, as in depths), got {len(value)}.")
        for field in ("depths", "dims", "heads", "kernel_sizes", "d2_scales"):
            for value in getattr(self, field):
                positive_int(field, value)
        for stage, (depth, n_global) in enumerate(zip(self.depths, self.global_block_counts)):
            if isinstance(n_global, bool) or not isinstance(n_global, int) or not 0 <= n_global <= depth:
                fail(
                    "global_block_counts",
                    f"[{stage}] must be an integer between 0 and depths[{stage}]={depth}, got {n_global!r}.",
                )
        for stage, kernel in enumerate(self.kernel_sizes):
            if kernel % 2 == 0:
                fail("kernel_sizes", f"[{stage}] must be odd so that the depth-wise conv keeps the size, got {kernel}.")
        for stage, (dim, heads, n_global) in enumerate(zip(self.dims, self.heads, self.global_block_counts)):
            if n_global and dim % heads:
                fail("heads", f"[{stage}]={heads} must divide dims[{stage}]={dim}.")
        min_side = 4 * 2 ** (num_stages - 1)
        if self.image_size < min_side:
            fail(
                "image_size",
                f"must be at least {min_side} for {num_stages} stages (stride 4 stem, stride 2 per stage), got {self.image_size}.",
            )
        if self.lowrank_ratio is not None and not (0.0 < float(self.lowrank_ratio) <= 1.0):
            fail("lowrank_ratio", f"(γ) must be in (0, 1] or None for full rank, got {self.lowrank_ratio!r}.")
        for field in ("layer_norm_eps", "initializer_range"):
            if not float(getattr(self, field)) > 0:
                fail(field, f"must be positive, got {getattr(self, field)!r}.")
        if not 0.0 <= float(self.drop_path_rate) < 1.0:
            fail("drop_path_rate", f"must be in [0, 1), got {self.drop_path_rate!r}.")
        if self.layer_scale_init_value < 0:
            fail("layer_scale_init_value", f"must be non-negative, got {self.layer_scale_init_value!r}.")
        if self.hidden_act not in ("gelu", "gelu_tanh", "relu", "silu"):
            fail("hidden_act", f"must be one of gelu, gelu_tanh, relu, silu, got {self.hidden_act!r}.")
