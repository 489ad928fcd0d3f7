"""Which onnxruntime int8 settings for EdgeFace: the evidence behind `hfr_hf.quantization`'s defaults.

For one variant (real XXS weights from the shared assets by default) each setting is quantised with the package's
accuracy-aware layer selection (cosine target 0.995 on 128 Yale faces), then compared on the 400 AT&T faces
(resized): how many layers could be quantised, the smallest cosine to the float embeddings, the file size, and
the batch-1 / batch-32 time relative to the float graph, measured interleaved with it on onnxruntime
(`--threads` intra-op threads). Settings: static QDQ / QOperator, per-channel / per-tensor weights, with and without
onnxruntime's `quant_pre_process`; dynamic per-channel / per-tensor. Run from the repository root:

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
from hfr_hf.inference import list_images, load_image  # noqa: E402

SETTINGS = {
    "static QDQ per-channel": {"method": "static", "quant_format": "qdq", "per_channel": True},
    "static QDQ per-tensor": {"method": "static", "quant_format": "qdq", "per_channel": False},
    "static QOperator per-channel": {"method": "static", "quant_format": "qoperator", "per_channel": True},
    "static QDQ per-channel, pre-processed": {"method": "static", "quant_format": "qdq", "per_channel": True},
    "dynamic per-channel": {"method": "dynamic", "per_channel": True},
    "dynamic per-tensor": {"method": "dynamic", "per_channel": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="xxs", choices=list(CHECKPOINTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--assets", type=Path, default=default_assets())
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    from onnxruntime.quantization.shape_inference import quant_pre_process

    from hfr_hf.convert import convert_checkpoint
    from hfr_hf.onnx_export import export_onnx
    from hfr_hf.onnx_inference import OnnxEdgeFace
    from hfr_hf.quantization import calibration_pixel_values, min_cosine, quantize_onnx

    processor = EdgeFaceImageProcessor()
    calibration = calibration_pixel_values(args.assets / "faces/yale", processor, 128)
    att = list_images(args.assets / "faces/att")
    faces = processor([load_image(p) for p in att], return_tensors="np").pixel_values
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = convert_checkpoint(args.assets / CHECKPOINTS[args.variant][0], tmp / args.variant)
        float_file = export_onnx(folder, tmp / "float.onnx")
        preprocessed = tmp / "preprocessed.onnx"
        # onnxruntime's symbolic shape inference fails on the exporter's Expand of the attention's L2 norm.
        quant_pre_process(str(float_file), str(preprocessed), skip_symbolic_shape=True)
        float_model = OnnxEdgeFace(float_file, threads=args.threads)
        reference = float_model.embed(faces)
        for name, setting in SETTINGS.items():
            source = preprocessed if "pre-processed" in name else float_file
            output = tmp / f"{len(rows)}.onnx"
            start = time.perf_counter()
            report = quantize_onnx(source, output, calibration, progress=False, **setting)
            seconds = time.perf_counter() - start
            model = OnnxEdgeFace(output, threads=args.threads)
            runs = {"float": float_model.embed, name: model.embed}
            b1 = interleaved_times(runs, 1, 10, 20, 3)
            b32 = interleaved_times(runs, 32, 4, 3, 1)
            rows.append(
                {
                    "setting": name,
                    "layers": f"{len(report.quantized_layers)}/{report.candidate_layers}",
                    "quantise_s": seconds,
                    "min_cosine_att": min_cosine(model.embed(faces), reference),
                    "file_mib": os.path.getsize(output) / 2**20,
                    "b1_vs_float": float(np.median(b1[name]) / np.median(b1["float"])),
                    "b32_vs_float": float(np.median(b32[name]) / np.median(b32["float"])),
                }
            )
            print(rows[-1], file=sys.stderr, flush=True)
        float_mib = os.path.getsize(float_file) / 2**20
    print(f"\n{args.variant}, float file {float_mib:.1f} MiB, {args.threads} threads, load {os.getloadavg()[0]:.1f}\n")
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
