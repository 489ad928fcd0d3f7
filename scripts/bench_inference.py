"""CPU inference benchmark of the EdgeFace variants (`hfr_hf.EdgeFaceModel`).

For each variant the model is built from its config (random weights: timing does not depend on them),
put in eval mode and run under `torch.inference_mode()` on CPU with `--threads` intra-op threads. Measured:

* parameter count and fp32 weight size (MiB);
* batch-1 latency: median, p10 and p90 in ms of single 1×3×112×112 forwards after warm-up;
* batch-32 throughput: images/s of the median batch-32 forward after warm-up;
* peak RSS (MiB): in a fresh child process (this script with a hidden flag), the increase of the peak
  RSS over one batch-32 forward, after building the model and one batch-1 forward (so that one-off
  library initialisation is not counted). On Linux the peak is reset and read through /proc (see
  `peak_rss_child` for why plain `ru_maxrss` is not enough), elsewhere `ru_maxrss` is used.

Reference figures are timm's EdgeNeXt (the official EdgeFace code) on the same kind of 2-core machine
with 2 threads. Variants run one after the other. Run from the repository root:

    python scripts/bench_inference.py [--variants xxs xs] [--threads 2] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from hfr_hf.configuration_edgeface import EDGEFACE_VARIANTS, EdgeFaceConfig
from hfr_hf.modeling_edgeface import EdgeFaceModel

# timm EdgeNeXt, 2 threads: (batch-1 latency ms, batch-32 img/s)
REFERENCE = {"xxs": (5.4, 684), "xs": (8.4, 411), "xs_gamma_06": (9.4, 370), "s_gamma_05": (11.0, 242)}
MIB = 2**20


def build(variant: str) -> EdgeFaceModel:
    torch.manual_seed(0)
    return EdgeFaceModel(EdgeFaceConfig.from_variant(variant)).eval()


def time_forwards(model: torch.nn.Module, batch: int, warmup: int, repeats: int) -> np.ndarray:
    """Seconds of each of `repeats` forwards of a random batch, after `warmup` untimed ones."""
    x = torch.randn(batch, 3, 112, 112)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(pixel_values=x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return np.array(times)


def rss_kib(field: str) -> int:
    """VmRSS (current) or VmHWM (peak) of this process in KiB, from /proc/self/status (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_rss_child(variant: str) -> None:
    """Runs in the child: prints the peak RSS (KiB) before and during one batch-32 forward.

    ru_maxrss of a child started by subprocess/multiprocessing already holds the *parent's* RSS at exec
    (Linux carries the high-water mark over exec), which hides the forward. So on Linux the peak is reset
    with /proc/self/clear_refs and read from VmHWM; elsewhere ru_maxrss is the (coarser) fallback.
    """
    model = build(variant)
    with torch.inference_mode():
        model(pixel_values=torch.randn(1, 3, 112, 112))
        x = torch.randn(32, 3, 112, 112)
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS to the current RSS
            before = rss_kib("VmRSS")
            model(pixel_values=x)
            after, method = rss_kib("VmHWM"), "VmHWM"
        except OSError:
            scale = 1024 if sys.platform == "darwin" else 1  # ru_maxrss: bytes on macOS, KiB on Linux
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // scale
            model(pixel_values=x)
            after, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // scale, "ru_maxrss"
    print(json.dumps({"before_kib": before, "after_kib": after, "method": method}))


def measure_peak_rss(variant: str, threads: int) -> dict:
    """Peak RSS of a batch-32 forward, measured in a fresh child process."""
    cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(threads), "--_peak-rss-child", variant]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    kib = json.loads(out.strip().splitlines()[-1])
    return {
        "peak_rss_increase_mib": (kib["after_kib"] - kib["before_kib"]) / 1024,
        "peak_rss_total_mib": kib["after_kib"] / 1024,
        "peak_rss_method": kib["method"],
    }


def bench(variant: str, args: argparse.Namespace) -> dict:
    model = build(variant)
    params = sum(p.numel() for p in model.parameters())
    lat = time_forwards(model, 1, args.warmup, args.repeats) * 1e3
    b32 = time_forwards(model, 32, args.warmup32, args.repeats32)
    del model
    return {
        "variant": variant,
        "params": params,
        "weights_fp32_mib": params * 4 / MIB,
        "latency_ms_median": float(np.median(lat)),
        "latency_ms_p10": float(np.percentile(lat, 10)),
        "latency_ms_p90": float(np.percentile(lat, 90)),
        "throughput_b32_img_s": 32 / float(np.median(b32)),
        **measure_peak_rss(variant, args.threads),
        "reference_latency_ms": REFERENCE.get(variant, (None, None))[0],
        "reference_throughput_img_s": REFERENCE.get(variant, (None, None))[1],
    }


def print_table(rows: list[dict], threads: int) -> None:
    print(f"\ntorch {torch.__version__}, {threads} threads, CPU\n")
    header = [
        "variant",
        "params",
        "weights MiB",
        "b1 latency ms (p10-p90)",
        "ref ms",
        "b32 img/s",
        "ref img/s",
        "peak RSS +MiB (b32)",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        ref_ms, ref_tp = r["reference_latency_ms"], r["reference_throughput_img_s"]
        cells = [
            r["variant"],
            f"{r['params']:,}",
            f"{r['weights_fp32_mib']:.1f}",
            f"{r['latency_ms_median']:.2f} ({r['latency_ms_p10']:.2f}-{r['latency_ms_p90']:.2f})",
            "-" if ref_ms is None else f"{ref_ms:.1f}",
            f"{r['throughput_b32_img_s']:.0f}",
            "-" if ref_tp is None else f"{ref_tp}",
            f"{r['peak_rss_increase_mib']:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(EDGEFACE_VARIANTS), choices=list(EDGEFACE_VARIANTS))
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--warmup", type=int, default=20, help="batch-1 warm-up forwards")
    parser.add_argument("--repeats", type=int, default=200, help="batch-1 timed forwards")
    parser.add_argument("--warmup32", type=int, default=10, help="batch-32 warm-up forwards")
    parser.add_argument("--repeats32", type=int, default=30, help="batch-32 timed forwards")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--_peak-rss-child", dest="peak_rss_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.peak_rss_child:
        peak_rss_child(args.peak_rss_child)
        return

    rows = []
    for variant in args.variants:
        rows.append(bench(variant, args))
        print(f"{variant}: done", file=sys.stderr, flush=True)
    print_table(rows, args.threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
