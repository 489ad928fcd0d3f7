"""CPU inference benchmark of the EdgeFace variants across backends: torch eager fp32 and int8, onnxruntime fp32
and int8.

Per variant the model comes from the shared assets when they are there (`--assets`, default $HFR_HF_ASSETS or
../shared/assets): the real EdgeFace-XXS and XS weights, the seeded random weights of the official γ layouts;
otherwise (and for `base`) it is built from its config with random weights. Timing does not depend on the
weights, but which layers the int8 models quantise does. Backends:

* `torch-fp32`: `EdgeFaceModel` in eval mode under `torch.inference_mode()`;
* `torch-int8`: the same with int8 dynamic `nn.Linear` layers (`hfr_hf.quantization.quantize_torch`);
* `ort-fp32`: the file of `hfr_hf.onnx_export.export_onnx` on onnxruntime (`OnnxEdgeFace`);
* `ort-int8`: that file quantised by `hfr_hf.quantization.quantize_onnx` (its default: smoothed, dynamic int8
  MatMul layers; `ort-int8-static`, static QDQ Conv/MatMul/Gemm, is not run by default).

The int8 models quantise the layers that keep the embeddings of the calibration faces (Yale, resized) within
cosine 0.995 of the float ones. torch and onnxruntime both run `--threads` intra-op threads (default 2), each
runtime from one process-wide pool: with a pool per onnxruntime session, the idle pool's spinning threads compete
with the running one when the backends are interleaved (XXS fp32 batch-1 p90 5.4 ms instead of 1.4). Measured:

* file size (MiB): model.safetensors, the int8 state dict as torch saves it, the .onnx files;
* load time (ms): from the file to a model ready to run (median of 3);
* batch-1 latency: median, p10 and p90 in ms, and the ratio of medians to torch fp32 in the same run;
* batch-32 throughput: images/s of the median batch-32 forward;
* peak RSS (MiB): in a fresh child process, the increase of the peak RSS over one batch-32 forward after loading
  and one batch-1 forward (Linux: reset through /proc/self/clear_refs, see `peak_rss_child`);
* min cosine of each backend's embeddings to torch fp32 on AT&T faces (80: images 1 and 2 of each person).

The machine may be shared, so the backends of a variant are interleaved: each round runs every backend for a few
warm-up then timed calls, and the medians over all rounds are compared; a load burst then slows all alike.
Reference figures are timm's EdgeNeXt (the official EdgeFace code) on the same kind of 2-core machine. Run from
the repository root:

    python scripts/bench_inference.py [--variants xxs xs] [--threads 2] [--json r.json] [--markdown r.md]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from hfr_hf.configuration_edgeface import EDGEFACE_VARIANTS, EdgeFaceConfig
from hfr_hf.image_processing_edgeface import EdgeFaceImageProcessor
from hfr_hf.images import list_images, load_image
from hfr_hf.modeling_edgeface import EdgeFaceModel

# timm EdgeNeXt, 2 threads: (batch-1 latency ms, batch-32 img/s)
REFERENCE = {"xxs": (5.4, 684), "xs": (8.4, 411), "xs_gamma_06": (9.4, 370), "s_gamma_05": (11.0, 242)}
BACKENDS = ("torch-fp32", "torch-int8", "ort-fp32", "ort-int8", "ort-int8-static")
DEFAULT_BACKENDS = ("torch-fp32", "torch-int8", "ort-fp32", "ort-int8")
CHECKPOINTS = {  # official-format weights in the shared assets
    "xxs": ("weights/edgeface/edgeface_xxs_q.pt", "real"),
    "xs": ("weights/edgeface/edgeface_xs_q.pt", "real"),
    "xs_gamma_06": ("golden/edgeface_xs_gamma_06_official.pt", "random (official layout)"),
    "s_gamma_05": ("golden/edgeface_s_gamma_05_official.pt", "random (official layout)"),
}
MIB = 2**20


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def default_assets() -> Path:
    return Path(os.environ.get("HFR_HF_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets"))


def prepare(variant: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Model folder, ONNX files and int8 layer choices of one variant in `workdir` (reused when already there)."""
    from hfr_hf.convert import convert_checkpoint
    from hfr_hf.onnx_export import export_onnx
    from hfr_hf.quantization import calibration_pixel_values, quantize_onnx, quantize_torch

    folder = workdir / variant
    record_path = workdir / f"{variant}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    checkpoint, weights = CHECKPOINTS.get(variant, (None, None))
    if checkpoint and (args.assets / checkpoint).is_file():
        convert_checkpoint(args.assets / checkpoint, folder, overwrite=True)
    else:
        torch.manual_seed(0)
        EdgeFaceModel(EdgeFaceConfig.from_variant(variant)).save_pretrained(folder)
        EdgeFaceImageProcessor().save_pretrained(folder)
        weights = "random (seed 0)"
    processor = EdgeFaceImageProcessor()
    yale = args.assets / "faces/yale"
    if yale.is_dir():
        calibration, calibration_source = calibration_pixel_values(yale, processor, 128), "Yale faces, resized"
    else:
        calibration = np.random.default_rng(0).uniform(-1, 1, (64, 3, 112, 112)).astype(np.float32)
        calibration_source = "random pixels (no assets)"
    record = {"variant": variant, "weights": weights, "folder": str(folder), "calibration": calibration_source}
    record["ort-fp32"] = str(export_onnx(folder, workdir / f"{variant}.onnx"))
    for backend, method in (("ort-int8", "dynamic"), ("ort-int8-static", "static")):
        if backend in args.backends:
            path = workdir / f"{variant}-int8-{method}.onnx"
            report = quantize_onnx(record["ort-fp32"], path, calibration, method=method, progress=False)
            record[backend] = str(path)
            record[f"{backend}-report"] = report.to_dict()
    if "torch-int8" in args.backends:
        model = EdgeFaceModel.from_pretrained(folder).eval()
        _, report = quantize_torch(model, calibration, progress=False)
        record["torch-int8-report"] = report.to_dict()
    record_path.write_text(json.dumps(record, indent=2))
    return record


def load_backend(backend: str, record: dict, threads: int, shared_pool: bool = False):
    """A function from pixel values (N, 3, 112, 112) float32 to raw embeddings, and the model's file size in bytes."""
    if backend.startswith("ort"):
        from hfr_hf.onnx_inference import OnnxEdgeFace

        if shared_pool:  # the process-wide pool that main() sized, as torch's backends share torch's
            options = ort.SessionOptions()
            options.use_per_session_threads = False
            model = OnnxEdgeFace(record[backend], session_options=options)
        else:
            model = OnnxEdgeFace(record[backend], threads=threads)
        return model.embed, os.path.getsize(record[backend])
    model = EdgeFaceModel.from_pretrained(record["folder"]).eval()
    size = os.path.getsize(Path(record["folder"]) / "model.safetensors")
    if backend == "torch-int8":
        from hfr_hf.quantization import quantize_torch

        # The chosen layers are known: quantise those, without the selection.
        layers = record["torch-int8-report"]["quantized_layers"]
        model, _ = quantize_torch(model, None, progress=False, layers=layers)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        size = buffer.tell()

    def run(pixel_values: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(pixel_values=torch.from_numpy(pixel_values)).embeddings.numpy()

    return run, size


def interleaved_times(runs: dict, batch: int, rounds: int, per_round: int, warmup: int) -> dict[str, np.ndarray]:
    """Seconds of each timed call per backend; each round gives every backend `warmup` untimed then `per_round`
    timed calls on the same random batch."""
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, 112, 112)).astype(np.float32)
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            for _ in range(warmup):
                run(x)
            for _ in range(per_round):
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
    return {name: np.array(t) for name, t in times.items()}


def rss_kib(field: str) -> int:
    """VmRSS (current) or VmHWM (peak) of this process in KiB, from /proc/self/status (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_rss_child(backend: str, record_path: str, threads: int) -> None:
    """Runs in the child: prints the peak RSS (KiB) before and during one batch-32 forward.

    ru_maxrss of a child started by subprocess/multiprocessing already holds the *parent's* RSS at exec
    (Linux carries the high-water mark over exec), which hides the forward. So on Linux the peak is reset
    with /proc/self/clear_refs and read from VmHWM; elsewhere ru_maxrss is the (coarser) fallback.
    """
    run, _ = load_backend(backend, json.loads(Path(record_path).read_text()), threads)
    run(np.zeros((1, 3, 112, 112), np.float32))
    x = np.random.default_rng(0).uniform(-1, 1, (32, 3, 112, 112)).astype(np.float32)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS to the current RSS
        before = rss_kib("VmRSS")
        run(x)
        after, method = rss_kib("VmHWM"), "VmHWM"
    except OSError:
        scale = 1024 if sys.platform == "darwin" else 1  # ru_maxrss: bytes on macOS, KiB on Linux
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // scale
        run(x)
        after, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // scale, "ru_maxrss"
    print(json.dumps({"before_kib": before, "after_kib": after, "method": method}))


def measure_peak_rss(backend: str, record_path: Path, threads: int) -> dict:
    """Peak RSS of a batch-32 forward, measured in a fresh child process."""
    cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(threads)]
    cmd += ["--_peak-rss-child", backend, str(record_path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    kib = json.loads(out.strip().splitlines()[-1])
    return {"peak_rss_increase_mib": (kib["after_kib"] - kib["before_kib"]) / 1024, "peak_rss_method": kib["method"]}


def evaluation_faces(assets: Path) -> np.ndarray | None:
    att = assets / "faces/att"
    if not att.is_dir():
        return None
    paths = [p for p in list_images(att) if p.stem in ("1", "2")]
    return EdgeFaceImageProcessor()([load_image(p) for p in paths], return_tensors="np").pixel_values


def bench(record: dict, args: argparse.Namespace, workdir: Path, faces: np.ndarray | None) -> list[dict]:
    from hfr_hf.quantization import min_cosine

    variant = record["variant"]
    load_average = os.getloadavg()[0]
    runs, sizes, loads = {}, {}, {}
    for backend in args.backends:
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            runs[backend], sizes[backend] = load_backend(backend, record, args.threads, shared_pool=True)
            seconds.append(time.perf_counter() - start)
        loads[backend] = float(np.median(seconds)) * 1e3
    lat = interleaved_times(runs, 1, args.rounds, args.per_round, args.warmup)
    b32 = interleaved_times(runs, 32, args.rounds32, args.per_round32, 1)
    reference = runs["torch-fp32"](faces) if faces is not None and "torch-fp32" in runs else None
    base_median = float(np.median(lat["torch-fp32"])) * 1e3 if "torch-fp32" in lat else None
    rows = []
    for backend in args.backends:
        ms = lat[backend] * 1e3
        report = record.get(f"{backend}-report")
        rows.append(
            {
                "variant": variant,
                "backend": backend,
                "weights": record["weights"],
                "file_mib": sizes[backend] / MIB,
                "load_ms": loads[backend],
                "latency_ms_median": float(np.median(ms)),
                "latency_ms_p10": float(np.percentile(ms, 10)),
                "latency_ms_p90": float(np.percentile(ms, 90)),
                "latency_vs_torch_fp32": float(np.median(ms)) / base_median if base_median else None,
                "throughput_b32_img_s": 32 / float(np.median(b32[backend])),
                **measure_peak_rss(backend, workdir / f"{variant}.json", args.threads),
                "min_cosine_to_torch_fp32": None if reference is None else min_cosine(runs[backend](faces), reference),
                "int8_layers": None
                if report is None
                else f"{len(report['quantized_layers'])}/{report['candidate_layers']}",
                "int8_report": report,
                "load_average_1min": load_average,
                "reference_latency_ms": REFERENCE.get(variant, (None, None))[0],
                "reference_throughput_img_s": REFERENCE.get(variant, (None, None))[1],
            }
        )
    return rows


def markdown_table(rows: list[dict], settings: dict) -> str:
    lines = [
        f"torch {settings['torch']} and onnxruntime {settings['onnxruntime']}, {settings['threads']} intra-op threads "
        f"each, {settings['cpu']}; backends interleaved; load average {settings['load_before']} before, "
        f"{settings['load_after']} after.",
        "",
    ]
    header = [
        "variant",
        "backend",
        "file MiB",
        "load ms",
        "b1 latency ms (p10–p90)",
        "× torch fp32",
        "b32 img/s",
        "peak RSS +MiB (b32)",
        "min cos to fp32",
        "int8 layers",
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|")
    for r in rows:
        cos = r["min_cosine_to_torch_fp32"]
        ratio = r["latency_vs_torch_fp32"]
        cells = [
            r["variant"],
            r["backend"],
            f"{r['file_mib']:.1f}",
            f"{r['load_ms']:.0f}",
            f"{r['latency_ms_median']:.2f} ({r['latency_ms_p10']:.2f}–{r['latency_ms_p90']:.2f})",
            "–" if ratio is None else f"{ratio:.2f}",
            f"{r['throughput_b32_img_s']:.0f}",
            f"{r['peak_rss_increase_mib']:.1f}",
            "–" if cos is None else f"{cos:.4f}",
            r["int8_layers"] or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    first = {v: next(r for r in rows if r["variant"] == v) for v in variants}
    lines.append("")
    lines.append("Weights: " + "; ".join(f"{v} {first[v]['weights']}" for v in variants) + ".")
    lines.append(
        "Load average (1 min) when each variant started: "
        + ", ".join(f"{v} {first[v]['load_average_1min']:.1f}" for v in variants)
        + "."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(EDGEFACE_VARIANTS), choices=list(EDGEFACE_VARIANTS))
    parser.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads (default 2)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batch-1 calls per backend and round")
    parser.add_argument("--rounds", type=int, default=10, help="batch-1 rounds")
    parser.add_argument("--per-round", type=int, default=20, help="timed batch-1 calls per backend and round")
    parser.add_argument("--rounds32", type=int, default=5, help="batch-32 rounds")
    parser.add_argument("--per-round32", type=int, default=4, help="timed batch-32 calls per backend and round")
    parser.add_argument("--assets", type=Path, default=default_assets(), help="shared assets (weights, faces)")
    parser.add_argument("--workdir", type=Path, help="keep converted, exported and quantised models here (reused)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as markdown here")
    parser.add_argument("--_peak-rss-child", dest="peak_rss_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.peak_rss_child:
        peak_rss_child(*args.peak_rss_child, args.threads)
        return
    if "torch-fp32" not in args.backends:
        args.backends.insert(0, "torch-fp32")  # the baseline of the ratios

    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    faces = evaluation_faces(args.assets)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        records = [prepare(variant, args, workdir) for variant in args.variants]
        # Once onnxruntime has a process-wide pool, every later session must use it: export and quantisation,
        # which make sessions of their own, are done first.
        ort.set_global_thread_pool_sizes(args.threads, 1)
        for record in records:
            variant = record["variant"]
            rows.extend(bench(record, args, workdir, faces))
            print(f"{variant}: done", file=sys.stderr, flush=True)
            table = write_results(rows, args, load_before)  # after every variant: a crash keeps what was measured
    print("\n" + table)


def write_results(rows: list[dict], args: argparse.Namespace, load_before: str) -> str:
    settings = {
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "cpu": f"{os.cpu_count()} CPUs ({cpu_name()})",
        "load_before": load_before,
        "load_after": " ".join(f"{v:.1f}" for v in os.getloadavg()),
    }
    table = markdown_table(rows, settings)
    if args.json:
        Path(args.json).write_text(json.dumps({**settings, "results": rows}, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return table


if __name__ == "__main__":
    main()
