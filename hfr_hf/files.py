"""Files that appear whole or not at all: written beside their destination, then renamed onto it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TMP_PREFIX", "write_atomic", "write_json"]

TMP_PREFIX = ".tmp-"  # one fixed name per destination: a write killed half-way is overwritten by the next one


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` to fill a temporary file in the destination's folder, flush it to disk and rename it onto
    `path`, so that a reader (or a kill) never leaves half a file there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    try:
        write(str(tmp))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """`payload` as indented JSON (numpy scalars and paths as plain values), written atomically."""
    text = json.dumps(payload, indent=2, default=_json_default) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
