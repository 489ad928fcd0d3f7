"""Adaptation benchmark: every adapter preset on the pseudo-thermal protocol, for EdgeFace-XXS and -XS, with the
real-thermal measures (PUJ-T360 / PUJ-FONE, the people kept for measuring) beside the pseudo ones.

    python scripts/bench_adaptation.py [--variants xxs xs] [--presets ln ln_stem ... auto] [--output runs/bench_adaptation]
        [--runs LABEL ...]   # only these runs (labels as printed, e.g. "ln_stem, pseudo pairs only")
        [--auto-budget 1200] [--auto-epochs 3] [--auto-finalists 3]   # the preset search of the `auto` run

For each variant and preset it runs `hfr_hf.experiment.run_experiment` (frozen vs adapted on test identities never
seen in training) and prints trainable parameters, time per epoch, cross-spectral EER / TAR@FAR=1 % / rank-1,
VIS→VIS AUC, AT&T all-pairs TAR@FAR 1e-3 / 1e-4, and the real-thermal EER per camera and FONE→T360 rank-1 before
and after. Every run trains as the main job does by default (`run_experiment` with `thermal`: the unpaired real
LWIR faces of the PUJ train people beside the pseudo pairs, `REAL_THERMAL_LOSS`); the ablation runs the default
preset again on the pseudo pairs alone, without self-distillation, and without each real-thermal term. Then one epoch of
1,000 pseudo pairs (rendering and augmentation included) on xxs with the default preset: wall time and peak memory,
in a fresh process. `auto` (`adapter_preset="auto"`, `hfr_hf.preset_search`) runs beside the fixed presets; every run
also reports its validation figures by the search's rule (pseudo validation EER, the PUJ validation people's
real-thermal EER, their mean: the score), and the summary says whether `auto` reached the best fixed preset's score. Results go to `<output>/bench_adaptation.json`. Official weights come from HFR_HF_WEIGHTS_DIR (or
the Hub); faces from HFR_HF_ASSETS (default ../shared/assets).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from hfr_hf.adapters import ADAPTER_PRESETS

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("HFR_HF_ASSETS", REPO.parent / "shared" / "assets"))
ALL_PRESETS = list(ADAPTER_PRESETS)


def _converted(variant: str, root: Path) -> Path:
    from hfr_hf.convert import convert_checkpoint, official_checkpoint_path

    folder = root / f"edgeface-{variant}"
    if not (folder / "config.json").is_file():
        convert_checkpoint(official_checkpoint_path(variant), folder, overwrite=True)
    return folder


def _row(report: dict, label: str) -> dict:
    frozen, adapted, t = report["results"]["frozen"], report["results"]["adapted"], report["training"]
    return {
        "run": label,
        "variant": report["variant"],
        "preset": report["adapter_preset"],
        "learning_rate": t.get("learning_rate"),
        **_validation_row(report),
        "trainable": t["trainable_parameters"],
        "trainable_percent": t["trainable_percent"],
        "s_per_epoch": t["time_per_epoch_s"],
        "eer": (frozen["cross"]["eer"], adapted["cross"]["eer"]),
        "tar_1e-2": (frozen["cross"]["tar_at_far"]["1e-2"], adapted["cross"]["tar_at_far"]["1e-2"]),
        "rank1": (frozen["identification"]["rank1"], adapted["identification"]["rank1"]),
        "vis_auc": (frozen["vis"]["auc"], adapted["vis"]["auc"]),
        **_real_row(report),
    }


def _validation_row(report: dict) -> dict:
    """What the preset search ranks by, for the adapter the run kept (validation identities / PUJ validation people)."""
    v = report.get("validation") or {}
    real = v.get("real_thermal")
    search = report.get("preset_search")
    out = {
        "val_pseudo_eer": v.get("pseudo_eer"),
        "val_real_eer": real["eer"] if real else None,
        "val_score": v.get("score"),
    }
    if search:
        out["search_s"] = search["elapsed_s"]
        out["search_tried"] = sum(r["status"] == "done" for r in search["candidates"])
        out["search_candidates"] = len(search["candidates"])
    return out


def _real_row(report: dict) -> dict:
    """Real-thermal and fine RGB figures, (frozen, adapted) pairs."""
    out = {}
    real = report.get("real_thermal")
    if real:
        f, a = real["frozen"], real["adapted"]
        out["t360_eer"] = (f["puj_t360"]["eer"], a["puj_t360"]["eer"])
        out["fone_eer"] = (f["puj_fone"]["eer"], a["puj_fone"]["eer"])
        out["cross_rank1"] = (f["cross"]["rank1"], a["cross"]["rank1"])
        out["cross_eer"] = (f["cross"]["eer"], a["cross"]["eer"])
    rgb = report["results"]["frozen"].get("att_all_pairs")
    if rgb:
        a = report["results"]["adapted"]["att_all_pairs"]
        for key in ("1e-3", "1e-4"):
            out[f"att_tar_{key}"] = (rgb["tar_at_far"][key], a["tar_at_far"][key])
        out["att_impostor_mean"] = (rgb["impostor_mean"], a["impostor_mean"])
    return out


def _table(rows: list[dict]) -> str:
    head = (
        "| variant | run | lr | trainable | s/epoch | val pseudo EER | val real EER | val score | pseudo EER "
        "| pseudo rank-1 | AT&T TAR@1e-3 | AT&T TAR@1e-4 | T360 EER | FONE EER | FONE→T360 rank-1 | FONE→T360 EER |"
        "\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    pair = lambda r, k, f=".3f": f"{r[k][0]:{f}} → {r[k][1]:{f}}" if k in r else "–"  # noqa: E731
    one = lambda r, k: "–" if r.get(k) is None else f"{r[k]:.3f}"  # noqa: E731
    lines = [head]
    for r in rows:
        run = f"{r['run']} → {r['preset']}" if r["run"] == "auto" else r["run"]
        lines.append(
            f"| {r['variant']} | {run} | {'–' if r.get('learning_rate') is None else format(r['learning_rate'], '.0e')} | {r['trainable']:,} ({r['trainable_percent']:.2f} %) "
            f"| {r['s_per_epoch']:.1f} | {one(r, 'val_pseudo_eer')} | {one(r, 'val_real_eer')} | {one(r, 'val_score')} "
            f"| {pair(r, 'eer')} | {pair(r, 'rank1')} | {pair(r, 'att_tar_1e-3', '.4f')} | {pair(r, 'att_tar_1e-4', '.4f')} "
            f"| {pair(r, 't360_eer')} | {pair(r, 'fone_eer')} | {pair(r, 'cross_rank1')} | {pair(r, 'cross_eer')} |"
        )
    return "\n".join(lines)


def _auto_verdict(rows: list[dict]) -> list[str]:
    """Per variant: did `auto` reach the best fixed preset's validation score (lower is better)?"""
    out = []
    for variant in sorted({r["variant"] for r in rows}):
        auto = [r for r in rows if r["variant"] == variant and r["run"] == "auto"]
        fixed = [r for r in rows if r["variant"] == variant and r["run"] in ALL_PRESETS and r["val_score"] is not None]
        if not auto or not fixed or auto[0]["val_score"] is None:
            continue
        best = min(fixed, key=lambda r: r["val_score"])
        a = auto[0]
        verdict = "reaches" if a["val_score"] <= best["val_score"] else "does not reach"
        out.append(
            f"{variant}: auto ({a['preset']}, lr {a['learning_rate']:.0e}; search {a['search_s']:.0f} s, "
            f"{a['search_tried']} of {a['search_candidates']} candidates) val score {a['val_score']:.4f} {verdict} the "
            f"best fixed preset's ({best['run']}: {best['val_score']:.4f})"
        )
    return out


def one_epoch(model: Path, protocol: Path, output: Path, pairs: int, preset: str) -> dict:
    """One training epoch of `pairs` pseudo pairs (each aligned crop linked as several images of its identity, every
    render drawn afresh), in this process; wall time of the epoch and peak RSS."""
    from hfr_hf.training import load_config, train

    data = output / "epoch_data"
    crops = sorted((protocol / "aligned").glob("*/*.png"))
    for n in range(pairs):
        source = crops[n % len(crops)]
        link = data / source.parent.name / f"{source.stem}_{n // len(crops)}.png"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(source.resolve())
    config = load_config(
        None,
        model=str(model),
        data=str(data),
        data_type="pseudo",
        output_dir=str(output / "epoch_run"),
        split_fractions=(1.0, 0.0, 0.0),
        num_epochs=1,
        checkpoint_every=0,
        adapter_preset=preset,
        max_train_pairs=pairs,
    )
    started = time.perf_counter()
    result = train(config)
    return {
        "pairs": result.report["data"]["train"]["pairs"],
        "epoch_s": result.report["epoch_times_s"][0],
        "train_call_s": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    from hfr_hf.adapters import DEFAULT_ADAPTER_PRESET

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["xxs", "xs"])
    parser.add_argument("--presets", nargs="+", default=ALL_PRESETS + ["auto"], choices=ALL_PRESETS + ["auto"])
    parser.add_argument("--auto-budget", type=float, help="seconds of the auto run's preset search (the recipe's)")
    parser.add_argument("--auto-epochs", type=int, help="first epochs each candidate trains (the recipe's)")
    parser.add_argument("--auto-finalists", type=int, default=3, help="candidates continued to the full length")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "bench_adaptation")
    parser.add_argument("--epoch-pairs", type=int, default=1000, help="pairs of the one-epoch timing (0: skip it)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the ablation runs")
    parser.add_argument("--epoch-only", action="store_true", help="only the one-epoch timing (run in a child)")
    parser.add_argument("--reuse", action="store_true", help="take the runs that already have a report.json as done")
    parser.add_argument("--protocol", type=Path, help="protocol folder to use or build (default: <output>/protocol)")
    parser.add_argument("--thermal", type=Path, default=ASSETS / "thermal", help="PUJ-T360 / PUJ-FONE folder")
    parser.add_argument("--runs", nargs="+", help="only the runs with these labels")
    parser.add_argument(
        "--epochs", type=int, help="training epochs of every run (default: the experiment's: 30, pseudo pairs alone 15)"
    )
    args = parser.parse_args(argv)
    output = args.output
    output.mkdir(parents=True, exist_ok=True)
    protocol = args.protocol or output / "protocol"
    models = output / "models"

    if args.epoch_only:
        print(
            json.dumps(one_epoch(_converted("xxs", models), protocol, output, args.epoch_pairs, DEFAULT_ADAPTER_PRESET))
        )
        return 0

    import torch

    from hfr_hf.experiment import run_experiment

    rows, reports = [], {}
    for variant in args.variants:
        model = _converted(variant, models)
        auto = {
            "auto_budget_s": args.auto_budget,
            "auto_epochs": args.auto_epochs,
            "auto_finalists": args.auto_finalists,
        }
        auto = {k: v for k, v in auto.items() if v is not None}  # unset: the main job's recipe
        # every run trains with the main job's default recipe (the real PUJ train people's LWIR faces beside the
        # pseudo pairs, REAL_THERMAL_LOSS); the ablation takes one part away at a time
        runs = [(preset, preset, auto if preset == "auto" else None, True) for preset in args.presets]
        if not args.no_ablation:
            runs += [
                (f"{DEFAULT_ADAPTER_PRESET}, pseudo pairs only", DEFAULT_ADAPTER_PRESET, None, False),
                (
                    f"{DEFAULT_ADAPTER_PRESET}, no self-distillation",
                    DEFAULT_ADAPTER_PRESET,
                    {"loss": {"self_distillation_weight": 0.0}},
                    True,
                ),
                (
                    f"{DEFAULT_ADAPTER_PRESET}, no real identity term",
                    DEFAULT_ADAPTER_PRESET,
                    {"loss": {"target_identity_weight": 0.0}},
                    True,
                ),
                (
                    f"{DEFAULT_ADAPTER_PRESET}, no real alignment term",
                    DEFAULT_ADAPTER_PRESET,
                    {"loss": {"alignment_weight": 0.0}},
                    True,
                ),
            ]
        if args.runs:
            runs = [r for r in runs if r[0] in args.runs]
        if args.epochs:
            runs = [
                (label, preset, {**(training or {}), "num_epochs": args.epochs}, real)
                for label, preset, training, real in runs
            ]
        for label, preset, training, real_target in runs:
            started = time.perf_counter()
            run_dir = output / variant / label.replace(", ", "_").replace(" + ", "_plus_").replace(" ", "_")
            if args.epochs:  # a shortened run is not the default-length one of that label
                run_dir = run_dir.with_name(f"{run_dir.name}_{args.epochs}_epochs")
            if args.reuse and (run_dir / "report.json").is_file():  # finished by an earlier, interrupted call
                report = json.loads((run_dir / "report.json").read_text())
                rows.append({**_row(report, label), "run_s": None})
                reports[f"{variant}/{label}"] = report
                continue
            result = run_experiment(
                model,
                run_dir,
                att=ASSETS / "faces" / "att",
                yale=ASSETS / "faces" / "yale",
                adapter_preset=preset,
                protocol_dir=protocol,
                thermal=args.thermal,
                training=training,
                real_target=real_target,
                plots=False,
                progress=False,
            )
            row = _row(result.report, label)
            row["run_s"] = time.perf_counter() - started
            rows.append(row)
            reports[f"{variant}/{label}"] = result.report
            print(f"{variant} {label} ({row['run_s']:.0f} s):\n{result.table()}", flush=True)
    summary = {
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "rows": rows,
        "reports": reports,
    }
    if args.epoch_pairs:
        child = subprocess.run(
            [sys.executable, __file__, "--epoch-only", "--output", str(output), "--epoch-pairs", str(args.epoch_pairs)]
            + ["--protocol", str(protocol)],
            capture_output=True,
            text=True,
            check=True,
        )
        summary["one_epoch"] = json.loads(child.stdout.strip().splitlines()[-1])
    (output / "bench_adaptation.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(_table(rows))
    for line in _auto_verdict(rows):
        print(line)
    if "one_epoch" in summary:
        e = summary["one_epoch"]
        print(
            f"\nOne epoch of {e['pairs']} pseudo pairs (xxs, {DEFAULT_ADAPTER_PRESET}, rendering and augmentation "
            f"included): {e['epoch_s']:.1f} s; peak RSS {e['peak_rss_mb']:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
