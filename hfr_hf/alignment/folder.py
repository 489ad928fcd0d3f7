"""Align every image of a folder tree into a mirrored tree of PNG crops, with a CSV of what happened."""

from __future__ import annotations

import csv
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image
from tqdm.auto import tqdm

from ..images import IMAGE_SUFFIXES
from .aligner import AlignedFace, AlignmentError, FaceAligner

__all__ = ["FolderAlignmentReport", "align_folder", "aligned_crop_names", "read_landmarks_csv"]

CSV_NAME = "alignment.csv"
_POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
CSV_COLUMNS = ["path", "face", "status", "reason", "source", "output", "score", "x1", "y1", "x2", "y2"] + [
    f"{p}_{axis}" for p in _POINTS for axis in ("x", "y")
]


@dataclass
class FolderAlignmentReport:
    aligned: list[str] = field(default_factory=list)  # relative paths of source images with ≥ 1 face written
    failed: dict[str, str] = field(default_factory=dict)  # relative path → reason
    csv_path: Path | None = None


def read_landmarks_csv(path: str | os.PathLike) -> dict[str, list[float]]:
    """Landmarks from annotations: a CSV with a `path` column (relative to the source folder) and either
    ten columns x1, y1, …, x5, y5 (eyes, nose, mouth corners, image-left first) or four (two eye centres)."""
    from ..files import read_csv_rows

    header, *rows = read_csv_rows(path, "Landmark file") or [[]]
    if not header or header[0].strip() != "path":
        raise ValueError(f"{path}: the first column must be 'path', followed by 4 or 10 coordinates.")
    table = {}
    for line, row in enumerate(rows, start=2):
        if len(row) not in (5, 11):
            raise ValueError(f"{path}:{line}: expected a path and 4 or 10 coordinates, got {len(row)} fields.")
        try:
            values = [float(v) for v in row[1:]]
        except ValueError as error:
            raise ValueError(f"{path}:{line}: {error}.") from None
        if not all(map(math.isfinite, values)):
            raise ValueError(f"{path}:{line}: the coordinates must be finite numbers, not NaN or infinity.")
        if row[0] in table:
            raise ValueError(f"{path}:{line}: {row[0]} already has landmarks on an earlier line; give each image once.")
        table[row[0]] = values
    return table


def _preferred_name(relative: str) -> str:
    path = PurePosixPath(relative)
    return f"{path.with_suffix('') if path.suffix.lower() in IMAGE_SUFFIXES else path}.png"


def _clashing(names: dict[str, str]) -> set[str]:
    """Inputs whose output name is another's, or is (or, as `_face<k>`, could be) a folder another output needs."""
    owners = defaultdict(list)
    for relative, name in names.items():
        owners[name].append(relative)
    folders = {str(parent) for name in names.values() for parent in PurePosixPath(name).parents}
    folders |= {f"{m[1]}.png" for f in folders if (m := re.fullmatch(r"(.*)_face\d+\.png", f))}
    return {r for group in owners.values() if len(group) > 1 for r in group} | {
        r for r, name in names.items() if name in folders
    }


def aligned_crop_names(relatives: Iterable[str]) -> dict[str, str]:
    """The output name of each input's crop (relative POSIX paths → relative POSIX paths ending `.png`), one
    distinct name per input: an image suffix is replaced (`a.jpg` → `a.png`), any other suffix is part of the
    name (Yale's `subject01.glasses` → `subject01.glasses.png`), and inputs that would still share a name keep
    their full name (`a.jpg` and `a.png` → `a.jpg.png` and `a.png.png`). With `select="all"` crop k of `x.png`
    is `x_face<k>.png`: distinct names give distinct face names, since k holds no `_face`. Raises `ValueError`
    when some names cannot be told apart even so."""
    names = {relative: _preferred_name(relative) for relative in relatives}
    while clashing := _clashing(names):
        # each round moves at least one input to its full name for good, so this ends
        stuck = sorted(r for r in clashing if names[r] == f"{r}.png")
        if len(stuck) == len(clashing):
            raise ValueError(
                f"The crops of {', '.join(stuck)} cannot get distinct output names (one would be a folder another "
                "crop needs); rename those inputs."
            )
        names.update((r, f"{r}.png") for r in clashing if names[r] != f"{r}.png")
    return names


def _face_name(name: str, k: int) -> str:
    return f"{name.removesuffix('.png')}_face{k}.png"


def _row(relative: str, index: int, face: AlignedFace | None, output: str = "", reason: str = "") -> dict:
    row = dict.fromkeys(CSV_COLUMNS, "")
    row.update(path=relative, face=index, status="failed" if face is None else "aligned", reason=reason)
    if face is not None:
        row.update(source=face.source, output=output, score="" if face.score is None else f"{face.score:.4f}")
        if face.box is not None:
            row.update(zip(("x1", "y1", "x2", "y2"), (f"{v:.2f}" for v in face.box)))
        names = [f"{p}_{axis}" for p in _POINTS[: len(face.landmarks)] for axis in ("x", "y")]
        row.update(zip(names, (f"{v:.2f}" for v in face.landmarks.reshape(-1))))
    return row


def align_folder(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    aligner: FaceAligner | None = None,
    landmarks: dict[str, list[float]] | None = None,
    twins: str | os.PathLike | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> FolderAlignmentReport:
    """Align the images under `source` into PNGs at the same relative paths under `destination`
    (`name.png`, or `name_face<k>.png` when all faces are kept; names from [`aligned_crop_names`], one per input)
    and write `alignment.csv` there.

    `landmarks` (relative path → coordinates) aligns those images without detection; `twins` is a folder of
    pixel-registered visible images at the same relative paths, whose detected landmarks align the source
    images (thermal/NIR). Failures are reported per image and in the CSV; they never stop the batch.
    """
    from ..images import list_images

    source, destination = Path(source), Path(destination)
    if destination.resolve() == source.resolve() or source.resolve() in destination.resolve().parents:
        raise ValueError(f"The destination {destination} must not be inside the source folder {source}.")
    aligner = aligner or FaceAligner()
    paths = list_images(source)
    if not paths:
        raise ValueError(f"No images found under {source}.")
    landmarks = landmarks or {}
    report = FolderAlignmentReport()
    rows = []

    relatives = [p.relative_to(source).as_posix() for p in paths]
    names = aligned_crop_names(relatives)  # all decided before anything is written

    def record(relative: str, result: list[AlignedFace] | AlignmentError) -> None:
        if isinstance(result, Exception):
            report.failed[relative] = str(result)
            rows.append(_row(relative, 0, None, reason=str(result)))
            return
        for k, face in enumerate(result):
            name = names[relative] if len(result) == 1 and aligner.select != "all" else _face_name(names[relative], k)
            out = destination / name
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(face.crop).save(out)
            rows.append(_row(relative, k, face, output=name))
        report.aligned.append(relative)

    detect = []
    for path, relative in zip(paths, relatives):
        try:
            if relative in landmarks:
                record(relative, [aligner.from_landmarks(path, landmarks[relative])])
            elif twins is not None:
                twin = Path(twins) / relative
                if not twin.is_file():
                    raise AlignmentError(f"No registered visible twin at {twin}.")
                record(relative, [aligner.align_registered_pair(twin, path)[1]])
            else:
                detect.append((path, relative))
        except (ValueError, OSError) as error:
            record(relative, AlignmentError(str(error)))

    for start in tqdm(range(0, len(detect), batch_size), desc="aligning", unit="batch", disable=not progress):
        chunk = detect[start : start + batch_size]
        for (_, relative), result in zip(chunk, aligner.detect_and_align([p for p, _ in chunk])):
            record(relative, result)

    destination.mkdir(parents=True, exist_ok=True)
    report.csv_path = destination / CSV_NAME
    with open(report.csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["path"], r["face"])))
    return report
