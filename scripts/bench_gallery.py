"""Gallery index benchmark: exact (IndexFlatIP) against approximate search (IVF-PQ fast-scan with SQ8 re-ranking,
and the older IVF and HNSW over 8-bit vectors), the index kinds of `hfr_hf.gallery.index`, on synthetic normalised
512-d embeddings with planted near-duplicates.

A gallery of N vectors: 80 % random unit vectors, 20 % near-duplicates of earlier ones (cosine ~0.7, a second
photo of the same person); the queries are further near-duplicates (cosine ~0.7) of random gallery vectors, so
each has a true match to find among N. Per size and index kind:

* build time (s): from the float32 array to an index ready to search (training included), wall and process CPU;
* index memory (MiB): the serialised index (`faiss.serialize_index`), which is what it holds in memory;
* latency (ms per query): mean of single-query calls (batch 1) and of batch-100 calls divided by 100, as wall
  time and as process CPU time (on a shared machine wall time measures the neighbours' load, so the load average
  is printed beside it; CPU time is what an idle machine would spend, spread over `--threads` cores);
* recall@1 and @10 against exact search: the share of exact search's top-1 (top-10) found in the index's top-1
  (top-10); also at other settings (IVF kinds: share of lists searched, HNSW: efSearch), search time only.

The crossover line says up to which measured size exact search stays within 2 ms a query at batch 100 (CPU time
over the threads) and from which size the default approximate kind is faster than it.

FAISS runs `--threads` OpenMP threads (default 2, the target machine). Run from the repository root:

    python scripts/bench_gallery.py [--sizes 10000 25000 50000 100000] [--million] [--kinds flat ivfpq] [--json r.json]

`--million` adds the 1M gallery (about 2 GiB of vectors, 6 GiB peak; minutes of IVF training, and 0.2-0.4 s a
query of exact search: `--queries 500` keeps it to minutes).

The real open-set case: `--puj ASSETS --model M [--adapter A]` enrols the PUJ-T360 and PUJ-FONE galleries (25
people, registered LWIR crops, so not aligned) and reports DIR at FPIR 1 % and 10 % (`hfr_hf.evaluation.open_set`,
thresholds set on all the ProbeN images of the 15 people never enrolled), without and with the adapter.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import faiss
import numpy as np

from hfr_hf.gallery.index import (
    HNSW_EF_SEARCH,
    HNSW_M,
    INDEX_KINDS,
    IVF_PROBE_FRACTION,
    IVFPQ_K_FACTOR,
    IVFPQ_PROBE_FRACTION,
    build_index,
)

DIM = 512
TARGET_MS = 2.0  # a query at batch 100 on 2 cores
SWEEPS = {"ivfpq": (0.1, 0.2, 0.3, 0.5), "ivf": (0.05, 0.1, 0.2, 0.3), "hnsw": (64, 128, 256, 512)}


def near(rng, source: np.ndarray, cosine: float) -> np.ndarray:
    """Unit vectors at about `cosine` from the rows of `source`."""
    radius = np.sqrt(1 / cosine**2 - 1)
    noisy = source + rng.standard_normal(source.shape, np.float32) * np.float32(radius / np.sqrt(source.shape[1]))
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def synthetic(size: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gallery = np.empty((size, DIM), np.float32)
    unique = size - size // 5
    for start in range(0, unique, 100_000):  # in chunks: no float64 copy of a 1M × 512 array
        chunk = rng.standard_normal((min(100_000, unique - start), DIM), np.float32)
        gallery[start : start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    gallery[unique:] = near(rng, gallery[rng.integers(0, unique, size - unique)], 0.7)
    return gallery, near(rng, gallery[rng.integers(0, size, queries)], 0.7)


def latency_ms(index, queries: np.ndarray, batch: int, k: int = 10) -> tuple[float, float]:
    """(wall, CPU) milliseconds per query."""
    calls = [queries[i : i + batch] for i in range(0, len(queries), batch)]
    index.search(calls[0], k)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for call in calls:
        index.search(call, k)
    n = sum(len(c) for c in calls)
    return round(1000 * (time.perf_counter() - wall) / n, 3), round(1000 * (time.process_time() - cpu) / n, 3)


def recall(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, exact)]))


def bench(size: int, queries: int, kinds: list[str]) -> dict:
    gallery, probes = synthetic(size, queries)
    row = {"size": size}
    exact = None
    for kind in kinds:
        start, cpu = time.perf_counter(), time.process_time()
        index = build_index(gallery, kind)
        build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu
        found = index.search(probes, 10)[1]
        if kind == "flat":
            exact = found
        entry = {
            "build_s": round(build_s, 3),
            "build_cpu_s": round(build_cpu_s, 3),
            "memory_mib": round(len(faiss.serialize_index(index)) / 2**20, 1),
            "load_average": round(os.getloadavg()[0], 1),
        }
        for batch, sample in ((1, probes[:200]), (100, probes)):
            entry[f"latency_ms_batch{batch}"], entry[f"cpu_ms_batch{batch}"] = latency_ms(index, sample, batch)
        if kind != "flat":
            entry["setting"] = describe(index)
        if kind != "flat" and exact is not None:
            entry.update(recall_at_1=recall(found, exact, 1), recall_at_10=recall(found, exact, 10))
            entry["sweep"] = {}
            for setting in SWEEPS[kind]:
                if kind == "hnsw":
                    index.hnsw.efSearch = setting
                else:
                    ivf = faiss.extract_index_ivf(index)
                    ivf.nprobe = max(1, round(ivf.nlist * setting))
                hits = index.search(probes, 10)[1]
                entry["sweep"][setting] = {
                    "recall_at_1": recall(hits, exact, 1),
                    "recall_at_10": recall(hits, exact, 10),
                    "cpu_ms_batch100": latency_ms(index, probes, 100)[1],
                }
        row[kind] = entry
        print(json.dumps({"size": size, "kind": kind, **entry}), flush=True)
        del index
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return row


def recall_cell(entry: dict, kind: str, k: int) -> str:
    """Recall@k for the table: flat is exact; "-" where flat was not measured first to compare with."""
    value = 1.0 if kind == "flat" else entry.get(f"recall_at_{k}")
    return f"{value:>6.3f}" if value is not None else f"{'-':>6}"


def describe(index) -> str:
    """The index's FAISS factory-like name and search setting, for the table."""
    if hasattr(index, "hnsw"):
        return f"HNSW{HNSW_M},SQ8 efSearch {HNSW_EF_SEARCH}"
    ivf = faiss.extract_index_ivf(index)
    if hasattr(index, "refine_index"):
        codes = faiss.downcast_index(index.base_index).pq.M
        return f"IVF{ivf.nlist},PQ{codes}x4fs,Refine(SQ8) nprobe {ivf.nprobe} kf {index.k_factor:g}"
    return f"IVF{ivf.nlist},SQ8 nprobe {ivf.nprobe}"


def crossover(rows: list[dict], threads: int, kind: str = "ivfpq") -> str:
    """Where exact search stops meeting the target, and where `kind` overtakes it, by CPU ms at batch 100."""
    flat = [(r["size"], r["flat"]["cpu_ms_batch100"] / threads) for r in rows if "flat" in r]
    within = [size for size, ms in flat if ms <= TARGET_MS]
    over = [size for size, ms in flat if ms > TARGET_MS]
    faster = [
        r["size"]
        for r in rows
        if kind in r and "flat" in r and r[kind]["cpu_ms_batch100"] < r["flat"]["cpu_ms_batch100"]
    ]
    return (
        f"crossover: exact search within {TARGET_MS:g} ms a query at batch 100 (CPU ms / {threads} threads) up to "
        f"{max(within) if within else 'none'} of the sizes measured, over it from {min(over) if over else 'none'}; "
        f"{kind} faster than exact from {min(faster) if faster else 'none'}"
    )


def puj_open_set(assets: str, model: str, adapter: str | None, plot: str | None = None) -> dict:
    from pathlib import Path

    from hfr_hf.evaluation import dir_fpir_curve, open_set_metrics, plot_dir
    from hfr_hf.gallery import Embedder
    from hfr_hf.images import list_images

    systems = {"frozen": None, **({"adapted": adapter} if adapter else {})}
    report, curves = {}, {}
    for name, folder in systems.items():
        embedder = Embedder.load(model, folder, align="never")
        for camera in ("puj_t360", "puj_fone"):
            sides = {}
            for part in ("Gallery", "Probe", "ProbeN"):
                paths = list_images(Path(assets) / f"thermal/{camera}/{part}Pristine")
                sides[part] = ([p.name.split("_")[0] for p in paths], embedder.embed(paths, progress=False)[0])
            probe_ids = sides["Probe"][0] + sides["ProbeN"][0]
            similarity = np.concatenate([sides["Probe"][1], sides["ProbeN"][1]]) @ sides["Gallery"][1].T
            metrics = open_set_metrics(similarity, probe_ids, sides["Gallery"][0], fpirs=(0.01, 0.1))
            report[f"{camera}/{name}"] = metrics
            fpirs, dirs, _ = dir_fpir_curve(similarity, probe_ids, sides["Gallery"][0])
            curves.setdefault(camera, {})[name] = (fpirs, dirs)
            at = metrics["at_fpir"]
            print(
                f"{camera:>9} {name:>8}: DIR@FPIR1% {at['0.01']['dir']:.3f} (FPIR {at['0.01']['fpir']:.3f}, "
                f"threshold {at['0.01']['threshold']:.3f})  DIR@FPIR10% {at['0.1']['dir']:.3f} (FPIR "
                f"{at['0.1']['fpir']:.3f}, threshold {at['0.1']['threshold']:.3f})  enrolled/non-enrolled probes "
                f"{metrics['enrolled_probes']}/{metrics['non_enrolled_probes']}",
                flush=True,
            )
    for camera, systems_curves in curves.items() if plot else ():
        plot_dir(systems_curves, Path(plot) / f"dir_fpir_{camera}.png", title=f"{camera}: open-set DIR–FPIR")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 25_000, 50_000, 100_000])
    parser.add_argument("--million", action="store_true", help="add the 1,000,000-vector gallery")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivfpq"], choices=list(INDEX_KINDS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--puj", metavar="ASSETS", help="instead: PUJ open-set DIR at FPIR from this assets folder")
    parser.add_argument("--model", help="with --puj: model folder")
    parser.add_argument("--adapter", help="with --puj: xEdgeFace adapter folder, reported beside the frozen model")
    parser.add_argument("--plot", help="with --puj: folder for the DIR–FPIR plots (PNG)")
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    if args.puj:
        if not args.model:
            parser.error("--puj needs --model")
        report = puj_open_set(args.puj, args.model, args.adapter, args.plot)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(report, handle, indent=2)
        return 0
    sizes = args.sizes + ([1_000_000] if args.million else [])
    results = {"threads": args.threads, "dim": DIM, "queries": args.queries}
    results.update(hnsw_ef_search=HNSW_EF_SEARCH, ivf_probe_fraction=IVF_PROBE_FRACTION)
    results.update(ivfpq_probe_fraction=IVFPQ_PROBE_FRACTION, ivfpq_k_factor=IVFPQ_K_FACTOR)
    results["rows"] = [bench(size, args.queries, args.kinds) for size in sizes]
    results["crossover"] = crossover(results["rows"], args.threads)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    head = f"{'size':>9} {'kind':>5} {'build s':>8} {'cpu s':>8} {'MiB':>7} {'ms b1':>7} {'cpu b1':>7} {'ms b100':>8}"
    print(head + f" {'cpu b100':>8} {'R@1':>6} {'R@10':>6} {'load':>5}  setting")
    for row in results["rows"]:
        for kind in args.kinds:
            e = row[kind]
            r1, r10 = (recall_cell(e, kind, k) for k in (1, 10))
            print(
                f"{row['size']:>9} {kind:>5} {e['build_s']:>8.2f} {e['build_cpu_s']:>8.2f} {e['memory_mib']:>7.1f} "
                f"{e['latency_ms_batch1']:>7.3f} {e['cpu_ms_batch1']:>7.3f} {e['latency_ms_batch100']:>8.3f} "
                f"{e['cpu_ms_batch100']:>8.3f} {r1} {r10} {e['load_average']:>5.1f}  {e.get('setting', '')}"
            )
    print(results["crossover"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
