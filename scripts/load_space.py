"""The Space under load: N concurrent `gradio_client` users sending verify and identify requests with real photos.

Starts `python spaces/edgeface-hfr/app.py` on 127.0.0.1 (nothing else is contacted), then for each N of `--users`
runs N client threads, each its own session (it enrols a small gallery first), that share `--requests` requests:
verify of a deepface pair (genuine and impostor pairs of master.csv) or identify of a deepface photo against the
gallery, alternating. A request fails when it raises, times out, or returns a crop that does not open as a whole
112×112 PNG. Reports per N the throughput, p50/p95/p99 latency and errors, and the server's resident memory
sampled every half second, with the memory after 100 and after 1,000 requests (counted over the whole run).

    python scripts/load_space.py [--assets ../shared/assets] [--model runs/edgeface-xxs] [--users 1 4 16]
        [--requests 60] [--report load.json]

Without --model (and without HFR_HF_MODEL) EdgeFace-XXS is converted from the assets' official checkpoint first.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

GALLERY = ["img1.jpg", "img3.jpg", "img13.jpg", "img16.jpg", "img20.jpg", "img22.jpg"]
REQUEST_TIMEOUT_S = 180


def server_rss(pid: int) -> int:
    """Resident memory of a process in bytes (psutil when installed, else /proc)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _crop_is_whole(path: str) -> bool:
    with Image.open(path) as image:
        image.load()  # a half-written PNG fails here
        return image.size == (112, 112)


class MemorySampler(threading.Thread):
    """(seconds, requests done, RSS bytes) of the server every `every` seconds."""

    def __init__(self, pid: int, done: list[int], every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.done, self.every = pid, done, every
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()
        self.start_time = time.monotonic()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic() - self.start_time, self.done[0], server_rss(self.pid)))
            self.stop.wait(self.every)
        self.samples.append((time.monotonic() - self.start_time, self.done[0], server_rss(self.pid)))  # the last

    def rss_after(self, requests: int) -> int | None:
        """The first sample taken once `requests` requests were done."""
        return next((rss for _, done, rss in self.samples if done >= requests), None)


def run_load(url: str, users: int, requests: int, photos: Path, done: list[int] | None = None, seed: int = 0) -> dict:
    """`requests` verify / identify requests shared by `users` concurrent clients of the Space at `url`; latencies,
    throughput and every failure. `done[0]` counts finished requests (for a memory sampler)."""
    from gradio_client import Client, handle_file

    done = done if done is not None else [0]
    rng = np.random.default_rng(seed)
    with open(photos / "master.csv", newline="") as handle:
        pairs = [(row["file_x"], row["file_y"]) for row in csv.DictReader(handle)]
    jobs: queue.Queue = queue.Queue()
    for k in range(requests):
        if k % 2 == 0:
            a, b = pairs[rng.integers(len(pairs))]
            jobs.put(("verify", a, b))
        else:
            jobs.put(("identify", f"img{rng.integers(1, 26)}.jpg", None))
    results: list[dict] = []
    lock = threading.Lock()
    ready = threading.Barrier(users)

    def user(index: int) -> None:
        try:
            client = Client(url, verbose=False)
            client.predict(  # this user's session gallery (not counted among the requests)
                [handle_file(str(photos / name)) for name in GALLERY],
                "\n".join(Path(name).stem for name in GALLERY),
                api_name="/enrol",
            )
        except Exception as error:  # noqa: BLE001 - every failure is a result here
            with lock:
                results.append(
                    {"kind": "enrol", "ok": False, "seconds": 0.0, "error": f"{type(error).__name__}: {error}"}
                )
            client = None
        ready.wait()
        while client is not None:
            try:
                kind, a, b = jobs.get_nowait()
            except queue.Empty:
                return
            start = time.perf_counter()
            error = None
            try:
                if kind == "verify":
                    job = client.submit(
                        handle_file(str(photos / a)),
                        handle_file(str(photos / b)),
                        "vis",
                        "1e-2",
                        "",
                        "",
                        api_name="/verify",
                    )
                    reference_crop, probe_crop, score, decision = job.result(timeout=REQUEST_TIMEOUT_S)
                    if not (_crop_is_whole(reference_crop) and _crop_is_whole(probe_crop)):
                        error = "a returned crop is not 112×112"
                    elif not (-1.0 <= float(score) <= 1.0 and decision.startswith("###")):
                        error = f"unexpected answer {score!r}, {decision[:60]!r}"
                else:
                    job = client.submit(handle_file(str(photos / a)), "vis", "1e-2", "", api_name="/identify")
                    crop, ranking, _ = job.result(timeout=REQUEST_TIMEOUT_S)
                    if not _crop_is_whole(crop):
                        error = "the returned crop is not 112×112"
                    elif len(ranking["data"]) != len(GALLERY):
                        error = f"the ranking has {len(ranking['data'])} rows"
            except Exception as failure:  # noqa: BLE001
                error = f"{type(failure).__name__}: {str(failure)[:300]}"
            seconds = time.perf_counter() - start
            with lock:
                results.append({"kind": kind, "ok": error is None, "seconds": seconds, "error": error, "files": [a, b]})
                done[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    timed = [r for r in results if r["kind"] != "enrol"]
    latencies = np.array([r["seconds"] for r in timed]) if timed else np.zeros(1)
    failures = [r for r in results if not r["ok"]]
    return {
        "users": users,
        "requests": len(timed),
        "failed": len(failures),
        "failures": failures[:20],
        "wall_s": wall,
        "throughput_per_s": len(timed) / wall,
        "p50_s": float(np.percentile(latencies, 50)),
        "p95_s": float(np.percentile(latencies, 95)),
        "p99_s": float(np.percentile(latencies, 99)),
        "verify_p50_s": float(np.median([r["seconds"] for r in timed if r["kind"] == "verify"] or [0])),
        "identify_p50_s": float(np.median([r["seconds"] for r in timed if r["kind"] == "identify"] or [0])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=os.environ.get("HFR_HF_ASSETS", "../shared/assets"))
    parser.add_argument("--model", default=os.environ.get("HFR_HF_MODEL"), help="model folder (default: convert XXS)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the Space process")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 16], help="concurrent users, one run each")
    parser.add_argument("--requests", type=int, default=60, help="requests per run (shared by its users)")
    parser.add_argument("--report", help="write the figures (and the memory samples) to this JSON file")
    args = parser.parse_args()

    from bench_space import start_space

    photos = Path(args.assets, "faces/deepface")
    with tempfile.TemporaryDirectory(prefix="load-space-") as tmp:
        workdir = Path(tmp)
        model = args.model
        if not model:
            from hfr_hf.convert import convert_checkpoint

            model = str(convert_checkpoint(Path(args.assets, "weights/edgeface/edgeface_xxs_q.pt"), workdir / "xxs"))
        server, url = start_space(model, args.threads, workdir)
        done = [0]
        sampler = MemorySampler(server.pid, done)
        sampler.start()
        runs = []
        try:
            for users in args.users:
                run = run_load(url, users, args.requests, photos, done, seed=users)
                run["rss_after_mb"] = server_rss(server.pid) / 2**20
                runs.append(run)
                print(
                    f"N={users:3d}: {run['requests']} requests, {run['failed']} failed, "
                    f"{run['throughput_per_s']:.2f} req/s, p50 {run['p50_s']:.2f} s, p95 {run['p95_s']:.2f} s, "
                    f"p99 {run['p99_s']:.2f} s, server RSS {run['rss_after_mb']:.0f} MB",
                    flush=True,
                )
                for failure in run["failures"][:5]:
                    print(f"    failed {failure['kind']} {failure.get('files')}: {failure['error']}", flush=True)
        finally:
            sampler.stop.set()
            sampler.join()
            server.terminate()
            server.wait(timeout=30)
    memory = {f"rss_after_{n}_requests_mb": (sampler.rss_after(n) or 0) / 2**20 for n in (100, 1000)}
    peak = max(rss for *_, rss in sampler.samples) / 2**20
    shown = ", ".join(f"after {n} requests {memory[f'rss_after_{n}_requests_mb']:.0f} MB" for n in (100, 1000))
    print(
        f"\n{done[0]} requests in all; server RSS {shown} (0: not reached), peak {peak:.0f} MB; {os.cpu_count()} CPUs"
    )
    if memory["rss_after_100_requests_mb"] and memory["rss_after_1000_requests_mb"]:
        growth = memory["rss_after_1000_requests_mb"] / memory["rss_after_100_requests_mb"] - 1
        print(f"memory growth from 100 to 1,000 requests: {100 * growth:+.1f} %")
    print("\n| users | requests | failed | req/s | p50 s | p95 s | p99 s |\n|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        print(
            f"| {run['users']} | {run['requests']} | {run['failed']} | {run['throughput_per_s']:.2f} | "
            f"{run['p50_s']:.2f} | {run['p95_s']:.2f} | {run['p99_s']:.2f} |"
        )
    if args.report:
        report = {"runs": runs, "memory": {**memory, "peak_mb": peak}, "samples": sampler.samples}
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(1 if any(run["failed"] for run in runs) else 0)


if __name__ == "__main__":
    main()
