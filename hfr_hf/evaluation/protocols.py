"""Evaluation protocols read from CSV files.

Verification pairs: columns `path_a, path_b, label` (label 1/0, true/false, yes/no, same/different,
genuine/impostor), or `path_a, path_b, identity_a, identity_b`; deepface's `file_x, file_y, Decision` is
accepted as is. Identification: columns `path, identity, modality, split` with split `gallery` or `probe`
(e.g. thermal probes against a visible gallery). Both may add a `fold` column; each fold is evaluated on
its own and the report gives mean ± std over folds. Paths are relative to a root folder.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import read_csv_rows

__all__ = [
    "IdentificationProtocol",
    "VerificationProtocol",
    "check_files",
    "read_protocol",
    "write_identification_protocol",
    "write_verification_protocol",
]

_ALIASES = {"file_x": "path_a", "file_y": "path_b", "decision": "label"}
_TRUE = {"1", "true", "yes", "same", "genuine", "y", "t"}
_FALSE = {"0", "false", "no", "different", "impostor", "n", "f", "-1"}


@dataclass
class VerificationProtocol:
    """Pairs to compare; `identity_a`/`identity_b` are given or derived from the labels (see `identities`)."""

    path_a: list[str]
    path_b: list[str]
    labels: np.ndarray  # bool, True = same person
    folds: list[str]
    identity_a: list[str] | None = None
    identity_b: list[str] | None = None
    name: str = "verification"
    kind: str = field(default="verification", init=False)

    def paths(self) -> list[str]:
        return list(dict.fromkeys(self.path_a + self.path_b))

    def identities(self) -> tuple[list[str], list[str]]:
        """Identities for score files: the protocol's, or, without them, the first path for both sides of a
        genuine pair and each path for an impostor pair (so claimed == real exactly for genuine pairs)."""
        if self.identity_a is not None:
            return self.identity_a, self.identity_b
        return self.path_a, [a if same else b for a, b, same in zip(self.path_a, self.path_b, self.labels)]

    def split(self) -> Iterator[tuple[str, VerificationProtocol]]:
        """(fold name, sub-protocol) for every fold, in order of first appearance."""
        folds = np.asarray(self.folds)
        for fold in dict.fromkeys(self.folds):
            keep = np.flatnonzero(folds == fold)
            pick = lambda values, keep=keep: None if values is None else [values[i] for i in keep]  # noqa: E731
            yield (
                fold,
                VerificationProtocol(
                    pick(self.path_a),
                    pick(self.path_b),
                    self.labels[keep],
                    pick(self.folds),
                    pick(self.identity_a),
                    pick(self.identity_b),
                    f"{self.name}[{fold}]",
                ),
            )

    def validate(self) -> None:
        for fold, sub in self.split():
            genuine = int(sub.labels.sum())
            if genuine == 0 or genuine == len(sub.labels):
                raise ValueError(
                    f"Fold {fold!r} of {self.name} has {genuine} genuine and {len(sub.labels) - genuine} impostor "
                    "pairs; verification needs both."
                )


@dataclass
class IdentificationProtocol:
    """Gallery and probe images with identities and modalities."""

    paths: list[str]
    identities: list[str]
    modalities: list[str]
    splits: list[str]  # "gallery" or "probe"
    folds: list[str]
    name: str = "identification"
    kind: str = field(default="identification", init=False)

    def unique_paths(self) -> list[str]:
        return list(dict.fromkeys(self.paths))

    def split(self) -> Iterator[tuple[str, IdentificationProtocol]]:
        folds = np.asarray(self.folds)
        for fold in dict.fromkeys(self.folds):
            keep = np.flatnonzero(folds == fold)
            pick = lambda values, keep=keep: [values[i] for i in keep]  # noqa: E731
            yield (
                fold,
                IdentificationProtocol(
                    pick(self.paths),
                    pick(self.identities),
                    pick(self.modalities),
                    pick(self.splits),
                    pick(self.folds),
                    f"{self.name}[{fold}]",
                ),
            )

    def side(self, split: str) -> tuple[list[str], list[str], list[str]]:
        """(paths, identities, modalities) of the gallery or the probes."""
        rows = [i for i, s in enumerate(self.splits) if s == split]
        return [self.paths[i] for i in rows], [self.identities[i] for i in rows], [self.modalities[i] for i in rows]

    def validate(self) -> None:
        for fold, sub in self.split():
            gallery, probe = sub.side("gallery"), sub.side("probe")
            if not gallery[0] or not probe[0]:
                raise ValueError(
                    f"Fold {fold!r} of {self.name} has {len(gallery[0])} gallery and {len(probe[0])} probe images; "
                    "identification needs both."
                )
            absent = sorted(set(probe[1]) - set(gallery[1]))
            if absent:
                raise ValueError(
                    f"Fold {fold!r} of {self.name}: {len(absent)} probe identities are absent from the gallery "
                    f"({', '.join(absent[:10])}{', ...' if len(absent) > 10 else ''}); add them to the gallery "
                    "or drop their probes."
                )


def _label(value: str, line: int, path: Path) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{path} line {line}: label {value!r} is neither same (1/yes/true) nor different (0/no/false).")


def read_protocol(path: str | os.PathLike) -> VerificationProtocol | IdentificationProtocol:
    """A verification or identification protocol, told apart by the CSV header; validated (both genuine and
    impostor pairs in each fold; gallery and probes in each fold, every probe identity in the gallery)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Protocol {path} does not exist.")
    header, *table = read_csv_rows(path, "Protocol") or [[]]
    if not header:
        raise ValueError(f"Protocol {path} is empty; it needs a CSV header.")
    columns = [_ALIASES.get(c.strip().lower(), c.strip().lower()) for c in header]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ValueError(f"Protocol {path} has the column(s) {', '.join(map(repr, twice))} more than once.")
    rows = []
    for line, row in enumerate(table, start=2):
        if len(row) != len(columns):
            raise ValueError(
                f"Protocol {path}: row {line} has {len(row)} fields, the header {len(columns)}; give every row one "
                "value per column."
            )
        rows.append(dict(zip(columns, (v.strip() for v in row))))
    if not rows:
        raise ValueError(f"Protocol {path} has a header but no rows.")
    folds = [r.get("fold") or "0" for r in rows]
    if {"path_a", "path_b"} <= set(columns):
        if "label" in columns:
            labels = np.array([_label(r["label"], i + 2, path) for i, r in enumerate(rows)])
            ids_a = ids_b = None
            if {"identity_a", "identity_b"} <= set(columns):
                ids_a, ids_b = [r["identity_a"] for r in rows], [r["identity_b"] for r in rows]
        elif {"identity_a", "identity_b"} <= set(columns):
            ids_a, ids_b = [r["identity_a"] for r in rows], [r["identity_b"] for r in rows]
            labels = np.array([a == b for a, b in zip(ids_a, ids_b)])
        else:
            raise ValueError(f"Protocol {path} has pairs but neither a label column nor identity_a/identity_b.")
        protocol = VerificationProtocol(
            [r["path_a"] for r in rows], [r["path_b"] for r in rows], labels, folds, ids_a, ids_b, path.stem
        )
    elif {"path", "identity", "split"} <= set(columns):
        splits = [r["split"].lower() for r in rows]
        wrong = sorted(set(splits) - {"gallery", "probe"})
        if wrong:
            raise ValueError(f"Protocol {path}: split must be gallery or probe, found {', '.join(wrong)}.")
        protocol = IdentificationProtocol(
            [r["path"] for r in rows],
            [r["identity"] for r in rows],
            [r.get("modality") or "" for r in rows],
            splits,
            folds,
            path.stem,
        )
    else:
        raise ValueError(
            f"Protocol {path} has columns {', '.join(columns)}; expected path_a, path_b, label (verification) "
            "or path, identity, modality, split (identification)."
        )
    protocol.validate()
    return protocol


def check_files(paths: list[str], root: str | os.PathLike) -> list[Path]:
    """Resolve paths under `root`; raise one error listing every path that leads outside it (`..`, absolute paths,
    symbolic links out) and one listing every missing file (none is skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"Root folder {root} does not exist.")
    inside = root.resolve()
    resolved, outside, missing = [], [], []
    for p in paths:
        full = root / p
        try:
            # resolve() follows links, so a link under the root that points elsewhere is caught too
            ok = not Path(p).is_absolute() and full.resolve().is_relative_to(inside)
            exists = ok and full.is_file()
        except (OSError, ValueError):  # a NUL byte, a name too long for the file system
            ok = exists = False
        resolved.append(full)
        if not ok:
            outside.append(repr(p))
        elif not exists:
            missing.append(str(p))
    if outside:
        raise ValueError(
            f"{len(outside)} of {len(paths)} protocol paths are not inside the root folder {root} (absolute, climbing "
            f"out with .., through a link out, or not a valid file name): {_shown(outside)}; protocol paths must be "
            "relative to the root and stay inside it."
        )
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} protocol images are missing under {root}: {_shown(missing)}."
        )
    return resolved


def _shown(items: list[str], limit: int = 20) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def write_verification_protocol(path: str | os.PathLike, rows: list[tuple]) -> Path:
    """Write `(path_a, path_b, label[, fold])` rows as a verification CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path_a", "path_b", "label", "fold"][: max(3, len(rows[0]))])
        writer.writerows([(a, b, int(bool(label)), *rest) for a, b, label, *rest in rows])
    return path


def write_identification_protocol(path: str | os.PathLike, rows: list[tuple]) -> Path:
    """Write `(path, identity, modality, split[, fold])` rows as an identification CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity", "modality", "split", "fold"][: max(4, len(rows[0]))])
        writer.writerows(rows)
    return path
