"""`adapter_preset="auto"`: the trainable set and its learning rate chosen on validation identities within a budget.

Each candidate, an adapter preset (`hfr_hf.adapters.ADAPTER_PRESETS`; the presets are the layer groups the adapter
machinery has: LayerNorms, the stem, whole early stages, and `full`, every weight) at a learning rate (the preset's
own times a factor of `auto_learning_rate_factors`), trains the first `auto_epochs` of the full run's own schedule
(its learning-rate warm-up and decay over `num_epochs`, stopped early: a schedule compressed into one epoch favours
high rates that the full length does not) on the training identities by the same loop as the full run, and is
scored on validation data only:

- the pseudo-spectral validation EER (VIS vs rendered target on the paired set's validation identities, the best
  epoch's, as the full run keeps its best adapter);
- where real thermal validation data is given (`real_validation_data`, the folder holding the PUJ sets), the mean of
  three EERs of that adapter on the PUJ `validation` people only (T360 thermal→thermal, FONE thermal→thermal,
  FONE→T360): the real spectrum, which renders cannot vouch for.

The score is the pseudo EER alone, or, with real thermal, the mean of the pseudo EER and the real-thermal EER (each
side half: renders give many pairs, the real faces the truth); lower is better. Candidates run in a fixed order (every
preset at its own learning rate first, then the other factors), and a candidate is started only while the time spent
plus the mean time of one candidate fits `auto_budget_s`; the first always runs, so there is always a choice. The
lowest score wins (ties: fewer trainable parameters, then the earlier candidate). The best `auto_finalists` then
continue their runs to `auto_finalist_epochs` (default: the whole schedule) while the budget allows, and the lowest
finalist score wins; the full run continues the chosen candidate's run from its checkpoint (`continue_chosen`), so
its epochs are not trained twice and a finalist trained to the end is the full run. With real validation data every
run, the trials and the chosen one's full run alike, keeps the epoch with the lowest score (see `train`), so the full
run is judged by the rule that chose it. PUJ `test` people and the paired
set's test identities are never trained on, scored or looked at. The search, every candidate included (those the
budget left out, marked so), goes to `preset_search.json` in the output folder and into the training report.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .adapters import ADAPTER_PRESETS

__all__ = [
    "AUTO_PRESET",
    "SCORE_RULE",
    "SEARCH_RECORD",
    "continue_chosen",
    "real_validation_eers",
    "search_presets",
    "validation_score",
]

AUTO_PRESET = "auto"
SEARCH_RECORD = "preset_search.json"
SEARCH_FOLDER = "preset_search"  # the candidates' runs, in the output folder
SCORE_RULE = (
    "pseudo validation EER; with real thermal validation data, (pseudo validation EER + real-thermal validation EER) "
    "/ 2, the real-thermal EER being the mean of the T360, FONE and FONE→T360 EERs of the PUJ validation people; "
    "lowest wins, ties to fewer trainable parameters"
)
_REAL_KEYS = {"t360_eer": "puj_t360", "fone_eer": "puj_fone", "cross_eer": "cross"}


def validation_score(pseudo_eer: float, real_eer: float | None = None) -> float:
    """The search's rule (see the module docstring): lower is better."""
    return pseudo_eer if real_eer is None else (pseudo_eer + real_eer) / 2


def real_validation_eers(model, processor, root: str | os.PathLike) -> dict[str, float]:
    """EERs of `model` on the PUJ `validation` people under `root` (T360, FONE, FONE→T360) and their mean, `eer`."""
    from .evaluation.real_thermal import real_thermal_metrics

    metrics = real_thermal_metrics(model, processor, root, split="validation")
    out = {key: metrics[group]["eer"] for key, group in _REAL_KEYS.items()}
    out["eer"] = sum(out.values()) / len(out)
    return out


def _validation_people(root: str | os.PathLike) -> list[str]:
    """The PUJ people under `root` whose images the search scores (the split's `validation` people), for the record;
    a folder without the PUJ sets is refused here, before any training."""
    from .data.puj import load_puj_split, puj_images

    wanted = [p for p, s in load_puj_split().items() if s == "validation"]
    return sorted({p for camera in puj_images(root, wanted).values() for p in camera})


def _candidates(config) -> list[tuple[str, float]]:
    presets = config.auto_presets or list(ADAPTER_PRESETS)
    factors = sorted(config.auto_learning_rate_factors, key=lambda f: (f != 1.0, abs(math.log(f))))
    # rounded so that the record reads 9e-4, not 0.0009000000000000001; a pair named twice is tried once
    pairs = [(p, float(f"{ADAPTER_PRESETS[p].learning_rate * f:.4g}")) for f in factors for p in presets]
    return list(dict.fromkeys(pairs))


def search_presets(config, resume: bool = False) -> dict[str, Any]:
    """
    Run the search of `config` (its `adapter_preset` is "auto") and return its record (also written to
    `<output_dir>/preset_search.json`). `resume=True` takes a finished search found there instead of running one.
    """
    from .files import read_text, write_json

    output = Path(config.output_dir)
    record_path = output / SEARCH_RECORD
    if resume and record_path.is_file():
        import json

        record = json.loads(read_text(record_path, "Preset search record"))
        if record.get("settings") == _search_settings(config):
            return record
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "adapter_preset 'auto' searches in one process: run it without `accelerate launch --num_processes`, then "
            "train the preset and learning rate it chose (in preset_search.json) on several processes."
        )
    real_root = config.real_validation_data
    people = _validation_people(real_root) if real_root is not None else None
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    times: list[float] = []
    for preset, learning_rate in _candidates(config):
        row: dict[str, Any] = {"preset": preset, "learning_rate": learning_rate}
        rows.append(row)
        elapsed = time.perf_counter() - started
        if times and elapsed + sum(times) / len(times) > config.auto_budget_s:
            row["status"] = "skipped: budget spent"
            continue
        row.update(status="done", **_trial(config, preset, learning_rate, config.auto_epochs, _folder(output, row)))
        times.append(row["time_s"])
    finalists = _finalist_round(config, rows, started, output)
    done = [r for r in rows if r["status"] == "done"]
    best = min(done, key=_rule(rows))
    if len(finalists) >= 2:  # a round of one cannot change the choice
        best = min(finalists, key=_rule(rows, final=True))
    for row in done:  # only the chosen run's checkpoint is continued (`continue_chosen`)
        if row is not best:
            shutil.rmtree(_folder(output, row) / "checkpoints", ignore_errors=True)
    record = {
        "rule": SCORE_RULE,
        "budget_s": config.auto_budget_s,
        "elapsed_s": time.perf_counter() - started,
        "epochs_per_candidate": config.auto_epochs,
        "finalist_epochs": _finalist_epochs(config),
        "real_validation": None if real_root is None else {"root": str(real_root), "people": people},
        "candidates": rows,
        "chosen": _chosen(best, final=len(finalists) >= 2) | {"run": str(_folder(output, best))},
        "why": (
            f"lowest validation score ({best['final']['score']:.4f}) of the {len(finalists)} finalists continued to "
            f"epoch {_finalist_epochs(config)} (the first round's best of {len(done)} candidates)"
            if len(finalists) >= 2
            else f"lowest validation score ({best['score']:.4f}) of the {len(done)} candidates trained "
            f"{config.auto_epochs} epochs"
        )
        + (
            f"; {len(rows) - len(done)} left out by the {config.auto_budget_s:g} s budget"
            if len(done) < len(rows)
            else ""
        ),
        "settings": _search_settings(config),
    }
    write_json(record_path, record)
    return record


def _folder(output: Path, row: dict[str, Any]) -> Path:
    return output / SEARCH_FOLDER / f"{row['preset']}_lr{row['learning_rate']:.0e}"


def _trial(config, preset: str, learning_rate: float, epochs: int | None, folder: Path, more: bool = False):
    """Train one candidate on the training identities into `folder` for the first `epochs` of the full run's
    schedule (None: all of it) and score it on validation only; `more` continues the run already there."""
    from .training import train

    if not more:
        shutil.rmtree(folder, ignore_errors=True)
    trial = dataclasses.replace(
        config,
        adapter_preset=preset,
        learning_rate=learning_rate,
        stop_after_epochs=epochs,
        checkpoint_every=0,
        output_dir=str(folder),
    )
    begun = time.perf_counter()
    report = train(trial, resume=more, evaluate_test=False).report
    row: dict[str, Any] = dict(
        epochs=report["epochs"],
        steps=report["global_step"],
        trainable_parameters=report["trainable_parameters"],
        pseudo_eer=report["best"]["eer"],
        best_epoch=report["best"]["epoch"],
    )
    if row["pseudo_eer"] is None:
        raise ValueError(
            "adapter_preset 'auto' scores candidates on validation identities, and this data has none: give "
            "split_fractions a validation share, or a split file / split column with validation identities."
        )
    real = report["best"]["real_thermal"]  # the trial scored its epochs on them (real_validation_data)
    if real is not None:
        row["real"] = real
    row["score"] = report["best"]["score"]
    row["time_s"] = time.perf_counter() - begun
    return row


def _finalist_epochs(config) -> int:
    return min(config.auto_finalist_epochs or config.num_epochs, config.num_epochs)


def continue_chosen(record: dict[str, Any], output_dir: str | os.PathLike) -> bool:
    """Put the chosen candidate's run (its last checkpoint, best adapter and logs) into `output_dir`, so that the
    full run continues it where the search stopped instead of training it again; False (nothing done) when that
    run is gone or `output_dir` already holds checkpoints of its own."""
    from .training import list_checkpoints

    run = Path(record["chosen"].get("run", ""))
    output = Path(output_dir)
    if not list_checkpoints(run) or list_checkpoints(output):
        return False
    output.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoints", "best_adapter", "logs"):
        if (run / name).is_dir():
            shutil.rmtree(output / name, ignore_errors=True)
            shutil.copytree(run / name, output / name)
    return True


def _finalist_round(config, rows: list[dict[str, Any]], started: float, output: Path) -> list[dict[str, Any]]:
    """Successive halving's second round: the first round's `auto_finalists` best candidates continued to
    `auto_finalist_epochs` of the same schedule (by default all of it: a short ranking is not the longer one), each
    while its estimated time (its first-round time per epoch × the epochs left) still fits the budget; returns the
    finalists trained."""
    epochs = _finalist_epochs(config)
    if config.auto_finalists < 2 or epochs <= config.auto_epochs:
        return []
    done = [r for r in rows if r["status"] == "done"]
    ranked = sorted(done, key=_rule(rows))
    finalists = []
    for row in ranked[: config.auto_finalists]:
        estimate = row["time_s"] / max(row["epochs"], 1) * (epochs - row["epochs"])
        if time.perf_counter() - started + estimate > config.auto_budget_s:
            row["final"] = {"status": "skipped: budget spent"}
            continue
        result = _trial(config, row["preset"], row["learning_rate"], epochs, _folder(output, row), more=True)
        row["final"] = {"status": "done", **{k: v for k, v in result.items() if k != "trainable_parameters"}}
        finalists.append(row)
    return finalists


def _rule(rows: list[dict[str, Any]], final: bool = False):
    """Sort key of the search's rule: the lower score (the finalist's with `final`), then fewer trainable
    parameters, then the earlier candidate."""
    return lambda r: ((r["final"] if final else r)["score"], r["trainable_parameters"], rows.index(r))


def _chosen(row: dict[str, Any], final: bool) -> dict[str, Any]:
    scored = row["final"] if final else row
    chosen = {"preset": row["preset"], "learning_rate": row["learning_rate"]}
    chosen |= {k: scored[k] for k in ("score", "pseudo_eer")}
    return chosen | ({"real_eer": scored["real"]["eer"]} if "real" in scored else {})


def _search_settings(config) -> dict[str, Any]:
    """What a recorded search depends on: a resumed run reuses it only when these are unchanged."""
    values = config.to_dict()
    # num_epochs stays: every candidate trains the first epochs of its schedule
    full_run_only = ("max_steps", "checkpoint_every", "checkpoints_total_limit")
    for key in ("output_dir", "log_every", "num_workers", *full_run_only):
        values.pop(key, None)
    return values
