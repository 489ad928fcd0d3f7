"""Push a built repository to the Hugging Face Hub with `HfApi`: create the repository, then one commit of all files.

`dry_run=DIR` writes exactly the files a push would upload and contacts nothing. The token comes from where
huggingface_hub looks by itself (`HF_TOKEN`, the login cache of `hf auth login`) unless one is given.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from .reports import load_report
from .repos import SPACE_MODEL_VARIABLE, PublishError, build_model_repo, build_space_repo, read_space_card

__all__ = ["HubError", "PushResult", "push_model", "push_space", "validate_repo_ids"]


class HubError(OSError):
    """The Hub could not be reached, or refused the request."""


@dataclass(frozen=True)
class PushResult:
    """What was pushed (or, for a dry run, written): repository, type, files, and where to see them."""

    repo_id: str
    repo_type: str
    files: list[str]
    url: str | None = None
    dry_run_dir: Path | None = None


def validate_repo_ids(**repo_ids: str | None) -> None:
    """Check every given repository id (`name` or `namespace/name`) before anything else is done."""
    for option, repo_id in repo_ids.items():
        if repo_id is None:
            continue
        try:
            validate_repo_id(repo_id)
        except HFValidationError as error:
            raise PublishError(
                f"{option.replace('_', ' ')} {repo_id!r} is not a valid Hub repository id: use 'name' or "
                "'namespace/name' with letters, digits, '-', '_' and '.' only (no '--' or '..', at most 96 "
                "characters)."
            ) from error


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection errors of the HTTP client huggingface_hub uses (httpx2 in 2.x, httpx in 1.x, requests before)."""
    errors: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


@contextmanager
def _hub_errors(action: str) -> Iterator[None]:
    """Turn huggingface_hub's network failures into one sentence (`HubError`)."""
    try:
        yield
    except OfflineModeIsEnabled as error:
        raise HubError(
            f"Cannot {action}: the Hugging Face Hub is unreachable because offline mode is on (HF_HUB_OFFLINE=1); "
            "unset it to push, or use --dry-run DIR to write the files without pushing."
        ) from error
    except HfHubHTTPError as error:
        status = error.response.status_code if getattr(error, "response", None) is not None else "no status"
        detail = (error.server_message or str(error).splitlines()[0]).strip().rstrip(".")
        raise HubError(
            f"The Hugging Face Hub refused to {action} (HTTP {status}: {detail}); check the token (HF_TOKEN, "
            "`hf auth login` or --token) and that it may write to this namespace."
        ) from error
    except _transport_errors() as error:
        raise HubError(
            f"Cannot {action}: the Hugging Face Hub did not answer ({type(error).__name__}: {error})."
        ) from error


def _prepare_dry_run(dry_run: str | os.PathLike) -> Path:
    target = Path(dry_run).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:  # an empty one would be removed and replaced under the user's feet
        raise PublishError(f"Dry-run folder {target} is the current folder or one above it; choose a new sub-folder.")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise PublishError(f"Dry-run folder {target} exists and is not empty; choose a new or empty folder.")
    return target


def _build_and_push(
    build: Callable[[Path], list[str]],
    repo_id: str,
    repo_type: str,
    *,
    private: bool,
    revision: str | None,
    token: str | None,
    commit_message: str,
    dry_run: str | os.PathLike | None,
    create_repo_kwargs: dict | None = None,
    after_commit: Callable[[HfApi], None] | None = None,
) -> PushResult:
    """Build the files into a temporary folder (every input check happens there), then either move that folder to
    the dry-run location or create the repository and push all files in one commit."""
    target = _prepare_dry_run(dry_run) if dry_run is not None else None
    parent = target.parent if target is not None else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".hfr-hf-push.", dir=parent))
    try:
        files = build(staging)
        if target is not None:
            if target.exists():
                target.rmdir()
            staging.rename(target)
            return PushResult(repo_id, repo_type, files, dry_run_dir=target)
        api = HfApi(token=token)
        with _hub_errors(f"create the {repo_type} repository {repo_id}"):
            # private=None leaves the visibility to the namespace's default (public unless the organisation says)
            api.create_repo(
                repo_id, repo_type=repo_type, private=private or None, exist_ok=True, **(create_repo_kwargs or {})
            )
        if revision and revision != "main":
            with _hub_errors(f"create branch {revision!r} of {repo_id}"):
                api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(staging / name)) for name in files]
        with _hub_errors(f"push {len(files)} files to {repo_id}"):
            info = api.create_commit(
                repo_id, operations, commit_message=commit_message, repo_type=repo_type, revision=revision
            )
        if after_commit is not None:
            after_commit(api)
        return PushResult(repo_id, repo_type, files, url=getattr(info, "commit_url", None))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def push_model(
    repo_id: str,
    model_dir: str | os.PathLike,
    *,
    adapter: str | os.PathLike | None = None,
    merge: bool = False,
    base_repo: str | None = None,
    report: str | os.PathLike | dict | None = None,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    dry_run: str | os.PathLike | None = None,
) -> PushResult:
    """
    Publish a converted EdgeFace (`model_dir`), an adapter trained on it, or the two merged, to `repo_id`.

    Args:
        repo_id: the Hub repository, `namespace/name`.
        model_dir: a model folder from `hfr-hf convert` (the base, when an adapter is given).
        adapter: an adapter folder from `hfr_hf.adapters.save_adapter`; pushes the adapter repository.
        merge: with `adapter`, push EdgeFace with the adapter folded in instead of the adapter.
        base_repo: the base model's repository (required for an adapter: PEFT loads the adapter onto it; for a
            merged model it is the card's `base_model`).
        report: evaluation report (`hfr-hf experiment`'s report.json or `hfr-hf evaluate --report`'s JSON), or its
            dict; its results fill the card's model-index and results table.
        private: create the repository private (an existing repository keeps its visibility).
        revision: branch to commit to (created from main when missing).
        token: Hub token; None lets huggingface_hub read `HF_TOKEN` or the login cache.
        dry_run: write the files into this new (or empty) folder instead of pushing.
    """
    validate_repo_ids(repo_id=repo_id, base_repo=base_repo)
    loaded = load_report(report) if report is not None else None
    what = "merged model" if merge else "adapter" if adapter else "model"
    return _build_and_push(
        lambda folder: build_model_repo(
            model_dir, folder, repo_id=repo_id, adapter_dir=adapter, merge=merge, base_repo=base_repo, report=loaded
        ),
        repo_id,
        "model",
        private=private,
        revision=revision,
        token=token,
        commit_message=commit_message or f"Upload EdgeFace {what} with hfr-hf",
        dry_run=dry_run,
    )


def push_space(
    repo_id: str,
    space_dir: str | os.PathLike,
    *,
    model_repo: str | list[str],
    set_model_variable: bool = True,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    dry_run: str | os.PathLike | None = None,
) -> PushResult:
    """
    Upload a Space folder (`app.py`, `requirements.txt`, `README.md` with `sdk:` front matter) to a Space repository.

    The README's `models:` entry is set to `model_repo` (one id or a list); with `set_model_variable` the Space
    variable `HFR_HF_MODEL`, which the app reads, is set to the first of them.
    """
    model_repos = [model_repo] if isinstance(model_repo, str) else list(model_repo)
    if not model_repos:
        raise PublishError("A Space push needs the model repository the Space loads (--model-repo).")
    validate_repo_ids(repo_id=repo_id, **{f"model_repo {i + 1}": r for i, r in enumerate(model_repos)})
    sdk = read_space_card(space_dir).data.sdk

    def set_variable(api: HfApi) -> None:
        if set_model_variable:
            with _hub_errors(f"set the variable {SPACE_MODEL_VARIABLE} of Space {repo_id}"):
                api.add_space_variable(
                    repo_id,
                    SPACE_MODEL_VARIABLE,
                    model_repos[0],
                    description="Model repository the app loads (set by hfr-hf push --space)",
                )

    return _build_and_push(
        lambda folder: build_space_repo(space_dir, folder, model_repos=model_repos),
        repo_id,
        "space",
        private=private,
        revision=revision,
        token=token,
        commit_message=commit_message or "Upload the EdgeFace HFR demo with hfr-hf",
        dry_run=dry_run,
        create_repo_kwargs={"space_sdk": sdk},
        after_commit=set_variable,
    )
