"""Face detection + alignment throughput on CPU (`hfr_hf.alignment.FaceAligner`, MTCNN).

Measures, with `--threads` intra-op threads (default 2):

* photos/s for 640×480 photos with one face (the shared deepface photos, resized to 640×480), one at a time
  and in batches of `--batch` (detection batches the R-Net/O-Net stages across images);
* crops/s for a batch of aligned-crop-sized (112×112) images, the case of re-aligning a dataset of crops;
* with `--detector FOLDER` (from `hfr-hf train-detector`), the same for thermal frames: the 640×480 photos
  rendered as long-wave thermal frames (`hfr_hf.alignment.detector_training.render_frame`, seeded), aligned
  with `FaceAligner(spectrum="thermal")`, and the real PUJ-T360 / PUJ-FONE images (206×240).

With `--opencv-threads N`, OpenCV's own thread pool (resizes, warps) gets N threads instead of its default (one
per core), which on a small machine competes with torch's. Medians over `--repeats` runs after a warm-up. Run from the repository root:

    python scripts/bench_alignment.py [--assets ../shared/assets] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
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
    parser.add_argument("--detector", help="cross-spectral detector folder: adds thermal rows")
    parser.add_argument("--opencv-threads", type=int, help="OpenCV's threads (default: OpenCV's own choice)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.opencv_threads is not None:
        cv2.setNumThreads(args.opencv_threads)

    files = sorted(Path(args.assets, "faces/deepface").glob("img*.jpg"))[: args.photos]
    photos = [np.asarray(Image.open(f).convert("RGB").resize((640, 480), Image.Resampling.BILINEAR)) for f in files]
    crops = [np.asarray(Image.open(f).convert("RGB").resize((112, 112), Image.Resampling.BILINEAR)) for f in files]
    aligner = FaceAligner()
    found = sum(not isinstance(r, Exception) for r in aligner.detect_and_align(photos))

    def one_at_a_time():
        for photo in photos:
            aligner.detect_and_align([photo])

    def batched(images, using=aligner):
        def run():
            for start in range(0, len(images), args.batch):
                using.detect_and_align(images[start : start + args.batch])

        return run

    rows = [
        ("640×480 photos, one at a time", len(photos), median_seconds(one_at_a_time, args.repeats)),
        (f"640×480 photos, batches of {args.batch}", len(photos), median_seconds(batched(photos), args.repeats)),
        (f"112×112 crops, batches of {args.batch}", len(crops), median_seconds(batched(crops), args.repeats)),
    ]
    notes = [f"faces found in {found}/{len(photos)} photos"]
    if args.detector:
        from hfr_hf.alignment.detector_training import render_frame

        rng = np.random.default_rng(0)
        frames = []
        for photo, result in zip(photos, aligner.detect_and_align(photos)):
            if not isinstance(result, Exception):
                frames.append(render_frame(photo, result[0].landmarks, "thermal", rng))
        real = [np.asarray(Image.open(f)) for f in sorted(Path(args.assets, "thermal").glob("puj_*/*/*.tiff"))[::8]]
        thermal = FaceAligner(spectrum="thermal", detector_weights=args.detector)
        thermal_found = sum(not isinstance(r, Exception) for r in thermal.detect_and_align(frames))
        notes.append(f"thermal faces found in {thermal_found}/{len(frames)} rendered frames")

        def thermal_one_at_a_time():
            for frame in frames:
                thermal.detect_and_align([frame])

        rows += [
            ("640×480 thermal frames, one at a time", len(frames), median_seconds(thermal_one_at_a_time, args.repeats)),
            (
                f"640×480 thermal frames, batches of {args.batch}",
                len(frames),
                median_seconds(batched(frames, thermal), args.repeats),
            ),
            (
                f"206×240 real PUJ thermal, batches of {args.batch}",
                len(real),
                median_seconds(batched(real, thermal), args.repeats),
            ),
        ]
    print(f"torch {torch.__version__}, {args.threads} threads, OpenCV {cv2.getNumThreads()}; {'; '.join(notes)}\n")
    print("| input | images | median s | images/s |")
    print("|---|---:|---:|---:|")
    for name, count, seconds in rows:
        print(f"| {name} | {count} | {seconds:.3f} | {count / seconds:.1f} |")


if __name__ == "__main__":
    main()
