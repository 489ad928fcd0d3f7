"""Paired cross-spectral sets as `datasets.Dataset`s: from a CSV/metadata.csv, from per-modality identity
folders, or rendered from visible identity folders; identity-disjoint splits and their check.

Every set has the columns `vis`, `target` (`datasets.Image`), `identity`, `split`, `modality` (of the
target), `synthetic` (True for rendered targets), `seed` (per-row randomness for `PairTransform`), and the
source paths `vis_path`, `target_path`. Lazy pseudo-spectral sets hold `target_source` (the visible image to
render) instead of `target`; `PairTransform` renders it, so an unrendered image is never taken for a target.

Bad input raises a `ValueError`/`FileNotFoundError` that names it, or with `skip_bad=True` is logged,
appended to the caller's `bad_rows` list and left out, never silently used.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Image, Value

from ..images import list_images, load_image

__all__ = [
    "BadRow",
    "add_row_seeds",
    "assign_splits",
    "build_pair_dataset",
    "check_disjoint_splits",
    "load_pairs_csv",
    "pair_features",
    "pairs_from_folders",
    "pseudo_pair_rows",
    "pseudo_pairs_from_folder",
    "split_identities",
]

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validation", "test")


@dataclass
class BadRow:
    """An input row or file that was left out, and why."""

    where: str  # "metadata.csv line 7", an identity or a path
    reason: str


def pair_features(lazy: bool = False) -> Features:
    """The `datasets` features of a paired set (`target_source` instead of `target` when lazy)."""
    return Features(
        {
            "vis": Image(),
            ("target_source" if lazy else "target"): Image(),
            "identity": Value("string"),
            "split": Value("string"),
            "modality": Value("string"),
            "synthetic": Value("bool"),
            "seed": Value("int64"),
            "vis_path": Value("string"),
            "target_path": Value("string"),
        }
    )


def _image_problem(path: Path) -> str | None:
    """Why `path` is not a usable image, or None."""
    try:
        load_image(path)
    except (FileNotFoundError, ValueError) as error:
        return str(error)
    return None


def _readable(paths: Sequence[Path], check_images: bool, bad: list[BadRow]) -> list[Path]:
    """The images of `paths` that open; each one that does not is added to `bad` with its problem."""
    good = []
    for path in paths:
        problem = _image_problem(path) if check_images else None
        if problem:
            bad.append(BadRow(str(path), problem))
        else:
            good.append(path)
    return good


def _report(bad: list[BadRow], skip_bad: bool, bad_rows: list[BadRow] | None, what: str) -> None:
    """Raise for bad input, or log it and hand it to the caller when skipping."""
    if not bad:
        return
    shown = "; ".join(f"{b.where}: {b.reason}" for b in bad[:10]) + (
        f"; ... ({len(bad) - 10} more)" if len(bad) > 10 else ""
    )
    if not skip_bad:
        raise ValueError(
            f"{len(bad)} bad entries in {what}: {shown}. Fix them, or leave them out (--skip_bad in scripts/train.py, skip_bad=True in Python)."
        )
    logger.warning("Leaving out %d bad entries of %s: %s", len(bad), what, shown)
    if bad_rows is not None:
        bad_rows.extend(bad)


def check_disjoint_splits(identities: Sequence[str], splits: Sequence[str]) -> None:
    """Raise a ValueError when an identity appears in more than one split (evaluation on seen people)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for identity, split in zip(identities, splits):
        if split:
            seen[identity].add(split)
    shared = sorted(i for i, s in seen.items() if len(s) > 1)
    if shared:
        details = ", ".join(f"{i} ({'/'.join(sorted(seen[i]))})" for i in shared[:10])
        raise ValueError(
            f"{len(shared)} identities appear in more than one split: {details}"
            f"{', ...' if len(shared) > 10 else ''}. Splits must be identity-disjoint; use split_identities()."
        )


def split_identities(
    identities: Sequence[str],
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    names: Sequence[str] = SPLIT_NAMES,
) -> dict[str, str]:
    """identity → split name; a seeded shuffle of the distinct identities cut by `fractions` (each
    non-empty split gets at least one identity when there are enough)."""
    if len(fractions) != len(names):
        raise ValueError(f"Give one fraction per split name: {len(fractions)} fractions for {len(names)} names.")
    if any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"Split fractions must be non-negative and not all zero, got {list(fractions)}.")
    unique = sorted(set(identities))
    wanted = sum(1 for f in fractions if f > 0)
    if len(unique) < wanted:
        raise ValueError(f"{len(unique)} identities cannot fill {wanted} identity-disjoint splits.")
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    share = np.asarray(fractions, np.float64) / sum(fractions)
    counts = np.floor(share * len(unique)).astype(int)
    counts[(share > 0) & (counts == 0)] = 1
    while counts.sum() > len(unique):  # the minimum of one took too many: shrink the largest
        counts[int(np.argmax(counts))] -= 1
    for i in np.argsort(-share):  # hand out the remainder, largest share first
        if counts.sum() == len(unique):
            break
        counts[i] += 1
    result, start = {}, 0
    for name, count in zip(names, counts):
        result.update(dict.fromkeys(order[start : start + count], name))
        start += count
    return result


def assign_splits(dataset: Dataset, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0) -> Dataset:
    """The dataset with its `split` column set by a seeded identity-disjoint split."""
    mapping = split_identities(dataset["identity"], fractions, seed)
    splits = [mapping[i] for i in dataset["identity"]]
    return (
        dataset.remove_columns("split").add_column("split", splits)
        if "split" in dataset.column_names
        else (dataset.add_column("split", splits))
    )


def add_row_seeds(dataset: Dataset, seed: int = 0) -> Dataset:
    """The dataset with a `seed` column (one distinct, reproducible integer per row) for `PairTransform`."""
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, len(dataset)).tolist()
    if "seed" in dataset.column_names:
        dataset = dataset.remove_columns("seed")
    return dataset.add_column("seed", seeds)


def _row_seeds(count: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, 2**31 - 1, count).tolist()


def build_pair_dataset(rows: list[dict], lazy: bool, seed: int) -> Dataset:
    check_disjoint_splits([r["identity"] for r in rows], [r["split"] for r in rows])
    columns = {name: [r[name] for r in rows] for name in pair_features(lazy) if name != "seed"}
    columns["seed"] = _row_seeds(len(rows), seed)
    return Dataset.from_dict(columns, features=pair_features(lazy))


def load_pairs_csv(
    path: str | os.PathLike,
    skip_bad: bool = False,
    bad_rows: list[BadRow] | None = None,
    check_images: bool = True,
    modality: str = "target",
    seed: int = 0,
) -> Dataset:
    """A paired set from a CSV with columns `vis_file, target_file, identity` and optionally `split`,
    `modality`, `synthetic` (paths relative to the CSV's folder); a folder means its `metadata.csv`.

    Every image is opened once (`check_images`); rows with a missing or unreadable image raise, or with
    `skip_bad` are left out and appended to `bad_rows`. Splits that share identities always raise.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metadata.csv"
    if not path.is_file():
        raise FileNotFoundError(f"Pairs file {path} does not exist.")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("vis_file", "target_file", "identity") if c not in columns]
        if missing:
            raise ValueError(
                f"{path} lacks the column(s) {', '.join(missing)}; a pairs CSV needs vis_file, target_file, identity "
                "(and optionally split, modality, synthetic)."
            )
        raw = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    if not raw:
        raise ValueError(f"{path} has a header but no rows.")
    rows, bad, checked = [], [], {}
    for line, row in enumerate(raw, start=2):
        vis, target = path.parent / row["vis_file"], path.parent / row["target_file"]
        if not row["identity"]:
            bad.append(BadRow(f"{path.name} line {line}", "the identity is empty"))
            continue
        problems = []
        for file in (vis, target) if check_images else ():
            if file not in checked:
                checked[file] = _image_problem(file)
            if checked[file]:
                problems.append(checked[file])
        if problems:
            bad.append(BadRow(f"{path.name} line {line}", " ".join(problems)))
            continue
        synthetic = row.get("synthetic", "").lower() in ("1", "true", "yes")
        rows.append(
            _pair_row(vis, target, row["identity"], row.get("split", ""), row.get("modality") or modality, synthetic)
        )
    _report(bad, skip_bad, bad_rows, str(path))
    if not rows:
        raise ValueError(f"No usable pairs are left in {path}.")
    return build_pair_dataset(rows, lazy=False, seed=seed)


def _pair_row(vis: Path, target: Path, identity: str, split: str, modality: str, synthetic: bool) -> dict:
    """One row of a real (file-backed) pairs dataset; the image columns are decoded from the paths."""
    return dict(
        vis=str(vis),
        target=str(target),
        identity=identity,
        split=split,
        modality=modality,
        synthetic=synthetic,
        vis_path=str(vis),
        target_path=str(target),
    )


def _identity_folders(root: Path) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder of identity sub-folders.")
    return {d.name: list_images(d) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def pairs_from_folders(
    root: str | os.PathLike,
    vis: str = "vis",
    target: str = "thermal",
    pairs_per_identity: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    bad_rows: list[BadRow] | None = None,
    check_images: bool = True,
) -> Dataset:
    """Real pairs from `root/<vis>/<identity>/*` and `root/<target>/<identity>/*`: every visible image of an
    identity with every target image of it (or `pairs_per_identity` of those, seeded). Identities found in
    only one modality, and unreadable images, raise or (`skip_bad`) are left out and reported."""
    root = Path(root)
    vis_sets, target_sets = _identity_folders(root / vis), _identity_folders(root / target)
    bad: list[BadRow] = []
    for identity in sorted(set(vis_sets) ^ set(target_sets)):
        have = vis if identity in vis_sets else target
        bad.append(BadRow(identity, f"has images only in {have}/, so it cannot form {vis}–{target} pairs"))
    rng = np.random.default_rng(seed)
    rows = []
    for identity in sorted(set(vis_sets) & set(target_sets)):
        files = {
            side: _readable(paths, check_images, bad)
            for side, paths in (("vis", vis_sets[identity]), ("target", target_sets[identity]))
        }
        if not files["vis"] or not files["target"]:
            bad.append(BadRow(identity, "has no readable image in one of the modalities"))
            continue
        combos = [(a, b) for a in files["vis"] for b in files["target"]]
        if pairs_per_identity is not None and len(combos) > pairs_per_identity:
            combos = [combos[i] for i in sorted(rng.choice(len(combos), pairs_per_identity, replace=False))]
        for a, b in combos:
            rows.append(_pair_row(a, b, identity, "", target, False))
    _report(bad, skip_bad, bad_rows, str(root))
    if not rows:
        raise ValueError(f"No {vis}–{target} pairs could be formed under {root}.")
    return build_pair_dataset(rows, lazy=False, seed=seed)


def pseudo_pair_rows(files: dict[str, list[str]], splits: dict[str, str], modality: str, seed: int) -> list[dict]:
    """Each image once as `vis`, paired with a different image of the same person as the render source:
    a render of the very same photo would share its pose and expression pixel for pixel, a shortcut that no
    real cross-spectral pair offers."""
    rng = np.random.default_rng(seed)
    rows = []
    for identity, paths in files.items():
        for i, vis in enumerate(paths):
            j = (i + 1 + int(rng.integers(0, len(paths) - 1))) % len(paths)
            rows.append(
                dict(
                    vis=vis,
                    target_source=paths[j],
                    identity=identity,
                    split=splits.get(identity, ""),
                    modality=modality,
                    synthetic=True,
                    vis_path=vis,
                    target_path=paths[j],
                )
            )
    return rows


def pseudo_pairs_from_folder(
    root: str | os.PathLike,
    modality: str = "thermal",
    seed: int = 0,
    splits: dict[str, str] | None = None,
    eager: bool = False,
    renderer=None,
    skip_bad: bool = False,
    bad_rows: list[BadRow] | None = None,
    check_images: bool = True,
) -> Dataset:
    """Pseudo-spectral pairs from `root/<identity>/*` visible/grey face crops aligned to the 112×112
    template (see `hfr_hf.alignment.align_folder`): each image as `vis`, with another image of the same
    person rendered as `modality` (`thermal`, `nir`); rows are `synthetic=True`.

    Lazy by default: rows hold `target_source`, rendered afresh by `PairTransform` (renders vary with the
    epoch). `eager=True` renders once (seeded) and stores the PNGs in `target`. Identities with fewer than
    two readable images cannot form such pairs: they raise or (`skip_bad`) are left out and reported.
    """
    from .renderers import get_renderer

    root = Path(root)
    bad: list[BadRow] = []
    files: dict[str, list[str]] = {}
    for identity, paths in _identity_folders(root).items():
        good = [str(p) for p in _readable(paths, check_images, bad)]
        if len(good) < 2:
            bad.append(BadRow(identity, f"has {len(good)} readable image(s); a pseudo pair needs two different ones"))
            continue
        files[identity] = good
    _report(bad, skip_bad, bad_rows, str(root))
    if not files:
        raise ValueError(f"No identity under {root} has two readable images to pair.")
    rows = pseudo_pair_rows(files, splits or {}, modality, seed)
    dataset = build_pair_dataset(rows, lazy=True, seed=seed)
    if not eager:
        return dataset
    import io

    from PIL import Image as PILImage

    render = get_renderer(renderer or modality)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        targets = []
        for image, s in zip(batch["target_source"], batch["seed"]):
            buffer = io.BytesIO()
            PILImage.fromarray(render(image, np.random.default_rng([seed, int(s)]))).save(buffer, format="PNG")
            targets.append({"bytes": buffer.getvalue(), "path": None})
        return {"target": targets}

    features = pair_features(lazy=False)
    dataset = dataset.map(encode, batched=True, remove_columns=["target_source"])
    return dataset.cast(features).select_columns(list(features))


def identity_counts(dataset: Dataset) -> Counter:
    """Rows per identity."""
    return Counter(dataset["identity"])
