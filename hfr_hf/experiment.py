"""The pseudo-thermal xEdgeFace experiment, the README's main job: build the AT&T + Yale pseudo-thermal protocol,
evaluate the frozen EdgeFace on its unseen test identities, train an adapter on the training identities, evaluate
the adapted model the same way, and write a before/after report, the adapter and ROC/DET/CMC plots.

The test identities never appear in training or validation; their thermal probes are rendered once (seeded) and
labelled synthetic. "cross" is VIS gallery vs thermal probe verification, "vis" is VIS vs VIS verification (what
self-distillation must keep), "identification" is thermal probes searched in the VIS gallery.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .adapters import DEFAULT_ADAPTER_PRESET
from .preset_search import AUTO_PRESET

__all__ = ["ExperimentResult", "att_all_pairs", "evaluate_protocol_files", "format_table", "run_experiment"]

REPORT_KIND = "xedgeface_experiment"
PROTOCOL_NAME = "pseudo-thermal AT&T + Yale"
PROTOCOL_DATASET = "pseudo-thermal-att-yale"
FARS = (1e-2, 1e-3)
# The protocol has ~350 training pairs, so an epoch is a dozen steps; validation EER levels off after ~12 epochs
# (scripts/bench_adaptation.py). No intermediate checkpoints: the run takes a minute or two.
EXPERIMENT_TRAINING = {"num_epochs": 15, "checkpoint_every": 0}
# With real thermal faces (`thermal=`), the main job also trains on the unpaired LWIR images of the PUJ split's
# `train` people by default: pseudo pairs alone teach the renderer, not the spectrum (no real-thermal gain). The
# pseudo terms are weighted up (4) so that the renders' EER still halves, self-distillation (4) keeps RGB, and the
# identity term (0.2) carries the real people (README "Real thermal faces": the weights each measured on XXS, XS;
# 4 rather than 3 since the face-gained renders: a better validation score on each of seeds 1-3).
REAL_THERMAL_LOSS = {
    "target_identity_weight": 0.2,
    "alignment_weight": 0.5,
    "self_distillation_weight": 4.0,
    "contrastive_weight": 4.0,
    "cross_distillation_weight": 4.0,
}
# 30 epochs, not the pseudo-only job's 15: with the real people the validation score (pseudo + PUJ validation EER)
# was better or equal on all four seeds measured on XXS (0.088 against 0.105 on seed 0), and in 15 epochs XS kept
# neither the pseudo EER nor T360's.
# `--preset auto`: its candidates train the first 3 of those 30 epochs (one is only the warm-up, where high rates
# look best), and its finalists continue to the end, within 1,200 s on XXS (the chosen one is then the full run).
REAL_THERMAL_TRAINING = {"num_epochs": 30, "auto_epochs": 3, "auto_budget_s": 1200.0}
# What a base needs beyond that, measured: in 30 epochs XS's visible embeddings moved (AT&T TAR@1e-4 -0.0144) until
# self-distillation 10 held them (-0.0027); its epochs take ~1.4x XXS's, and so does `auto`'s budget.
REAL_THERMAL_BY_VARIANT = {"xs": {"loss": {"self_distillation_weight": 10.0}, "auto_budget_s": 1800.0}}


@dataclass
class ExperimentResult:
    output: Path
    report: dict
    adapter: Path
    plots: list[Path]

    def table(self) -> str:
        return format_table(self.report)


def _metrics(verification: dict) -> dict:
    """The report's per-protocol figures, a subset of `verification_metrics`."""
    return {
        "auc": verification["auc"],
        "eer": verification["eer"],
        "tar_at_far": {k: verification["tar_at_far"][k] for k in ("1e-2", "1e-3")},
        "genuine_pairs": verification["genuine_pairs"],
        "impostor_pairs": verification["impostor_pairs"],
    }


def evaluate_protocol_files(model, processor, protocol, batch_size: int = 64, progress: bool = False) -> dict:
    """
    Metrics of `model` on a [`PseudoThermalProtocol`]'s three lists, every image embedded once:
    `{"cross": M, "vis": M, "identification": {...}}` plus, under `"_curves"`, the genuine/impostor scores and CMC
    for plotting (not JSON; drop before saving).
    """
    from .evaluation import evaluate_protocol, read_protocol, resolve_images
    from .evaluation.verification import DEFAULT_FARS
    from .inference import embed_images

    protocols = {
        "cross": read_protocol(protocol.verification_cross),
        "vis": read_protocol(protocol.verification_vis),
        "identification": read_protocol(protocol.identification),
    }
    files = {}  # key → file, each image once across the three lists
    for proto in protocols.values():
        files.update(zip(*resolve_images(proto, protocol.root)))
    vectors = embed_images(model, processor, list(files.values()), batch_size, progress=progress, align="never")
    embeddings = dict(zip(files, vectors))
    out: dict[str, Any] = {"_curves": {}}
    fars = tuple(sorted(set(DEFAULT_FARS) | set(FARS)))
    for name, proto in protocols.items():
        result = evaluate_protocol(proto, embeddings, fars=fars)
        (fold, entry), *_ = result.report["folds"].items()
        if name == "identification":
            ident = entry["identification"]
            gallery = len(set(proto.side("gallery")[0]))
            out[name] = {
                "rank1": ident["rank1"],
                "rank5": ident["rank5"],
                "probes": len(proto.side("probe")[0]),
                "gallery": gallery,
            }
            out["_curves"]["cmc"] = result.cmcs[fold]
        else:
            out[name] = _metrics(entry["verification"])
            out[name]["threshold_at_far"] = {k: entry["verification"]["threshold_at_far"][k] for k in ("1e-2", "1e-3")}
            out["_curves"][name] = result.pairs[fold]
    return out


# The real-thermal rows of the table (hfr_hf.evaluation.real_thermal): per camera, then FONE probes vs T360 gallery.
REAL_THERMAL_ROWS = (
    ("T360 thermal→thermal EER", "puj_t360", "eer"),
    ("FONE thermal→thermal EER", "puj_fone", "eer"),
    ("T360 rank-1", "puj_t360", "rank1"),
    ("FONE rank-1", "puj_fone", "rank1"),
    ("FONE→T360 rank-1", "cross", "rank1"),
    ("FONE→T360 EER", "cross", "eer"),
)


def att_all_pairs(model, processor, root: Path, batch_size: int = 64) -> dict | None:
    """RGB kept, measured finely: verification over every pair of the protocol's aligned AT&T crops (all people,
    training ones included: what self-distillation must keep; 400 faces give 78,000 impostor pairs), TAR at FAR
    1e-3 / 1e-4 and the mean impostor cosine. None when the protocol has no AT&T faces."""
    from .evaluation import all_pairs_scores, verification_metrics
    from .inference import embed_images

    files = sorted((root / "aligned").glob("att_*/*.png"))
    if not files:
        return None
    embeddings = embed_images(model, processor, files, batch_size, progress=False, align="never")
    v = verification_metrics(*all_pairs_scores(embeddings @ embeddings.T, [f.parent.name for f in files]), (1e-3, 1e-4))
    keep = ("auc", "eer", "tar_at_far", "genuine_pairs", "impostor_pairs", "genuine_mean", "impostor_mean")
    return {k: v[k] for k in keep}


def format_table(report: dict) -> str:
    """Before/after table of an experiment report."""
    rows = [
        ("VIS→thermal EER", "cross", "eer"),
        ("VIS→thermal TAR@FAR=1%", "cross", ("tar_at_far", "1e-2")),
        ("VIS→thermal TAR@FAR=0.1%", "cross", ("tar_at_far", "1e-3")),
        ("VIS→thermal AUC", "cross", "auc"),
        ("thermal→VIS rank-1", "identification", "rank1"),
        ("VIS→VIS AUC", "vis", "auc"),
        ("VIS→VIS EER", "vis", "eer"),
    ]
    frozen, adapted = report["results"]["frozen"], report["results"]["adapted"]

    def get(side: dict, group: str, key) -> float:
        value = side[group]
        for k in key if isinstance(key, tuple) else (key,):
            value = value[k]
        return value

    lines = [f"{'':28} {'frozen':>8} {'adapted':>8} {'change':>8}"]
    for label, group, key in rows:
        a, b = get(frozen, group, key), get(adapted, group, key)
        lines.append(f"{label:28} {a:8.4f} {b:8.4f} {b - a:+8.4f}")
    if frozen.get("att_all_pairs") and adapted.get("att_all_pairs"):
        pairs = frozen["att_all_pairs"]["impostor_pairs"]
        for label, key in (
            ("AT&T all pairs TAR@1e-3", ("att_all_pairs", "tar_at_far", "1e-3")),
            ("AT&T all pairs TAR@1e-4", ("att_all_pairs", "tar_at_far", "1e-4")),
            ("AT&T impostor mean cos", ("att_all_pairs", "impostor_mean")),
        ):
            a, b = get(frozen, key[0], key[1:]), get(adapted, key[0], key[1:])
            lines.append(f"{label:28} {a:8.4f} {b:8.4f} {b - a:+8.4f}")
        lines[-3] += f"   ({pairs:,} impostor pairs)"
    real = report.get("real_thermal")
    if real:
        how = real["frozen"].get("alignment")
        how = f"; {how['aligned']} detected and aligned, {how['resized']} resized" if how else ""
        lines.append(f"real thermal (PUJ, {real['frozen']['people']} people never trained on{how}):")
        for label, group, key in REAL_THERMAL_ROWS:
            a, b = get(real["frozen"], group, key), get(real["adapted"], group, key)
            lines.append(f"{label:28} {a:8.4f} {b:8.4f} {b - a:+8.4f}")
    t = report["training"]
    search = report.get("preset_search")
    if search:
        lines.append(
            f"preset search ({search['elapsed_s']:.0f} s of a {search['budget_s']:g} s budget, "
            f"the first {search['epochs_per_candidate']} of {t['config']['num_epochs']} epochs each; score = "
            f"{'(pseudo + real) / 2' if search['real_validation'] else 'pseudo'} validation EER):"
        )
        for row in search["candidates"]:
            if row["status"] != "done":
                lines.append(f"  {row['preset']:14} lr {row['learning_rate']:.0e}  {row['status']}")
                continue
            real = f"  real {row['real']['eer']:.4f}" if "real" in row else ""
            chosen = (
                "  ← chosen"
                if (row["preset"], row["learning_rate"])
                == (search["chosen"]["preset"], search["chosen"]["learning_rate"])
                else ""
            )
            lines.append(
                f"  {row['preset']:14} lr {row['learning_rate']:.0e}  pseudo {row['pseudo_eer']:.4f}{real}  "
                f"score {row['score']:.4f}  ({row['time_s']:.0f} s){chosen}"
            )
            final = row.get("final")
            if final and final["status"] == "done":
                real = f"  real {final['real']['eer']:.4f}" if "real" in final else ""
                lines.append(
                    f"  {'':14}    finalist, to epoch {final['epochs']}: pseudo {final['pseudo_eer']:.4f}{real}  "
                    f"score {final['score']:.4f}  ({final['time_s']:.0f} s)"
                )
            elif final:
                lines.append(f"  {'':14}    finalist: {final['status']}")
    v = report.get("validation")
    if v and v["score"] is not None:
        real = f", real-thermal EER {v['real_thermal']['eer']:.4f} (PUJ validation people)" if v["real_thermal"] else ""
        lines.append(f"validation of the kept adapter: pseudo EER {v['pseudo_eer']:.4f}{real}, score {v['score']:.4f}")
    chosen = f"auto → {report['adapter_preset']}" if search else report["adapter_preset"]
    lines.append(
        f"adapter {chosen} (lr {t['config']['learning_rate']:.0e}): {t['trainable_parameters']:,} of "
        f"{t['total_parameters']:,} parameters ({t['trainable_percent']:.2f} %), {t['epochs']} epochs, "
        f"{t['time_per_epoch_s']:.1f} s/epoch, peak RSS {t['peak_rss_mb']:.0f} MB"
    )
    p = report["protocol"]
    lines.append(
        f"protocol {p['name']} (synthetic thermal): {p['train_identities']} training / {p['validation_identities']} "
        f"validation / {p['test_identities']} test identities"
    )
    return "\n".join(lines)


def run_experiment(
    model: str | os.PathLike,
    output: str | os.PathLike,
    att: str | os.PathLike | None = None,
    yale: str | os.PathLike | None = None,
    adapter_preset: str = DEFAULT_ADAPTER_PRESET,
    adapter_name: str = "thermal",
    protocol_dir: str | os.PathLike | None = None,
    seed: int = 0,
    training: dict | None = None,
    thermal: str | os.PathLike | None = None,
    detector: str | os.PathLike | None = None,
    plots: bool = True,
    progress: bool = True,
    real_target: bool = True,
) -> ExperimentResult:
    """
    Run the experiment on the converted EdgeFace folder `model`, writing under `output`:
    `protocol/` (aligned crops, renders, lists; reused when present; `protocol_dir` puts it elsewhere, e.g. shared
    by several runs), `training/` (checkpoints, logs, the training report), `adapter/` (the adapter chosen by
    validation EER, with a copy of the report), `report.json` and `plots/`.

    `thermal` is the folder holding the real LWIR sets `puj_t360/` and `puj_fone/`: the report and the table then
    add their measures (`hfr_hf.evaluation.real_thermal`, the PUJ people kept for measuring), frozen vs adapted.
    `detector` (a cross-spectral detector folder or Hub repo, `hfr-hf train-detector`) aligns those images with
    the faces it finds instead of resizing the registered crops.

    `training` overrides [`TrainingConfig`] fields (e.g. `{"num_epochs": 3, "loss": {"self_distillation_weight": 0}}`).
    With `thermal` and `real_target` (the default), training also reads the real LWIR faces of the PUJ split's train
    people (`real_target_data=thermal`, unless `training` names another folder) with the `REAL_THERMAL_LOSS`
    weights for `REAL_THERMAL_TRAINING`'s 30 epochs (and a base's `REAL_THERMAL_BY_VARIANT`: XS self-distillation
    10) under any `training` given, and keeps the epoch best on the pseudo and the PUJ validation people's real EER
    together (`real_validation_data`); `real_target=False` trains on the pseudo pairs alone and
    keeps the epoch best on the pseudo validation EER.

    `adapter_preset="auto"` searches presets × learning rates first (`hfr_hf.preset_search`; with `thermal`, the PUJ
    validation people score the candidates too); the report and the table then hold the search and the choice.
    Every report has `validation`: the figures (and score) the search ranks by, for the adapter kept.
    """
    from .data import build_pseudo_thermal_protocol
    from .data.puj import puj_images
    from .evaluation.real_thermal import real_thermal_metrics
    from .files import write_json
    from .inference import load_model
    from .preset_search import real_validation_eers, validation_score
    from .training import load_config, load_trained, train

    output = Path(output)
    _check_replaceable(output)
    if detector and not thermal:
        raise ValueError("A detector aligns the real thermal images: give the thermal folder too.")
    if not real_target and (training or {}).get("real_target_data"):
        raise ValueError("real_target=False trains on the pseudo pairs alone: leave real_target_data out.")
    aligner = None
    if thermal:
        puj_images(thermal)  # a wrong folder is refused before any work
        if detector:
            from .alignment import FaceAligner

            aligner = FaceAligner(spectrum="thermal", detector_weights=detector)
            aligner.cross_detector  # noqa: B018 - a wrong detector folder is refused before any work too
    output.mkdir(parents=True, exist_ok=True)
    protocol = build_pseudo_thermal_protocol(
        protocol_dir or output / "protocol", att=att, yale=yale, seed=seed, impostors_per_genuine=10, progress=progress
    )
    base, processor = load_model(str(model))
    base.eval()
    frozen = evaluate_protocol_files(base, processor, protocol, progress=progress)
    frozen["att_all_pairs"] = att_all_pairs(base, processor, protocol.root)
    real_frozen = real_thermal_metrics(base, processor, thermal, aligner=aligner) if thermal else None

    options = {**EXPERIMENT_TRAINING, **(training or {})}
    if thermal and real_target:
        options.setdefault("real_target_data", str(thermal))
        # the epoch kept is the best on the pseudo validation EER and the PUJ validation people's real EER together
        options.setdefault("real_validation_data", str(thermal))
        extra = REAL_THERMAL_BY_VARIANT.get(getattr(getattr(base, "config", None), "variant", None), {})
        given = training or {}
        recipe = {**REAL_THERMAL_TRAINING, **extra}
        options.update({k: v for k, v in recipe.items() if k not in given and k != "loss"})
        options["loss"] = {**REAL_THERMAL_LOSS, **extra.get("loss", {}), **given.get("loss", {})}
    if adapter_preset == AUTO_PRESET and thermal and "real_validation_data" not in options:
        options["real_validation_data"] = str(thermal)  # real evidence, from the PUJ validation people only
    config = load_config(
        None,
        model=str(model),
        data=str(protocol.root / "aligned"),
        data_type="pseudo",
        modality="thermal",
        split_file=str(protocol.root / "splits.json"),
        output_dir=str(output / "training"),
        adapter_preset=adapter_preset,
        adapter_name=adapter_name,
        seed=seed,
        **options,
    )
    if (output / "training").exists():  # a fresh run each time: stale checkpoints would be resumed from
        shutil.rmtree(output / "training")
    trained = train(config)
    chosen = trained.best_adapter or trained.adapter
    adapter_dir = output / "adapter"
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    shutil.copytree(chosen, adapter_dir)

    adapted_model = load_trained(base, adapter_dir, adapter_name)  # (`full`: a whole model folder, not an adapter)
    adapted = evaluate_protocol_files(adapted_model, processor, protocol, progress=progress)
    adapted["att_all_pairs"] = att_all_pairs(adapted_model, processor, protocol.root)
    real_adapted = real_thermal_metrics(adapted_model, processor, thermal, aligner=aligner) if thermal else None
    t = trained.report
    # What the preset search ranks by, for the adapter kept: so that fixed presets and `auto` compare on one rule.
    real_validation = real_validation_eers(adapted_model, processor, thermal) if thermal else None
    validation = {
        "pseudo_eer": t["best"]["eer"],
        "real_thermal": real_validation,
        "score": None
        if t["best"]["eer"] is None
        else validation_score(t["best"]["eer"], real_validation["eer"] if real_validation else None),
    }

    splits = list(protocol.splits.values())
    report = {
        "kind": REPORT_KIND,
        "variant": base.config.variant,
        "model": str(model),
        "adapter": "adapter",
        "adapter_preset": t["config"]["adapter_preset"],  # the one trained (auto: the one it chose)
        "adapter_preset_requested": adapter_preset,
        "adapter_name": adapter_name,
        "protocol": {
            "name": PROTOCOL_NAME,
            "dataset": PROTOCOL_DATASET,
            "split": "test",
            "synthetic": True,
            "modality": "thermal",
            "seed": seed,
            "train_identities": splits.count("train"),
            "validation_identities": splits.count("validation"),
            "test_identities": splits.count("test"),
            "left_out": protocol.failures,
        },
        "results": {
            "frozen": {k: v for k, v in frozen.items() if not k.startswith("_")},
            "adapted": {k: v for k, v in adapted.items() if not k.startswith("_")},
        },
        # Cosine thresholds of the adapted model at each FAR, from the impostor scores of the test identities.
        "thresholds": {
            "thermal": adapted["cross"]["threshold_at_far"],
            "vis": adapted["vis"]["threshold_at_far"],
        },
        # PUJ-T360 / PUJ-FONE, measuring people only (hfr_hf/data/puj_split.json); None without --thermal.
        "real_thermal": {"root": str(thermal), "frozen": real_frozen, "adapted": real_adapted} if thermal else None,
        # Validation identities (pseudo) and PUJ validation people (real): what chooses, never the test ones.
        "validation": validation,
        "preset_search": t["preset_search"],
        "training": {
            "trainable_parameters": t["trainable_parameters"],
            "total_parameters": t["total_parameters"],
            "trainable_percent": t["trainable_percent"],
            "epochs": t["epochs"],
            "steps": t["global_step"],
            "train_pairs": t["data"]["train"]["pairs"],
            "time_per_epoch_s": t["time_per_epoch_s"],
            "wall_time_s": t["wall_time_s"],
            "peak_rss_mb": t["peak_rss_mb"],
            "best_epoch": t["best"]["epoch"],
            "learning_rate": t["config"]["learning_rate"],
            "config": t["config"],
        },
    }
    written = []
    if plots:
        written = _plots(frozen["_curves"], adapted["_curves"], output / "plots")
        report["plots"] = [str(p.relative_to(output)) for p in written]
    write_json(output / "report.json", report)
    shutil.copy(output / "report.json", adapter_dir / "report.json")
    return ExperimentResult(output=output, report=report, adapter=adapter_dir, plots=written)


# What a training run (training.train) writes into its output folder; a `training/` holding anything else is not
# one of ours and is not deleted.
_TRAINING_OUTPUTS = {
    "checkpoints",
    "logs",
    "adapter",
    "best_adapter",
    "report.json",
    "preset_search",
    "preset_search.json",
}


def _check_replaceable(output: Path) -> None:
    """Refuse, before any work, to run where replacing `training/` or `adapter/` would delete files that an earlier
    run did not write."""
    from .convert import is_model_folder

    training, adapter = output / "training", output / "adapter"
    foreign = sorted(p.name for p in training.iterdir() if p.name not in _TRAINING_OUTPUTS) if training.is_dir() else []
    if foreign or (training.exists() and not training.is_dir()):
        raise FileExistsError(
            f"{training} is not the training folder of an earlier run (it holds {', '.join(foreign) or 'a file'}), "
            "and each run replaces that folder; move it away or choose another --output."
        )
    earlier_adapter = (adapter / "adapter_config.json").is_file() or is_model_folder(adapter)
    if adapter.exists() and not earlier_adapter and not (adapter.is_dir() and not any(adapter.iterdir())):
        raise FileExistsError(
            f"{adapter} is not the adapter of an earlier run (no adapter_config.json, nor a model config.json), "
            "and each run replaces that folder; move it away or choose another --output."
        )


def _plots(frozen: dict, adapted: dict, folder: Path) -> list[Path]:
    from .evaluation import plot_cmc, plot_det, plot_roc

    written = []
    for name, title in (("cross", "VIS gallery vs synthetic thermal probes"), ("vis", "VIS vs VIS")):
        curves = {"frozen EdgeFace": frozen[name], "xEdgeFace adapter": adapted[name]}
        written.append(plot_roc(curves, folder / f"roc_{name}.png", f"ROC — {title}"))
        written.append(plot_det(curves, folder / f"det_{name}.png", f"DET — {title}"))
    written.append(
        plot_cmc(
            {"frozen EdgeFace": np.asarray(frozen["cmc"]), "xEdgeFace adapter": np.asarray(adapted["cmc"])},
            folder / "cmc_identification.png",
            "CMC — thermal probes in the VIS gallery",
        )
    )
    return written
