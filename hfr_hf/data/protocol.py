"""The pseudo-thermal development protocol: AT&T + Yale faces, aligned (cached), split by identity, with
visible/thermal training pairs and evaluation lists for the unseen test identities."""

from __future__ import annotations

import csv
import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset
from PIL import Image
from tqdm.auto import tqdm

from ..evaluation.protocols import write_identification_protocol, write_verification_protocol
from ..images import list_images
from .pairs import build_pair_dataset, pseudo_pair_rows, split_identities
from .renderers import ThermalRenderer

__all__ = ["PseudoThermalProtocol", "build_pseudo_thermal_protocol"]

logger = logging.getLogger(__name__)


@dataclass
class PseudoThermalProtocol:
    """Where the protocol's files are and the training sets (lazy: render with `PairTransform`)."""

    root: Path
    train: Dataset
    validation: Dataset
    identification: Path  # VIS gallery vs synthetic thermal probes, test identities
    verification_vis: Path  # VIS vs VIS pairs, test identities
    verification_cross: Path  # VIS vs synthetic thermal pairs, test identities
    test_pairs: Path  # metadata.csv of the rendered test pairs (load_pairs_csv)
    splits: dict[str, str]  # identity → train / validation / test
    failures: dict[str, str] = field(default_factory=dict)  # source image → why it was left out


def _sources(att: Path | None, yale: Path | None) -> list[tuple[str, Path, bool | None]]:
    """(identity, image, glasses) of every source face; Yale says in the file name whether glasses are on."""
    items = []
    if att is not None:
        for path in list_images(att):
            items.append((f"att_{path.parent.name}", path, None))
    if yale is not None:
        for path in list_images(yale):
            subject, _, condition = path.name.partition(".")
            glasses = {"glasses": True, "noglasses": False}.get(condition)
            items.append((f"yale_{subject.removeprefix('subject')}", path, glasses))
    return items


def _rename_earlier_cache(root: Path, relative: str, earlier: str) -> None:
    """Earlier versions cached `subject01.glasses` as `subject01_glasses.png`: rename that crop and its thermal
    render rather than align again and leave the old file for training, which lists the folder, to read twice."""
    for folder in ("aligned/", "thermal/"):
        old, new = root / earlier.replace("aligned/", folder, 1), root / relative.replace("aligned/", folder, 1)
        if old != new and old.is_file() and not new.exists():
            old.rename(new)


def _align_cached(items, root: Path, aligner, progress: bool) -> tuple[dict, dict[str, str]]:
    """identity → [(relative crop path, glasses)], aligning only what is not cached under root/aligned."""
    from ..alignment import FaceAligner
    from ..alignment.folder import aligned_crop_names

    crops, failures, todo = {}, {}, []
    # the names `hfr-hf align` gives: Yale's `subject01.glasses` keeps its condition (`subject01.glasses.png`)
    names = aligned_crop_names(f"{identity}/{path.name}" for identity, path, _ in items)
    for identity, path, glasses in items:
        relative = f"aligned/{names[f'{identity}/{path.name}']}"
        if path.suffix.lower() not in Image.registered_extensions():  # the one name earlier versions made otherwise
            _rename_earlier_cache(root, relative, f"aligned/{identity}/{path.name.replace('.', '_')}.png")
        if (root / relative).is_file():
            crops.setdefault(identity, []).append((relative, glasses))
        else:
            todo.append((identity, path, glasses, relative))
    if todo:
        aligner = aligner or FaceAligner()
        for start in tqdm(range(0, len(todo), 32), desc="aligning", unit="batch", disable=not progress):
            chunk = todo[start : start + 32]
            for (identity, path, glasses, relative), result in zip(
                chunk, aligner.detect_and_align([c[1] for c in chunk])
            ):
                if isinstance(result, Exception):
                    failures[str(path)] = str(result)
                    continue
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(result[0].crop).save(root / relative)
                crops.setdefault(identity, []).append((relative, glasses))
    for identity in crops:
        crops[identity].sort(key=lambda item: item[0])
    if failures:
        logger.warning("Alignment failed for %d images; they are left out: %s", len(failures), list(failures)[:10])
    return crops, failures


def build_pseudo_thermal_protocol(
    output: str | os.PathLike,
    att: str | os.PathLike | None = None,
    yale: str | os.PathLike | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.1, 0.3),
    impostors_per_genuine: int = 1,
    aligner=None,
    renderer: ThermalRenderer | None = None,
    progress: bool = True,
) -> PseudoThermalProtocol:
    """Build the pseudo-thermal protocol under `output` from AT&T (`att/sN/K.pgm`) and/or Yale
    (`yale/subjectNN.condition`) faces.

    Faces are aligned once (crops cached in `output/aligned`); each source's identities are split
    identity-disjointly (seeded) into train/validation/test. Train and validation come back as lazy pseudo
    pair sets. For the test identities, the first image of each person is the visible gallery and the others
    are rendered as thermal probes (`output/thermal`, seeded, labelled synthetic; rendered again when the renderer's
    settings or the seed differ from those recorded in `output/thermal/renderer.json`), written as
    `identification.csv` (VIS gallery vs thermal probes), `verification_vis.csv` (VIS vs VIS),
    `verification_cross.csv` (VIS vs thermal) in `hfr_hf.evaluation`'s formats, plus `test_pairs.csv`.
    """
    if att is None and yale is None:
        raise ValueError("Give at least one face source: att= (AT&T folders sN/) or yale= (subjectNN.* files).")
    root = Path(output)
    root.mkdir(parents=True, exist_ok=True)
    items = _sources(Path(att) if att else None, Path(yale) if yale else None)
    crops, failures = _align_cached(items, root, aligner, progress)
    for identity in [i for i, c in crops.items() if len(c) < 2]:
        failures[identity] = f"only {len(crops[identity])} aligned image; it cannot be paired or split"
        del crops[identity]
    splits: dict[str, str] = {}
    for k, source in enumerate(("att_", "yale_")):  # split each source on its own: both appear in every split
        ids = sorted(i for i in crops if i.startswith(source))
        if ids:
            splits.update(split_identities(ids, fractions, seed + k))
    (root / "splits.json").write_text(json.dumps(splits, indent=1, sort_keys=True))

    def files(split: str) -> dict[str, list[str]]:
        return {i: [str(root / p) for p, _ in crops[i]] for i in sorted(crops) if splits[i] == split}

    train = build_pair_dataset(pseudo_pair_rows(files("train"), splits, "thermal", seed), lazy=True, seed=seed)
    validation = build_pair_dataset(
        pseudo_pair_rows(files("validation"), splits, "thermal", seed + 1), lazy=True, seed=seed + 1
    )

    renderer = renderer or ThermalRenderer()
    # Cached renders are reused only when the renderer's settings and the seed are those that made them: after a
    # change of either (or a new default renderer) old probes would be measured under the new name.
    made_by = json.dumps(
        {"renderer": type(renderer).__name__, "settings": getattr(renderer, "__dict__", repr(renderer)), "seed": seed},
        sort_keys=True,
        default=list,
    )
    record = root / "thermal" / "renderer.json"
    fresh = record.is_file() and record.read_text() == made_by
    rng = np.random.default_rng(seed)
    ident_rows, gallery, probes, pairs_rows = [], {}, {}, []
    for identity in sorted(i for i in crops if splits[i] == "test"):
        (first, _), *rest = crops[identity]
        gallery[identity] = first
        ident_rows.append((first, identity, "vis", "gallery"))
        for n, (relative, glasses) in enumerate(rest):
            target = relative.replace("aligned/", "thermal/", 1)
            if not (fresh and (root / target).is_file()):
                (root / target).parent.mkdir(parents=True, exist_ok=True)
                crop = np.asarray(Image.open(root / relative).convert("RGB"))
                render_rng = np.random.default_rng([seed, zlib.crc32(identity.encode()), n])
                Image.fromarray(renderer(crop, render_rng, glasses=glasses)).save(root / target)
            probes.setdefault(identity, []).append(target)
            ident_rows.append((target, identity, "thermal", "probe"))
            pairs_rows.append((first, target, identity, "test", "thermal", True))
    if not gallery:
        raise ValueError("No test identity is left; add faces or raise the test fraction.")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(made_by)
    write_identification_protocol(root / "identification.csv", ident_rows)
    with open(root / "test_pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["vis_file", "target_file", "identity", "split", "modality", "synthetic"])
        writer.writerows(pairs_rows)

    people = sorted(gallery)

    def verification(sides_b: dict[str, list[str]]) -> list[tuple]:
        """Genuine: the gallery VIS image with each of the person's `sides_b`; impostors: the same gallery
        image with `impostors_per_genuine` randomly chosen other people's images."""
        rows = []
        for identity in people:
            for b in sides_b[identity]:
                rows.append((gallery[identity], b, 1))
                for _ in range(impostors_per_genuine):
                    other = people[int(rng.integers(len(people)))]
                    while other == identity and len(people) > 1:
                        other = people[int(rng.integers(len(people)))]
                    rows.append((gallery[identity], sides_b[other][int(rng.integers(len(sides_b[other])))], 0))
        return rows

    vis_others = {i: [p for p, _ in crops[i][1:]] for i in people}
    write_verification_protocol(root / "verification_vis.csv", verification(vis_others))
    write_verification_protocol(root / "verification_cross.csv", verification(probes))
    return PseudoThermalProtocol(
        root=root,
        train=train,
        validation=validation,
        identification=root / "identification.csv",
        verification_vis=root / "verification_vis.csv",
        verification_cross=root / "verification_cross.csv",
        test_pairs=root / "test_pairs.csv",
        splits=splits,
        failures=failures,
    )
