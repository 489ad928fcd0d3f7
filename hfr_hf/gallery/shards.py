"""Embedding a large image set in shards, on one process or several (Accelerate), resumable, for a gallery.

The enrolment list is cut into fixed shards of `shard_size` images, in list order; shard i is written whole to
`shard-iiiii.safetensors` (embeddings, with identities, paths, spectra and unusable images in its metadata) or not
at all, so a run started again embeds only the missing shards, and any number of processes can share the pending
ones. `manifest.json` records the embedder's fingerprint and the list, so that a run with another model or list
into the same folder is refused instead of mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..files import write_atomic, write_json
from .enrolment import Embedder, EnrolmentList
from .store import GalleryError

__all__ = ["MANIFEST", "embed_shard", "embed_to_shards", "pending_shards", "prepare_shards", "read_shards"]

MANIFEST = "manifest.json"


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def _list_digest(listed: EnrolmentList) -> str:
    digest = hashlib.sha256()
    for row in zip(listed.identities, map(str, listed.paths), listed.spectra):
        digest.update(json.dumps(row).encode())
    return digest.hexdigest()


def prepare_shards(output: str | os.PathLike, listed: EnrolmentList, embedder: Embedder, shard_size: int) -> dict:
    """Write (or check) the manifest of a shard folder; returns it. Call on one process before `pending_shards`."""
    output = Path(output)
    manifest = {
        "fingerprint": embedder.fingerprint,
        "embedding_size": embedder.embedding_size,
        "images": len(listed.paths),
        "shard_size": int(shard_size),
        "shards": -(-len(listed.paths) // shard_size),
        "list": _list_digest(listed),
    }
    if (output / MANIFEST).is_file():
        old = json.loads((output / MANIFEST).read_text(encoding="utf-8"))
        if old != manifest:
            changed = [k for k in manifest if old.get(k) != manifest[k]]
            raise GalleryError(
                f"{output} holds shards of another run (different {', '.join(changed)}); give a new --output folder "
                "or delete this one."
            )
    else:
        write_json(output / MANIFEST, manifest)
    return manifest


def pending_shards(output: str | os.PathLike, manifest: dict) -> list[int]:
    """The shard numbers not yet written."""
    return [i for i in range(manifest["shards"]) if not (Path(output) / _shard_name(i)).is_file()]


def embed_shard(output: str | os.PathLike, listed: EnrolmentList, embedder: Embedder, shard: int, shard_size: int):
    """Embed shard `shard` of the list (unusable images skipped and recorded) and write it atomically."""
    from safetensors.numpy import save_file

    rows = range(shard * shard_size, min((shard + 1) * shard_size, len(listed.paths)))
    vectors, used, failed = embedder.embed([listed.paths[i] for i in rows], skip_unusable=True, progress=False)
    kept = [rows[i] for i in used]
    metadata = {
        "identities": json.dumps([listed.identities[i] for i in kept]),
        "paths": json.dumps([str(listed.paths[i]) for i in kept]),
        "spectra": json.dumps([listed.spectra[i] for i in kept]),
        "failed": json.dumps(failed),
    }
    vectors = np.ascontiguousarray(vectors.reshape(len(kept), embedder.embedding_size), np.float32)
    write_atomic(Path(output) / _shard_name(shard), lambda tmp: save_file({"embeddings": vectors}, tmp, metadata))


def read_shards(output: str | os.PathLike) -> tuple[dict, EnrolmentList, np.ndarray, list[str]]:
    """(manifest, list, embeddings, failed) of a complete shard folder; a missing shard raises `GalleryError`."""
    from safetensors import safe_open

    output = Path(output)
    if not (output / MANIFEST).is_file():
        raise GalleryError(f"{output} is not a shard folder (no {MANIFEST}); write one with scripts/embed.py.")
    manifest = json.loads((output / MANIFEST).read_text(encoding="utf-8"))
    missing = pending_shards(output, manifest)
    if missing:
        raise GalleryError(
            f"{output} misses {len(missing)} of {manifest['shards']} shards; run the embedding again to finish it."
        )
    ids, paths, spectra, chunks, failed = [], [], [], [], []
    for i in range(manifest["shards"]):
        with safe_open(str(output / _shard_name(i)), "np") as handle:
            meta = handle.metadata()
            chunks.append(handle.get_tensor("embeddings"))
        ids += json.loads(meta["identities"])
        paths += [Path(p) for p in json.loads(meta["paths"])]
        spectra += json.loads(meta["spectra"])
        failed += json.loads(meta["failed"])
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, manifest["embedding_size"]), np.float32)
    return manifest, EnrolmentList(ids, paths, spectra), vectors, failed


def embed_to_shards(output, listed: EnrolmentList, embedder: Embedder, shard_size: int = 1024) -> tuple[dict, int]:
    """All pending shards on this one process (what `hfr-hf embed` does); (manifest, shards written now)."""
    from tqdm.auto import tqdm

    manifest = prepare_shards(output, listed, embedder, shard_size)
    pending = pending_shards(output, manifest)
    for shard in tqdm(pending, desc="embedding", unit="shard"):
        embed_shard(output, listed, embedder, shard, shard_size)
    return manifest, len(pending)
