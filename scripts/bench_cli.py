"""Cold start of the `hfr-hf` command: wall time and peak memory of fresh processes.

Runs each command `--repeats` times in a new process and reports the median and worst wall time and the peak RSS
(the child's own ru_maxrss): `hfr-hf --help`, `hfr-hf verify --help`, and `hfr-hf verify` of two aligned 112×112
AT&T crops with a converted EdgeFace-XXS (converted and aligned once, before timing). Run from the repository root:

    python scripts/bench_cli.py [--assets ../shared/assets] [--repeats 5]

The command is this repository's code run as the console script runs it (`sys.argv[0] = "hfr-hf"`, then
`hfr_hf.cli.main()`), by this Python, so a worktree is measured rather than whatever `hfr-hf` is installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=os.environ.get("HFR_HF_ASSETS", "../shared/assets"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    assets = Path(args.assets)
    # the console script's four lines, importing hfr_hf from this repository (PYTHONPATH below)
    script = "import sys; sys.argv[0] = 'hfr-hf'; from hfr_hf.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", script]
    root = str(Path(__file__).resolve().parents[1])
    env = {"HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    os.environ.update(env)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        setup = [
            [*command, "convert", str(assets / "weights/edgeface/edgeface_xxs_q.pt"), "--output", str(tmp / "xxs")],
            [*command, "align", str(assets / "faces/att/s1"), str(tmp / "crops")],
        ]
        for argv in setup:
            subprocess.run(argv, check=True, capture_output=True)
        cases = {
            "hfr-hf --help": [*command, "--help"],
            "hfr-hf verify --help": [*command, "verify", "--help"],
            "hfr-hf verify (2 aligned crops, XXS)": [
                *command,
                "verify",
                str(tmp / "crops/1.png"),
                str(tmp / "crops/2.png"),
                "--model",
                str(tmp / "xxs"),
            ],
        }
        find = "import importlib.util; print(importlib.util.find_spec('hfr_hf').origin)"  # without importing it
        print(
            f"measuring {subprocess.run([sys.executable, '-c', find], capture_output=True, text=True).stdout.strip()}"
        )
        print(f"{'command':<40} {'median s':>9} {'max s':>7} {'peak RSS MiB':>13}")
        for name, argv in cases.items():
            runs = [run(argv) for _ in range(args.repeats)]
            if any(code != 0 for _, _, code in runs):
                raise SystemExit(f"{name} failed: exit codes {[code for _, _, code in runs]}")
            walls = [wall for wall, _, _ in runs]
            print(f"{name:<40} {statistics.median(walls):>9.2f} {max(walls):>7.2f} {max(r for _, r, _ in runs):>13.0f}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
