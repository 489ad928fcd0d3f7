"""The Accelerate training loop: it trains only the adapter, reports, checkpoints atomically, resumes at the saved
step, runs on two processes, and rejects bad configs with sentences."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from hfr_hf import EdgeFaceModel
from hfr_hf.image_processing_edgeface import EdgeFaceImageProcessor
from hfr_hf.losses import XEdgeFaceLossConfig
from hfr_hf.training import (
    STATE_NAME,
    TrainingConfig,
    TrainingState,
    latest_checkpoint,
    list_checkpoints,
    load_config,
    train,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def workspace(tiny_config, tmp_path_factory) -> Path:
    """A tiny random EdgeFace folder (32×32 input) and 10 synthetic identities × 4 face-sized images."""
    root = tmp_path_factory.mktemp("training")
    torch.manual_seed(0)
    EdgeFaceModel(tiny_config).save_pretrained(root / "model")
    EdgeFaceImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "model")
    rng = np.random.default_rng(0)
    for i in range(10):
        pattern = rng.integers(0, 255, (14, 14, 3)).astype(np.uint8)  # what makes a person recognisable here
        folder = root / "faces" / f"id{i:02d}"
        folder.mkdir(parents=True)
        for j in range(4):
            image = np.asarray(Image.fromarray(pattern).resize((112, 112), Image.BILINEAR)).astype(np.float32)
            image += rng.normal(0, 10, image.shape)
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{j}.png")
    return root


def make_config(workspace: Path, output: str, **values) -> TrainingConfig:
    defaults = dict(
        model=str(workspace / "model"),
        data=str(workspace / "faces"),
        output_dir=str(workspace / output),
        batch_size=8,
        num_epochs=2,
        checkpoint_every=2,
        split_fractions=(0.6, 0.2, 0.2),  # 6 / 2 / 2 identities: 24 training pairs, 3 batches per epoch
        learning_rate=5e-3,
    )
    defaults.update(values)
    return load_config(None, **defaults)


@pytest.fixture(scope="module")
def full_run(workspace):
    """One uninterrupted run of 2 epochs × 3 steps, shared by the tests that read its outputs."""
    return train(make_config(workspace, "full"))


def test_run_trains_the_adapter_and_leaves_the_base_bit_identical(workspace, full_run):
    base = load_file(workspace / "model" / "model.safetensors")
    trained = load_file(full_run.output_dir / "checkpoints" / "step_000006" / "model.safetensors")
    base_keys = {k: v for k, v in trained.items() if ".ln_tuning_layers." not in k}
    adapter_keys = {k: v for k, v in trained.items() if ".ln_tuning_layers." in k}
    assert adapter_keys
    for key, value in base_keys.items():
        plain = key.removeprefix("base_model.model.").replace(".base_layer.", ".")
        assert torch.equal(value, base[plain]), key
    changed = [
        k
        for k, v in adapter_keys.items()
        if not torch.equal(v, base[k.removeprefix("base_model.model.").replace(".ln_tuning_layers.default", "")])
    ]
    # a random tiny net's layer scales (1e-6) starve a few LayerNorms of gradient; most must move
    assert len(changed) >= len(adapter_keys) // 2


def test_report_has_the_fields(full_run):
    report = json.loads(full_run.report_path.read_text())
    assert report["global_step"] == 6
    for key in ("trainable_parameters", "total_parameters", "wall_time_s", "time_per_epoch_s", "peak_rss_mb", "config"):
        assert report[key] is not None, key
    assert 0 < report["trainable_parameters"] < report["total_parameters"]
    assert len(report["validation"]) == 2
    for when in ("before", "after"):
        for side in ("cross", "vis"):
            assert {"auc", "eer", "tar_at_far_1e-2"} <= set(report["test"][when][side])
    assert (full_run.adapter / "adapter_model.safetensors").is_file()
    assert (full_run.best_adapter / "xedgeface_adapter.json").is_file()
    assert report["config"]["loss"] == XEdgeFaceLossConfig().to_dict()


def test_loss_terms_are_logged_per_step(full_run):
    with open(full_run.output_dir / "logs" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    steps = sorted({int(r["step"]) for r in rows if r["name"] == "train/loss"})
    assert steps == [1, 2, 3, 4, 5, 6]
    assert {"train/contrastive", "train/self_distillation", "train/lr"} <= {r["name"] for r in rows}


class Interrupt(Exception):
    pass


def test_resume_continues_from_the_saved_step_and_matches_an_uninterrupted_run(workspace, full_run):
    config = make_config(workspace, "resumed")

    def stop_at_3(state: TrainingState) -> None:
        if state.global_step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, step_callback=stop_at_3)
    assert [p.name for p in list_checkpoints(config.output_dir)] == ["step_000002"]
    # a checkpoint cut short by a kill: the temporary folder and a step folder without its state must be ignored
    half = Path(config.output_dir) / "checkpoints"
    (half / ".tmp-step_000004").mkdir()
    (half / ".tmp-step_000004" / "model.safetensors").write_bytes(b"partial")
    (half / "step_000005").mkdir()

    steps: list[int] = []
    result = train(config, resume=True, step_callback=lambda state: steps.append(state.global_step))
    assert result.resumed_from.name == "step_000002"
    assert steps == [3, 4, 5, 6]
    assert result.global_step == full_run.global_step == 6
    resumed = load_file(result.adapter / "adapter_model.safetensors")
    uninterrupted = load_file(full_run.adapter / "adapter_model.safetensors")
    for key in uninterrupted:
        torch.testing.assert_close(resumed[key], uninterrupted[key])
    with open(Path(config.output_dir) / "logs" / "metrics.csv", newline="") as handle:
        logged = [int(r["step"]) for r in csv.DictReader(handle) if r["name"] == "train/loss"]
    assert logged == [1, 2, 3, 4, 5, 6]  # the interrupted run's step 3 was replaced, not repeated


def test_latest_checkpoint_skips_incomplete_folders(tmp_path):
    root = tmp_path / "checkpoints"
    for name in ("step_000002", "step_000010"):
        (root / name).mkdir(parents=True)
        (root / name / STATE_NAME).write_text("{}")
    (root / ".tmp-step_000012").mkdir()
    (root / ".tmp-step_000012" / STATE_NAME).write_text("{}")
    (root / "step_000011").mkdir()  # renamed by hand, or copied without its state: not complete
    assert latest_checkpoint(tmp_path).name == "step_000010"
    assert latest_checkpoint(tmp_path / "nothing") is None


TWO_PROCESS_RUN = """
import sys
import torch
from accelerate import debug_launcher
from hfr_hf.training import load_config, train

def run(config_path):
    torch.set_num_threads(1)
    train(load_config(config_path))

debug_launcher(run, args=(sys.argv[1],), num_processes=2)
"""


def test_two_cpu_processes(workspace):
    """Two CPU processes through Accelerate's `debug_launcher`, started from a fresh interpreter: forking this
    already multi-threaded test process instead can deadlock."""
    output = workspace / "ddp"
    config = workspace / "ddp.json"
    settings = {"model": str(workspace / "model"), "data": str(workspace / "faces"), "output_dir": str(output)}
    settings.update(batch_size=4, max_steps=2, checkpoint_every=1, split_fractions=[0.8, 0.2, 0.0])
    config.write_text(json.dumps(settings))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", TWO_PROCESS_RUN, str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((output / "report.json").read_text())
    assert report["num_processes"] == 2
    assert report["global_step"] == 2
    assert sorted(p.name for p in (output / "checkpoints" / "step_000002").glob("random_states_*.pkl")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"adapter_preset": "everything"}, "adapter_preset must be one of"),
        ({"lr_scheduler": "cyclic"}, "lr_scheduler must be one of"),
        ({"learning_rate": "fast"}, "TrainingConfig.learning_rate must be float"),
        ({"split_fractions": (0.0, 0.5, 0.5)}, "positive train share"),
        ({"epochs": 3}, "Unknown training option(s) epochs"),
        ({"loss": {"margin": 2.0}}, "margin is a cosine"),
        ({"loss": {"temperature": 2.0}}, "Unknown loss option(s) temperature"),
        ({"adapter_preset": "auto"}, "learning_rate must be left unset"),
        ({"adapter_preset": "auto", "learning_rate": None, "auto_presets": "ln,lora"}, "auto_presets must name"),
        ({"auto_learning_rate_factors": [1.0, 0.0]}, "auto_learning_rate_factors must be positive"),
        ({"auto_budget_s": -1}, "auto_budget_s must not be negative"),
    ],
)
def test_bad_config_values_are_explained(workspace, values, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config(workspace, "bad", **values)


def test_mixed_precision_needs_a_gpu(workspace, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        train(make_config(workspace, "fp16", mixed_precision="fp16", cpu=True))


def test_overrides_parse_types(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": "m", "data": "d", "output_dir": "o", "loss": {"margin": 0.4}}))
    config = load_config(
        path,
        ["--batch_size", "16", "--loss.self_distillation_weight", "0.5", "--max_steps", "none", "--augment", "false"],
    )
    assert (config.batch_size, config.max_steps, config.augment) == (16, None, False)
    assert (config.loss.margin, config.loss.self_distillation_weight) == (0.4, 0.5)


def test_script_reports_bad_options_and_exits_non_zero(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": "m", "data": "d", "output_dir": str(tmp_path / "o")}))
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "--config", str(path), "--num_epoch", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 2
    assert "Unknown training option(s) num_epoch" in run.stderr


def test_a_fully_fine_tuned_model_folder_opens_like_any_model(workspace):
    """The `full` preset saves a whole model: with its preprocessor, so load_model and AutoImageProcessor open it."""
    from transformers import AutoImageProcessor

    from hfr_hf.inference import load_model

    trained = train(make_config(workspace, "whole", adapter_preset="full", num_epochs=1))
    for folder in (trained.adapter, trained.best_adapter):
        model, processor = load_model(folder)
        assert processor.size == {"height": 32, "width": 32}
        assert AutoImageProcessor.from_pretrained(folder).size == processor.size


# Runs scripts/train.py with one kill point armed by HFR_HF_KILL_AT="point:name:n": the process SIGKILLs itself the
# n-th time it reaches the point (name: the folder written, where it matters). Armed only in this test's processes.
KILL_RUNNER = """
import os, runpy, signal, sys
from pathlib import Path

point, name, nth = os.environ["HFR_HF_KILL_AT"].split(":")
hits = {"n": 0}

def reached(here, folder=""):
    if here == point and (not name or folder == name):
        hits["n"] += 1
        if hits["n"] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

import accelerate.utils.other as acc_other
import hfr_hf.losses as losses
import hfr_hf.training as training
from peft import PeftModel

forward = losses.XEdgeFaceLoss.forward
def loss_forward(self, *args, **kwargs):  # before optimiser step n (between checkpoints)
    reached("step")
    return forward(self, *args, **kwargs)
losses.XEdgeFaceLoss.forward = loss_forward

safe_save = acc_other.safe_save_file
def half_saved(tensors, filename, *args, **kwargs):  # inside save_state: model.safetensors cut in half
    safe_save(tensors, filename, *args, **kwargs)
    if point == "checkpoint_file" and Path(filename).name == name and hits["n"] + 1 == int(nth):
        Path(filename).write_bytes(Path(filename).read_bytes()[: Path(filename).stat().st_size // 2])
    reached("checkpoint_file", Path(filename).name)
acc_other.safe_save_file = half_saved

write_json = training.write_json
def state_written(path, payload):  # the checkpoint is whole in its temporary folder, not yet renamed
    write_json(path, payload)
    if Path(path).name == training.STATE_NAME:
        reached("checkpoint_state")
training.write_json = state_written

save_adapter, peft_save = training.save_adapter, PeftModel.save_pretrained
def adapter_saved(model, path, *args, **kwargs):  # PEFT has filled its .adapter-* folder, nothing is moved yet
    def save(self, *a, **k):
        peft_save(self, *a, **k)
        reached("save_adapter", Path(path).name.removeprefix(training.TMP_PREFIX))
    PeftModel.save_pretrained = save
    try:
        return save_adapter(model, path, *args, **kwargs)
    finally:
        PeftModel.save_pretrained = peft_save
training.save_adapter = adapter_saved

def swap(tmp, target):  # the old folder moved aside, the new one not yet renamed onto it
    old = target.with_name(f"{training.TMP_PREFIX}old-{target.name}")
    if target.exists():
        os.replace(target, old)
        reached("swap", target.name)
    os.replace(tmp, target)
    import shutil
    shutil.rmtree(old, ignore_errors=True)
training._swap_into_place = swap

sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# (kill point, checkpoints complete after the kill): a chain of kills, each run resuming the one before
KILLS = [
    ("step::3", [2]),  # between checkpoints 2 and 4
    ("save_adapter:best_adapter:1", [2]),  # inside the first best-adapter save (end of epoch 0, step 3)
    ("checkpoint_file:model.safetensors:1", [2]),  # inside save_state of step 4, model.safetensors half written
    ("checkpoint_state::2", [2, 4]),  # step 6 whole in .tmp-step_000006, not renamed
    ("save_adapter:adapter:1", [2, 4, 6]),  # inside the final adapter save; step 6 is an epoch end
    ("swap:best_adapter:1", [2, 4, 6]),  # the resume's own restore of best_adapter, between its two renames
]


def _start_script(workspace: Path, output: Path, kill_at: str | None, resume: bool) -> subprocess.Popen:
    settings = {"model": str(workspace / "model"), "data": str(workspace / "faces"), "output_dir": str(output)}
    settings.update(batch_size=8, num_epochs=2, checkpoint_every=2, split_fractions=[0.6, 0.2, 0.2])
    settings.update(learning_rate=5e-3)
    config = output.parent / f"{output.name}.json"
    config.write_text(json.dumps(settings))
    command = [str(REPO_ROOT / "scripts" / "train.py"), "--config", str(config), *(["--resume"] if resume else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HFR_HF_KILL_AT": kill_at or "none::0"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", KILL_RUNNER, *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _run_script(workspace: Path, output: Path, kill_at: str | None, resume: bool) -> tuple[int, str]:
    process = _start_script(workspace, output, kill_at, resume)
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def _outputs(output: Path) -> dict:
    """What an uninterrupted run and a killed-and-resumed one must share, bit for bit (timings and the path of the
    output folder and of the checkpoint resumed from aside)."""
    files = {
        str(p.relative_to(output)): p.read_bytes().replace(str(output).encode(), b"OUT")
        for folder in ("adapter", "best_adapter", "logs")
        for p in sorted((output / folder).rglob("*"))
        if p.is_file()
    }
    report = json.loads((output / "report.json").read_text().replace(str(output), "OUT"))
    assert len(report.pop("epoch_times_s")) == report["epochs"]
    assert report.pop("time_per_epoch_s") > 0
    for key in ("wall_time_s", "resumed_from", "peak_rss_mb", "peak_rss_children_mb"):
        report.pop(key)
    checkpoints = [p.name for p in list_checkpoints(output)]
    leftovers = [str(p) for p in output.rglob("*") if p.name.startswith((".tmp-", ".adapter-"))]
    return {"files": files, "report": report, "checkpoints": checkpoints, "leftovers": leftovers}


def test_kill_test_sigkill_at_six_moments_resumes_to_a_bit_identical_run(workspace):
    """scripts/train.py killed with SIGKILL inside a checkpoint write, between checkpoints, inside the best-adapter
    and final saves and inside a resume's own restore, resumed each time: adapters, logs and report are those of an
    uninterrupted run, and no temporary folder is left."""
    clean = _start_script(workspace, workspace / "kill-clean", None, resume=False)  # beside the chain: 2 cores
    output = workspace / "kill-chain"
    for number, (kill_at, complete) in enumerate(KILLS):
        code, stderr = _run_script(workspace, output, kill_at, resume=number > 0)
        assert code == -9, f"{kill_at} was not reached: {stderr[-3000:]}"
        assert [p.name for p in list_checkpoints(output)] == [f"step_{s:06d}" for s in complete], kill_at
    code, stderr = _run_script(workspace, output, None, resume=True)
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "Warning" not in stderr
    assert clean.wait(timeout=300) == 0, clean.stderr.read()[-3000:]
    expected, got = _outputs(workspace / "kill-clean"), _outputs(output)
    assert got["leftovers"] == [] and expected["leftovers"] == []
    assert got["checkpoints"] == expected["checkpoints"] == ["step_000002", "step_000004", "step_000006"]
    assert sorted(got["files"]) == sorted(expected["files"])
    for name in expected["files"]:
        assert got["files"][name] == expected["files"][name], name
    assert got["report"] == expected["report"]


def _copy_run(full_run, tmp_path) -> Path:
    import shutil

    output = tmp_path / "run"
    shutil.copytree(full_run.output_dir, output)
    return output


def test_resume_with_other_optimisation_settings_is_refused_naming_them(workspace, full_run, tmp_path):
    output = _copy_run(full_run, tmp_path)
    config = make_config(workspace, "unused", output_dir=str(output), batch_size=4, learning_rate=1e-3)
    steps: list[int] = []
    with pytest.raises(ValueError, match="--resume would continue .*step_000006 with other settings") as error:
        train(config, resume=True, step_callback=lambda state: steps.append(state.global_step))
    assert "batch_size 8 → 4" in str(error.value) and "learning_rate 0.005 → 0.001" in str(error.value)
    assert "num_epochs" not in str(error.value) and steps == []
    # what does not touch the optimisation may change
    result = train(make_config(workspace, "unused", output_dir=str(output), log_every=2), resume=True)
    assert result.resumed_from.name == "step_000006"


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(workspace, full_run, tmp_path):
    output = _copy_run(full_run, tmp_path)
    weights = output / "checkpoints" / "step_000006" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a disk that filled up, a copy cut short
    with pytest.warns(UserWarning, match="step_000006 cannot be loaded"):
        result = train(make_config(workspace, "unused", output_dir=str(output)), resume=True)
    assert result.resumed_from.name == "step_000004"
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (result.adapter / name).read_bytes() == (full_run.adapter / name).read_bytes()


def test_a_missing_best_adapter_is_reported_before_any_step(workspace, full_run, tmp_path):
    import shutil

    output = _copy_run(full_run, tmp_path)
    shutil.rmtree(output / "checkpoints" / "step_000006")
    shutil.rmtree(output / "checkpoints" / "step_000004" / "best_adapter")  # as an older checkpoint would be
    shutil.rmtree(output / "best_adapter")
    steps: list[int] = []
    with pytest.raises(ValueError, match="says the best adapter so far .* is in .*best_adapter, but it is not there"):
        train(make_config(workspace, "x", output_dir=str(output)), resume=True, step_callback=steps.append)
    assert steps == []


def test_help_config_says_required_not_missing(capsys):
    import runpy

    namespace = runpy.run_path(str(REPO_ROOT / "scripts" / "train.py"))
    assert namespace["main"](["--help-config"]) == 0
    text = capsys.readouterr().out
    assert "MISSING" not in text and "--model (required)" in text and "--output_dir (required)" in text
    assert "--batch_size (default 32)" in text and "--split_fractions (default (0.7, 0.1, 0.2))" in text


# --- adapter_preset "auto": the preset search ---------------------------------------------------------------------


def _auto_config(workspace: Path, output: str, **values) -> TrainingConfig:
    """Two candidates (ln, ln_stem at their own learning rates), one epoch each, one epoch for the chosen one."""
    options = dict(
        adapter_preset="auto",
        learning_rate=None,
        auto_presets="ln,ln_stem",
        auto_learning_rate_factors=[1.0],
        auto_epochs=1,
        num_epochs=1,
        checkpoint_every=0,
    )
    return make_config(workspace, output, **{**options, **values})


@pytest.fixture(scope="module")
def auto_run(workspace, assets):
    """The search with the real thermal validation people scored beside the pseudo validation EER; every PUJ person
    whose images anything reads is recorded."""
    import hfr_hf.data.puj as puj

    read, original = [], puj.puj_images

    def recording(root, identities=None):
        images = original(root, identities)
        read.extend(person for camera in images.values() for person in camera)
        return images

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(puj, "puj_images", recording)
        result = train(_auto_config(workspace, "auto", real_validation_data=str(assets / "thermal")))
    return result, set(read)


def test_auto_search_records_every_candidate_and_trains_the_lowest_score(auto_run):
    from hfr_hf.preset_search import validation_score

    result, _ = auto_run
    search = result.report["preset_search"]
    rows = search["candidates"]
    assert [(r["preset"], r["learning_rate"], r["status"]) for r in rows] == [
        ("ln", 3e-3, "done"),
        ("ln_stem", 3e-3, "done"),
    ]
    for row in rows:
        assert row["score"] == pytest.approx(validation_score(row["pseudo_eer"], row["real"]["eer"]))
        assert row["real"]["eer"] == pytest.approx(
            (row["real"]["t360_eer"] + row["real"]["fone_eer"] + row["real"]["cross_eer"]) / 3
        )
    best = min(rows, key=lambda r: (r["score"], r["trainable_parameters"]))
    assert (search["chosen"]["preset"], search["chosen"]["score"]) == (best["preset"], best["score"])
    config = result.report["config"]
    assert (config["adapter_preset"], config["learning_rate"]) == (best["preset"], best["learning_rate"])
    assert json.loads((result.output_dir / "preset_search.json").read_text())["chosen"] == search["chosen"]


def test_real_validation_data_keeps_the_epoch_with_the_lowest_score(auto_run):
    from hfr_hf.preset_search import validation_score

    result, _ = auto_run
    report = result.report
    for entry in report["validation"]:
        assert entry["score"] == pytest.approx(validation_score(entry["cross"]["eer"], entry["real_thermal"]["eer"]))
    best = min(report["validation"], key=lambda v: v["score"])
    assert (report["best"]["score"], report["best"]["epoch"]) == (best["score"], best["epoch"])
    assert report["best"]["eer"] == best["cross"]["eer"] and report["best"]["real_thermal"] == best["real_thermal"]


def test_auto_candidates_are_scored_on_their_own_trial_runs_without_the_test_identities(auto_run):
    result, _ = auto_run
    for row in result.report["preset_search"]["candidates"]:
        trial = json.loads(
            (result.output_dir / "preset_search" / f"{row['preset']}_lr3e-03" / "report.json").read_text()
        )
        assert trial["best"]["eer"] == row["pseudo_eer"]
        assert trial["test"] is None  # trials never look at the test identities
        assert trial["config"]["adapter_preset"] == row["preset"] and trial["epochs"] == 1


def test_auto_search_reads_no_measuring_puj_person(auto_run):
    from hfr_hf.data.puj import load_puj_split

    result, read = auto_run
    split = load_puj_split()
    validation = sorted(p for p, s in split.items() if s == "validation")
    assert result.report["preset_search"]["real_validation"]["people"] == validation
    assert read == set(validation)  # not one image of a test (measuring) or training person was scored or read


def test_auto_search_stops_adding_candidates_when_the_budget_is_spent(workspace):
    config = _auto_config(workspace, "auto_budget", auto_budget_s=0)
    result = train(config)
    search = result.report["preset_search"]
    assert [r["status"] for r in search["candidates"]] == ["done", "skipped: budget spent"]
    assert "score" not in search["candidates"][1]
    assert search["chosen"]["preset"] == "ln" and result.report["config"]["adapter_preset"] == "ln"
    assert search["elapsed_s"] <= search["candidates"][0]["time_s"] + 5.0  # nothing ran after the first candidate
    assert search["real_validation"] is None and "left out by the 0 s budget" in search["why"]
    trial = result.output_dir / "preset_search" / "ln_lr3e-03" / "report.json"
    written = trial.stat().st_mtime_ns
    resumed = train(config, resume=True)  # a finished search is reused, not run again
    assert resumed.report["preset_search"] == search and trial.stat().st_mtime_ns == written
    assert resumed.resumed_from is not None and resumed.global_step == result.global_step


def test_auto_search_needs_validation_identities(workspace):
    with pytest.raises(ValueError, match="auto.*validation identities"):
        train(_auto_config(workspace, "auto_no_validation", split_fractions=(0.8, 0.0, 0.2)))


@pytest.fixture(scope="module")
def finalists_run(workspace):
    return train(_auto_config(workspace, "auto_finalists", num_epochs=2, auto_finalists=2))


def test_auto_finalists_continue_to_the_full_length_and_are_chosen_on_it(finalists_run):
    """Successive halving: both candidates of the first round (the first epoch of a two-epoch schedule) continue
    their runs to num_epochs (2) and the choice is the lower score of that second round, recorded beside the first."""
    result = finalists_run
    search = result.report["preset_search"]
    assert search["finalist_epochs"] == 2
    rows = search["candidates"]
    for row in rows:
        assert row["epochs"] == 1 and row["final"]["status"] == "done" and row["final"]["epochs"] == 2
        trial = json.loads(
            (result.output_dir / "preset_search" / f"{row['preset']}_lr3e-03" / "report.json").read_text()
        )
        assert trial["best"]["score"] == row["final"]["score"]
        assert trial["schedule_epochs"] == 2 and [v["epoch"] for v in trial["validation"]] == [0, 1]
    best = min(rows, key=lambda r: (r["final"]["score"], r["trainable_parameters"]))
    assert (search["chosen"]["preset"], search["chosen"]["score"]) == (best["preset"], best["final"]["score"])
    assert result.report["config"]["adapter_preset"] == best["preset"] and "2 finalists" in search["why"]
    assert result.report["best"]["score"] == best["final"]["score"]  # the full run is the chosen finalist's run


def test_auto_full_run_is_the_chosen_preset_trained_alone_bit_for_bit(workspace, finalists_run):
    """Candidates train the first epochs of the full run's own schedule and the full run continues the chosen one
    from its checkpoint: the adapter equals the one that training the chosen preset and rate from scratch gives."""
    chosen = finalists_run.report["preset_search"]["chosen"]
    assert finalists_run.resumed_from is not None  # continued, not trained again
    alone = train(
        make_config(
            workspace,
            "auto_chosen_alone",
            adapter_preset=chosen["preset"],
            learning_rate=chosen["learning_rate"],
            num_epochs=2,
            checkpoint_every=0,
        )
    )
    for name in ("adapter", "best_adapter"):
        ours = load_file(finalists_run.output_dir / name / "adapter_model.safetensors")
        theirs = load_file(alone.output_dir / name / "adapter_model.safetensors")
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert finalists_run.report["best"] == alone.report["best"]
    # only the chosen run's checkpoint outlives the search
    kept = {p.parent.parent.name for p in (finalists_run.output_dir / "preset_search").glob("*/checkpoints/*")}
    assert kept == {f"{chosen['preset']}_lr3e-03"}


def test_auto_finalists_that_do_not_fit_the_budget_are_skipped(workspace):
    result = train(_auto_config(workspace, "auto_finalists_budget", num_epochs=2, auto_finalists=2, auto_budget_s=0))
    search = result.report["preset_search"]
    first = search["candidates"][0]
    assert first["final"] == {"status": "skipped: budget spent"}
    assert search["chosen"]["preset"] == "ln" and search["chosen"]["score"] == first["score"]
