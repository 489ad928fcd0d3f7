"""Files that appear whole or not at all: written beside their destination, then renamed onto it; and the one
reader of the small CSV files users hand in (protocols, score files, landmarks), whose failures are sentences."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TMP_PREFIX", "read_csv_rows", "read_text", "write_atomic", "write_json"]

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


def read_text(path: str | os.PathLike, what: str = "File") -> str:
    """A UTF-8 text file (a byte-order mark is dropped); FileNotFoundError / ValueError with a sentence."""
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist.") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a folder, not a file.") from None
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} {path} is not UTF-8 text (byte {error.start} is {error.object[error.start : error.start + 1]!r}); "
            "save it as UTF-8."
        ) from None


def read_csv_rows(path: str | os.PathLike, what: str = "CSV file") -> list[list[str]]:
    """The rows of a UTF-8 CSV file, blank lines left out; malformed CSV (a NUL byte, a stray quote at the end, a
    field over csv's size limit) raises a ValueError naming the line."""
    text = read_text(path, what)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            if row:
                rows.append(row)
    except csv.Error as error:
        raise ValueError(f"{what} {path} line {reader.line_num} is not valid CSV ({error}).") from None
    return rows
