"""Real-thermal measures on PUJ-T360 and PUJ-FONE: what an adapter trained on renders does to real LWIR faces.

On the measuring people of the PUJ split only (`hfr_hf.data.puj`, `test`, never in training):

- per camera, thermal→thermal verification over all pairs of the camera's images (EER, AUC, TAR@FAR) and
  identification with each person's first two images (by name) as the gallery and the others as probes;
- across cameras, every PUJ-FONE image as a probe against a PUJ-T360 gallery of all the person's T360 images
  (rank-1, rank-5), and verification over all FONE × T360 pairs.

The PUJ images are registered face crops (206×240), so they are resized, not aligned (`align="never"`), unless an
aligner is given (the cross-spectral detector, `FaceAligner(spectrum="thermal", ...)`): then each image's detected
face is aligned, and the images where it finds none are resized as before (counted in `alignment`).
[`write_puj_protocols`] writes the same lists as CSV files for `hfr-hf evaluate`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .identification import identification_metrics
from .protocols import write_identification_protocol, write_verification_protocol
from .verification import all_pairs_scores, verification_metrics

__all__ = [
    "REAL_THERMAL_FARS",
    "aligned_or_resized",
    "real_thermal_metrics",
    "real_thermal_protocols",
    "write_puj_protocols",
]

REAL_THERMAL_FARS = (1e-2, 1e-3)
GALLERY_IMAGES = 2  # per person and camera; the rest of the person's images are probes


def _people(split: str | None) -> list[str] | None:
    from ..data.puj import load_puj_split

    if split is None:
        return None
    return sorted(p for p, s in load_puj_split().items() if s == split)


def real_thermal_protocols(root: str | os.PathLike, split: str | None = "test") -> dict[str, dict]:
    """
    The lists of the measures, as {name: {"kind", "rows"}}, rows in `hfr_hf.evaluation.protocols`' tuple forms
    (paths are `Path`s under `root`): `<camera>_verification` and `<camera>_identification` per camera,
    `cross_identification` (FONE probes vs T360 gallery) and `cross_verification`. `split=None`: all 40 people.
    """
    from ..data.puj import puj_images

    images = puj_images(root, _people(split))
    out: dict[str, dict] = {}
    for camera, people in images.items():
        files = [(path, person) for person, paths in people.items() for path in paths]
        pairs = [(a, b, pa == pb) for i, (a, pa) in enumerate(files) for b, pb in files[i + 1 :]]  # all unordered pairs
        out[f"{camera}_verification"] = {"kind": "verification", "rows": pairs}
        ident = []
        for person, paths in people.items():
            if len(paths) <= GALLERY_IMAGES:
                continue  # no probe left: the person is not in this camera's identification
            ident += [(p, person, "thermal", "gallery") for p in paths[:GALLERY_IMAGES]]
            ident += [(p, person, "thermal", "probe") for p in paths[GALLERY_IMAGES:]]
        out[f"{camera}_identification"] = {"kind": "identification", "rows": ident}
    t360, fone = images["puj_t360"], images["puj_fone"]
    both = sorted(set(t360) & set(fone))
    cross = [(p, person, "thermal", "gallery") for person in both for p in t360[person]]
    cross += [(p, person, "thermal", "probe") for person in both for p in fone[person]]
    out["cross_identification"] = {"kind": "identification", "rows": cross}
    out["cross_verification"] = {
        "kind": "verification",
        "rows": [(a, b, pa == pb) for pa in both for a in fone[pa] for pb in both for b in t360[pb]],
    }
    return out


def write_puj_protocols(
    root: str | os.PathLike, output: str | os.PathLike, relative_to: str | os.PathLike | None = None, split="test"
) -> list[Path]:
    """Write the measures' lists as `puj_<camera or cross>_<kind>.csv` under `output`, paths relative to `relative_to` (default
    `root`), for `hfr-hf evaluate --root <relative_to> --no-align`."""
    base = Path(relative_to or root)
    written = []
    for name, protocol in real_thermal_protocols(root, split).items():
        name = name.removeprefix("puj_")  # puj_t360_verification, puj_cross_identification, ...
        rel = lambda path: str(Path(path).relative_to(base))  # noqa: E731
        if protocol["kind"] == "identification":
            rows = [(rel(path), *rest) for path, *rest in protocol["rows"]]
            written.append(write_identification_protocol(Path(output) / f"puj_{name}.csv", rows))
        else:
            rows = [(rel(a), rel(b), label) for a, b, label in protocol["rows"]]
            written.append(write_verification_protocol(Path(output) / f"puj_{name}.csv", rows))
    return written


def _verification(genuine, impostor) -> dict:
    v = verification_metrics(genuine, impostor, REAL_THERMAL_FARS)
    keep = ("auc", "eer", "tar_at_far", "genuine_pairs", "impostor_pairs", "genuine_mean", "impostor_mean")
    return {k: v[k] for k in keep}


def real_thermal_metrics(
    model,
    processor,
    root: str | os.PathLike,
    split: str | None = "test",
    batch_size: int = 64,
    progress=False,
    aligner=None,
) -> dict:
    """
    `{"puj_t360": {...}, "puj_fone": {...}, "cross": {...}, "people": n}` for `model` on the PUJ people of `split`
    under `root` (the folder holding `puj_t360/` and `puj_fone/`): per camera verification (all pairs) plus
    identification rank-1; across cameras rank-1 / rank-5 of FONE probes in the T360 gallery and the EER of all
    FONE × T360 pairs. Every image is embedded once: resized, or aligned by `aligner` where it finds a face
    (`"alignment"` then counts them).
    """
    from ..data.puj import puj_images
    from ..inference import embed_images

    images = puj_images(root, _people(split))
    files = [p for people in images.values() for paths in people.values() for p in paths]
    inputs, alignment = aligned_or_resized(files, aligner) if aligner is not None else (files, None)
    vectors = dict(zip(files, embed_images(model, processor, inputs, batch_size, progress=progress, align="never")))
    out: dict = {"people": len(set(images["puj_t360"]) | set(images["puj_fone"])), "images": len(files)}
    if alignment:
        out["alignment"] = alignment
    protocols = real_thermal_protocols(root, split)
    for camera, people in images.items():
        paths = [p for ps in people.values() for p in ps]
        ids = [person for person, ps in people.items() for _ in ps]
        emb = np.stack([vectors[p] for p in paths])
        metrics = _verification(*all_pairs_scores(emb @ emb.T, ids))
        metrics.update(_identification(protocols[f"{camera}_identification"]["rows"], vectors))
        out[camera] = metrics
    t360 = [(p, i) for i, ps in images["puj_t360"].items() for p in ps]
    fone = [(p, i) for i, ps in images["puj_fone"].items() for p in ps]
    similarity = np.stack([vectors[p] for p, _ in fone]) @ np.stack([vectors[p] for p, _ in t360]).T
    same = np.array([i for _, i in fone])[:, None] == np.array([i for _, i in t360])[None, :]
    out["cross"] = {
        **_verification(similarity[same], similarity[~same]),
        **_identification(protocols["cross_identification"]["rows"], vectors),
    }
    return out


def aligned_or_resized(files: list[Path], aligner) -> tuple[list, dict]:
    """Each file's face crop aligned by `aligner` where it finds one, else the file itself (resized when
    embedded), and how many were aligned."""
    results = aligner.detect_and_align(list(files))
    inputs = [file if isinstance(found, Exception) else found[0].crop for file, found in zip(files, results)]
    aligned = sum(not isinstance(found, Exception) for found in results)
    spectrum = getattr(aligner, "spectrum", None)
    return inputs, {
        "spectrum": spectrum,
        "detector": str(getattr(aligner, "detector_weights", None) or ""),
        "aligned": aligned,
        "resized": len(files) - aligned,
    }


def _identification(rows: list[tuple], vectors: dict) -> dict:
    gallery = [(p, i) for p, i, _, s in rows if s == "gallery"]
    probes = [(p, i) for p, i, _, s in rows if s == "probe"]
    similarity = np.stack([vectors[p] for p, _ in probes]) @ np.stack([vectors[p] for p, _ in gallery]).T
    m = identification_metrics(similarity, [i for _, i in probes], [i for _, i in gallery], ks=(1, 5))
    return {"rank1": m["rank1"], "rank5": m["rank5"], "probes": m["probes"], "gallery": m["gallery_identities"]}
