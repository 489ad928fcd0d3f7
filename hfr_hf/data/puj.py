"""The real LWIR faces of PUJ-T360 and PUJ-FONE (two cameras, the same 40 people, `Sxx` ids) and the one identity
split of those people that training, evaluation and the benchmarks all use.

The split lives in the package (`puj_split.json`) so that it never changes between runs: `test` people are kept for
measuring and never reach a training batch, `validation` people choose adapters and settings, `train` people are
unpaired real target data. [`choose_puj_split`] is the rule that made it, kept so a test can check the file.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from ..images import list_images

__all__ = ["PUJ_CAMERAS", "PUJ_SPLIT_COUNTS", "choose_puj_split", "load_puj_split", "puj_images"]

PUJ_CAMERAS = ("puj_t360", "puj_fone")
_FOLDERS = ("GalleryPristine", "ProbePristine", "ProbeNPristine")
# 20 measuring people give ~100 images per camera (~200 genuine / ~4,800 impostor pairs); 5 choose settings.
PUJ_SPLIT_COUNTS = {"test": 20, "validation": 5, "train": 15}
PUJ_SPLIT_SEED = 14


def puj_images(root: str | os.PathLike, identities=None) -> dict[str, dict[str, list[Path]]]:
    """camera → identity → sorted image files under `root` (the folder holding `puj_t360/` and `puj_fone/`),
    gallery, probe and never-enrolled images pooled; only `identities` when given."""
    root = Path(root)
    missing = [camera for camera in PUJ_CAMERAS if not (root / camera).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{root} has no {' or '.join(missing)} folder; give the folder that holds puj_t360/ and puj_fone/ "
            "(e.g. ../shared/assets/thermal)."
        )
    wanted = None if identities is None else set(identities)
    out: dict[str, dict[str, list[Path]]] = {}
    for camera in PUJ_CAMERAS:
        people: dict[str, list[Path]] = {}
        for folder in _FOLDERS:
            if (root / camera / folder).is_dir():
                for path in list_images(root / camera / folder):
                    identity = path.name.split("_")[0]
                    if wanted is None or identity in wanted:
                        people.setdefault(identity, []).append(path)
        out[camera] = {i: sorted(people[i]) for i in sorted(people)}
    return out


def choose_puj_split(enrolled: dict[str, set[str]], seed: int = PUJ_SPLIT_SEED) -> dict[str, str]:
    """
    identity → test / validation / train. `enrolled` is camera → the people enrolled there (gallery folder). People
    are grouped by where they are enrolled (both cameras, one, neither), shuffled within a group (seeded), and dealt
    round-robin from the groups, so every split holds enrolled and never-enrolled people of both cameras; the first
    `PUJ_SPLIT_COUNTS["test"]` dealt are test, then validation, then train.
    """
    people = sorted(set().union(*enrolled.values()) | {f"S{n:02d}" for n in range(1, 41)})
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[str]] = {}
    for person in people:
        groups.setdefault(tuple(person in enrolled[c] for c in sorted(enrolled)), []).append(person)
    queues = [list(rng.permutation(groups[key])) for key in sorted(groups)]
    dealt = []
    while any(queues):
        for queue in queues:
            if queue:
                dealt.append(str(queue.pop(0)))
    split, start = {}, 0
    for name, count in PUJ_SPLIT_COUNTS.items():
        split.update({person: name for person in dealt[start : start + count]})
        start += count
    return dict(sorted(split.items()))


def load_puj_split() -> dict[str, str]:
    """The project's PUJ identity split (identity → test / validation / train), from the package data."""
    return json.loads(resources.files(__package__).joinpath("puj_split.json").read_text())["split"]
