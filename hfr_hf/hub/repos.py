"""Repository contents, built into a local folder: a base model, an adapter, a merged model, the Space.

Every input is checked here, before anything reaches the Hub: a folder that is not a model, an adapter of another
base, a Space folder without its front matter. What a folder holds after a build is exactly what a push uploads.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..inference import no_progress_bars
from .cards import AdapterDetails, model_card
from .package import WHEEL_FOLDER, build_package_wheel, point_requirements_at_wheel
from .reports import EvaluationReport

__all__ = [
    "ADAPTER_FILES",
    "MODEL_FILES",
    "REMOTE_CODE_FILES",
    "SPACE_MODEL_VARIABLE",
    "PublishError",
    "build_model_repo",
    "build_space_repo",
    "check_model_folder",
]

MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
# Written beside the weights by save_pretrained (the classes are registered for the Auto classes on import).
REMOTE_CODE_FILES = (
    "configuration_edgeface.py",
    "modeling_edgeface.py",
    "edgeface_layers.py",  # imported by modeling_edgeface.py
    "image_processing_edgeface.py",
    "edgeface_preprocessing.py",  # imported by image_processing_edgeface.py
)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# The environment variable the Space's app reads to know which model repository to load.
SPACE_MODEL_VARIABLE = "HFR_HF_MODEL"
# Not part of a Space: caches, editor and VCS files.
_SPACE_SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints", ".venv", "flagged"}


class PublishError(ValueError):
    """Input that cannot be published as asked; nothing has been pushed."""


def check_model_folder(model_dir: str | os.PathLike):
    """Load the EdgeFace of a model folder after checking it holds every file a repository needs."""
    from ..modeling_edgeface import EdgeFaceModel

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PublishError(f"Model folder {model_dir} does not exist.")
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise PublishError(
            f"{model_dir} is not a complete model folder: {', '.join(missing)} missing. Convert a checkpoint with "
            "`hfr-hf convert` (or save the model and its processor with save_pretrained) and publish that folder."
        )
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PublishError(f"{model_dir / 'config.json'} is not valid JSON ({error}).") from error
    if not isinstance(config, dict) or config.get("model_type") != "edgeface":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise PublishError(f"{model_dir} holds a {kind!r} model, not an EdgeFace (model_type 'edgeface').")
    missing = [name for name in REMOTE_CODE_FILES if not (model_dir / name).is_file()]
    if missing or "AutoModel" not in (config.get("auto_map") or {}):
        raise PublishError(
            f"{model_dir} lacks the remote code that lets the Hub load it without hfr-hf "
            f"({', '.join(missing) or 'auto_map in config.json'}); re-save it with `import hfr_hf` done "
            "(EdgeFaceModel.from_pretrained(folder).save_pretrained(new_folder)) or convert the checkpoint again."
        )
    try:
        with no_progress_bars():
            model, info = EdgeFaceModel.from_pretrained(model_dir, output_loading_info=True)
    except Exception as error:  # safetensors and transformers raise several types for unreadable weights
        raise PublishError(
            f"The weights in {model_dir / 'model.safetensors'} could not be loaded ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'})."
        ) from error
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        detail = "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, list(v)[:5]))}" for k, v in problems.items())
        raise PublishError(f"The weights in {model_dir} do not fit its config.json ({detail}).")
    return model.eval()


def _adapter_files(adapter_dir: Path) -> None:
    if not adapter_dir.is_dir():
        raise PublishError(f"Adapter folder {adapter_dir} does not exist.")
    from ..adapters import check_adapter_folder

    try:
        check_adapter_folder(adapter_dir, as_model="publish it with --model and no --adapter")
    except ValueError as error:
        raise PublishError(str(error)) from None
    missing = [name for name in ADAPTER_FILES if not (adapter_dir / name).is_file()]
    if missing:
        raise PublishError(
            f"{adapter_dir} is not an adapter folder: {', '.join(missing)} missing. Save the adapter with "
            "hfr_hf.adapters.save_adapter (or PEFT's save_pretrained) and publish that folder."
        )


def _file_names(folder: Path) -> list[str]:
    """Every file under `folder`, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _load_adapter(base, model_dir: Path, adapter_dir: Path, report: EvaluationReport | None):
    """(PeftModel, AdapterDetails) of an adapter folder on the base model, refusing an adapter of another base."""
    from ..adapters import ADAPTER_PRESETS, ADAPTER_RECORD_NAME, adapted_modules, load_adapter

    _adapter_files(adapter_dir)
    record_path = adapter_dir / ADAPTER_RECORD_NAME
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    name = record.get("adapter_name") or "default"
    try:
        model = load_adapter(base, adapter_dir, adapter_name=name)
    except ValueError as error:  # another base (fingerprint), or an unreadable adapter: already a sentence
        raise PublishError(str(error)) from error
    except Exception as error:  # PEFT/torch errors for targets or shapes this base does not have
        raise PublishError(
            f"The adapter in {adapter_dir} does not fit the model in {model_dir} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'}); it was trained on another base."
        ) from error
    trainable = sum(p.numel() for n, p in model.named_parameters() if f".ln_tuning_layers.{name}." in n)
    wrapped = len(adapted_modules(model, name))
    # records written before presets were recorded reliably say null; the experiment report names the preset too
    preset = record.get("preset") or (report.adapter_preset if report is not None else None)
    details = AdapterDetails(
        name=name,
        preset=preset,
        description=ADAPTER_PRESETS[preset].description if preset in ADAPTER_PRESETS else None,
        trainable_parameters=trainable,
        target_modules=wrapped,
        base_fingerprint=record.get("base_model_fingerprint"),
    )
    return model, details


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _check_report(report: EvaluationReport | None, config) -> None:
    variant = getattr(config, "variant", None)
    if report is not None and report.variant and variant and report.variant != variant:
        raise PublishError(
            f"{report.source} evaluates EdgeFace variant {report.variant!r}, but the model is {variant!r}; "
            "give the report of this model."
        )


def build_model_repo(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    adapter_dir: str | os.PathLike | None = None,
    merge: bool = False,
    base_repo: str | None = None,
    report: EvaluationReport | None = None,
) -> list[str]:
    """
    Write a model repository's files into `output_dir` (an existing, empty folder) and return their names.

    - no adapter: the base model (config, weights, processor, remote code) with the base card;
    - `adapter_dir`: the adapter's files, its config pointing at `base_repo`, with the adapter card;
    - `adapter_dir` and `merge=True`: EdgeFace with the adapter folded in (loadable with `trust_remote_code=True`
      and no hfr-hf), with the merged card.
    """
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if merge and adapter_dir is None:
        raise PublishError("Merging needs an adapter folder (--adapter) to fold into the model.")
    if adapter_dir is not None and not merge and not base_repo:
        raise PublishError(
            "An adapter repository must name its base model's repository (--base-repo), so that PEFT can find it."
        )
    base = check_model_folder(model_dir)
    config = base.config
    _check_report(report, config)

    if adapter_dir is None:
        for name in MODEL_FILES + REMOTE_CODE_FILES:
            shutil.copy2(model_dir / name, output_dir / name)
        card = model_card("base", config, repo_id=repo_id, report=report)
    else:
        from ..adapters import ADAPTER_RECORD_NAME, merge_adapter
        from ..image_processing_edgeface import EdgeFaceImageProcessor

        adapter_dir = Path(adapter_dir)
        model, details = _load_adapter(base, model_dir, adapter_dir, report)
        if merge:
            merged = merge_adapter(model, details.name)
            with no_progress_bars():
                merged.save_pretrained(output_dir)
            # the processor's save writes its remote-code file beside preprocessor_config.json
            EdgeFaceImageProcessor.from_pretrained(model_dir).save_pretrained(output_dir)
            missing = [name for name in MODEL_FILES + REMOTE_CODE_FILES if not (output_dir / name).is_file()]
            if missing:  # save_pretrained writes remote code only for classes registered with the Auto classes
                raise PublishError(f"Saving the merged model did not write {', '.join(missing)}.")
            card = model_card("merged", config, repo_id=repo_id, base_repo=base_repo, report=report, adapter=details)
        else:
            adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
            # PEFT's AutoPeftModel imports `auto_mapping`; transformers' AutoModel finds the remote code by itself.
            adapter_config.update(
                base_model_name_or_path=base_repo,
                auto_mapping={"base_model_class": "AutoModel", "parent_library": "transformers"},
            )
            _write_json(output_dir / "adapter_config.json", adapter_config)
            shutil.copy2(adapter_dir / "adapter_model.safetensors", output_dir / "adapter_model.safetensors")
            if (adapter_dir / ADAPTER_RECORD_NAME).is_file():
                record = json.loads((adapter_dir / ADAPTER_RECORD_NAME).read_text())
                record["base_model_name_or_path"] = base_repo
                _write_json(output_dir / ADAPTER_RECORD_NAME, record)
            card = model_card("adapter", config, repo_id=repo_id, base_repo=base_repo, report=report, adapter=details)
    card.save(output_dir / "README.md")
    return _file_names(output_dir)


def _space_files(space_dir: Path) -> list[Path]:
    files = []
    for path in sorted(space_dir.rglob("*")):
        parts = path.relative_to(space_dir).parts
        if any(part in _SPACE_SKIP_DIRS or part.startswith(".") for part in parts):
            continue
        if path.is_file() and path.suffix != ".pyc":
            files.append(path)
    return files


def read_space_card(space_dir: str | os.PathLike):
    """The `SpaceCard` of a Space folder, checked to name an SDK and an app file that exists."""
    from huggingface_hub import SpaceCard

    space_dir = Path(space_dir)
    if not space_dir.is_dir():
        raise PublishError(f"Space folder {space_dir} does not exist.")
    readme = space_dir / "README.md"
    if not readme.is_file():
        raise PublishError(f"{space_dir} has no README.md; a Space needs one with its front matter (sdk, app_file).")
    card = SpaceCard.load(readme)
    if not card.data.sdk:
        raise PublishError(f"The front matter of {readme} names no `sdk` (e.g. `sdk: gradio`).")
    app_file = card.data.app_file or "app.py"
    if not (space_dir / app_file).is_file():
        raise PublishError(f"{readme} names app_file {app_file!r}, which is not in {space_dir}.")
    return card


def build_space_repo(
    space_dir: str | os.PathLike, output_dir: str | os.PathLike, *, model_repos: list[str]
) -> list[str]:
    """Copy a Space folder into `output_dir` with the `models:` entry of its README front matter set to
    `model_repos`, this package's wheel in `wheels/` and the requirements' hfr-hf line pointing at it; return the
    file names."""
    space_dir, output_dir = Path(space_dir), Path(output_dir)
    if not model_repos:
        raise PublishError("A Space push needs the model repository the Space loads (--model-repo).")
    card = read_space_card(space_dir)
    requirements = space_dir / "requirements.txt"
    if not requirements.is_file():
        raise PublishError(f"{space_dir} has no requirements.txt; the Space installs hfr-hf from it.")
    for path in _space_files(space_dir):
        target = output_dir / path.relative_to(space_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    # The Space carries this package's wheel: hfr-hf is on no package index the Hub installs from.
    wheel = build_package_wheel(output_dir / WHEEL_FOLDER)
    text = point_requirements_at_wheel(requirements.read_text(encoding="utf-8"), f"{WHEEL_FOLDER}/{wheel.name}")
    (output_dir / "requirements.txt").write_text(text, encoding="utf-8")
    card.data.models = list(model_repos)
    card.save(output_dir / "README.md")
    return _file_names(output_dir)
