"""The pseudo-thermal protocol and the main-job experiment on real faces (a few AT&T and Yale identities): every
source image is kept, splits are identity-disjoint, the report's figures are what the saved adapter and the frozen
model give, and the CLI explains bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hfr_hf.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def faces(assets, tmp_path_factory) -> dict[str, Path]:
    """8 AT&T people (sN/K.pgm) and 6 Yale subjects (subjectNN.condition, 11 conditions each)."""
    root = tmp_path_factory.mktemp("faces")
    for n in range(1, 9):
        shutil.copytree(assets / "faces" / "att" / f"s{n}", root / "att" / f"s{n}")
    (root / "yale").mkdir()
    for path in sorted((assets / "faces" / "yale").iterdir()):
        if path.name.split(".")[0] in {f"subject{n:02d}" for n in range(1, 7)}:
            shutil.copy(path, root / "yale" / path.name)
    return {"att": root / "att", "yale": root / "yale"}


@pytest.fixture(scope="module")
def experiment(faces, xxs_folder, assets, tmp_path_factory):
    from hfr_hf.experiment import run_experiment

    output = tmp_path_factory.mktemp("experiment")
    return run_experiment(
        xxs_folder,
        output,
        att=faces["att"],
        yale=faces["yale"],
        thermal=assets / "thermal",
        training={"num_epochs": 1, "batch_size": 16},
        progress=False,
    )


def test_protocol_keeps_every_yale_condition_and_splits_by_identity(experiment, faces):
    root = experiment.output / "protocol"
    yale_sources = len(list(faces["yale"].iterdir()))
    yale_crops = list((root / "aligned").glob("yale_*/*.png"))
    failed = [p for p in experiment.report["protocol"]["left_out"] if "yale" in p]
    assert len(yale_crops) + len(failed) == yale_sources  # subject01.glasses and .happy are different images
    splits = json.loads((root / "splits.json").read_text())
    assert set(splits.values()) == {"train", "validation", "test"}
    assert any(i.startswith("att_") for i in splits) and any(i.startswith("yale_") for i in splits)
    test_ids = {i for i, s in splits.items() if s == "test"}
    identification = (root / "identification.csv").read_text().splitlines()[1:]
    assert {row.split(",")[1] for row in identification} == test_ids


def test_yale_crops_cached_by_earlier_versions_are_renamed_not_aligned_again(experiment, faces, tmp_path):
    from hfr_hf.alignment import AlignmentError
    from hfr_hf.data import build_pseudo_thermal_protocol

    class CountingAligner:  # finds no face: only the images that failed before may be asked for
        asked = []

        def detect_and_align(self, paths):
            self.asked += [str(p) for p in paths]
            return [AlignmentError("no face") for _ in paths]

    shutil.copytree(experiment.output / "protocol" / "aligned", tmp_path / "aligned")
    crops = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "aligned").rglob("*.png"))
    assert "aligned/yale_01/subject01.glasses.png" in crops
    for path in (tmp_path / "aligned").glob("yale_*/*.png"):  # the names earlier versions gave
        path.rename(path.with_name(path.name.removesuffix(".png").replace(".", "_") + ".png"))
    aligner = CountingAligner()
    build_pseudo_thermal_protocol(tmp_path, att=faces["att"], yale=faces["yale"], aligner=aligner, progress=False)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "aligned").rglob("*.png")) == crops
    assert set(aligner.asked) <= set(experiment.report["protocol"]["left_out"])


def test_cached_renders_are_reused_only_for_the_renderer_and_seed_that_made_them(experiment, faces, tmp_path):
    from hfr_hf.data import ThermalRenderer, build_pseudo_thermal_protocol

    shutil.copytree(experiment.output / "protocol" / "aligned", tmp_path / "aligned")  # no alignment needed

    def build(renderer, seed=0):
        build_pseudo_thermal_protocol(
            tmp_path, att=faces["att"], yale=faces["yale"], seed=seed, renderer=renderer, progress=False
        )
        return {p.relative_to(tmp_path): p.read_bytes() for p in sorted((tmp_path / "thermal").rglob("*.png"))}

    first = build(ThermalRenderer())
    stamps = {p: (tmp_path / p).stat().st_mtime_ns for p in first}
    assert build(ThermalRenderer()) == first  # the same settings: the cached renders are kept, not redone
    assert all((tmp_path / p).stat().st_mtime_ns == stamps[p] for p in first)
    blurred = build(ThermalRenderer(blur=(2.0, 2.5)))  # another setting: every cached probe is rendered again
    assert set(blurred) == set(first) and all(blurred[p] != first[p] for p in first)
    again = build(ThermalRenderer())
    assert all(again[p] == first[p] for p in first)  # rendering is seeded: back to the same probes
    before = max((tmp_path / p).stat().st_mtime_ns for p in again)
    build(ThermalRenderer(), seed=1)  # another seed: every probe its lists name is rendered again
    rows = [row.split(",") for row in (tmp_path / "identification.csv").read_text().splitlines()[1:]]
    probes = [tmp_path / row[0] for row in rows if row[2] == "thermal"]
    assert probes and all(p.stat().st_mtime_ns > before for p in probes)


def test_training_used_the_protocol_split(experiment):
    from hfr_hf.training import build_datasets, load_config

    report = json.loads((experiment.output / "training" / "report.json").read_text())
    config = load_config(None, **report["config"])
    splits = json.loads((experiment.output / "protocol" / "splits.json").read_text())
    for name, dataset in build_datasets(config).items():
        assert {splits[i] for i in dataset["identity"]} == {name}
    assert report["data"]["train"]["identities"] == experiment.report["protocol"]["train_identities"]


def test_report_figures_are_those_of_the_frozen_and_the_saved_adapter(experiment, faces, xxs_folder):
    from hfr_hf.adapters import load_adapter
    from hfr_hf.data import build_pseudo_thermal_protocol
    from hfr_hf.experiment import evaluate_protocol_files
    from hfr_hf.inference import load_model

    # the same arguments find the cached crops and renders and write the same seeded lists
    protocol = build_pseudo_thermal_protocol(
        experiment.output / "protocol", att=faces["att"], yale=faces["yale"], impostors_per_genuine=10, progress=False
    )
    model, processor = load_model(xxs_folder)
    frozen = evaluate_protocol_files(model, processor, protocol)
    adapted_model = load_adapter(model, experiment.adapter, adapter_name="thermal")
    adapted = evaluate_protocol_files(adapted_model, processor, protocol)
    results = experiment.report["results"]
    for side, measured in (("frozen", frozen), ("adapted", adapted)):
        for group in ("cross", "vis"):
            assert results[side][group]["eer"] == pytest.approx(measured[group]["eer"], abs=1e-6)
            assert results[side][group]["auc"] == pytest.approx(measured[group]["auc"], abs=1e-6)
        assert results[side]["identification"]["rank1"] == pytest.approx(measured["identification"]["rank1"])
    assert experiment.report["thresholds"]["thermal"]["1e-2"] == pytest.approx(
        adapted["cross"]["threshold_at_far"]["1e-2"], abs=1e-6
    )


def test_report_has_the_real_thermal_measures_of_the_saved_adapter(experiment, xxs_folder, assets):
    from hfr_hf.adapters import load_adapter
    from hfr_hf.evaluation.real_thermal import real_thermal_metrics
    from hfr_hf.inference import load_model

    model, processor = load_model(xxs_folder)
    adapted = real_thermal_metrics(
        load_adapter(model, experiment.adapter, adapter_name="thermal"), processor, assets / "thermal"
    )
    real = experiment.report["real_thermal"]
    assert real["adapted"]["cross"]["rank1"] == pytest.approx(adapted["cross"]["rank1"])
    for camera in ("puj_t360", "puj_fone"):
        assert real["adapted"][camera]["eer"] == pytest.approx(adapted[camera]["eer"], abs=1e-6)
    assert real["frozen"]["people"] == 20  # the measuring people of hfr_hf/data/puj_split.json
    assert "FONE→T360 rank-1" in experiment.table() and "T360 thermal→thermal EER" in experiment.table()


def test_report_schema_and_outputs(experiment):
    report = json.loads((experiment.output / "report.json").read_text())
    assert report == json.loads((experiment.adapter / "report.json").read_text())
    assert report["kind"] == "xedgeface_experiment" and report["protocol"]["synthetic"] is True
    assert report["training"]["trainable_parameters"] == 4504  # ln_stem on xxs
    assert report["training"]["total_parameters"] == 1_244_744
    for side in ("frozen", "adapted"):
        for group in ("cross", "vis"):
            m = report["results"][side][group]
            assert 0.0 <= m["eer"] <= 1.0 and set(m["tar_at_far"]) == {"1e-2", "1e-3"}
            assert m["genuine_pairs"] > 0 and m["impostor_pairs"] >= m["genuine_pairs"]
    assert (experiment.adapter / "adapter_model.safetensors").is_file()
    for plot in report["plots"]:
        assert (experiment.output / plot).stat().st_size > 1000
    table = experiment.table()
    assert "VIS→thermal EER" in table and "VIS→VIS AUC" in table
    for side in ("frozen", "adapted"):  # every pair of the 8 AT&T people's 80 crops
        rgb = report["results"][side]["att_all_pairs"]
        assert (rgb["genuine_pairs"], rgb["impostor_pairs"]) == (8 * 45, 80 * 79 // 2 - 8 * 45)
        assert set(rgb["tar_at_far"]) == {"1e-3", "1e-4"} and -1.0 < rgb["impostor_mean"] < rgb["genuine_mean"]
    assert "AT&T all pairs TAR@1e-4" in table


def test_a_second_run_may_replace_the_first_runs_folders(experiment):
    from hfr_hf.experiment import _check_replaceable

    _check_replaceable(experiment.output)  # raises if the guard takes the run's own training/ or adapter/ for foreign
    assert (experiment.output / "training" / "report.json").is_file()


def test_frozen_model_separates_vis_faces_of_unseen_identities(experiment):
    assert experiment.report["results"]["frozen"]["vis"]["auc"] > 0.95


def test_cli_needs_a_face_source(xxs_folder, tmp_path, capsys):
    assert cli_main(["experiment", "--model", str(xxs_folder), "--output", str(tmp_path / "out")]) == 1
    assert "--att" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("folder", ["training", "adapter"])
def test_refuses_to_replace_folders_an_earlier_run_did_not_write(folder, tmp_path):
    from hfr_hf.experiment import run_experiment

    (tmp_path / folder).mkdir()
    (tmp_path / folder / "notes.txt").write_text("mine")
    # a model that does not exist: the refusal must come before any work
    with pytest.raises(FileExistsError, match=f"{folder} is not the .* of an earlier run"):
        run_experiment(tmp_path / "no-model", tmp_path, att=tmp_path / "no-faces", progress=False)
    assert (tmp_path / folder / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "protocol").exists()


def test_split_file_must_cover_every_identity(tmp_path):
    from hfr_hf.training import _read_split_file

    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"a": "train"}))
    with pytest.raises(ValueError, match="no split for 1 identities"):
        _read_split_file(str(path), ["a", "b"])
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must map identities"):
        _read_split_file(str(path), ["a"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _read_split_file(str(tmp_path / "missing.json"), ["a"])


def test_thermal_dark_facial_lines_render_cooler():
    from hfr_hf.data.renderers import ThermalRenderer

    rng = np.random.default_rng(0)
    face = np.full((112, 112, 3), 170, np.uint8) + rng.integers(0, 3, (112, 112, 3)).astype(np.uint8)
    lined = face.copy()
    lined[88:90, 40:72] = 60  # a dark lip line
    renderer = ThermalRenderer()
    plain_t, lined_t = renderer.temperature(face, seed=1), renderer.temperature(lined, seed=1)
    assert (lined_t[87:91, 42:70] < plain_t[87:91, 42:70] - 0.02).mean() > 0.9
    assert np.abs(lined_t[20:40] - plain_t[20:40]).max() < 1e-3  # elsewhere the same render


def _experiment_flags(monkeypatch, argv: list[str]) -> dict:
    """The keyword arguments `hfr-hf experiment argv` hands run_experiment (which is not run)."""
    import hfr_hf.experiment

    seen = {}

    def record(model, output, **kwargs):
        seen.update(kwargs)
        raise ValueError("recorded")

    monkeypatch.setattr(hfr_hf.experiment, "run_experiment", record)
    assert cli_main(["experiment", "--model", "m", "--output", "o", "--att", "faces", *argv]) == 1
    return seen


def test_cli_search_and_real_thermal_flags_reach_the_training_config(monkeypatch, capsys):
    from hfr_hf.training import load_config

    argv = ["--preset", "auto", "--auto-budget", "120", "--auto-epochs", "1", "--auto-presets", "ln,ln_stem_s0"]
    argv += ["--auto-finalists", "2"]
    argv += ["--real-target-data", "thermal", "--target-identity-weight", "0.1", "--alignment-weight", "0.5"]
    argv += ["--target-temperature", "0.2", "--real-target-batch-size", "16", "--self-distillation-weight", "3"]
    seen = _experiment_flags(monkeypatch, argv)
    assert "recorded" in capsys.readouterr().err
    config = load_config(
        None, model="m", data="d", output_dir="o", adapter_preset=seen["adapter_preset"], **seen["training"]
    )
    assert (config.adapter_preset, config.auto_budget_s, config.auto_epochs) == ("auto", 120.0, 1)
    assert config.auto_presets == ["ln", "ln_stem_s0"] and config.learning_rate is None and config.auto_finalists == 2
    assert (config.real_target_data, config.real_target_batch_size) == ("thermal", 16)
    loss = config.loss
    assert (loss.target_identity_weight, loss.alignment_weight, loss.target_temperature) == (0.1, 0.5, 0.2)
    assert loss.self_distillation_weight == 3.0


def test_cli_thermal_trains_on_the_real_faces_unless_told_not_to(monkeypatch, capsys):
    """With --thermal the main job's default is the real-thermal recipe (run_experiment's real_target=True);
    --no-real-target-data is the pseudo-pairs-only ablation, and weights given on the command line win."""
    seen = _experiment_flags(monkeypatch, ["--thermal", "t", "--contrastive-weight", "2"])
    assert seen["real_target"] is True and seen["training"]["loss"] == {"contrastive_weight": 2.0}
    assert _experiment_flags(monkeypatch, ["--thermal", "t", "--no-real-target-data"])["real_target"] is False


def test_real_thermal_recipe_merges_under_the_given_loss_weights(monkeypatch, tmp_path):
    """run_experiment hands training the PUJ folder and REAL_THERMAL_LOSS beneath the caller's own weights; with
    real_target=False the pseudo pairs alone (and a real folder then is a mistake, said before any work)."""
    import hfr_hf.experiment as experiment_module
    import hfr_hf.training

    seen = {}

    def record(path, **fields):
        seen.update(fields)
        raise RuntimeError("recorded")

    monkeypatch.setattr(hfr_hf.training, "load_config", record)
    monkeypatch.setattr(experiment_module, "evaluate_protocol_files", lambda *a, **k: {})
    monkeypatch.setattr(experiment_module, "att_all_pairs", lambda *a, **k: {})
    monkeypatch.setattr(experiment_module, "_check_replaceable", lambda output: None)
    stub = type("Protocol", (), {"root": tmp_path, "failures": []})()
    monkeypatch.setattr("hfr_hf.data.build_pseudo_thermal_protocol", lambda *a, **k: stub)
    monkeypatch.setattr("hfr_hf.data.puj.puj_images", lambda root, *a: {})
    monkeypatch.setattr("hfr_hf.evaluation.real_thermal.real_thermal_metrics", lambda *a, **k: {})
    monkeypatch.setattr(
        "hfr_hf.inference.load_model", lambda *a, **k: (type("M", (), {"eval": lambda self: None})(), 0)
    )
    run = lambda **kw: experiment_module.run_experiment("m", tmp_path / "out", att="a", thermal="puj", **kw)  # noqa: E731
    with pytest.raises(RuntimeError, match="recorded"):
        run(training={"loss": {"contrastive_weight": 2.0}})
    assert seen["real_target_data"] == "puj" and seen["real_validation_data"] == "puj"
    assert seen["loss"] == {**experiment_module.REAL_THERMAL_LOSS, "contrastive_weight": 2.0}
    assert seen["num_epochs"] == 30  # the real-thermal recipe's, for every base (the pseudo-only job: 15)
    # `auto`'s candidates: the first tenth of that schedule, the search within 1,200 s
    assert (seen["auto_epochs"], seen["auto_budget_s"]) == (3, 1200.0) and "auto_finalist_epochs" not in seen
    seen.clear()
    with pytest.raises(RuntimeError, match="recorded"):
        run(real_target=False)
    assert "real_target_data" not in seen and "loss" not in seen and "real_validation_data" not in seen
    assert seen["num_epochs"] == experiment_module.EXPERIMENT_TRAINING["num_epochs"] == 15
    seen.clear()  # XS: self-distillation 10 (and 30 epochs) unless the caller says otherwise
    xs = type("M", (), {"eval": lambda self: None, "config": type("C", (), {"variant": "xs"})()})()
    monkeypatch.setattr("hfr_hf.inference.load_model", lambda *a, **k: (xs, 0))
    with pytest.raises(RuntimeError, match="recorded"):
        run(training={"num_epochs": 5})
    assert seen["num_epochs"] == 5 and seen["loss"]["self_distillation_weight"] == 10.0
    assert seen["auto_budget_s"] == 1800.0  # XS's slower epochs: a larger search budget
    assert seen["loss"]["contrastive_weight"] == experiment_module.REAL_THERMAL_LOSS["contrastive_weight"]
    seen.clear()
    with pytest.raises(RuntimeError, match="recorded"):
        run(training={"loss": {"self_distillation_weight": 4.0}})
    assert seen["num_epochs"] == 30 and seen["loss"]["self_distillation_weight"] == 4.0
    with pytest.raises(ValueError, match="pseudo pairs alone"):
        run(real_target=False, training={"real_target_data": "puj"})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "auto", "--learning-rate", "1e-3"], "leave out --learning-rate"),
        (["--auto-budget", "60"], "--auto-budget set the preset search, which only --preset auto runs"),
        (["--alignment-weight", "0.5"], "give them with --thermal FOLDER"),
        (["--thermal", "t", "--no-real-target-data", "--alignment-weight", "0.5"], "leave out --alignment-weight"),
    ],
)
def test_cli_flag_mistakes_are_named_as_flags(monkeypatch, capsys, argv, message):
    assert _experiment_flags(monkeypatch, argv) == {}
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def auto_experiment(experiment, faces, xxs_folder, assets, tmp_path_factory):
    """`--preset auto` on the same protocol: two candidates of one epoch, then one epoch of the chosen one."""
    from hfr_hf.experiment import run_experiment

    return run_experiment(
        xxs_folder,
        tmp_path_factory.mktemp("auto"),
        att=faces["att"],
        yale=faces["yale"],
        adapter_preset="auto",
        protocol_dir=experiment.output / "protocol",
        thermal=assets / "thermal",
        training={
            "num_epochs": 1,
            "batch_size": 16,
            "auto_presets": ["ln", "ln_stem"],
            "auto_learning_rate_factors": [1.0],
            "auto_epochs": 1,
        },
        plots=False,
        progress=False,
    )


def test_auto_report_holds_the_search_and_trains_its_choice(auto_experiment):
    from hfr_hf.data.puj import load_puj_split

    report = auto_experiment.report
    search = report["preset_search"]
    assert [r["preset"] for r in search["candidates"] if r["status"] == "done"] == ["ln", "ln_stem"]
    assert report["adapter_preset_requested"] == "auto"
    assert (
        report["adapter_preset"]
        == search["chosen"]["preset"]
        == min(search["candidates"], key=lambda r: r["score"])["preset"]
    )
    assert report["training"]["learning_rate"] == search["chosen"]["learning_rate"]
    validation = sorted(p for p, s in load_puj_split().items() if s == "validation")
    assert search["real_validation"]["people"] == validation  # --thermal's validation people, not its measuring ones
    table = auto_experiment.table()
    assert "preset search" in table and "← chosen" in table and f"auto → {report['adapter_preset']}" in table


def test_auto_validation_figures_are_those_of_the_kept_adapter(auto_experiment, xxs_folder, assets):
    from hfr_hf.inference import load_model
    from hfr_hf.preset_search import real_validation_eers, validation_score
    from hfr_hf.training import load_trained

    model, processor = load_model(xxs_folder)
    kept = load_trained(model, auto_experiment.adapter, "thermal")
    real = real_validation_eers(kept, processor, assets / "thermal")
    v = auto_experiment.report["validation"]
    assert v["real_thermal"]["eer"] == pytest.approx(real["eer"], abs=1e-6)
    training = json.loads((auto_experiment.output / "training" / "report.json").read_text())
    assert v["pseudo_eer"] == training["best"]["eer"]
    assert v["score"] == pytest.approx(validation_score(v["pseudo_eer"], real["eer"]))


def test_auto_trials_train_and_validate_on_their_splits_only(auto_experiment):
    from hfr_hf.training import build_datasets, load_config

    splits = json.loads(Path(auto_experiment.report["training"]["config"]["split_file"]).read_text())
    trials = sorted((auto_experiment.output / "training" / "preset_search").glob("*/report.json"))
    assert len(trials) == 2
    for path in trials:
        trial = json.loads(path.read_text())
        assert trial["test"] is None
        datasets = build_datasets(load_config(None, **trial["config"]))
        for name in ("train", "validation"):  # no test identity is trained on or scored
            assert {splits[i] for i in datasets[name]["identity"]} == {name}
