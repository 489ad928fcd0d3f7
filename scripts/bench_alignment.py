"""Face detection + alignment throughput on CPU (`hfr_hf.alignment.FaceAligner`, MTCNN).

Measures, with `--threads` intra-op threads (default 2):

* photos/s for 640×480 photos with one face (the shared deepface photos, resized to 640×480), one at a time
  and in batches of `--batch` (detection batches the R-Net/O-Net stages across images);
* crops/s for a batch of aligned-crop-sized (112×112) images, the case of re-aligning a dataset of crops.

Medians over `--repeats` runs after a warm-up. Run from the repository root:

    python scripts/bench_alignment.py [--assets ../shared/assets] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hfr_hf.alignment import FaceAligner


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=os.environ.get("HFR_HF_ASSETS", "../shared/assets"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photos", type=int, default=10, help="how many deepface photos to use")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    files = sorted(Path(args.assets, "faces/deepface").glob("img*.jpg"))[: args.photos]
    photos = [np.asarray(Image.open(f).convert("RGB").resize((640, 480), Image.Resampling.BILINEAR)) for f in files]
    crops = [np.asarray(Image.open(f).convert("RGB").resize((112, 112), Image.Resampling.BILINEAR)) for f in files]
    aligner = FaceAligner()
    found = sum(not isinstance(r, Exception) for r in aligner.detect_and_align(photos))

    def one_at_a_time():
        for photo in photos:
            aligner.detect_and_align([photo])

    def batched(images):
        def run():
            for start in range(0, len(images), args.batch):
                aligner.detect_and_align(images[start : start + args.batch])

        return run

    rows = [
        ("640×480 photos, one at a time", len(photos), median_seconds(one_at_a_time, args.repeats)),
        (f"640×480 photos, batches of {args.batch}", len(photos), median_seconds(batched(photos), args.repeats)),
        (f"112×112 crops, batches of {args.batch}", len(crops), median_seconds(batched(crops), args.repeats)),
    ]
    print(f"torch {torch.__version__}, {args.threads} threads; faces found in {found}/{len(photos)} photos\n")
    print("| input | images | median s | images/s |")
    print("|---|---:|---:|---:|")
    for name, count, seconds in rows:
        print(f"| {name} | {count} | {seconds:.3f} | {count / seconds:.1f} |")


if __name__ == "__main__":
    main()
