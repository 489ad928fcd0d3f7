"""The vector index beside a gallery's records: exact inner product for small galleries, IVF-PQ fast-scan above a size.

Embeddings are L2-normalised, so inner product = cosine. Up to `EXACT_LIMIT` vectors a brute-force `IndexFlatIP`
is exact and answers within the target (2 ms a query at batch 100 on 2 cores). Above it (`kind="ivfpq"`) an inverted
file whose lists hold 4-bit product-quantisation codes (`IVF{nlist},PQ32x4fs`, 16 bytes a vector) is scanned by
FAISS's fast-scan kernels (SIMD table look-ups), which makes searching many lists cheap, and the best
`IVFPQ_K_FACTOR`·k candidates are re-ranked on 8-bit scalar-quantised vectors (`Refine(SQ8)`, 512 bytes a vector, a
quarter of float32), which ranks the true match first where the 4-bit codes alone order near-ties coarsely. At 1M
scripts/bench_gallery.py measured recall@1 0.992-1.000 of exact, 1.08 ms CPU a query at batch 100 (two threads
together), 520 MiB, 149 s CPU to build; the previous kind, `ivf` (`IVF{nlist},SQ8`), needed 20 ms for the same recall,
since it decodes 512 bytes for every vector of the lists searched. `ivf` and `hnsw` (HNSW over SQ8, 14x slower than
the IVF to build at 100k) stay readable and searchable so that older galleries open; their next change rebuilds them
as the kind their size calls for.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "EXACT_LIMIT",
    "INDEX_KINDS",
    "build_index",
    "fits",
    "index_kind",
    "kind_of",
    "read_index",
    "refill",
    "write_index",
]

INDEX_KINDS = ("flat", "ivfpq", "ivf", "hnsw")
# Flat search measured 0.86, 2.6, 9.2 and 18.9 ms CPU a query at batch 100 (two threads together) at 10k, 25k, 50k,
# 100k: within 2 ms on two cores up to 25k, over it at 50k (ivfpq: 0.21-0.41 ms there, recall@1 0.994-0.999).
EXACT_LIMIT = 25_000
APPROXIMATE_MIN = 1_000  # fewer vectors than this cannot train 16 centroids per PQ sub-vector (FAISS wants 39 each)
IVF_TRAIN_PER_LIST = 64  # k-means training points per list (FAISS warns below 39)
# 4-bit codes of 16-d sub-vectors at d = 512: PQ64 gave the same recall@1 at 200k (the lists searched bound it) and
# about the same scan time (0.43 against 0.41 ms at 30 % of 1024 lists) for 2.6x the training time
IVFPQ_SUBVECTORS = 32
# lists searched: recall@1 of exact 0.992 at 1M (1.08 ms), 0.998-0.999 at 25k-100k; 0.2 gave 0.988 at 1M (0.92 ms)
IVFPQ_PROBE_FRACTION = 0.3
IVFPQ_K_FACTOR = (
    4  # candidates re-ranked on SQ8 per result: recall@1 the same at 1, 4, 16 (200k); @10 0.22 at 4, 0.30 at 16
)
IVF_PROBE_FRACTION = 0.2  # `ivf` kind: recall@1 0.995 of exact at 100k (0.981 at 0.1)
HNSW_M = 32  # graph degree: recall vs memory (M·2·4 bytes per vector of links)
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256  # recall@1 0.997 of exact at 100k (0.965 at 128)


def _faiss():
    import faiss

    return faiss


def index_kind(size: int, exact_limit: int = EXACT_LIMIT) -> str:
    """The index a gallery of `size` images gets."""
    return "flat" if size <= max(exact_limit, APPROXIMATE_MIN) else "ivfpq"


def kind_of(index) -> str:
    if hasattr(index, "refine_index"):
        return "ivfpq"
    return "ivf" if hasattr(index, "nprobe") else "hnsw" if hasattr(index, "hnsw") else "flat"


def _nlist(size: int) -> int:
    return max(1, min(int(4 * math.sqrt(size)), size // IVF_TRAIN_PER_LIST))


def fits(index, size: int, exact_limit: int = EXACT_LIMIT) -> bool:
    """Whether `index` may grow to `size` vectors by adding them: it is the kind that size gets and, for an IVF,
    its lists were trained for at least a quarter of it (half the lists a fresh build would have); otherwise its
    lists would grow long and recall fall at the same share of lists searched, so rebuild it."""
    kind = index_kind(size, exact_limit)
    if kind != kind_of(index):
        return False
    return kind not in ("ivfpq", "ivf") or 2 * _faiss().extract_index_ivf(index).nlist >= _nlist(size)


def _tune(index) -> None:
    """Search settings that a FAISS file does not keep, or that follow its size."""
    if hasattr(index, "refine_index"):
        index.k_factor = IVFPQ_K_FACTOR
        ivf = _faiss().extract_index_ivf(index)
        ivf.nprobe = max(1, math.ceil(ivf.nlist * IVFPQ_PROBE_FRACTION))
    elif hasattr(index, "nprobe"):
        index.nprobe = max(1, math.ceil(index.nlist * IVF_PROBE_FRACTION))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = HNSW_EF_SEARCH


def _train_sample(embeddings: np.ndarray, nlist: int) -> np.ndarray:
    n = len(embeddings)
    sample = np.random.default_rng(0).choice(n, min(n, nlist * IVF_TRAIN_PER_LIST), replace=False)
    return embeddings[np.sort(sample)]


def build_index(embeddings: np.ndarray, kind: str | None = None, exact_limit: int = EXACT_LIMIT):
    """A FAISS index over `embeddings` (n, d) float32, ids = row numbers; `kind` one of `INDEX_KINDS` (default: by
    size)."""
    faiss = _faiss()
    embeddings = np.ascontiguousarray(embeddings, np.float32)
    kind = kind or index_kind(len(embeddings), exact_limit)
    n, d = embeddings.shape
    nlist = _nlist(n)
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivfpq":
        if n < APPROXIMATE_MIN:
            raise ValueError(f"An ivfpq index needs at least {APPROXIMATE_MIN} vectors to train on, got {n}.")
        subvectors = math.gcd(d, IVFPQ_SUBVECTORS)
        index = faiss.index_factory(d, f"IVF{nlist},PQ{subvectors}x4fs,Refine(SQ8)", faiss.METRIC_INNER_PRODUCT)
        index.train(_train_sample(embeddings, nlist))
    elif kind == "ivf":
        index = faiss.index_factory(d, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
        index.train(_train_sample(embeddings, nlist))
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


def refill(index, embeddings: np.ndarray):
    """A copy of `index` holding `embeddings` instead, ids = row numbers, its training kept (no k-means again)."""
    index = _faiss().clone_index(index)
    index.reset()
    _tune(index)
    if len(embeddings):
        index.add(np.ascontiguousarray(embeddings, np.float32))
    return index


def write_index(index, path) -> None:
    _faiss().write_index(index, str(path))


def read_index(path):
    index = _faiss().read_index(str(path))
    _tune(index)
    return index
