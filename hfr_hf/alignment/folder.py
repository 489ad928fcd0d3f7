"""Align every image of a folder tree into a mirrored tree of PNG crops, with a CSV of what happened."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from .aligner import AlignedFace, AlignmentError, FaceAligner

__all__ = ["FolderAlignmentReport", "align_folder", "read_landmarks_csv"]

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
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or header[0].strip() != "path":
            raise ValueError(f"{path}: the first column must be 'path', followed by 4 or 10 coordinates.")
        table = {}
        for line, row in enumerate(reader, start=2):
            if len(row) not in (5, 11):
                raise ValueError(f"{path}:{line}: expected a path and 4 or 10 coordinates, got {len(row)} fields.")
            try:
                table[row[0]] = [float(v) for v in row[1:]]
            except ValueError as error:
                raise ValueError(f"{path}:{line}: {error}.") from None
    return table


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
    (`name.png`, or `name_face<k>.png` when all faces are kept) and write `alignment.csv` there.

    `landmarks` (relative path → coordinates) aligns those images without detection; `twins` is a folder of
    pixel-registered visible images at the same relative paths, whose detected landmarks align the source
    images (thermal/NIR). Failures are reported per image and in the CSV; they never stop the batch.
    """
    from ..inference import list_images

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

    def record(relative: str, result: list[AlignedFace] | AlignmentError) -> None:
        if isinstance(result, Exception):
            report.failed[relative] = str(result)
            rows.append(_row(relative, 0, None, reason=str(result)))
            return
        stem = Path(relative).with_suffix("")
        for k, face in enumerate(result):
            name = f"{stem}.png" if len(result) == 1 and aligner.select != "all" else f"{stem}_face{k}.png"
            out = destination / name
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(face.crop).save(out)
            rows.append(_row(relative, k, face, output=name))
        report.aligned.append(relative)

    relatives = [p.relative_to(source).as_posix() for p in paths]
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
