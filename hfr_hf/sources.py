"""Where models and weights come from: a local folder, or the Hugging Face Hub — told apart before any network call.

A mistyped folder (`runs/edgeface-xx`) is a valid Hub repository id too; taken for one, it costs a minute of
retries offline and ends in "couldn't connect to huggingface.co", never "no such folder". So a name is a Hub id
only when it looks like one and does not start in a local folder, and the Hub is known to be reachable (or the
files cached) before anything is downloaded.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["hub_download_options", "resolve_model_name"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_PROBE_SECONDS = 3.0


def _hint(path: Path) -> str:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return ""
    near = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir() if p.is_dir()], n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(str(parent / n) for n in near)}?" if near else ""


def _looks_local(name: str) -> bool:
    """A path, not a Hub id: absolute, relative with ./ ../ ~ or a backslash, deeper than namespace/name, or its
    first part is a folder here (`runs/...`)."""
    first = name.split("/", 1)[0]
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or ("/" in name and os.path.isdir(first))
    )


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=_PROBE_SECONDS):
            return True
    except OSError:
        return False


def hub_download_options(repo_id: str, filename: str, what: str) -> dict:
    """Keyword arguments for a Hub download of `filename` from `repo_id` (`local_files_only=True` when only the
    cache can serve it), or a ValueError that says at once why it cannot be had: offline and not cached."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(repo_id, filename), str)
    if constants.HF_HUB_OFFLINE or not _hub_reachable():
        if cached:
            return {"local_files_only": True}
        why = (
            "the Hub is offline (HF_HUB_OFFLINE=1)"
            if constants.HF_HUB_OFFLINE
            else f"{constants.ENDPOINT} cannot be reached"
        )
        raise ValueError(f"{what} {repo_id} is not in the local Hugging Face cache and {why}.")
    return {}


def resolve_model_name(name: str | os.PathLike, what: str = "model") -> tuple[str, dict]:
    """A model folder or a Hub repository id → (name for `from_pretrained`, its keyword arguments). A missing
    folder, or a name that is no Hub id, raises FileNotFoundError / ValueError before any network call."""
    text = os.fspath(name)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is a file, not a {what} folder.")
        return str(path), {}
    if _looks_local(text) or not _REPO_ID.match(text):
        raise FileNotFoundError(f"No {what} folder {text}.{_hint(path)}")
    try:
        return text, hub_download_options(text, "config.json", f"The {what}")
    except ValueError as error:
        raise ValueError(f"{str(error).rstrip('.')}; nor is there a folder {text} here.") from None
