"""xEdgeFace training on Accelerate: a frozen EdgeFace plus a PEFT adapter, trained on paired cross-spectral data.

The loop (used by `scripts/train.py`, `accelerate launch scripts/train.py --config CONFIG.json`):

- data: a paired `datasets` set (a pairs CSV / `metadata.csv`, per-modality identity folders, or pseudo-spectral
  pairs rendered from an identity folder), split by identity into train / validation / test, rendered and augmented
  by `PairTransform` (re-drawn every epoch) and batched by `EdgeFaceImageProcessor`;
- model: the student is EdgeFace + adapter ([`add_adapter`]); the teacher of self-distillation is the same PEFT
  model with its adapter disabled ([`teacher_embeddings`]), so the base is in memory once;
- each optimiser step logs the loss terms (tqdm on the main process, a CSV file in `output/logs/`, TensorBoard too
  when it is installed); `accelerator.save_state` checkpoints go to `output/checkpoints/step_XXXXXX`, written to a
  temporary folder and renamed, so `resume=True` never picks a half-written one and continues at the saved step;
  a resume refuses settings that change the optimisation, passes over a checkpoint that does not load (with a
  warning), puts back the checkpoint's best adapter, cuts logs/metrics.csv back to the checkpoint and removes what a
  killed run left half-written (`.tmp-*`, `.adapter-*`); adapters are written beside their folder and renamed onto it;
- every epoch, cross-spectral verification on the validation identities keeps the best adapter
  (`output/best_adapter`, lowest EER); the last one goes to `output/adapter`; `output/report.json` compares the frozen
  model and the adapted one on the test identities.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import resource
import shutil
import time
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from .adapters import ADAPTER_PRESETS, DEFAULT_ADAPTER_PRESET, add_adapter, save_adapter
from .files import TMP_PREFIX, write_atomic, write_json
from .image_processing_edgeface import EdgeFaceImageProcessor
from .inference import load_model
from .losses import XEdgeFaceLoss, XEdgeFaceLossConfig, teacher_embeddings
from .preset_search import AUTO_PRESET, real_validation_eers, validation_score

__all__ = [
    "CHECKPOINT_PREFIX",
    "CSVTracker",
    "TrainingConfig",
    "TrainingResult",
    "TrainingState",
    "build_datasets",
    "evaluate_pairs",
    "latest_checkpoint",
    "list_checkpoints",
    "load_config",
    "load_trained",
    "save_checkpoint",
    "train",
]

CHECKPOINT_PREFIX = "step_"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
STATE_NAME = "trainer_state.json"
BEST_ADAPTER = "best_adapter"  # in the output folder, and its copy inside every checkpoint
# Settings a resumed run may change: they do not touch the optimisation (the checkpoint's optimiser state, schedule
# and batch position stay valid). Any other difference is refused, see `_check_resume`.
RESUMABLE_CHANGES = (
    "output_dir",
    "checkpoint_every",
    "checkpoints_total_limit",
    "log_every",
    "num_workers",
    "stop_after_epochs",
)
SCHEDULERS = ("cosine", "constant_with_warmup", "constant", "linear")
DATA_TYPES = ("auto", "pairs_csv", "folders", "pseudo")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


# --------------------------------------------------------------------------------------------------------- config


@dataclass
class TrainingConfig:
    """
    Everything one xEdgeFace training run needs; JSON/YAML-loadable ([`load_config`]) and overridable by
    `--key value` on the command line (`--loss.margin 0.2` for the loss).
    """

    model: str = field(metadata={"help": "Base EdgeFace: a model folder (from `hfr-hf convert`) or a Hub repo id."})
    data: str = field(
        metadata={
            "help": "Paired data: a pairs CSV (vis_file, target_file, identity[, split]) or a folder holding "
            "metadata.csv; a folder with <vis_dir>/<identity>/ and <target_dir>/<identity>/; or an identity folder "
            "of aligned visible faces to render pseudo-spectral targets from (see data_type)."
        }
    )
    output_dir: str = field(metadata={"help": "Where checkpoints, adapters, logs and report.json go."})
    data_type: str = field(
        default="auto",
        metadata={
            "help": "pairs_csv, folders, pseudo, or auto: a file or a folder with metadata.csv is pairs_csv, a folder "
            "with vis_dir/ and target_dir/ is folders, any other folder is pseudo."
        },
    )
    modality: str = field(
        default="thermal",
        metadata={"help": "Target spectrum: the renderer of pseudo pairs (thermal or nir) and the default target_dir."},
    )
    vis_dir: str = field(default="vis", metadata={"help": "Visible sub-folder of a per-modality (folders) set."})
    target_dir: str | None = field(
        default=None, metadata={"help": "Target sub-folder of a per-modality set; default: the modality."}
    )
    split_fractions: tuple[float, float, float] = field(
        default=(0.7, 0.1, 0.2),
        metadata={
            "help": "Train / validation / test shares of the identities, used when the data has no split column. "
            "A zero share leaves that split out (no validation: the last adapter is kept; no test: no comparison)."
        },
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the identity split."})
    split_file: str | None = field(
        default=None,
        metadata={
            "help": "A JSON file mapping every identity to train / validation / test (e.g. a protocol's "
            "splits.json); used instead of split_fractions when the data has no split column."
        },
    )
    max_train_pairs: int | None = field(
        default=None, metadata={"help": "Use at most this many training pairs (seeded subset); None: all."}
    )
    real_target_data: str | None = field(
        default=None,
        metadata={
            "help": "Real target-spectrum images with identities but no visible twins, for the loss's target "
            "identity and alignment terms: the folder holding puj_t360/ and puj_fone/ (only the PUJ split's train "
            "people are read) or a folder of <identity>/ sub-folders. None: pseudo pairs only."
        },
    )
    real_target_batch_size: int = field(
        default=32, metadata={"help": "Real target images per optimiser step (people × 4 images each)."}
    )
    augment: bool = field(default=True, metadata={"help": "Augment training images (flip, affine, blur, noise)."})
    skip_bad: bool = field(default=False, metadata={"help": "Leave out unreadable images instead of failing."})
    adapter_preset: str = field(
        default=DEFAULT_ADAPTER_PRESET,
        metadata={
            "help": f"What trains: one of {', '.join(ADAPTER_PRESETS)} (see hfr_hf.adapters), or auto: a search of "
            "presets × learning rates on the validation identities within auto_budget_s (hfr_hf.preset_search), "
            "then the chosen one trained fully."
        },
    )
    auto_presets: list[str] | None = field(
        default=None,
        metadata={
            "help": "adapter_preset auto: the presets it tries (a list, or comma-separated); None: every preset, "
            "full included (chosen, it gives a whole fine-tuned model, not an adapter)."
        },
    )
    auto_learning_rate_factors: list[float] = field(
        default_factory=lambda: [1.0, 0.3, 3.0],
        metadata={
            "help": "adapter_preset auto: learning rates tried per preset, as factors of the preset's own; every "
            "preset at factor 1 is tried before any other factor."
        },
    )
    auto_epochs: int = field(
        default=1,
        metadata={
            "help": "adapter_preset auto: the first epochs of the full run's schedule that each candidate trains."
        },
    )
    auto_finalists: int = field(
        default=3,
        metadata={
            "help": "adapter_preset auto: the first round's best candidates continue their runs to "
            "auto_finalist_epochs and are chosen on that score (successive halving), each while it fits the budget; "
            "below 2: no second round."
        },
    )
    auto_finalist_epochs: int | None = field(
        default=None, metadata={"help": "adapter_preset auto: epochs the finalists reach; None: num_epochs."}
    )
    auto_budget_s: float = field(
        default=600.0,
        metadata={
            "help": "adapter_preset auto: wall-clock seconds of the search; no candidate starts once the time spent "
            "plus one candidate's mean time exceeds it (the first always runs), no finalist once its remaining "
            "epochs would. The full run continues the chosen candidate's run and comes on top."
        },
    )
    real_validation_data: str | None = field(
        default=None,
        metadata={
            "help": "Real thermal validation evidence: the folder holding puj_t360/ and puj_fone/, whose PUJ "
            "validation people (only) are scored every epoch beside the pseudo validation EER; the best adapter is "
            "then kept, and adapter_preset auto's candidates ranked, by (pseudo EER + real EER) / 2 "
            "(hfr_hf.preset_search.validation_score). None: the pseudo validation EER alone."
        },
    )
    adapter_name: str = field(default="default", metadata={"help": "Name of the PEFT adapter."})
    loss: XEdgeFaceLossConfig = field(
        default_factory=XEdgeFaceLossConfig, metadata={"help": "Margin and weights of the loss (XEdgeFaceLossConfig)."}
    )
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "AdamW peak learning rate; None: the adapter preset's (3e-3 for LayerNorms + stem)."},
    )
    weight_decay: float = field(
        default=0.0,
        metadata={"help": "AdamW weight decay; 0 by default because decay pulls LayerNorm scales away from 1."},
    )
    lr_scheduler: str = field(
        default="cosine", metadata={"help": f"transformers' get_scheduler name: {', '.join(SCHEDULERS)}."}
    )
    warmup_steps: int = field(
        default=10, metadata={"help": "Linear warm-up, in optimiser steps (AdamW's first steps are its largest)."}
    )
    num_epochs: int = field(default=3, metadata={"help": "Passes over the training pairs (unless max_steps is set)."})
    max_steps: int | None = field(
        default=None, metadata={"help": "Optimiser steps in all; overrides num_epochs when set."}
    )
    stop_after_epochs: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many epochs of the schedule that num_epochs / max_steps set (the learning rate "
            "still follows the whole schedule); a later run with resume continues it. The preset search's first "
            "round. None: train the whole schedule."
        },
    )
    batch_size: int = field(default=32, metadata={"help": "Pairs per batch and process."})
    eval_batch_size: int = field(default=64, metadata={"help": "Images per batch when embedding for evaluation."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimiser step."})
    mixed_precision: str = field(
        default="auto",
        metadata={
            "help": "no, fp16, bf16 (CUDA only), or auto: bf16 where the GPU has it, else fp16 on GPU, no on CPU."
        },
    )
    cpu: bool = field(default=False, metadata={"help": "Train on the CPU even when a GPU is there."})
    seed: int = field(default=0, metadata={"help": "Seed of weights' randomness, sampling, rendering, augmentation."})
    checkpoint_every: int = field(
        default=500, metadata={"help": "Save a resumable checkpoint every N optimiser steps (0: only at the end)."}
    )
    checkpoints_total_limit: int | None = field(
        default=None, metadata={"help": "Keep at most this many checkpoints (oldest removed); None: all."}
    )
    log_every: int = field(default=1, metadata={"help": "Log the loss terms every N optimiser steps."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes (rendering is CPU work)."})

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            self.loss = XEdgeFaceLossConfig(**self.loss)
        if isinstance(self.split_fractions, str):  # "0.8,0.1,0.1" from the command line
            self.split_fractions = tuple(float(v) for v in self.split_fractions.split(","))
        if isinstance(self.split_fractions, list):
            self.split_fractions = tuple(self.split_fractions)
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            if f.name != "loss":
                _check_type(f.name, getattr(self, f.name), hints[f.name])
        if self.data_type not in DATA_TYPES:
            raise ValueError(f"data_type must be one of {', '.join(DATA_TYPES)}, got {self.data_type!r}.")
        if self.adapter_preset not in (*ADAPTER_PRESETS, AUTO_PRESET):
            raise ValueError(
                f"adapter_preset must be one of {', '.join(ADAPTER_PRESETS)} or {AUTO_PRESET}, "
                f"got {self.adapter_preset!r}."
            )
        self._check_auto()
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of {', '.join(SCHEDULERS)}, got {self.lr_scheduler!r}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}."
            )
        if len(self.split_fractions) != 3 or any(v < 0 for v in self.split_fractions) or self.split_fractions[0] <= 0:
            raise ValueError(
                "split_fractions must be three non-negative shares (train, validation, test) with a positive train "
                f"share, got {self.split_fractions!r}."
            )
        positive = {
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "real_target_batch_size": self.real_target_batch_size,
            "num_epochs": self.num_epochs,
            "log_every": self.log_every,
        }
        for name in ("max_steps", "stop_after_epochs", "max_train_pairs", "checkpoints_total_limit"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}.")
        for name in ("warmup_steps", "checkpoint_every", "num_workers", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)!r}.")
        if self.adapter_preset == AUTO_PRESET:
            if self.learning_rate is not None:
                raise ValueError(
                    "adapter_preset auto chooses the learning rate too, so learning_rate must be left unset; "
                    "set auto_learning_rate_factors to change the rates it tries."
                )
            return
        if self.learning_rate is None:
            self.learning_rate = ADAPTER_PRESETS[self.adapter_preset].learning_rate
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}.")

    def _check_auto(self) -> None:
        if isinstance(self.auto_presets, str):  # "ln,ln_stem" from the command line
            self.auto_presets = [name.strip() for name in self.auto_presets.split(",") if name.strip()]
        if isinstance(self.auto_learning_rate_factors, (int, float)):
            self.auto_learning_rate_factors = [self.auto_learning_rate_factors]
        if isinstance(self.auto_learning_rate_factors, str):
            self.auto_learning_rate_factors = [float(v) for v in self.auto_learning_rate_factors.split(",")]
        if self.auto_presets is not None:
            unknown = [name for name in self.auto_presets if name not in ADAPTER_PRESETS]
            if unknown or not self.auto_presets:
                raise ValueError(
                    f"auto_presets must name one or more of {', '.join(ADAPTER_PRESETS)}, got {self.auto_presets!r}."
                )
        factors = self.auto_learning_rate_factors
        if not factors or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not f > 0 for f in factors):
            raise ValueError(f"auto_learning_rate_factors must be positive numbers, got {factors!r}.")
        if self.auto_epochs < 1:
            raise ValueError(f"auto_epochs must be at least 1, got {self.auto_epochs!r}.")
        if self.auto_finalists < 0 or (self.auto_finalist_epochs is not None and self.auto_finalist_epochs < 1):
            raise ValueError(
                "auto_finalists must not be negative and auto_finalist_epochs must be at least 1, got "
                f"{self.auto_finalists!r} and {self.auto_finalist_epochs!r}."
            )
        if not self.auto_budget_s >= 0:
            raise ValueError(f"auto_budget_s must not be negative, got {self.auto_budget_s!r}.")

    def to_dict(self) -> dict:
        """A JSON-ready dict (the loss config nested under `loss`)."""
        out = asdict(self)
        out["split_fractions"] = list(self.split_fractions)
        return out


def _check_type(name: str, value: Any, hint: Any) -> None:
    """Raise a ValueError naming the field when `value` does not fit the annotation `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    ok = True
    if origin is Literal:
        ok = value in args
    elif origin is tuple:
        ok = isinstance(value, tuple) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    if not ok:
        wanted = getattr(hint, "__name__", str(hint))
        raise ValueError(f"TrainingConfig.{name} must be {wanted}, got {value!r} ({type(value).__name__}).")


def _parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, null, lists), else the string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = (), **values: Any) -> TrainingConfig:
    """
    A [`TrainingConfig`] from a JSON or YAML file, then `--key value` overrides (`--loss.margin 0.2`), then keyword
    values. Unknown keys raise a ValueError listing the known ones.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Training config {path} does not exist.")
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as error:
                raise ValueError(
                    f"{path} is YAML, but PyYAML is not installed; use JSON or `pip install pyyaml`."
                ) from error
            data = yaml.safe_load(text) or {}
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON ({error}).") from error
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping of option names to values, got {type(data).__name__}.")
    overrides = list(overrides)
    if len(overrides) % 2:
        raise ValueError(f"Overrides come as `--key value` pairs; {overrides[-1]!r} has no value.")
    for key, text in zip(overrides[::2], overrides[1::2]):
        if not key.startswith("--"):
            raise ValueError(f"Override {key!r} must look like --key (followed by its value).")
        _set_key(data, key[2:].replace("-", "_"), _parse_value(text))
    for key, value in values.items():
        _set_key(data, key, value)
    known = {f.name for f in fields(TrainingConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"Unknown training option(s) {', '.join(unknown)}; known options: {', '.join(sorted(known))}.")
    loss = data.get("loss", {})
    if isinstance(loss, dict):
        loss_known = {f.name for f in fields(XEdgeFaceLossConfig)}
        bad = sorted(set(loss) - loss_known)
        if bad:
            raise ValueError(f"Unknown loss option(s) {', '.join(bad)}; known: {', '.join(sorted(loss_known))}.")
    missing = [name for name in ("model", "data", "output_dir") if name not in data]
    if missing:
        raise ValueError(f"The training config needs {', '.join(missing)} (in the file or as --{missing[0]} VALUE).")
    return TrainingConfig(**data)


def _set_key(data: dict, key: str, value: Any) -> None:
    if key.startswith("loss."):
        loss = data.setdefault("loss", {})
        if isinstance(loss, XEdgeFaceLossConfig):
            loss = data["loss"] = loss.to_dict()
        loss[key.split(".", 1)[1]] = value
    else:
        data[key] = value


# ----------------------------------------------------------------------------------------------------------- data


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch (`set_epoch`), so a resumed run sees the batches the interrupted one would."""

    def __init__(self, length: int, seed: int) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.length).tolist())


class PairCollator:
    """Rows of `PairTransform` → `{"vis": (B, 3, H, W), "target": (B, 3, H, W), "identity": [str]}`."""

    def __init__(self, processor: EdgeFaceImageProcessor) -> None:
        self.processor = processor

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        return {
            "vis": self.processor([r["vis"] for r in rows], return_tensors="pt").pixel_values,
            "target": self.processor([r["target"] for r in rows], return_tensors="pt").pixel_values,
            "identity": [r["identity"] for r in rows],
        }


def _data_type(config: TrainingConfig) -> str:
    if config.data_type != "auto":
        return config.data_type
    path = Path(config.data)
    if path.is_file() or (path / "metadata.csv").is_file():
        return "pairs_csv"
    if (path / config.vis_dir).is_dir() and (path / (config.target_dir or config.modality)).is_dir():
        return "folders"
    return "pseudo"


def build_datasets(config: TrainingConfig) -> dict[str, Any]:
    """The paired set of `config.data`, split by identity: `{"train": Dataset, "validation": ..., "test": ...}`
    (a split is absent when it has no rows)."""
    from .data import load_pairs_csv, pairs_from_folders, pseudo_pairs_from_folder, split_identities

    kind = _data_type(config)
    path = Path(config.data)
    if not path.exists():
        raise FileNotFoundError(f"Training data {path} does not exist.")
    if kind == "pairs_csv":
        dataset = load_pairs_csv(path, skip_bad=config.skip_bad, modality=config.modality, seed=config.seed)
    elif kind == "folders":
        dataset = pairs_from_folders(
            path, config.vis_dir, config.target_dir or config.modality, seed=config.seed, skip_bad=config.skip_bad
        )
    else:
        if config.modality not in ("thermal", "nir"):
            raise ValueError(f"Pseudo-spectral pairs are rendered as thermal or nir, not {config.modality!r}.")
        dataset = pseudo_pairs_from_folder(path, config.modality, seed=config.seed, skip_bad=config.skip_bad)
    splits = dataset["split"]
    if not all(splits):  # no split column (or a partial one): the split file's, or our own, identity split
        mapping = (
            _read_split_file(config.split_file, dataset["identity"])
            if config.split_file
            else split_identities(dataset["identity"], config.split_fractions, config.split_seed)
        )
        splits = [mapping[i] for i in dataset["identity"]]
    out = {}
    for name in ("train", "validation", "test"):
        indices = [i for i, s in enumerate(splits) if s == name]
        if indices:
            out[name] = dataset.select(indices)
    unknown = sorted(set(splits) - {"train", "validation", "test"})
    if unknown:
        raise ValueError(f"{config.data} has split names {unknown}; use train, validation and test.")
    if "train" not in out:
        raise ValueError(f"{config.data} has no training pairs after the identity split; give it more identities.")
    if config.max_train_pairs is not None and len(out["train"]) > config.max_train_pairs:
        keep = np.random.default_rng(config.seed).choice(len(out["train"]), config.max_train_pairs, replace=False)
        out["train"] = out["train"].select(sorted(keep.tolist()))
    return out


def _read_split_file(path: str, identities: Sequence[str]) -> dict[str, str]:
    """identity → split from a JSON file; every identity of the data must be in it."""
    try:
        mapping = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"Split file {path} does not exist.") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"Split file {path} is not valid JSON ({error}).") from error
    if not isinstance(mapping, dict):
        raise ValueError(f"Split file {path} must map identities to split names, got {type(mapping).__name__}.")
    missing = sorted(set(identities) - set(mapping))
    if missing:
        raise ValueError(f"Split file {path} has no split for {len(missing)} identities, e.g. {missing[:5]}.")
    return mapping


def _real_targets(config: TrainingConfig, splits: dict):
    """The unpaired real target images of `config.real_target_data`, or None when there are none or no loss term
    would use them. People of the paired set's validation and test splits are left out, as are the PUJ people kept
    for validation and measuring."""
    from .data import Augment
    from .data.unpaired import UnpairedTargets, unpaired_target_files

    if config.real_target_data is None:
        return None
    if config.loss.target_identity_weight <= 0 and config.loss.alignment_weight <= 0:
        raise ValueError(
            "real_target_data is set, but no loss term uses it: set loss.target_identity_weight and/or "
            "loss.alignment_weight above 0, or leave real_target_data out."
        )
    held_out = {i for name in ("validation", "test") if name in splits for i in splits[name]["identity"]}
    files, identities, source = unpaired_target_files(config.real_target_data, exclude=held_out)
    targets = UnpairedTargets(
        files,
        identities,
        batch_size=config.real_target_batch_size,
        augment=Augment() if config.augment else None,
        seed=config.seed,
        source=source,
    )
    return targets


def _pair_transform(config: TrainingConfig, dataset, augment: bool):
    from .data import Augment, PairTransform

    renderer = config.modality if "target_source" in dataset.column_names else None
    return PairTransform(renderer=renderer, augment=Augment() if augment else None, seed=config.seed)


# ----------------------------------------------------------------------------------------------------- evaluation


def _rows(dataset, transform, start: int, stop: int) -> dict[str, list]:
    columns = [c for c in ("vis", "target", "target_source", "seed") if c in dataset.column_names]
    return transform(dataset.select_columns(columns)[start:stop])


@torch.no_grad()
def _embed(model: nn.Module, processor: EdgeFaceImageProcessor, images: list, batch_size: int) -> np.ndarray:
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        pixels = processor(images[start : start + batch_size], return_tensors="pt").pixel_values.to(device)
        out.append(torch.nn.functional.normalize(model(pixel_values=pixels).embeddings.float(), dim=-1).cpu().numpy())
    return np.concatenate(out)


def _summary(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, float | int]:
    from .evaluation import verification_metrics

    if genuine.size == 0 or impostor.size == 0:
        return {"genuine_pairs": int(genuine.size), "impostor_pairs": int(impostor.size)}
    metrics = verification_metrics(genuine, impostor, fars=(1e-2,))
    return {
        "auc": metrics["auc"],
        "eer": metrics["eer"],
        "tar_at_far_1e-2": metrics["tar_at_far"]["1e-2"],
        "genuine_pairs": metrics["genuine_pairs"],
        "impostor_pairs": metrics["impostor_pairs"],
    }


def evaluate_pairs(
    model: nn.Module,
    processor: EdgeFaceImageProcessor,
    dataset,
    transform: Callable[[dict[str, list]], dict[str, list]],
    batch_size: int = 64,
) -> dict[str, dict[str, float | int]]:
    """
    Verification on a paired split, all pairs: `cross` (every VIS image against every target image; genuine when
    the identities match) and `vis` (every unordered pair of VIS images). AUC, EER, TAR@FAR=1e-2 and pair counts.

    `transform` renders targets without augmentation (a `PairTransform` with `augment=None`). A target rendered from
    the very photo a VIS image is (pseudo pairs) is not scored against it: that would be a pixel-level shortcut.
    Each VIS file is embedded once; real target files once, rendered targets once per row.
    """
    from .evaluation import all_pairs_scores

    was_training = model.training
    model.eval()
    vis_images, target_images = [], []
    for start in range(0, len(dataset), 256):
        rows = _rows(dataset, transform, start, start + 256)
        vis_images += rows["vis"]
        target_images += rows["target"]
    identities = np.asarray(dataset["identity"])
    vis_paths, target_paths = dataset["vis_path"], dataset["target_path"]
    synthetic = dataset["synthetic"]
    first_vis = list({p: i for i, p in reversed(list(enumerate(vis_paths)))}.values())
    target_keys = [i if synthetic[i] else target_paths[i] for i in range(len(dataset))]
    first_target = list({k: i for i, k in reversed(list(enumerate(target_keys)))}.values())
    vis_idx, tgt_idx = sorted(first_vis), sorted(first_target)
    try:
        vis = _embed(model, processor, [vis_images[i] for i in vis_idx], batch_size)
        tgt = _embed(model, processor, [target_images[i] for i in tgt_idx], batch_size)
    finally:
        model.train(was_training)
    vis_ids, tgt_ids = identities[vis_idx], identities[tgt_idx]
    cross = vis @ tgt.T
    same = vis_ids[:, None] == tgt_ids[None, :]
    same_photo = np.asarray([vis_paths[i] for i in vis_idx])[:, None] == np.asarray([target_paths[j] for j in tgt_idx])
    usable = ~same_photo
    genuine, impostor = all_pairs_scores(vis @ vis.T, list(vis_ids))
    return {
        "cross": _summary(cross[same & usable], cross[~same & usable]),
        "vis": _summary(genuine, impostor),
    }


# ---------------------------------------------------------------------------------------------------- checkpoints


@dataclass
class TrainingState:
    """Where the loop is; saved beside every checkpoint as `trainer_state.json`."""

    global_step: int = 0  # optimiser steps done
    epoch: int = 0  # the epoch in progress
    batches_done: int = 0  # batches of `epoch` consumed (per process)
    best_eer: float | None = None  # the pseudo validation EER of the best adapter
    best_score: float | None = None  # what chose it: the EER, or with real_validation_data the search's score
    best_epoch: int | None = None
    best_step: int | None = None
    validated_epochs: list[int] = field(default_factory=list)
    validation: list[dict] = field(default_factory=list)
    epoch_times: list[float] = field(default_factory=list)
    epoch_elapsed: float = 0.0  # seconds of training spent in `epoch` so far, so a resumed epoch is timed whole
    logged_rows: int | None = None  # data rows of logs/metrics.csv when saved; a resume cuts the file back to them
    settings: dict | None = None  # the run's config and process count, checked by a resume (`_check_resume`)

    def to_dict(self) -> dict:
        return asdict(self)


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under `output_dir/checkpoints`, oldest step first; temporary folders are not listed."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.is_dir() and (path / STATE_NAME).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def save_checkpoint(
    accelerator, output_dir: str | os.PathLike, state: TrainingState, total_limit: int | None = None
) -> Path:
    """
    `accelerator.save_state` into `checkpoints/.tmp-step_XXXXXX`, then `trainer_state.json`, then a rename to
    `checkpoints/step_XXXXXX`: until the rename the checkpoint is invisible to [`latest_checkpoint`]. Every process
    must call it (each saves its RNG state).
    """
    root = Path(output_dir) / "checkpoints"
    final = root / f"{CHECKPOINT_PREFIX}{state.global_step:06d}"
    tmp = root / f"{TMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a killed run
        tmp.mkdir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        best = Path(output_dir) / BEST_ADAPTER
        if state.best_eer is not None and best.is_dir():  # so a resume can put back the best adapter of this step
            shutil.copytree(best, tmp / BEST_ADAPTER)
        write_json(tmp / STATE_NAME, state.to_dict())
        if final.exists():  # the same step saved again (e.g. the end of a resumed run): replace it
            old = root / f"{TMP_PREFIX}old-{final.name}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        if total_limit is not None:
            for stale in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _read_state(path: Path) -> TrainingState:
    """The `trainer_state.json` of a checkpoint; a ValueError when it is cut short or not one."""
    try:
        return TrainingState(**json.loads((path / STATE_NAME).read_text()))
    except (OSError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path / STATE_NAME} is not a readable training state ({error})") from error


def _load_checkpoint(accelerator, candidates: Sequence[Path]) -> tuple[Path, TrainingState]:
    """Load the newest of `candidates` (newest first) that loads whole; a broken one (a truncated model.safetensors,
    optimiser or state file) is passed over with a warning naming it."""
    broken = []
    for path in candidates:
        try:
            state = _read_state(path)
            accelerator.load_state(str(path))  # replaces every weight, optimiser and RNG state it holds
        except Exception as error:  # safetensors, pickle and torch each raise their own kind for a cut-short file
            broken.append(f"{path.name} ({type(error).__name__}: {str(error)[:200]})")
            warnings.warn(f"Checkpoint {path} cannot be loaded ({error}); trying the one before it.", stacklevel=2)
            continue
        return path, state
    raise ValueError(
        f"None of the {len(broken)} checkpoints in {candidates[0].parent} can be loaded: {'; '.join(broken)}. "
        "Delete that folder to start the run again."
    )


def _settings(config: TrainingConfig, num_processes: int) -> dict:
    values = _flat(config.to_dict())
    for key in ("model", "data", "split_file"):  # the same folder named relatively or absolutely is the same
        if values.get(key) and Path(values[key]).exists():
            values[key] = str(Path(values[key]).resolve())
    return {**values, "num_processes": num_processes}


def _check_resume(saved: dict | None, current: dict, checkpoint: Path) -> None:
    """Refuse to resume with settings that change the optimisation (the saved optimiser state, schedule and batch
    position would belong to another run); the error names every setting that differs."""
    if saved is None:
        warnings.warn(f"{checkpoint} records no settings (an older run); they cannot be checked.", stacklevel=2)
        return
    differ = [
        f"{key} {saved.get(key)!r} → {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if key not in RESUMABLE_CHANGES and saved.get(key) != current.get(key)
    ]
    if differ:
        raise ValueError(
            f"--resume would continue {checkpoint} with other settings: {', '.join(differ)}. Its optimiser state, "
            "learning-rate schedule and batch position belong to the old ones; resume with the settings it was "
            f"started with, or start a new run in another output_dir (only {', '.join(RESUMABLE_CHANGES)} may change)."
        )


def _clean_leftovers(output_dir: Path) -> None:
    """Remove what a killed run left half-written: temporary folders and files (`.tmp-*`, PEFT's `.adapter-*`) in
    the output folder, its checkpoints and logs. A folder moved aside just before its replacement was renamed into
    place (`.tmp-old-NAME` with no NAME) is moved back instead."""
    for folder in (output_dir, output_dir / "checkpoints", output_dir / "logs"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.name.startswith((TMP_PREFIX, ".adapter-")):
                continue
            original = folder / path.name.removeprefix(f"{TMP_PREFIX}old-")
            if path.name.startswith(f"{TMP_PREFIX}old-") and not original.exists():
                os.replace(path, original)
            elif path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _restore_best_adapter(output_dir: Path, checkpoint: Path, state: TrainingState) -> None:
    """Make `output/best_adapter` the one of the checkpoint, before any step runs: the interrupted run may have
    written a newer one (or half of one) after it, and the resumed run compares against the checkpoint's EER."""
    target, saved = output_dir / BEST_ADAPTER, checkpoint / BEST_ADAPTER
    if state.best_eer is None:
        if target.exists():
            shutil.rmtree(target)  # written after this checkpoint; the resumed run writes it again
        return
    if saved.is_dir():
        tmp = output_dir / f"{TMP_PREFIX}{BEST_ADAPTER}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(saved, tmp)
        _swap_into_place(tmp, target)
    elif not any((target / name).is_file() for name in ("adapter_model.safetensors", "model.safetensors")):
        raise ValueError(
            f"{checkpoint} says the best adapter so far (validation EER {state.best_eer:.4f}, step {state.best_step}) "
            f"is in {target}, but it is not there; put it back, or resume from a checkpoint that holds a copy of it."
        )


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished folder `tmp` onto `target`; a kill between the two renames leaves `.tmp-old-NAME`, which
    [`_clean_leftovers`] moves back."""
    old = target.with_name(f"{TMP_PREFIX}old-{target.name}")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------- tracking


class CSVTracker:
    """
    An Accelerate tracker writing `logs/metrics.csv` in long form (`step, name, value`), so that runs log offline
    without TensorBoard or any service. Pass it as `Accelerator(log_with=[CSVTracker(dir)])`.
    """

    name = "csv"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, logging_dir: str | os.PathLike, resume_step: int | None = None) -> None:
        self.path = Path(logging_dir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self.rewind(step=resume_step)
        if not self.path.is_file():
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerow(["step", "name", "value"])
        with open(self.path, newline="") as handle:
            self.rows = sum(1 for _ in csv.reader(handle)) - 1  # data rows written so far (see TrainingState)

    def rewind(self, rows: int | None = None, step: int | None = None) -> None:
        """Drop what the interrupted run logged after its checkpoint, which the resumed run logs again: every row
        after the first `rows` (as the checkpoint counted them), or, for a checkpoint without a count, after `step`.
        """
        if not self.path.is_file():
            return
        with open(self.path, newline="") as handle:
            header, *data = list(csv.reader(handle))
        if rows is not None:
            kept = data[:rows]
        else:
            kept = [row for row in data if row and row[0].isdigit() and int(row[0]) <= step]

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as handle:
                csv.writer(handle).writerows([header, *kept])

        write_atomic(self.path, write)
        self.rows = len(kept)

    @property
    def tracker(self) -> CSVTracker:
        return self

    def start(self) -> None:
        pass

    def store_init_configuration(self, values: dict) -> None:
        write_json(self.path.with_name("config.json"), values)

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        with open(self.path, "a", newline="") as handle:
            writer = csv.writer(handle)
            for key, value in values.items():
                writer.writerow([step, key, float(value)])
                self.rows += 1

    def finish(self) -> None:
        pass


def _make_tracker_class():
    """`CSVTracker` as a subclass of Accelerate's `GeneralTracker` (imported lazily: accelerate is an extra)."""
    from accelerate.tracking import GeneralTracker

    return type("CSVTracker", (CSVTracker, GeneralTracker), {})


# ---------------------------------------------------------------------------------------------------------- train


@dataclass
class TrainingResult:
    """What a run produced."""

    output_dir: Path
    global_step: int
    adapter: Path  # the last adapter (or model, for full fine-tuning)
    best_adapter: Path | None  # lowest validation EER; None without validation data
    report_path: Path
    report: dict
    resumed_from: Path | None = None


def _resolve_mixed_precision(value: str, cpu: bool) -> str:
    cuda = (
        torch.cuda.is_available() and not cpu and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true")
    )
    if value == "auto":
        if not cuda:
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if value != "no" and not cuda:
        raise ValueError(
            f"mixed_precision={value!r} needs a CUDA GPU, and this run is on the CPU; use mixed_precision 'no' or 'auto'."
        )
    return value


def _peak_memory_mb() -> dict[str, float]:
    # ru_maxrss is in KiB on Linux
    out = {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def train(
    config: TrainingConfig,
    resume: bool = False,
    step_callback: Callable[[TrainingState], None] | None = None,
    evaluate_test: bool = True,
) -> TrainingResult:
    """
    Train an xEdgeFace adapter as `config` says (see the module docstring); returns where everything went.

    `resume=True` continues from the newest complete checkpoint in `config.output_dir/checkpoints` (from scratch
    when there is none). `step_callback(state)` runs on every process after every optimiser step (and after a
    checkpoint of that step); an exception there stops the run, as a kill would. `evaluate_test=False` leaves the
    test identities alone (no before/after comparison): the preset search's trials must not look at them.

    `config.adapter_preset == "auto"` first runs the preset search ([`hfr_hf.preset_search.search_presets`]; a
    resume reuses a finished one), then trains the chosen preset and learning rate to the end, continuing the
    chosen candidate's run (its candidates train the first epochs of this schedule); the report holds the search
    under `preset_search`.
    """
    search = None
    if config.adapter_preset == AUTO_PRESET:
        import dataclasses

        from .preset_search import continue_chosen, search_presets

        search = search_presets(config, resume=resume)
        chosen = search["chosen"]
        config = dataclasses.replace(config, adapter_preset=chosen["preset"], learning_rate=chosen["learning_rate"])
        # the chosen candidate trained the first epochs of this very schedule: continue it, not start again
        resume = continue_chosen(search, config.output_dir) or resume
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import ProjectConfiguration, is_tensorboard_available, set_seed
    from peft import PeftModel
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    candidates = list_checkpoints(output_dir)[::-1] if resume else []  # newest first
    mixed_precision = _resolve_mixed_precision(config.mixed_precision, config.cpu)
    csv_tracker = _make_tracker_class()(output_dir / "logs")
    trackers: list[Any] = [csv_tracker]
    if is_tensorboard_available():
        trackers.append("tensorboard")
    accelerator = Accelerator(
        cpu=config.cpu,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=trackers,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=False),
    )
    set_seed(config.seed)
    settings = _settings(config, accelerator.num_processes)
    if accelerator.is_main_process:
        _clean_leftovers(output_dir)
    for candidate in candidates:  # before any work: a resume with other settings is refused at once
        try:
            saved = _read_state(candidate)
        except ValueError:
            continue  # broken: `_load_checkpoint` below says so and falls back
        _check_resume(saved.settings, settings, candidate)
        break
    accelerator.wait_for_everyone()

    # data
    if config.real_validation_data is not None:
        from .data.puj import puj_images

        puj_images(config.real_validation_data, [])  # a folder without the PUJ sets is refused before any step
    splits = build_datasets(config)
    train_set = splits["train"]
    target_column = "target_source" if "target_source" in train_set.column_names else "target"
    pair_transform = _pair_transform(config, train_set, augment=config.augment)
    eval_transform = _pair_transform(config, train_set, augment=False)
    model, processor = load_model(config.model)
    real_targets = _real_targets(config, splits)
    sampler = EpochSampler(len(train_set), config.seed)
    loader = DataLoader(
        train_set.select_columns(["vis", target_column, "identity", "seed"]).with_transform(pair_transform),
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=PairCollator(processor),
        num_workers=config.num_workers,
    )

    # model: the student is base + adapter, the teacher the same model with the adapter disabled
    total_parameters = sum(p.numel() for p in model.parameters())
    frozen_teacher = None
    if ADAPTER_PRESETS[config.adapter_preset].full:
        import copy

        frozen_teacher = copy.deepcopy(model).eval().requires_grad_(False)  # no adapter to disable: keep a copy
        model = add_adapter(model, config.adapter_preset)
    else:
        model = add_adapter(model, config.adapter_preset, adapter_name=config.adapter_name)
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable_parameters = sum(p.numel() for p in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if frozen_teacher is not None:
        frozen_teacher = frozen_teacher.to(accelerator.device)

    batches_per_epoch = len(loader)
    updates_per_epoch = math.ceil(batches_per_epoch / config.gradient_accumulation_steps)
    total_steps = config.max_steps or config.num_epochs * updates_per_epoch
    num_epochs = math.ceil(total_steps / updates_per_epoch)
    # Accelerate steps a prepared scheduler once per process per optimiser step, hence the factor.
    scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.warmup_steps * accelerator.num_processes,
        num_training_steps=total_steps * accelerator.num_processes,
    )
    scheduler = accelerator.prepare(scheduler)
    loss_fn = XEdgeFaceLoss(config.loss)
    unwrapped = accelerator.unwrap_model(model)
    needs_teacher = (
        config.loss.self_distillation_weight > 0
        or config.loss.cross_distillation_weight > 0
        or (real_targets is not None and config.loss.alignment_weight > 0)
    )

    state, checkpoint = TrainingState(), None
    if candidates:
        checkpoint, state = _load_checkpoint(accelerator, candidates)
        _check_resume(state.settings, settings, checkpoint)  # an older checkpoint than the one checked above
        if accelerator.is_main_process:
            # Best-adapter weights of the interrupted run live in output/best_adapter; keep comparing against its EER.
            _restore_best_adapter(output_dir, checkpoint, state)
            csv_tracker.rewind(state.logged_rows, state.global_step)
        accelerator.wait_for_everyone()
    state.settings = settings
    best_weights = None
    accelerator.init_trackers("xedgeface", config=_flat(config.to_dict()))

    def validate(epoch: int) -> None:
        nonlocal best_weights
        if "validation" not in splits:
            return
        if accelerator.is_main_process:
            metrics = evaluate_pairs(unwrapped, processor, splits["validation"], eval_transform, config.eval_batch_size)
            eer = score = metrics["cross"].get("eer")
            entry = {"epoch": epoch, "step": state.global_step, **metrics}
            if config.real_validation_data is not None and eer is not None:
                was_training = unwrapped.training
                unwrapped.eval()
                entry["real_thermal"] = real_validation_eers(unwrapped, processor, config.real_validation_data)
                unwrapped.train(was_training)
                score = entry["score"] = validation_score(eer, entry["real_thermal"]["eer"])
            state.validation.append(entry)
            accelerator.log(
                {f"validation/{side}/{k}": v for side, m in entry.items() if isinstance(m, dict) for k, v in m.items()},
                step=state.global_step,
            )
            if state.best_score is None:
                state.best_score = state.best_eer  # a checkpoint of a run from before best_score was recorded
            if score is not None and (state.best_score is None or score < state.best_score):
                state.best_eer, state.best_score = eer, score
                state.best_epoch, state.best_step = epoch, state.global_step
                best_weights = {n: p.detach().cpu().clone() for n, p in unwrapped.named_parameters() if p.requires_grad}
                _save_model(unwrapped, output_dir / BEST_ADAPTER, config.adapter_name, processor)
        state.validated_epochs.append(epoch)
        accelerator.wait_for_everyone()

    progress = tqdm(
        total=total_steps, initial=state.global_step, desc="training", disable=not accelerator.is_local_main_process
    )
    model.train()
    for epoch in range(state.epoch, num_epochs):
        if config.stop_after_epochs is not None and epoch >= config.stop_after_epochs:
            break  # the schedule goes on; a resumed run continues it
        if state.global_step >= total_steps and state.batches_done < batches_per_epoch:
            break  # (resumed on the last batch of an epoch, the epoch still gets its time and its validation)
        state.epoch = epoch
        pair_transform.set_epoch(epoch)
        sampler.set_epoch(epoch)
        skip = state.batches_done
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
        # Accelerate's loaders re-seed the sampler from their own iteration count on every pass, which a resumed
        # run (or a fresh skip loader) does not share with the interrupted one: set it to the epoch explicitly.
        epoch_loader.set_epoch(epoch)
        epoch_start, processed = time.perf_counter() - state.epoch_elapsed, 0
        for batch in epoch_loader:
            processed += 1
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    vis = batch["vis"]
                    inputs, real_ids = [vis, batch["target"]], None
                    if real_targets is not None:
                        real_images, real_ids = real_targets.batch(state.global_step)
                        inputs.append(processor(real_images, return_tensors="pt").pixel_values.to(vis.device))
                    embeddings = model(pixel_values=torch.cat(inputs)).embeddings.float()
                    # one pass: no BatchNorm in EdgeFace
                    student_vis, student_target, *real = embeddings.split([len(x) for x in inputs])
                    teacher = None
                    if needs_teacher:
                        teacher = (
                            frozen_teacher(pixel_values=vis).embeddings
                            if frozen_teacher is not None
                            else teacher_embeddings(unwrapped, vis)
                        ).float()
                    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + state.global_step)
                    terms = loss_fn(
                        student_vis,
                        student_target,
                        teacher,
                        identities=batch["identity"],
                        generator=generator,
                        real_target_embeddings=real[0] if real else None,
                        real_target_identities=real_ids,
                    )
                accelerator.backward(terms["loss"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state.batches_done += 1
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            logged = {k: float(v.detach()) for k, v in terms.items()}
            logged["lr"] = scheduler.get_last_lr()[0]
            if state.global_step % config.log_every == 0:
                accelerator.log({f"train/{k}": v for k, v in logged.items()}, step=state.global_step)
            progress.update(1)
            progress.set_postfix(
                {k: f"{logged[k]:.4f}" for k in ("loss", "contrastive", "self_distillation") if k in logged}
            )
            if config.checkpoint_every and state.global_step % config.checkpoint_every == 0:
                state.epoch_elapsed, state.logged_rows = time.perf_counter() - epoch_start, csv_tracker.rows
                save_checkpoint(accelerator, output_dir, state, config.checkpoints_total_limit)
            if step_callback is not None:
                step_callback(state)
            if state.global_step >= total_steps:
                break
        # timed whole when resumed on its last batch too (nothing left to run, but its time is in the checkpoint)
        if processed or state.batches_done >= batches_per_epoch:
            state.epoch_times.append(time.perf_counter() - epoch_start)
        state.epoch_elapsed = 0.0
        if state.batches_done >= batches_per_epoch:  # the epoch is complete
            if epoch not in state.validated_epochs:
                validate(epoch)
            state.epoch, state.batches_done = epoch + 1, 0
    progress.close()
    if state.batches_done and state.epoch not in state.validated_epochs:
        validate(state.epoch)  # stopped part-way through an epoch by max_steps: validate what was trained
    last = latest_checkpoint(output_dir)
    if last is None or last.name != f"{CHECKPOINT_PREFIX}{state.global_step:06d}":
        state.logged_rows = csv_tracker.rows
        save_checkpoint(accelerator, output_dir, state, config.checkpoints_total_limit)

    report: dict = {}
    adapter_path = output_dir / "adapter"
    best_path = output_dir / BEST_ADAPTER if state.best_eer is not None else None
    if accelerator.is_main_process:
        _save_model(unwrapped, adapter_path, config.adapter_name, processor)
        test = {}
        if "test" in splits and evaluate_test:
            unwrapped.eval()
            test["after_last"] = evaluate_pairs(
                unwrapped, processor, splits["test"], eval_transform, config.eval_batch_size
            )
            if best_path is not None:
                last_weights = {n: p.detach().clone() for n, p in unwrapped.named_parameters() if p.requires_grad}
                if best_weights is None:  # best chosen before a resume: read it back from the saved adapter
                    best_weights = _read_best_weights(unwrapped, best_path, config.adapter_name)
                _assign(unwrapped, best_weights)
                test["after"] = evaluate_pairs(
                    unwrapped, processor, splits["test"], eval_transform, config.eval_batch_size
                )
                _assign(unwrapped, last_weights)
            else:
                test["after"] = test["after_last"]
            if isinstance(unwrapped, PeftModel):
                with unwrapped.disable_adapter():
                    test["before"] = evaluate_pairs(
                        unwrapped, processor, splits["test"], eval_transform, config.eval_batch_size
                    )
            elif frozen_teacher is not None:
                test["before"] = evaluate_pairs(
                    frozen_teacher, processor, splits["test"], eval_transform, config.eval_batch_size
                )
        wall = time.perf_counter() - started
        report = {
            "global_step": state.global_step,
            "total_steps": total_steps,
            "epochs": num_epochs if config.stop_after_epochs is None else min(num_epochs, config.stop_after_epochs),
            "schedule_epochs": num_epochs,
            "batches_per_epoch": batches_per_epoch,
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "mixed_precision": mixed_precision,
            "resumed_from": str(checkpoint) if checkpoint else None,
            "data": {name: {"pairs": len(d), "identities": len(set(d["identity"]))} for name, d in splits.items()},
            "real_target": None
            if real_targets is None
            else {
                "images": len(real_targets),
                "identities": len(real_targets.names),
                "source": real_targets.source,
                "identity_list": real_targets.names,
            },
            "trainable_parameters": trainable_parameters,
            "total_parameters": total_parameters,
            "trainable_percent": 100.0 * trainable_parameters / total_parameters,
            "wall_time_s": wall,
            "epoch_times_s": state.epoch_times,
            "time_per_epoch_s": float(np.mean(state.epoch_times)) if state.epoch_times else None,
            **_peak_memory_mb(),
            "best": {
                "eer": state.best_eer,
                "score": state.best_score,
                "real_thermal": next(
                    (v.get("real_thermal") for v in state.validation if v["epoch"] == state.best_epoch), None
                ),
                "epoch": state.best_epoch,
                "step": state.best_step,
            },
            "validation": state.validation,
            "test": test or None,
            "adapter": str(adapter_path),
            "best_adapter": str(best_path) if best_path else None,
            "config": config.to_dict(),
            "preset_search": search,
        }
        write_json(output_dir / "report.json", report)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainingResult(
        output_dir=output_dir,
        global_step=state.global_step,
        adapter=adapter_path,
        best_adapter=best_path,
        report_path=output_dir / "report.json",
        report=report,
        resumed_from=checkpoint,
    )


def _flat(values: dict, prefix: str = "") -> dict:
    """Nested config → flat scalars (trackers take no nesting or lists)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def _save_model(model: nn.Module, path: Path, adapter_name: str, processor: EdgeFaceImageProcessor) -> None:
    """The adapter (or, for full fine-tuning, the whole model with its preprocessor, a folder that load_model and
    AutoImageProcessor open) into `path` as one folder: written beside it, then renamed onto it, so a kill leaves the
    old folder or the new one, never a mix."""
    from peft import PeftModel

    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(model, PeftModel):
        save_adapter(model, tmp, adapter_name)
    else:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    _swap_into_place(tmp, path)


def load_trained(base: nn.Module, path: str | os.PathLike, adapter_name: str = "default") -> nn.Module:
    """What a run saved in `path` (`adapter/`, `best_adapter/`) on its `base` EdgeFace: the adapter loaded onto it,
    or, for full fine-tuning (a whole model folder), that model; in eval mode."""
    from .adapters import load_adapter

    path = Path(path)
    if (path / "adapter_config.json").is_file():
        return load_adapter(base, path, adapter_name=adapter_name).eval()
    return type(base).from_pretrained(path).eval()


def _assign(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


def _read_best_weights(model: nn.Module, path: Path, adapter_name: str) -> dict[str, torch.Tensor]:
    """Trainable weights of a saved best adapter (or fully fine-tuned model), named as in `model`."""
    from peft import PeftModel
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    current = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    if isinstance(model, PeftModel):
        set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"), adapter_name=adapter_name)
    else:
        model.load_state_dict(load_file(path / "model.safetensors"), strict=False)
    best = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    _assign(model, current)
    return best
