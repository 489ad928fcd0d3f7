"""Score files in bob.bio.base's formats, so that results feed bob.measure, bob.bio.base and similar tools.

- four-column text: one line `claimed_id real_id test_label score` per comparison, where claimed_id is the
  identity of the reference (gallery / first image), real_id the identity of the probe and test_label the
  probe's key; a comparison is genuine when claimed_id == real_id. Fields may not contain whitespace.
- CSV: columns `probe_reference_id, probe_subject_id, probe_key, bio_ref_reference_id, bio_ref_subject_id,
  bio_ref_key, score`; genuine when probe_subject_id == bio_ref_subject_id (bob's `split_csv_scores`).

Higher score = more similar, as in bob.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import read_csv_rows, read_text

__all__ = ["CSV_COLUMNS", "Scores", "read_scores", "write_scores"]

CSV_COLUMNS = [
    "probe_reference_id",
    "probe_subject_id",
    "probe_key",
    "bio_ref_reference_id",
    "bio_ref_subject_id",
    "bio_ref_key",
    "score",
]


@dataclass
class Scores:
    """One row per comparison of a probe with a reference."""

    probe_key: list[str]
    probe_subject_id: list[str]
    bio_ref_key: list[str]
    bio_ref_subject_id: list[str]
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.score)

    @property
    def genuine_mask(self) -> np.ndarray:
        return np.asarray(self.probe_subject_id) == np.asarray(self.bio_ref_subject_id)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(genuine, impostor) scores."""
        mask = self.genuine_mask
        return self.score[mask], self.score[~mask]


def _is_csv(path: Path) -> bool:
    return ".csv" in path.suffixes


def write_scores(path: str | os.PathLike, scores: Scores) -> Path:
    """Write a CSV score file when the name contains `.csv`, else the four-column text format; written
    through a temporary file, so a failure leaves nothing half-written."""
    path = Path(path)
    if not np.isfinite(scores.score).all():
        raise ValueError("Scores contain NaN or infinite values; they would not read back as numbers in other tools.")
    csv_format = _is_csv(path)
    if not csv_format:
        fields = scores.probe_key + scores.probe_subject_id + scores.bio_ref_subject_id
        spaced = [f for f in fields if not f or any(c.isspace() for c in f)]
        if spaced:
            raise ValueError(
                f"The four-column score format separates fields by whitespace, but {spaced[0]!r} is empty or "
                "contains whitespace; write a .csv score file instead."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="") as handle:
            if csv_format:
                writer = csv.writer(handle)
                writer.writerow(CSV_COLUMNS)
                for pk, ps, rk, rs, s in zip(
                    scores.probe_key,
                    scores.probe_subject_id,
                    scores.bio_ref_key,
                    scores.bio_ref_subject_id,
                    scores.score,
                ):
                    writer.writerow([pk, ps, pk, rk, rs, rk, repr(float(s))])
            else:
                for pk, ps, rs, s in zip(
                    scores.probe_key, scores.probe_subject_id, scores.bio_ref_subject_id, scores.score
                ):
                    handle.write(f"{rs} {ps} {pk} {float(s)!r}\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_scores(path: str | os.PathLike) -> Scores:
    """Read a score file written by `write_scores` or by bob (four-column text, or CSV by name)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Score file {path} does not exist.")
    probe_key, probe_id, ref_key, ref_id, values = [], [], [], [], []
    if _is_csv(path):
        header, *table = read_csv_rows(path, "CSV score file") or [[]]
        needed = {"probe_subject_id", "bio_ref_subject_id", "score"}
        if not needed <= set(header):
            raise ValueError(f"CSV score file {path} lacks the columns {', '.join(sorted(needed))}.")
        for number, fields in enumerate(table, 2):
            if len(fields) != len(header):
                raise ValueError(f"{path} line {number}: {len(fields)} fields where the header has {len(header)}.")
            row = dict(zip(header, fields))
            probe_key.append(row.get("probe_key") or row.get("probe_reference_id", ""))
            probe_id.append(row["probe_subject_id"])
            ref_key.append(row.get("bio_ref_key") or row.get("bio_ref_reference_id", ""))
            ref_id.append(row["bio_ref_subject_id"])
            values.append(_score(row["score"], path, number))
    else:
        for number, line in enumerate(read_text(path, "Score file").splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 4:
                raise ValueError(f"{path} line {number}: expected 4 fields (claimed_id real_id test_label score).")
            ref_id.append(fields[0])
            probe_id.append(fields[1])
            probe_key.append(fields[2])
            ref_key.append(fields[0])
            values.append(_score(fields[3], path, number))
    return Scores(probe_key, probe_id, ref_key, ref_id, np.array(values, np.float64))


def _score(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path} line {line}: the score {text!r} is not a number.") from None
    if not np.isfinite(value):
        raise ValueError(f"{path} line {line}: the score {text!r} is not a finite number.")
    return value
