"""End-to-end time of a verify request to the Gradio Space (spaces/edgeface-hfr), two 640×480 photos, on CPU.

Starts `python spaces/edgeface-hfr/app.py` on 127.0.0.1 with `--threads` torch threads (default 2), then sends
`--requests` verify requests one after another through `gradio_client` (upload of both photos, queue, detection and
alignment, embedding, the two aligned crops back as PNG) and prints the median and p90 of the wall time seen by the
client, with the split that the app reports in its answer: detection + alignment, embedding, and the rest (HTTP,
uploads, queue, pre/post-processing). The photos are two deepface photos of one person, fitted into 640×480 (grey borders, aspect kept).

    python scripts/bench_space.py [--assets ../shared/assets] [--model runs/edgeface-xxs] [--requests 30]

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
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
