"""End-to-end time of a verify or identify request to the Gradio Space (spaces/edgeface-hfr), on CPU.

Starts `python spaces/edgeface-hfr/app.py` on 127.0.0.1 with `--threads` torch threads (default 2), then sends
`--requests` verify requests one after another through `gradio_client` (upload of both photos, queue, detection and
alignment, embedding, the two aligned crops back as PNG) and prints the median and p90 of the wall time seen by the
client, with the split that the app reports in its answer: detection + alignment, embedding, and the rest (HTTP,
uploads, queue, pre/post-processing). The photos are two deepface photos of one person, fitted into 640×480 (grey borders, aspect kept).

With `--task identify`, enrols `--gallery` AT&T faces (one per person, s1/1.pgm, s2/1.pgm, ...) once through the
page's `/enrol`, then sends identify requests with other images of those people (sN/6.pgm); before that, in this
process, it times the ranking alone (after the probe's alignment), the part that the gallery enrolled once changes:
`engine.identify` interleaved with the per-request baseline (probe and every gallery crop embedded each time).

    python scripts/bench_space.py [--assets ../shared/assets] [--model runs/edgeface-xxs] [--requests 30]
    python scripts/bench_space.py --task identify --gallery 20 [--threads 1]

On a machine shared with other work, `--threads 1` measures the work: with 2 torch threads every operator waits
for whichever thread was descheduled (on 2 cores at load 10, one embedding took 1.8 s instead of 20 ms).

Without --model (and without HFR_HF_MODEL) EdgeFace-XXS is converted from the assets' official checkpoint into a
temporary folder first.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMING = re.compile(r"Alignment (\d+) ms, embedding (\d+) ms")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_space(model: str, threads: int, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "HFR_HF_MODEL": model,
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_TEMP_DIR": str(workdir / "gradio"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "OMP_NUM_THREADS": str(threads),
    }
    env.setdefault("HFR_HF_ADAPTERS", "none")
    log = open(workdir / "space.log", "w")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "spaces/edgeface-hfr/app.py")], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while True:
        if server.poll() is not None:
            sys.exit(f"The Space exited:\n{(workdir / 'space.log').read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return server, url
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                sys.exit("The Space did not start within 300 s.")
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=os.environ.get("HFR_HF_ASSETS", "../shared/assets"))
    parser.add_argument("--model", default=os.environ.get("HFR_HF_MODEL"), help="model folder (default: convert XXS)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the Space process")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--photos", nargs=2, default=["img1.jpg", "img2.jpg"], help="two deepface photos")
    parser.add_argument("--task", choices=["verify", "identify"], default="verify")
    parser.add_argument("--gallery", type=int, default=20, help="identify: AT&T people enrolled (up to 40)")
    args = parser.parse_args()
    if args.task == "identify" and not 2 <= args.gallery <= 40:
        parser.error(f"--gallery takes 2 to 40 AT&T people, got {args.gallery}.")

    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory(prefix="bench-space-") as tmp:
        workdir = Path(tmp)
        model = args.model
        if not model:
            from hfr_hf.convert import convert_checkpoint

            weights = Path(args.assets, "weights/edgeface/edgeface_xxs_q.pt")
            model = str(convert_checkpoint(weights, workdir / "edgeface-xxs"))
        photos = []
        for name in args.photos:
            path = workdir / f"640x480_{Path(name).stem}.jpg"
            image = Image.open(Path(args.assets, "faces/deepface", name)).convert("RGB")
            ImageOps.pad(image, (640, 480), color=(128, 128, 128)).save(path, quality=92)  # whole photo, no stretch
            photos.append(path)

        if args.task == "identify":
            bench_identify(args, model, workdir)
            return
        server, url = start_space(model, args.threads, workdir)
        try:
            client = Client(url, verbose=False)

            def verify():
                start = time.perf_counter()
                *_, score, decision = client.predict(
                    handle_file(str(photos[0])), handle_file(str(photos[1])), "vis", "1e-2", "", "", api_name="/verify"
                )
                total = time.perf_counter() - start
                align_ms, embed_ms = (int(v) for v in TIMING.search(decision).groups())
                return total, align_ms / 1000, embed_ms / 1000, score

            for _ in range(args.warmup):
                verify()
            runs = np.array([verify()[:3] for _ in range(args.requests)])
            score = verify()[3]
        finally:
            server.terminate()
            server.wait(timeout=30)

    total, align, embed = runs[:, 0], runs[:, 1], runs[:, 2]
    rest = total - align - embed
    print(
        f"Space verify, two 640×480 photos ({', '.join(args.photos)}; cosine {score:.4f}), "
        f"{args.threads} torch threads, {args.requests} sequential requests after {args.warmup} warm-up, "
        f"{os.cpu_count()} CPUs visible\n"
    )
    print("| part | median ms | p90 ms |")
    print("|---|---:|---:|")
    for name, values in [
        ("end to end (client)", total),
        ("detection + alignment (2 photos)", align),
        ("embedding (batch of 2)", embed),
        ("rest: HTTP, uploads, queue, PNG crops", rest),
    ]:
        print(f"| {name} | {1000 * np.median(values):.0f} | {1000 * np.percentile(values, 90):.0f} |")


def per_request_identify(engine, gallery, probe, spectrum: str = "vis") -> list[tuple[str, float]]:
    """The Space's Identify before it kept a gallery, as the baseline: the probe and every enrolled crop embedded
    together on each request, each person ranked by their best score."""
    embeddings = engine.embed([probe.crop, *(entry.crop for entry in gallery)], spectrum)
    best: dict[str, float] = {}
    for entry, score in zip(gallery, embeddings[1:] @ embeddings[0]):
        best[entry.name] = max(best.get(entry.name, -1.0), float(score))
    return sorted(best.items(), key=lambda item: -item[1])


def bench_identify(args, model: str, workdir: Path) -> None:
    from gradio_client import Client, handle_file

    load_before = os.getloadavg()[0]
    att = Path(args.assets, "faces/att")
    people = [f"s{i}" for i in range(1, args.gallery + 1)]
    probes = [att / people[i % len(people)] / "6.pgm" for i in range(args.warmup + args.requests)]

    # in this process, the ranking alone (probes aligned beforehand), the baseline and the engine interleaved so that
    # both see the same load; wall time and CPU time of the process (both torch threads)
    import torch

    sys.path.insert(0, str(REPO_ROOT / "spaces/edgeface-hfr"))
    from hfr_space import FaceEngine

    torch.set_num_threads(args.threads)
    engine = FaceEngine(model, adapters=os.environ.get("HFR_HF_ADAPTERS", "none"))
    start = time.perf_counter()
    gallery, _ = engine.enrol([att / p / "1.pgm" for p in people], people)
    enrol_s = time.perf_counter() - start
    aligned = [engine.align(path) for path in probes]
    timed = {"before": [], "after": []}
    hits = 0
    ways = {
        "before": lambda engine, gallery, probe: per_request_identify(engine, gallery, probe)[0][0],
        "after": lambda engine, gallery, probe: engine.identify(gallery, probe, "vis")[0][0].name,
    }
    for i, probe in enumerate(aligned):
        for name, run in ways.items():
            wall, cpu = time.perf_counter(), time.process_time()
            best = run(engine, gallery, probe)
            if i >= args.warmup:
                timed[name].append((time.perf_counter() - wall, time.process_time() - cpu))
                hits += name == "after" and best == probes[i].parent.name
    del engine, gallery  # free the model before the Space loads its own

    server, url = start_space(model, args.threads, workdir)
    try:
        client = Client(url, verbose=False)
        start = time.perf_counter()
        client.predict([handle_file(str(att / p / "1.pgm")) for p in people], "\n".join(people), api_name="/enrol")
        enrol_client_s = time.perf_counter() - start
        end_to_end = []
        for i, probe in enumerate(probes):
            start = time.perf_counter()
            client.predict(handle_file(str(probe)), "vis", "1e-2", "", api_name="/identify")
            if i >= args.warmup:
                end_to_end.append(time.perf_counter() - start)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(
        f"Space identify, gallery of {len(people)} AT&T faces (one per person), probes sN/6.pgm "
        f"(rank-1 {hits}/{args.requests}), {args.threads} torch threads, {args.requests} sequential requests after "
        f"{args.warmup} warm-up, {os.cpu_count()} CPUs visible, load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after\n"
    )
    print("| part | median ms | p90 ms | CPU median ms |")
    print("|---|---:|---:|---:|")
    for name, values in [
        ("ranking in process, before: probe + every gallery crop embedded per request", timed["before"]),
        ("ranking in process, after: engine.identify (probe embedded, gallery searched)", timed["after"]),
        ("identify end to end (client: upload, probe alignment, ranking, PNG crop)", [(t, None) for t in end_to_end]),
    ]:
        wall = [w for w, _ in values]
        cpu = f"{1000 * np.median([c for _, c in values]):.1f}" if values[0][1] is not None else "–"
        print(f"| {name} | {1000 * np.median(wall):.1f} | {1000 * np.percentile(wall, 90):.1f} | {cpu} |")
    print(f"\nEnrol of the {len(people)} images: {enrol_client_s:.2f} s through the page, {enrol_s:.2f} s in process.")


if __name__ == "__main__":
    main()
