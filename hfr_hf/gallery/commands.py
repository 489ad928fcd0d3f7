"""The gallery's workflows as the command line (and the Space) call them: enrol a list of images, identify image
files, write the ranked candidates as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..files import write_atomic
from .enrolment import Embedder, read_enrolment_list
from .store import POINTER, Gallery, GalleryError

__all__ = ["EnrolmentReport", "enroll", "enroll_shards", "identify", "open_or_create", "write_identifications"]


@dataclass
class EnrolmentReport:
    gallery: Gallery
    enrolled: int
    skipped: list[str] = field(default_factory=list)


def open_or_create(path: str | os.PathLike, embedder: Embedder, fusion: str = "max", sources: dict | None = None):
    """The gallery in `path`, or a new one for this embedder when there is none yet."""
    if (Path(path) / POINTER).exists():
        return Gallery.open(path)
    return Gallery.create(path, embedder.fingerprint, embedder.embedding_size, fusion=fusion, sources=sources)


def enroll(
    source: str | os.PathLike,
    embedder: Embedder,
    gallery: str | os.PathLike,
    spectrum: str = "visible",
    skip_unusable: bool = False,
    batch_size: int = 64,
    sources: dict | None = None,
    fusion: str = "max",
) -> EnrolmentReport:
    """Embed the images of `source` (a folder per person or a CSV, see `read_enrolment_list`) and add them to the
    gallery in `gallery` (created when missing). Images that cannot be used raise one `UnusableImagesError` naming
    all of them before anything is written, or are skipped and listed with `skip_unusable`."""
    listed = read_enrolment_list(source, spectrum)
    target = Path(gallery)
    if (target / POINTER).exists():
        Gallery.open(target).check_fingerprint(embedder.fingerprint)  # refuse before spending time embedding
    vectors, used, skipped = embedder.embed(listed.paths, batch_size, skip_unusable=skip_unusable)
    if not used:
        raise GalleryError(f"None of the {len(listed.paths)} images of {source} could be used; nothing was enrolled.")
    store = open_or_create(target, embedder, fusion, sources)
    pick = lambda values: [values[i] for i in used]  # noqa: E731
    store = store.add(
        pick(listed.identities),
        [str(p) for p in pick(listed.paths)],
        vectors,
        embedder.fingerprint,
        pick(listed.spectra),
    )
    return EnrolmentReport(store, len(used), skipped)


def enroll_shards(
    shards: str | os.PathLike, gallery: str | os.PathLike, sources: dict | None = None, fusion: str = "max"
) -> EnrolmentReport:
    """Add a complete shard folder (scripts/embed.py, `hfr-hf embed --output FOLDER`) to the gallery in `gallery`
    (created when missing), refusing shards of another model."""
    from .shards import read_shards

    manifest, listed, vectors, failed = read_shards(shards)
    fingerprint = manifest["fingerprint"]
    target = Path(gallery)
    if (target / POINTER).exists():
        store = Gallery.open(target)
    else:
        store = Gallery.create(target, fingerprint, manifest["embedding_size"], fusion=fusion, sources=sources)
    store = store.add(listed.identities, [str(p) for p in listed.paths], vectors, fingerprint, listed.spectra)
    return EnrolmentReport(store, len(vectors), failed)


def identify(
    probes: list[Path],
    embedder: Embedder,
    gallery: Gallery,
    top_k: int = 5,
    fusion: str | None = None,
    fpir: float | None = None,
    threshold: float | None = None,
    batch_size: int = 64,
) -> list[dict]:
    """One record per probe: its path, the decision ("not enrolled" below the threshold) and the ranked
    candidates with their scores."""
    gallery.check_fingerprint(embedder.fingerprint)
    vectors, _, _ = embedder.embed(probes, batch_size)
    results = gallery.search(vectors, embedder.fingerprint, top_k, fusion, threshold, fpir)
    rows = []
    for probe, result in zip(probes, results):
        rows.append(
            {
                "probe": str(probe),
                "identity": result.identity if result.identity is not None else "not enrolled",
                "threshold": result.threshold,
                "candidates": [{"rank": r + 1, **vars(c)} for r, c in enumerate(result.candidates)],
            }
        )
    return rows


def write_identifications(rows: list[dict], output: str | os.PathLike | None) -> str:
    """The rows as JSON (`output` ending in .json) or CSV (one line per probe and candidate); written atomically
    to `output`, or returned as text when `output` is None."""
    if output is not None and Path(output).suffix not in (".csv", ".json"):
        raise ValueError(f"--output must end in .csv or .json, got {Path(output).name}.")
    if output is not None and Path(output).suffix == ".json":
        text = json.dumps(rows, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["probe", "decision", "rank", "identity", "score", "enrolled_image"])
        for row in rows:
            for c in row["candidates"]:
                writer.writerow(
                    [row["probe"], row["identity"], c["rank"], c["identity"], f"{c['score']:.6f}", c["path"]]
                )
        text = buffer.getvalue()
    if output is not None:
        write_atomic(output, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return text
