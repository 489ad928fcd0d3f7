"""The vector index beside a gallery's records: exact inner product for small galleries, HNSW above a size.

Embeddings are L2-normalised, so inner product = cosine. Below `EXACT_LIMIT` vectors a brute-force `IndexFlatIP`
answers within the latency target and is exact; above it an HNSW graph over 8-bit scalar-quantised vectors
(`IndexHNSWSQ`) keeps recall near exact at a quarter of the float32 memory (scripts/bench_gallery.py measures
the crossover, recall, latency and memory that set these numbers).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EXACT_LIMIT", "HNSW_EF_SEARCH", "HNSW_M", "build_index", "index_kind", "read_index", "write_index"]

EXACT_LIMIT = 100_000  # flat search stays under ~2 ms/query at batch 100 on 2 cores up to here (bench_gallery.py)
HNSW_M = 32  # graph degree: recall vs memory (M·2·4 bytes per vector of links)
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128  # candidates kept while searching: recall@1 >= 0.99 of exact at 1M (bench_gallery.py)


def _faiss():
    import faiss

    return faiss


def index_kind(size: int, exact_limit: int = EXACT_LIMIT) -> str:
    return "flat" if size <= exact_limit else "hnsw"


def build_index(embeddings: np.ndarray, kind: str | None = None, exact_limit: int = EXACT_LIMIT):
    """A FAISS index over `embeddings` (n, d) float32, ids = row numbers; `kind` "flat" or "hnsw" (default: by
    size)."""
    faiss = _faiss()
    embeddings = np.ascontiguousarray(embeddings, np.float32)
    kind = kind or index_kind(len(embeddings), exact_limit)
    d = embeddings.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        index.train(embeddings)
    else:
        raise ValueError(f"Unknown index kind {kind!r}; use 'flat' or 'hnsw'.")
    if len(embeddings):
        index.add(embeddings)
    return index


def write_index(index, path) -> None:
    _faiss().write_index(index, str(path))


def read_index(path):
    faiss = _faiss()
    index = faiss.read_index(str(path))
    if hasattr(index, "hnsw"):  # efSearch is not stored in the file
        index.hnsw.efSearch = HNSW_EF_SEARCH
    return index
