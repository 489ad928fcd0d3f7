"""xEdgeFace adapters on PEFT: LayerNorm + early-layer tuning of a frozen EdgeFace.

xEdgeFace (George & Marcel, arXiv 2504.19646 / 2605.04769) adapts a pretrained RGB EdgeFace to another spectrum
(NIR, thermal) by freezing it and training only its LayerNorms and a few early layers. On PEFT that is LN tuning
(`peft.LNTuningConfig`, Zhao et al. 2023): each targeted module is kept as the frozen `base_layer` beside a trainable
copy per adapter, so one base carries several adapters (`thermal`, `nir`, ...) and `disable_adapter()` gives back the
frozen network, which is the self-distillation teacher, with no second copy of the model in memory.

PEFT's `LNTuningLayer` deep-copies whatever module it wraps, so the targets need not be LayerNorms: the presets name
LayerNorms, the stem's `Conv2d`, and whole stages (`stages.0`, ...), the last so that a stage's layer-scale `gamma`s
and attention `temperature`s (parameters that live on blocks, not in leaf modules) train with it. The presets, from
smallest to largest, are in `ADAPTER_PRESETS`; `full` is plain full fine-tuning for ablations, without PEFT.

Two PEFT limits this module works around:

- PEFT's `merge_and_unload()` and `unload()` (0.21: `BaseTuner._replace_module`) copy the unwrapped module's
  `.weight` over, which a whole stage has not, so on a plain `PeftModel` they fail for the stage presets with
  `AttributeError: 'EdgeFaceStage' object has no attribute 'weight'` (upstream: huggingface/peft#3213). The
  `PeftModel`s that [`add_adapter`] and [`load_adapter`] return carry a tuner that skips that copy for modules
  without a weight, so PEFT's calls work for every preset; [`merge_adapter`] does the same through
  `LNTuningLayer.merge()`, also on a `PeftModel` built by PEFT itself.
- PEFT's adapter files do not say which base weights an adapter was trained on. [`save_adapter`] writes
  `xedgeface_adapter.json` beside `adapter_config.json` / `adapter_model.safetensors` with the base's name and a
  SHA-256 fingerprint of its weights, and [`load_adapter`] refuses an adapter trained on another base. Plain
  `PeftModel.from_pretrained` still reads the folders (it just skips that check).

Single network for all spectra (the paper's "one model for every spectrum"): train one adapter on batches that mix
every target spectrum (e.g. `add_adapter(model, adapter_name="all_spectra")`); there is nothing to switch at
inference. Per-spectrum adapters instead sit side by side on one base and are chosen with `model.set_adapter(name)`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LNTuningConfig, LNTuningModel, PeftModel, get_peft_model
from peft.tuners.ln_tuning.layer import LNTuningLayer
from torch import nn

from .configuration_edgeface import EdgeFaceConfig
from .fingerprints import weights_fingerprint
from .modeling_edgeface import EdgeFaceModel

__all__ = [
    "ADAPTER_PRESETS",
    "ADAPTER_RECORD_NAME",
    "DEFAULT_ADAPTER_PRESET",
    "AdapterParameterCount",
    "AdapterPreset",
    "adapter_config",
    "adapter_target_modules",
    "adapted_modules",
    "add_adapter",
    "base_fingerprint",
    "check_adapter_folder",
    "load_adapter",
    "merge_adapter",
    "parameter_report",
    "save_adapter",
]

ADAPTER_RECORD_NAME = "xedgeface_adapter.json"
_RECORD_FORMAT = 1
# PEFT's `_get_in_out_features` warns for every module type it has no in/out features for, LayerNorm included;
# LN tuning never uses those features, so the warning is noise here.
_PEFT_LAYER_TYPE_WARNING = r"Unsupported layer type .* encountered, proceed at your own risk\."
# PEFT 0.21 reads transformers' deprecated `is_gradient_checkpointing` when wrapping; not ours to fix.
_PEFT_DEPRECATION_WARNING = r"`is_gradient_checkpointing` is deprecated"


@dataclass(frozen=True)
class AdapterPreset:
    """
    What an xEdgeFace adapter trains on top of the frozen EdgeFace.

    Args:
        name (`str`): key in [`ADAPTER_PRESETS`].
        description (`str`): one line for reports and model cards.
        stem (`bool`): train the conv stem (`stem.0`) besides its LayerNorm.
        stages (`tuple[int]`): stages trained whole (downsampling, blocks, layer scales), copies of `stages.N`.
        full (`bool`): full fine-tuning, every parameter trainable, no PEFT adapter.
        learning_rate (`float`): AdamW learning rate that suits it. AdamW moves every trainable parameter by about
            the learning rate per step: LayerNorm scales and shifts and the stem take 3e-3, but whole stages
            (layer-scale gammas, attention, low-rank linears) collapse the embedding at 2e-3 and want 1e-4.
    """

    name: str
    description: str
    stem: bool = False
    stages: tuple[int, ...] = ()
    full: bool = False
    learning_rate: float = 3e-3


ADAPTER_PRESETS: dict[str, AdapterPreset] = {
    preset.name: preset
    for preset in (
        AdapterPreset("ln", "all LayerNorms"),
        AdapterPreset("ln_stem", "all LayerNorms + conv stem", stem=True),
        AdapterPreset("ln_stem_s0", "all LayerNorms + conv stem + stage 0", stem=True, stages=(0,), learning_rate=3e-4),
        AdapterPreset(
            "ln_stem_s01", "all LayerNorms + conv stem + stages 0-1", stem=True, stages=(0, 1), learning_rate=1e-4
        ),
        AdapterPreset(
            "ln_stem_s012", "all LayerNorms + conv stem + stages 0-2", stem=True, stages=(0, 1, 2), learning_rate=1e-4
        ),
        AdapterPreset("full", "full fine-tuning (ablation; no adapter)", full=True, learning_rate=1e-4),
    )
}
# "All LayerNorms + stem": the paper's headline budget (6,648 parameters on EdgeFace-XS); provisional until the
# adaptation benchmark says which preset transfers best.
DEFAULT_ADAPTER_PRESET = "ln_stem"


def _get_preset(preset: str | AdapterPreset) -> AdapterPreset:
    if isinstance(preset, AdapterPreset):
        return preset
    if preset not in ADAPTER_PRESETS:
        raise ValueError(f"Unknown adapter preset {preset!r}: choose one of {', '.join(ADAPTER_PRESETS)}.")
    return ADAPTER_PRESETS[preset]


def _edgeface_base(model: nn.Module) -> EdgeFaceModel:
    """The `EdgeFaceModel` inside `model` (itself, or the base of a `PeftModel`)."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    if not isinstance(base, EdgeFaceModel):
        raise ValueError(
            f"xEdgeFace adapters apply to an EdgeFaceModel (or a PeftModel around one), got {type(base).__name__}. "
            "Load the model with EdgeFaceModel.from_pretrained(...), AutoModel.from_pretrained(...) or "
            "hfr_hf.inference.load_model(...) without light=True."
        )
    return base


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """Silence PEFT warnings that say nothing about the user's model (see the patterns above)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PEFT_LAYER_TYPE_WARNING)
        warnings.filterwarnings("ignore", message=_PEFT_DEPRECATION_WARNING)
        yield


class _StageTuningModel(LNTuningModel):
    """PEFT's LN tuning, whose unloading also takes back modules without a `.weight` (whole stages): PEFT's
    `_replace_module` copies the unwrapped module's weight over, which only leaf layers have."""

    def _replace_module(self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module) -> None:
        unwrapping = not hasattr(new_module, "base_layer")
        if unwrapping and not hasattr(child.get_base_layer(), "weight"):
            setattr(parent, child_name, new_module)  # the base (or, merged, the trained copy) as it is
            return
        super()._replace_module(parent, child_name, new_module, child)


def _with_stage_unloading(model: PeftModel) -> PeftModel:
    """`model` with its LN tuner made a `_StageTuningModel`, so `merge_and_unload()` / `unload()` work on every preset.

    PEFT picks the tuner class from the adapter's `peft_type`; changing the class of this one tuner instead keeps the
    adapter files plain LN tuning, which `PeftModel.from_pretrained` reads without hfr_hf."""
    if type(model.base_model) is LNTuningModel:
        model.base_model.__class__ = _StageTuningModel
    return model


def _tuner_layers(model: nn.Module) -> Iterator[tuple[str, LNTuningLayer]]:
    for name, module in model.named_modules():
        if isinstance(module, LNTuningLayer):
            yield name, module


def adapter_target_modules(preset: str | AdapterPreset, model: nn.Module) -> list[str]:
    """
    Names of the modules an adapter preset copies and trains, as PEFT `target_modules` (exact names, sorted).

    LayerNorms inside a stage that is trained whole are left out: the stage's copy already holds them, and PEFT
    layers must not nest.
    """
    spec = _get_preset(preset)
    if spec.full:
        raise ValueError(
            "The 'full' preset trains every parameter and has no PEFT target modules; "
            "use add_adapter(model, 'full') to make the whole model trainable."
        )
    base = _edgeface_base(model)
    num_stages = len(base.config.depths)
    for index in spec.stages:
        if not 0 <= index < num_stages:
            raise ValueError(f"Preset {spec.name!r} trains stage {index}, but this EdgeFace has {num_stages} stages.")
    whole = [f"stages.{index}" for index in spec.stages]
    targets = set(whole)
    if spec.stem:
        targets.add("stem.0")
    for name, module in base.named_modules():
        if ".ln_tuning_layers." in name + ".":
            continue  # an adapter's copy; the base layer beside it gives the name
        name = name.replace(".base_layer", "")  # the same names on a model that already carries adapters
        if isinstance(module, nn.LayerNorm) and not any(name.startswith(prefix + ".") for prefix in whole):
            targets.add(name)
    return sorted(targets)


def adapter_config(preset: str | AdapterPreset, model: nn.Module, **kwargs) -> LNTuningConfig:
    """
    PEFT `LNTuningConfig` of an xEdgeFace adapter preset for this model's architecture.

    Extra keyword arguments go to `LNTuningConfig` (e.g. `inference_mode=True`).
    """
    return LNTuningConfig(target_modules=adapter_target_modules(preset, model), **kwargs)


def add_adapter(
    model: nn.Module, preset: str | AdapterPreset = DEFAULT_ADAPTER_PRESET, adapter_name: str = "default"
) -> nn.Module:
    """
    Freeze an EdgeFace and add a trainable xEdgeFace adapter.

    - `model` an `EdgeFaceModel`: returns a new `PeftModel` around it with adapter `adapter_name` active.
    - `model` a `PeftModel`: adds `adapter_name` beside its adapters (it must use the same preset: LN tuning layers
      cannot nest) and leaves the active adapter as it was; switch with `model.set_adapter(adapter_name)`.
    - `preset="full"`: no adapter; every parameter of the `EdgeFaceModel` is made trainable and it is returned.
    """
    spec = _get_preset(preset)
    if spec.full:
        if isinstance(model, PeftModel):
            _with_stage_unloading(model)  # so that the calls named below work on whole-stage adapters too
            raise ValueError(
                "Full fine-tuning needs the plain EdgeFaceModel, but this one carries PEFT adapters; "
                "merge or unload them first (model = model.merge_and_unload() or model = model.unload())."
            )
        _edgeface_base(model).requires_grad_(True)
        return model
    config = adapter_config(spec, model)
    with _quiet_peft():
        if not isinstance(model, PeftModel):
            _edgeface_base(model)
            return _with_stage_unloading(get_peft_model(model, config, adapter_name=adapter_name))
        if adapter_name in model.peft_config:
            raise ValueError(
                f"This model already has an adapter named {adapter_name!r}; pick another name or remove it first "
                f"with model.delete_adapter({adapter_name!r})."
            )
        for name in model.peft_config:
            if adapted_modules(model, name) != set(config.target_modules):
                raise ValueError(
                    f"Adapter {adapter_name!r} (preset {spec.name!r}) targets other modules than adapter {name!r} "
                    "already on this model; LN tuning adapters on one base must share a preset. "
                    "Use the same preset, or put this adapter on a fresh copy of the base model."
                )
        model.add_adapter(adapter_name, config)
    return model


@dataclass(frozen=True)
class AdapterParameterCount:
    """Trainable parameters of one preset against the base network's parameters (adapter copies not counted)."""

    preset: str
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total


def parameter_report(
    config: EdgeFaceConfig | str, presets: list[str] | None = None
) -> dict[str, AdapterParameterCount]:
    """
    Trainable vs total parameters of each adapter preset on an EdgeFace architecture (a config or a variant name).

    The networks are built on the meta device, so no memory is allocated and no weights are needed.
    """
    if isinstance(config, str):
        config = EdgeFaceConfig.from_variant(config)
    report = {}
    for name in presets or list(ADAPTER_PRESETS):
        with torch.device("meta"):
            model = EdgeFaceModel(config)
        total = sum(p.numel() for p in model.parameters())
        adapted = add_adapter(model, name)
        trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
        report[name] = AdapterParameterCount(preset=name, trainable=trainable, total=total)
    return report


def _frozen_base_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base EdgeFace's weights under their plain names, without adapter copies."""
    base = _edgeface_base(model)
    if any(layer.merged for _, layer in _tuner_layers(base)):
        raise ValueError(
            "This model has an adapter merged into its layers, so its base weights are not the frozen ones; "
            "unmerge it first with model.unmerge_adapter()."
        )
    tensors = {}
    for key, tensor in base.state_dict().items():
        if ".ln_tuning_layers." in key:
            continue
        tensors[key.replace(".base_layer.", ".")] = tensor
    return tensors


def base_fingerprint(model: nn.Module) -> str:
    """
    SHA-256 of the frozen base weights (names, shapes and float32 values, in name order), adapters excluded.

    The same checkpoint gives the same fingerprint on any device; a model cast to another dtype, or fine-tuned,
    gives another.
    """
    return weights_fingerprint(_frozen_base_tensors(model))


def adapted_modules(model: nn.Module, adapter_name: str) -> set[str]:
    """Names (in the base EdgeFace) of the modules an adapter wraps. PEFT rewrites a long `target_modules` list into
    a few name suffixes once the layers are injected (20 or more targets, i.e. any real EdgeFace), so the config's
    list cannot be compared with exact names; the wrapped layers can."""
    return {name for name, layer in _tuner_layers(_edgeface_base(model)) if adapter_name in layer.ln_tuning_layers}


def _preset_name(model: PeftModel, adapter_name: str) -> str | None:
    targets = adapted_modules(model, adapter_name)
    for name, spec in ADAPTER_PRESETS.items():
        if not spec.full and set(adapter_target_modules(spec, model)) == targets:
            return name
    return None


def save_adapter(model: PeftModel, save_directory: str | os.PathLike, adapter_name: str | None = None) -> Path:
    """
    Save one adapter with PEFT's files plus the record of its base, directly in `save_directory`.

    Writes `adapter_config.json`, `adapter_model.safetensors`, PEFT's `README.md` and `xedgeface_adapter.json`
    (base name, base fingerprint, preset). The files are written to a temporary folder first, so a failure leaves
    `save_directory` as it was.
    """
    if not isinstance(model, PeftModel):
        raise ValueError(
            f"save_adapter expects a PeftModel with an xEdgeFace adapter, got {type(model).__name__}; "
            "a fully fine-tuned EdgeFaceModel is saved with model.save_pretrained(path)."
        )
    adapter_name = adapter_name or model.active_adapter
    if adapter_name not in model.peft_config:
        raise ValueError(f"This model has no adapter named {adapter_name!r}; it has {', '.join(model.peft_config)}.")
    base = _edgeface_base(model)
    record = {
        "format_version": _RECORD_FORMAT,
        "adapter_name": adapter_name,
        "preset": _preset_name(model, adapter_name),
        "base_model_name_or_path": base.name_or_path or None,
        "base_model_variant": getattr(base.config, "variant", None),
        "base_model_fingerprint": base_fingerprint(model),
        "fingerprint": "sha256 of the base state dict (names, shapes, float32 values), adapters excluded",
    }
    save_directory = Path(save_directory)
    save_directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=save_directory.parent, prefix=".adapter-") as tmp:
        model.save_pretrained(tmp, selected_adapters=[adapter_name])
        # PEFT puts any adapter not called "default" in a subfolder named after it; keep one flat folder.
        files = Path(tmp) if adapter_name == "default" else Path(tmp) / adapter_name
        if (Path(tmp) / "README.md").is_file() and files != Path(tmp):
            shutil.move(str(Path(tmp) / "README.md"), files / "README.md")
        (files / ADAPTER_RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
        save_directory.mkdir(exist_ok=True)
        for path in files.iterdir():
            if path.is_file():
                os.replace(path, save_directory / path.name)
    return save_directory


def check_adapter_folder(path: str | os.PathLike, as_model: str = "give it as the model instead") -> Path:
    """`path` when it holds an adapter (adapter_config.json); otherwise a ValueError in one sentence. A whole
    fine-tuned model (what the `full` preset saves in adapter/, and `--preset auto` may choose) is named as such,
    `as_model` saying what to do with it where the caller is."""
    path = Path(path)
    if (path / "adapter_config.json").is_file():
        return path
    if (path / "config.json").is_file():
        raise ValueError(f"{path} is a whole fine-tuned model (the `full` preset), not an adapter: {as_model}.")
    raise ValueError(
        f"{path} holds no adapter_config.json; pass the folder that save_adapter (or PEFT's save_pretrained) wrote."
    )


def _check_base(model: nn.Module, adapter_path: Path) -> None:
    record_path = adapter_path / ADAPTER_RECORD_NAME
    if not record_path.is_file():
        warnings.warn(
            f"{adapter_path} has no {ADAPTER_RECORD_NAME}, so it cannot be checked against this base model; "
            "make sure it was trained on these exact weights.",
            UserWarning,
            stacklevel=3,
        )
        return
    record = json.loads(record_path.read_text())
    expected = record.get("base_model_fingerprint")
    actual = base_fingerprint(model)
    if expected != actual:
        trained_on = record.get("base_model_name_or_path") or "an unnamed base"
        variant = record.get("base_model_variant")
        trained_on += f" (EdgeFace variant {variant!r})" if variant else ""
        here = _edgeface_base(model)
        raise ValueError(
            f"The adapter in {adapter_path} was trained on {trained_on} with weights fingerprint "
            f"{str(expected)[:16]}…, "
            f"but this model ({here.name_or_path or 'unnamed'}, variant {getattr(here.config, 'variant', None)!r}) "
            f"has fingerprint {actual[:16]}…. An adapter only works on the exact base it was trained on: load that "
            "base model first, or train an adapter for this one."
        )


def load_adapter(
    model: nn.Module,
    adapter_path: str | os.PathLike,
    adapter_name: str = "default",
    is_trainable: bool = False,
) -> PeftModel:
    """
    Load a saved xEdgeFace adapter onto an EdgeFace, after checking it was trained on these base weights.

    - `model` an `EdgeFaceModel`: returns a `PeftModel` with the adapter active.
    - `model` a `PeftModel`: adds the adapter beside the others; the active adapter stays as it was.

    Raises `ValueError` when the adapter's recorded base fingerprint differs from this model's.
    """
    adapter_path = check_adapter_folder(adapter_path)
    _check_base(model, adapter_path)
    with _quiet_peft():
        if isinstance(model, PeftModel):
            if adapter_name in model.peft_config:
                raise ValueError(
                    f"This model already has an adapter named {adapter_name!r}; load this one under another name."
                )
            model.load_adapter(adapter_path, adapter_name=adapter_name, is_trainable=is_trainable)
            return _with_stage_unloading(model)
        loaded = PeftModel.from_pretrained(
            _edgeface_base(model), adapter_path, adapter_name=adapter_name, is_trainable=is_trainable
        )
        return _with_stage_unloading(loaded)


def merge_adapter(model: PeftModel, adapter_name: str | None = None) -> EdgeFaceModel:
    """
    Merge one adapter into the network and drop the PEFT wrappers: a plain `EdgeFaceModel` that computes the adapted
    embeddings at exactly the base model's size and cost.

    The merge is LN tuning's own (`LNTuningLayer.merge`, which swaps in the trained copy), so it works on any
    `PeftModel` with an xEdgeFace adapter, also one PEFT loaded itself, whose `merge_and_unload()` fails on whole-stage
    targets. The `PeftModel` is consumed: use the returned model.
    """
    if not isinstance(model, PeftModel):
        raise ValueError(f"merge_adapter expects a PeftModel, got {type(model).__name__}; there is nothing to merge.")
    adapter_name = adapter_name or model.active_adapter
    if adapter_name not in model.peft_config:
        raise ValueError(f"This model has no adapter named {adapter_name!r}; it has {', '.join(model.peft_config)}.")
    base = _edgeface_base(model)
    for name, layer in list(_tuner_layers(base)):
        if layer.merged and layer.merged_adapters != [adapter_name]:
            layer.unmerge()
        if not layer.merged:
            layer.merge([adapter_name])
        parent = base.get_submodule(name.rpartition(".")[0]) if "." in name else base
        setattr(parent, name.rpartition(".")[2], layer.get_base_layer())
    if hasattr(base, "peft_config"):
        del base.peft_config  # as PEFT's unload does, so that the model can be wrapped again
    return base
