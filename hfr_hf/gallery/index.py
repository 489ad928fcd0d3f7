"""The vector index beside a gallery's records: exact inner product for small galleries, IVF above a size.

Embeddings are L2-normalised, so inner product = cosine. Up to `EXACT_LIMIT` vectors a brute-force `IndexFlatIP`
is exact and answers within the target (2 ms a query at batch 100 on 2 cores); above it an inverted file over 8-bit
scalar-quantised vectors (`IVF{nlist},SQ8`) searches the `nprobe` nearest lists only, at a quarter of the float32
memory, builds in seconds (HNSW took 14× longer at 100k for the same recall) and is rebuilt quickly when people are
removed. HNSW stays available as `kind="hnsw"`. scripts/bench_gallery.py measured the numbers below.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["EXACT_LIMIT", "INDEX_KINDS", "build_index", "index_kind", "kind_of", "read_index", "write_index"]

INDEX_KINDS = ("flat", "ivf", "hnsw")
# Flat search measured 0.8, 4.2, 7.6 and 17 ms CPU a query at batch 100 (one thread) at 10k, 25k, 50k, 100k: about
# 2 ms on two cores at 25k.
EXACT_LIMIT = 25_000
IVF_PROBE_FRACTION = 0.2  # lists searched: recall@1 0.995 of exact at 100k (0.981 at 0.1), bench_gallery.py
IVF_TRAIN_PER_LIST = 64  # k-means training points per list (FAISS warns below 39)
HNSW_M = 32  # graph degree: recall vs memory (M·2·4 bytes per vector of links)
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256  # recall@1 0.997 of exact at 100k (0.965 at 128)


def _faiss():
    import faiss

    return faiss


def index_kind(size: int, exact_limit: int = EXACT_LIMIT) -> str:
    """The index a gallery of `size` images gets."""
    return "flat" if size <= exact_limit else "ivf"


def kind_of(index) -> str:
    return "ivf" if hasattr(index, "nprobe") else "hnsw" if hasattr(index, "hnsw") else "flat"


def _tune(index) -> None:
    """Search settings that a FAISS file does not keep, or that follow its size."""
    if hasattr(index, "nprobe"):
        index.nprobe = max(1, math.ceil(index.nlist * IVF_PROBE_FRACTION))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = HNSW_EF_SEARCH


def build_index(embeddings: np.ndarray, kind: str | None = None, exact_limit: int = EXACT_LIMIT):
    """A FAISS index over `embeddings` (n, d) float32, ids = row numbers; `kind` one of `INDEX_KINDS` (default: by
    size)."""
    faiss = _faiss()
    embeddings = np.ascontiguousarray(embeddings, np.float32)
    kind = kind or index_kind(len(embeddings), exact_limit)
    n, d = embeddings.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(n)), n // IVF_TRAIN_PER_LIST))
        index = faiss.index_factory(d, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, min(n, nlist * IVF_TRAIN_PER_LIST), replace=False)
        index.train(embeddings[np.sort(sample)])
    elif kind == "hnsw":
        index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.train(embeddings)
    else:
        raise ValueError(f"Unknown index kind {kind!r}; use one of {', '.join(INDEX_KINDS)}.")
    _tune(index)
    if n:
        index.add(embeddings)
    return index


def write_index(index, path) -> None:
    _faiss().write_index(index, str(path))


def read_index(path):
    index = _faiss().read_index(str(path))
    _tune(index)
    return index
