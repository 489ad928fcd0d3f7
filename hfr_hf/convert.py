"""Official EdgeFace checkpoints (fp32 `.pt`, int8 dynamic-quantised `_q.pt`) → Hugging Face model folders.

The official files are state dicts of timm's EdgeNeXt under `model.`; our module names are the same, so the
conversion is the rename table below plus dequantisation of the packed int8 Linear weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from .configuration_edgeface import EDGEFACE_VARIANTS, EdgeFaceConfig
from .image_processing_edgeface import EdgeFaceImageProcessor
from .modeling_edgeface import EdgeFaceModel

__all__ = [
    "CHECKPOINT_KEY_RENAMES",
    "OFFICIAL_HUB_FILES",
    "WEIGHTS_DIR_ENV",
    "CheckpointError",
    "check_output_dir",
    "convert_checkpoint",
    "infer_variant",
    "is_model_folder",
    "load_official_state_dict",
    "official_checkpoint_path",
]

# official key prefix → ours
CHECKPOINT_KEY_RENAMES = {"model.": ""}

# Where a user's machine downloads the official weights from (Hub repo, file name).
OFFICIAL_HUB_FILES = {
    "xxs": ("Idiap/EdgeFace-XXS", "edgeface_xxs.pt"),
    "xs_gamma_06": ("Idiap/EdgeFace-XS-GAMMA", "edgeface_xs_gamma_06.pt"),
    "s_gamma_05": ("Idiap/EdgeFace-S-GAMMA", "edgeface_s_gamma_05.pt"),
    "base": ("Idiap/EdgeFace-Base", "edgeface_base.pt"),
}

# The one setting that points at a folder of official checkpoints (edgeface_<variant>[_q].pt).
WEIGHTS_DIR_ENV = "HFR_HF_WEIGHTS_DIR"

_PACKED = "._packed_params._packed_params"
_QUANT_EXTRAS = (".scale", ".zero_point", "._packed_params.dtype")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit an EdgeFace architecture."""


def official_checkpoint_path(variant: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """Path of the official checkpoint of `variant`: from `weights_dir` (or `$HFR_HF_WEIGHTS_DIR`) when set,
    preferring fp32 `edgeface_<variant>.pt` over int8 `edgeface_<variant>_q.pt`; otherwise downloaded from the
    Hub (`Idiap/EdgeFace-*`) into the Hugging Face cache."""
    if variant not in EDGEFACE_VARIANTS:
        raise CheckpointError(f"Unknown EdgeFace variant {variant!r}: choose one of {', '.join(EDGEFACE_VARIANTS)}.")
    weights_dir = weights_dir or os.environ.get(WEIGHTS_DIR_ENV)
    if weights_dir:
        folder = Path(weights_dir)
        candidates = [folder / f"edgeface_{variant}.pt", folder / f"edgeface_{variant}_q.pt"]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise CheckpointError(
            f"No checkpoint for EdgeFace-{variant} in {folder}: looked for "
            f"{' and '.join(c.name for c in candidates)}. Point {WEIGHTS_DIR_ENV} (or --weights-dir) at the folder "
            "holding them, or unset it to download from the Hugging Face Hub."
        )
    if variant not in OFFICIAL_HUB_FILES:
        raise CheckpointError(
            f"EdgeFace-{variant} has no official Hub repository; download edgeface_{variant}_q.pt from the EdgeFace "
            f"code repository and set {WEIGHTS_DIR_ENV} to its folder."
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from .sources import hub_download_options

    repo_id, filename = OFFICIAL_HUB_FILES[variant]
    advice = f"set {WEIGHTS_DIR_ENV} (or --weights-dir) to a folder holding the official checkpoints"
    try:
        options = hub_download_options(repo_id, filename, f"The official checkpoint {filename} of")
        return Path(hf_hub_download(repo_id, filename, **options))
    except ValueError as error:
        raise CheckpointError(f"{str(error).rstrip('.')}; {advice}.") from None
    except LocalEntryNotFoundError as error:
        raise CheckpointError(
            f"Could not download {filename} from {repo_id} (offline, or no network) and it is not in the local "
            f"cache; {advice}."
        ) from error


def _dequantize(state_dict: dict) -> dict[str, torch.Tensor]:
    """Unpack torch dynamic-quantised Linear entries into float `weight`/`bias`."""
    packed_prefixes = {key[: -len(_PACKED)] for key in state_dict if key.endswith(_PACKED)}
    out = {}
    for key, value in state_dict.items():
        if key.endswith(_PACKED):
            prefix = key[: -len(_PACKED)]
            weight, bias = value
            out[f"{prefix}.weight"] = weight.dequantize()
            if bias is not None:
                out[f"{prefix}.bias"] = bias.detach().clone()
        elif any(key == prefix + extra for prefix in packed_prefixes for extra in _QUANT_EXTRAS):
            continue
        else:
            out[key] = value
    return out


def load_official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an official EdgeFace checkpoint (fp32 or int8 `_q`) as a float state dict with our key names."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    try:
        with warnings.catch_warnings():  # torch's own deprecation notes on quantised storages
            warnings.simplefilter("ignore", UserWarning)
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        # torch's own text would suggest weights_only=False, i.e. running the file's code: never pass that on.
        unsafe = "weights only load failed" in str(error).lower()
        why = (
            "it holds Python objects beyond tensors, which a safe load refuses"
            if unsafe
            else "it is not a complete PyTorch state dict (truncated, or another kind of file)"
        )
        raise CheckpointError(
            f"{path} is not an EdgeFace checkpoint: {why}. Give an official edgeface_<variant>.pt or _q.pt file."
        ) from error
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a state dict of an EdgeFace network.")
    state_dict = {}
    for key, value in _dequantize(raw).items():
        for old, new in CHECKPOINT_KEY_RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor.")
        state_dict[key] = value.float() if value.is_floating_point() else value
    return state_dict


def _expected_shapes(config: EdgeFaceConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = EdgeFaceModel(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _mismatch_report(
    state_dict: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], limit: int = 8
) -> tuple[int, str]:
    """(number of problem keys, description) of how a state dict differs from the expected key → shape map."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k])

    def listing(title: str, keys: list[str], show) -> str:
        if not keys:
            return ""
        shown = ", ".join(show(k) for k in keys[:limit])
        more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
        return f"\n  {title} ({len(keys)}): {shown}{more}"

    text = (
        listing("missing", missing, str)
        + listing("unexpected", unexpected, str)
        + listing("wrong shape", wrong, lambda k: f"{k} {tuple(state_dict[k].shape)} != {expected[k]}")
    )
    return len(missing) + len(unexpected) + len(wrong), text


def infer_variant(state_dict: dict[str, torch.Tensor]) -> str:
    """The official variant whose keys and shapes the state dict has exactly."""
    reports = {}
    for variant in EDGEFACE_VARIANTS:
        reports[variant] = _mismatch_report(state_dict, _expected_shapes(EdgeFaceConfig.from_variant(variant)))
        if reports[variant][0] == 0:
            return variant
    closest = min(reports, key=lambda v: reports[v][0])
    raise CheckpointError(
        f"The checkpoint fits no EdgeFace variant ({', '.join(EDGEFACE_VARIANTS)}). "
        f"Closest is {closest!r}:{reports[closest][1]}"
    )


def build_model(state_dict: dict[str, torch.Tensor], variant: str | None = None) -> EdgeFaceModel:
    """An `EdgeFaceModel` of `variant` (inferred when None) holding the given converted weights."""
    variant = variant or infer_variant(state_dict)
    config = EdgeFaceConfig.from_variant(variant)
    problems, report = _mismatch_report(state_dict, _expected_shapes(config))
    if problems:
        raise CheckpointError(f"The checkpoint does not fit EdgeFace-{variant}:{report}")
    model = EdgeFaceModel(config)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a converted EdgeFace model folder: its config.json says model_type edgeface."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") == EdgeFaceConfig.model_type


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """The resolved `output_dir` if a model folder may be written there; raises `FileExistsError` otherwise.

    Overwriting only ever replaces a previous model folder, never the current folder or one above it, so a
    mistyped `--output` cannot delete anything else. Cheap: call it before downloading or loading a checkpoint."""
    output_dir = Path(output_dir).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if output_dir == cwd or output_dir in cwd.parents:
        raise FileExistsError(
            f"{output_dir} is the current folder or one above it, which a model folder cannot replace; "
            "choose a new sub-folder as the output."
        )
    if not output_dir.exists():
        return output_dir
    if not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} exists and is not a folder; choose another output folder.")
    if not any(output_dir.iterdir()):
        return output_dir
    if not overwrite:
        raise FileExistsError(
            f"{output_dir} exists and is not empty; choose another folder or allow overwriting (--overwrite)."
        )
    if not is_model_folder(output_dir):
        raise FileExistsError(
            f"{output_dir} is not a previous model folder (no config.json with model_type "
            f"{EdgeFaceConfig.model_type!r}), so overwriting would delete files this tool did not write; "
            "choose another folder, or empty this one yourself."
        )
    return output_dir


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    variant: str | None = None,
    overwrite: bool = False,
    model_card: Callable[[str, str], str] | None = None,
) -> Path:
    """Convert an official checkpoint into a model folder (config.json, model.safetensors,
    preprocessor_config.json, remote-code files). The folder appears whole or not at all; with `overwrite`, only
    a previous model folder is replaced (see [`check_output_dir`]).

    `model_card`: (variant, checkpoint file name) → README.md text written into the folder, e.g.
    `hfr_hf.hub.converted_model_card` (as `hfr-hf convert` does); cards are the Hub's business, not this module's."""
    output_dir = check_output_dir(output_dir, overwrite)
    state_dict = load_official_state_dict(checkpoint)
    model = build_model(state_dict, variant)
    variant = model.config.variant

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        from .inference import no_progress_bars

        with no_progress_bars():
            model.save_pretrained(staging)
        EdgeFaceImageProcessor().save_pretrained(staging)
        if model_card is not None:
            (staging / "README.md").write_text(model_card(variant, Path(checkpoint).name), encoding="utf-8")
        _replace_folder(staging, check_output_dir(output_dir, overwrite))  # again: the folder may have changed since
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def _replace_folder(new: Path, target: Path) -> None:
    """Move `new` to `target`; an existing `target` is moved aside first and deleted only once `new` is in place,
    so a failure in between leaves the old folder, never neither."""
    if not target.exists():
        new.rename(target)
        return
    aside = new.with_name(f"{new.name}.old")  # `new` came from mkdtemp, so this name is free
    target.rename(aside)
    try:
        new.rename(target)
    except BaseException:
        aside.rename(target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
