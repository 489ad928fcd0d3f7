"""Which onnxruntime int8 settings for EdgeFace: the evidence behind `hfr_hf.quantization`'s defaults.

For one variant (real XXS weights from the shared assets by default) each setting is quantised with the package's
accuracy-aware layer selection (cosine target 0.995 on 128 Yale faces), then compared on the 400 AT&T faces
(resized): how many layers could be quantised, the smallest cosine to the float embeddings, the file size, and
the batch-1 / batch-32 time relative to the float graph, measured interleaved with it on onnxruntime
(`--threads` intra-op threads, one process-wide pool as in `bench_inference.py`). Settings: dynamic (MatMul) and
static (QDQ / QOperator; Conv, MatMul, Gemm), per-channel / per-tensor weights, with and without smoothing. Run
from the repository root:

    python scripts/compare_int8_settings.py [--variant xxs] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import CHECKPOINTS, default_assets, interleaved_times  # noqa: E402

from hfr_hf.image_processing_edgeface import EdgeFaceImageProcessor  # noqa: E402
from hfr_hf.images import list_images, load_image  # noqa: E402

SETTINGS = {
    "dynamic MatMul per-channel, smoothed (default)": {"method": "dynamic"},
    "dynamic MatMul per-channel, not smoothed": {"method": "dynamic", "smoothing": None},
    "dynamic MatMul per-tensor, smoothed": {"method": "dynamic", "per_channel": False},
    "static QDQ per-channel, smoothed": {"method": "static"},
    "static QDQ per-channel, not smoothed": {"method": "static", "smoothing": None},
    "static QDQ per-tensor, smoothed": {"method": "static", "per_channel": False},
    "static QOperator per-channel, smoothed": {"method": "static", "quant_format": "qoperator"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="xxs", choices=list(CHECKPOINTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--assets", type=Path, default=default_assets())
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    import onnxruntime as ort

    from hfr_hf.convert import convert_checkpoint
    from hfr_hf.onnx_export import export_onnx
    from hfr_hf.onnx_inference import OnnxEdgeFace
    from hfr_hf.quantization import calibration_pixel_values, min_cosine, quantize_onnx

    processor = EdgeFaceImageProcessor()
    calibration = calibration_pixel_values(args.assets / "faces/yale", processor, 128)
    att = list_images(args.assets / "faces/att")
    faces = processor([load_image(p) for p in att], return_tensors="np").pixel_values
    rows, files = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = convert_checkpoint(args.assets / CHECKPOINTS[args.variant][0], tmp / args.variant)
        float_file = export_onnx(folder, tmp / "float.onnx")
        for name, setting in SETTINGS.items():
            files[name] = tmp / f"{len(rows)}.onnx"
            start = time.perf_counter()
            report = quantize_onnx(float_file, files[name], calibration, progress=False, **setting)
            rows.append(
                {
                    "setting": name,
                    "layers": f"{len(report.quantized_layers)}/{report.candidate_layers}",
                    "quantise_s": time.perf_counter() - start,
                    "file_mib": os.path.getsize(files[name]) / 2**20,
                }
            )
        # Timing last: once onnxruntime has a process-wide pool, every later session (quantisation's too) must use it.
        ort.set_global_thread_pool_sizes(args.threads, 1)
        options = ort.SessionOptions()
        options.use_per_session_threads = False
        models = {
            name: OnnxEdgeFace(path, session_options=options) for name, path in {"float": float_file, **files}.items()
        }
        runs = {name: model.embed for name, model in models.items()}
        b1 = interleaved_times(runs, 1, 10, 20, 3)
        b32 = interleaved_times(runs, 32, 4, 3, 1)
        reference = models["float"].embed(faces)
        for row in rows:
            name = row["setting"]
            row["min_cosine_att"] = min_cosine(models[name].embed(faces), reference)
            row["b1_vs_float"] = float(np.median(b1[name]) / np.median(b1["float"]))
            row["b32_vs_float"] = float(np.median(b32[name]) / np.median(b32["float"]))
            print(row, file=sys.stderr, flush=True)
        float_mib = os.path.getsize(float_file) / 2**20
    b1_float, b32_float = float(np.median(b1["float"])) * 1e3, 32 / float(np.median(b32["float"]))
    print(
        f"\n{args.variant}, float file {float_mib:.1f} MiB, batch 1 {b1_float:.2f} ms, batch 32 {b32_float:.0f} img/s, "
        f"{args.threads} threads, load {os.getloadavg()[0]:.1f}\n"
    )
    print("| setting | layers | min cos (AT&T) | file MiB | b1 time / float | b32 time / float | quantise s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['layers']} | {r['min_cosine_att']:.4f} | {r['file_mib']:.1f} | "
            f"{r['b1_vs_float']:.2f} | {r['b32_vs_float']:.2f} | {r['quantise_s']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
