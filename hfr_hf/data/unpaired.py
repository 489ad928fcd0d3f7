"""Unpaired real target-spectrum images: faces with identities but no visible twins (e.g. the PUJ training people),
drawn as identity-balanced batches for the target identity and distribution alignment losses."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..images import list_images
from .augment import Augment

__all__ = ["UnpairedTargets", "unpaired_target_files"]


def unpaired_target_files(
    root: str | os.PathLike, exclude: set[str] = frozenset()
) -> tuple[list[Path], list[str], str]:
    """
    (files, identities, what) of the real target images under `root`: the folder holding PUJ-T360 / PUJ-FONE gives
    the PUJ split's `train` people only (both cameras; measuring and validation people never), any other folder its
    `<identity>/` sub-folders. `exclude` drops identities (those of the paired set's validation and test splits).
    """
    from .puj import PUJ_CAMERAS, load_puj_split, puj_images

    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"Real target data {root} is not a folder.")
    if any((root / camera).is_dir() for camera in PUJ_CAMERAS):
        train = {p for p, s in load_puj_split().items() if s == "train"} - set(exclude)
        items = [(path, i) for people in puj_images(root, train).values() for i, ps in people.items() for path in ps]
        what = f"PUJ train people ({len(train)}, hfr_hf/data/puj_split.json)"
    else:
        items = [(p, p.parent.name) for d in sorted(root.iterdir()) if d.is_dir() for p in list_images(d)]
        items = [(p, i) for p, i in items if i not in exclude]
        what = f"identity folders of {root}"
    if len({i for _, i in items}) < 2:
        raise ValueError(
            f"Real target data {root} gives {len(items)} images of {len({i for _, i in items})} people; the target "
            "identity loss needs at least two people with two images each."
        )
    return [p for p, _ in items], [i for _, i in items], what


class UnpairedTargets:
    """
    Real target images held in memory as 112×112 uint8 RGB (resized, not aligned: registered crops), and batches of
    `identities_per_batch` people × `images_per_identity` images (drawn with replacement within a person), augmented.
    `batch(step)` is deterministic given the seed and the step.
    """

    def __init__(
        self,
        files: list[Path],
        identities: list[str],
        size: int = 112,
        batch_size: int = 32,
        images_per_identity: int = 4,
        augment: Augment | None = None,
        seed: int = 0,
        source: str = "",
    ) -> None:
        from ..images import load_image
        from .renderers import to_uint8_rgb

        self.images = [
            cv2.resize(to_uint8_rgb(load_image(f)), (size, size), interpolation=cv2.INTER_AREA) for f in files
        ]
        self.identities = list(identities)
        self.people: dict[str, list[int]] = {}
        for n, identity in enumerate(self.identities):
            self.people.setdefault(identity, []).append(n)
        self.names = sorted(self.people)
        self.per_identity = max(2, images_per_identity)
        self.identities_per_batch = max(2, min(len(self.names), batch_size // self.per_identity))
        self.augment, self.seed, self.source = augment, seed, source  # source: where they came from, for reports

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, step: int) -> tuple[list[np.ndarray], list[str]]:
        """(images, identities) of one batch."""
        rng = np.random.default_rng([self.seed, 7, step])
        chosen = rng.choice(len(self.names), self.identities_per_batch, replace=False)
        images, ids = [], []
        for k in chosen:
            name = self.names[int(k)]
            for n in rng.choice(self.people[name], self.per_identity, replace=True):
                image = self.images[int(n)]
                images.append(self.augment(image, rng) if self.augment is not None else image)
                ids.append(name)
        return images, ids
