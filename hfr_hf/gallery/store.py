"""A gallery on disk: the enrolled images' records (a `datasets` Dataset) and a FAISS index beside them.

Layout of a gallery folder:

    gallery.json        the pointer: {"format": 1, "version": "v000003"}, replaced atomically
    v000003/records/    Dataset.save_to_disk: identity, path, spectrum, model, adapter, embedding per image
    v000003/index.faiss the vectors of records, ids = row numbers
    v000003/meta.json   embedding size, model and adapter fingerprints, index kind, fusion
    v000003/calibration.json  open-set threshold for a target FPIR (optional)

Every change writes a whole new version folder beside the current one (as `.tmp-vNNNNNN`, renamed when
complete) and only then replaces the pointer, so a process killed mid-enrolment leaves the previous version as
the gallery; leftovers are cleared at the next change. `Gallery.in_memory` makes the same gallery without a
folder, for galleries that should not outlive their process (a Space visitor's).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import TMP_PREFIX, write_json
from .index import EXACT_LIMIT, build_index, fits, index_kind, read_index, refill, write_index

__all__ = ["FUSIONS", "Candidate", "Gallery", "GalleryError", "Identification"]

FORMAT = 1
POINTER = "gallery.json"
FUSIONS = ("max", "mean")


class GalleryError(ValueError):
    """A gallery folder that cannot be used, or input that does not fit the gallery; the message says what to do."""


@dataclass(frozen=True)
class Candidate:
    identity: str
    score: float
    path: str  # the enrolled image that scored best


@dataclass
class Identification:
    """One probe's ranked candidates; `identity` is the best one, or None ("not enrolled") below the threshold."""

    candidates: list[Candidate]
    threshold: float | None = None
    identity: str | None = field(default=None)

    def __post_init__(self):
        best = self.candidates[0] if self.candidates else None
        if best is not None and (self.threshold is None or best.score >= self.threshold):
            self.identity = best.identity


def _features(size: int):
    from datasets import Features, Value
    from datasets import Sequence as Seq

    text = Value("string")
    return Features(
        identity=text, path=text, spectrum=text, model=text, adapter=text, embedding=Seq(Value("float32"), length=size)
    )


def _records(columns: dict, embeddings: np.ndarray, features):
    """A Dataset built from Arrow arrays directly: `Dataset.from_dict` encodes row by row (80 µs a row)."""
    import pyarrow as pa
    from datasets import Dataset

    flat = pa.array(np.ascontiguousarray(embeddings, np.float32).ravel())
    arrays = {k: pa.array(v, pa.string()) for k, v in columns.items()}
    arrays["embedding"] = pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1])
    return Dataset(pa.Table.from_pydict(arrays, schema=features.arrow_schema))


@contextlib.contextmanager
def _quiet_datasets():
    """No progress bar for saving a few shards: a command's output should be its result."""
    import datasets

    was_off = datasets.is_progress_bar_enabled() is False
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            datasets.enable_progress_bars()


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GalleryError(f"{path} is missing, so {what} is incomplete; restore the folder or enrol again.") from None
    except (OSError, json.JSONDecodeError) as error:
        raise GalleryError(
            f"{path} is unreadable ({error}), so {what} is damaged; restore it or enrol again."
        ) from None


class Gallery:
    """Enrolled faces with their embeddings; search them with `search`, change them with `add` / `remove` (each
    change is a new version on disk). Open with `Gallery.open(path)`, make with `Gallery.create(...)`, or with
    `Gallery.in_memory(...)` for one without a folder."""

    def __init__(self, path: Path | None, version: str, records, index, meta: dict, calibration: dict | None):
        self.path, self.version, self.records, self.index = path, version, records, index
        self.meta, self.calibration = meta, calibration

    # -- opening and writing ---------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        fingerprint: dict,
        embedding_size: int,
        fusion: str = "max",
        exact_limit: int = EXACT_LIMIT,
        sources: dict | None = None,
    ) -> Gallery:
        """An empty gallery in `path` (a new or empty folder) for embeddings of the model `fingerprint` names
        ({"model": ..., "adapter": ...}, see `Embedder.fingerprint`); `sources` ({"model": folder or repo id,
        "adapter": folder}) are kept as the default model to embed probes with."""
        path = Path(path)
        if (path / POINTER).exists():
            raise GalleryError(f"{path} already holds a gallery; open it with Gallery.open to add to it.")
        if path.exists() and any(p for p in path.iterdir() if not p.name.startswith(TMP_PREFIX)):
            raise GalleryError(f"{path} is a folder with other files in it; give a new or empty folder for a gallery.")
        empty = cls._empty(fingerprint, embedding_size, fusion, exact_limit, sources)
        path.mkdir(parents=True, exist_ok=True)
        return cls._commit(path, None, *empty)

    @classmethod
    def in_memory(
        cls, fingerprint: dict, embedding_size: int, fusion: str = "max", exact_limit: int = EXACT_LIMIT
    ) -> Gallery:
        """An empty gallery that lives in this process only (`path` None): `add`, `remove` and `calibrate` return
        or keep new versions in memory and write nothing. For short-lived galleries, such as a Space visitor's,
        that a folder on disk would outlive."""
        return cls._commit(None, None, *cls._empty(fingerprint, embedding_size, fusion, exact_limit, None))

    @staticmethod
    def _empty(fingerprint: dict, embedding_size: int, fusion: str, exact_limit: int, sources: dict | None):
        """The records, index and meta of a gallery with nothing enrolled yet."""
        if fusion not in FUSIONS:
            raise GalleryError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}.")
        meta = {
            "format": FORMAT,
            "embedding_size": int(embedding_size),
            "model": fingerprint["model"],
            "adapter": fingerprint.get("adapter") or "",
            "fusion": fusion,
            "exact_limit": int(exact_limit),
            "index": "flat",
            "sources": sources or {},
        }
        empty = {k: [] for k in ("identity", "path", "spectrum", "model", "adapter")}
        records = _records(empty, np.zeros((0, embedding_size), np.float32), _features(embedding_size))
        return records, build_index(np.zeros((0, embedding_size), np.float32), "flat"), meta

    @classmethod
    def open(cls, path: str | os.PathLike) -> Gallery:
        """The gallery in `path` as its pointer names it; a damaged or half-written folder raises `GalleryError`."""
        from datasets import load_from_disk

        path = Path(path)
        if not (path / POINTER).is_file():
            hint = " (an enrolment into it was interrupted before it finished)" if path.is_dir() else ""
            raise GalleryError(f"{path} is not a gallery: it has no {POINTER}{hint}; make one with `hfr-hf enroll`.")
        pointer = _read_json(path / POINTER, f"the gallery {path}")
        pointer = pointer if isinstance(pointer, dict) else {}
        version = pointer.get("version")
        if pointer.get("format") != FORMAT or not isinstance(version, str) or not (path / version).is_dir():
            raise GalleryError(
                f"{path / POINTER} does not name a version folder of this gallery (format {FORMAT}); the folder is "
                "damaged: restore it or enrol again."
            )
        folder = path / version
        meta = _read_json(folder / "meta.json", f"the gallery {path}")
        try:
            records = load_from_disk(str(folder / "records"))
            index = read_index(folder / "index.faiss")
        except Exception as error:  # datasets / FAISS raise many kinds; all mean the same to a user
            raise GalleryError(
                f"The gallery {path} is damaged ({type(error).__name__}: {str(error).strip()[:200]}); restore it "
                "or enrol again."
            ) from None
        if index.ntotal != len(records) or index.d != meta.get("embedding_size"):
            raise GalleryError(
                f"The gallery {path} is damaged: its index holds {index.ntotal} vectors of size {index.d} but its "
                f"records {len(records)} of size {meta.get('embedding_size')}; restore it or enrol again."
            )
        calibration = folder / "calibration.json"
        return cls(
            path,
            version,
            records,
            index,
            meta,
            _read_json(calibration, f"the calibration of {path}") if calibration.is_file() else None,
        )

    @classmethod
    def _commit(cls, path: Path | None, current: str | None, records, index, meta: dict) -> Gallery:
        number = int(current[1:]) + 1 if current else 0
        version = f"v{number:06d}"
        if path is None:  # in memory: the new version is just a new object
            return cls(None, version, records, index, meta, None)
        tmp = path / f"{TMP_PREFIX}{version}"
        shutil.rmtree(tmp, ignore_errors=True)
        with _quiet_datasets():
            records.save_to_disk(str(tmp / "records"), num_shards=1 if not len(records) else None)
        write_index(index, tmp / "index.faiss")
        write_json(tmp / "meta.json", meta)
        shutil.rmtree(path / version, ignore_errors=True)  # a version renamed but never pointed at
        os.replace(tmp, path / version)
        write_json(path / POINTER, {"format": FORMAT, "version": version})
        for old in path.iterdir():  # earlier versions and interrupted writes
            if old.name != version and old.is_dir() and (old.name.startswith(("v", TMP_PREFIX))):
                shutil.rmtree(old, ignore_errors=True)
        return cls.open(path)

    # -- contents --------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.records)

    @property
    def where(self) -> str:
        """The gallery's folder, or "in memory", for messages."""
        return "in memory" if self.path is None else str(self.path)

    @functools.cached_property
    def _names(self) -> list[str]:
        return self.records.with_format("arrow")["identity"].to_pylist()

    @functools.cached_property
    def _rows(self) -> dict[str, list[int]]:
        rows: dict[str, list[int]] = {}
        for i, name in enumerate(self._names):
            rows.setdefault(name, []).append(i)
        return rows

    @property
    def fingerprint(self) -> dict:
        return {"model": self.meta["model"], "adapter": self.meta["adapter"]}

    def embeddings(self) -> np.ndarray:
        return np.asarray(self.records.with_format("numpy")["embedding"], np.float32).reshape(
            len(self), self.meta["embedding_size"]
        )

    @functools.cached_property
    def _most_images(self) -> int:
        return max(len(rows) for rows in self._rows.values())

    def identities(self) -> dict[str, int]:
        """Enrolled people and how many images each has, sorted by name."""
        return {name: len(self._rows[name]) for name in sorted(self._rows)}

    def list(self) -> list[dict]:
        """One row per enrolled image: identity, path, spectrum."""
        return [{k: r[k] for k in ("identity", "path", "spectrum")} for r in self.records.remove_columns("embedding")]

    # -- checks ----------------------------------------------------------------------------------------------

    def check_fingerprint(self, fingerprint: dict) -> None:
        ours, theirs = self.fingerprint, {"model": fingerprint["model"], "adapter": fingerprint.get("adapter") or ""}
        if ours != theirs:
            what = "model" if ours["model"] != theirs["model"] else "adapter"
            raise GalleryError(
                f"The gallery {self.where} was enrolled with another {what} (fingerprint {ours[what][:12] or 'none'}, "
                f"these embeddings {theirs[what][:12] or 'none'}); embed with the gallery's model and adapter, or "
                "enrol into a new gallery."
            )

    def _check_embeddings(self, embeddings) -> np.ndarray:
        embeddings = np.asarray(embeddings, np.float32)
        size = self.meta["embedding_size"]
        if embeddings.ndim != 2 or embeddings.shape[1] != size:
            raise GalleryError(
                f"The gallery holds {size}-d embeddings but got an array of shape {embeddings.shape}; embed the "
                "probes with the gallery's model."
            )
        if not np.isfinite(embeddings).all():
            raise GalleryError("The embeddings contain NaN or infinite values; check the model that produced them.")
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        return np.ascontiguousarray(embeddings / np.maximum(norms, 1e-12))

    # -- changes (each one a new version) --------------------------------------------------------------------

    def add(
        self,
        identities: Sequence[str],
        paths: Sequence[str],
        embeddings,
        fingerprint: dict,
        spectrum: str | Sequence[str] = "visible",
    ) -> Gallery:
        """A new version with these images enrolled; returns the gallery as reopened (this object stays the old
        version)."""
        from datasets import concatenate_datasets

        self.check_fingerprint(fingerprint)
        embeddings = self._check_embeddings(embeddings)
        if not len(identities) == len(paths) == len(embeddings):
            raise GalleryError(
                f"Got {len(identities)} identities, {len(paths)} paths and {len(embeddings)} embeddings; give one "
                "of each per image."
            )
        spectra = [spectrum] * len(paths) if isinstance(spectrum, str) else list(spectrum)
        columns = {
            "identity": [str(i) for i in identities],
            "path": [str(p) for p in paths],
            "spectrum": spectra,
            "model": [self.meta["model"]] * len(paths),
            "adapter": [self.meta["adapter"]] * len(paths),
        }
        new = _records(columns, embeddings, self.records.features)
        records = concatenate_datasets([self.records, new])
        kind = index_kind(len(records), self.meta["exact_limit"])
        if fits(self.index, len(records), self.meta["exact_limit"]):  # extend a copy (an IVF keeps its lists)
            import faiss

            index = faiss.clone_index(self.index)
            index.add(embeddings)
        else:
            index = build_index(np.concatenate([self.embeddings(), embeddings]), kind)
        return self._commit(self.path, self.version, records, index, {**self.meta, "index": kind})

    def remove(self, identities: Sequence[str]) -> Gallery:
        """A new version without every image of these people; unknown names raise `GalleryError`."""
        known = self.identities()
        unknown = sorted(set(identities) - set(known))
        if unknown:
            raise GalleryError(
                f"Not enrolled in the gallery {self.where}: {', '.join(unknown)}; see `hfr-hf gallery list`."
            )
        drop = set(identities)
        keep = [i for i, name in enumerate(self._names) if name not in drop]
        records = self.records.select(keep)
        kind = index_kind(len(keep), self.meta["exact_limit"])
        if fits(self.index, len(keep), self.meta["exact_limit"]):  # its trained lists serve the smaller gallery
            index = refill(self.index, self.embeddings()[keep])
        else:
            index = build_index(self.embeddings()[keep], kind)
        return self._commit(self.path, self.version, records, index, {**self.meta, "index": kind})

    def calibrate(self, stranger_embeddings, fingerprint: dict, fpir: float = 0.01) -> float:
        """Calibrate the open-set threshold on probes of people who are not enrolled: their best fused scores are
        kept beside this version, so that `search(fpir=...)` sets the threshold that accepts at most that fraction
        of them (bob's `far_threshold`); `fpir` is the default target. Returns its threshold. A later change of the
        gallery drops the calibration (the scores no longer hold): calibrate again."""
        from ..evaluation import threshold_at_far

        best = [
            r.candidates[0].score for r in self.search(stranger_embeddings, fingerprint, top_k=1, threshold=-np.inf)
        ]
        threshold = threshold_at_far(best, fpir)
        self.calibration = {"fpir": fpir, "threshold": threshold, "stranger_scores": best}
        if self.path is not None:
            write_json(self.path / self.version / "calibration.json", self.calibration)
        return threshold

    def threshold(self, fpir: float | None = None) -> float | None:
        """The open-set threshold for a target FPIR (default: the calibrated target); None when uncalibrated."""
        from ..evaluation import threshold_at_far

        if not self.calibration:
            if fpir is not None:
                raise GalleryError(
                    f"The gallery {self.where} has no open-set calibration; calibrate it on probes of people who are "
                    "not enrolled first (`hfr-hf gallery calibrate`)."
                )
            return None
        if fpir is None or fpir == self.calibration["fpir"]:
            return self.calibration["threshold"]
        return threshold_at_far(self.calibration["stranger_scores"], fpir)

    # -- search ----------------------------------------------------------------------------------------------

    def search(
        self,
        embeddings,
        fingerprint: dict,
        top_k: int = 5,
        fusion: str | None = None,
        threshold: float | None = None,
        fpir: float | None = None,
    ) -> list[Identification]:
        """The `top_k` enrolled people closest to each probe embedding, scores fused over each person's images
        (`fusion` "max" or "mean", default the gallery's). A probe whose best score is below `threshold` (default:
        the calibrated one for `fpir`, see `threshold`) is "not enrolled" (`identity` None)."""
        self.check_fingerprint(fingerprint)
        embeddings = self._check_embeddings(embeddings)
        fusion = fusion or self.meta["fusion"]
        if fusion not in FUSIONS:
            raise GalleryError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}.")
        if top_k < 1:
            raise GalleryError(f"top_k must be at least 1, got {top_k}.")
        if threshold is None:
            threshold = self.threshold(fpir)
        if not len(self):
            return [Identification([], threshold) for _ in embeddings]
        # enough image neighbours to hold top_k distinct people even if the best ones have all their images there
        k = min(len(self), top_k * self._most_images)
        scores, ids = self.index.search(embeddings, k)
        names = self._names
        stored = self.embeddings() if fusion == "mean" else None
        results = []
        for probe, row_scores, row_ids in zip(embeddings, scores, ids):
            best: dict[str, tuple[float, int]] = {}
            for score, i in zip(row_scores, row_ids):
                if i >= 0 and names[i] not in best:
                    best[names[i]] = (float(score), int(i))
            if fusion == "mean":  # exact mean over all of each candidate's images
                for name, (_, i) in best.items():
                    best[name] = (float(np.mean(stored[self._rows[name]] @ probe)), i)
            ranked = sorted(best.items(), key=lambda item: -item[1][0])[:top_k]
            results.append(
                Identification([Candidate(n, s, self.records[i]["path"]) for n, (s, i) in ranked], threshold)
            )
        return results
