"""Real-thermal measures (PUJ-T360 / PUJ-FONE), the PUJ identity split, unpaired real target batches and the
renderer realism score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hfr_hf.data.puj import PUJ_CAMERAS, PUJ_SPLIT_COUNTS, choose_puj_split, load_puj_split, puj_images
from hfr_hf.evaluation.realism import frechet_distance, realism_score

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def thermal(assets) -> Path:
    return assets / "thermal"


# --- the split ---------------------------------------------------------------------------------------------------


def test_the_split_file_is_the_rule_applied_to_the_enrolment_of_the_two_cameras(thermal):
    enrolled = {c: {p.name.split("_")[0] for p in (thermal / c / "GalleryPristine").iterdir()} for c in PUJ_CAMERAS}
    split = load_puj_split()
    assert split == choose_puj_split(enrolled)
    assert sorted(split) == [f"S{n:02d}" for n in range(1, 41)]
    assert {s: list(split.values()).count(s) for s in PUJ_SPLIT_COUNTS} == PUJ_SPLIT_COUNTS
    # every split holds people enrolled in each camera and people never enrolled there
    for name in PUJ_SPLIT_COUNTS:
        people = {p for p, s in split.items() if s == name}
        for camera in PUJ_CAMERAS:
            assert people & enrolled[camera] and people - enrolled[camera], (name, camera)


def test_unpaired_real_targets_hold_only_training_people_in_every_batch(thermal):
    from hfr_hf.data.unpaired import UnpairedTargets, unpaired_target_files

    split = load_puj_split()
    files, identities, _ = unpaired_target_files(thermal)
    assert set(identities) == {p for p, s in split.items() if s == "train"}
    assert all(split[f.name.split("_")[0]] == "train" for f in files)
    assert {f.parent.parent.name for f in files} == set(PUJ_CAMERAS)  # both cameras, one identity per person
    targets = UnpairedTargets(files[:40], identities[:40], batch_size=8)
    for step in range(20):
        images, ids = targets.batch(step)
        assert len(images) == 8 and images[0].shape == (112, 112, 3)
        assert {split[i] for i in ids} == {"train"}
        assert all(ids.count(i) >= 2 for i in ids)  # every image has a positive for the identity loss


def test_training_takes_real_targets_from_training_people_only(thermal, tiny_config, tmp_path):
    import torch

    from hfr_hf import EdgeFaceModel
    from hfr_hf.image_processing_edgeface import EdgeFaceImageProcessor
    from hfr_hf.training import load_config, train

    torch.manual_seed(0)
    EdgeFaceModel(tiny_config).save_pretrained(tmp_path / "model")
    EdgeFaceImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "model")
    visible = tmp_path / "faces"
    for person in ("a", "b", "c", "d"):  # four visible "people": a few PUJ images stand in for visible crops
        (visible / person).mkdir(parents=True)
        for k, f in enumerate(sorted((thermal / "puj_t360/GalleryPristine").glob(f"S0{ord(person) - 96}_*"))[:2]):
            (visible / person / f"{k}.tiff").symlink_to(f)
    config = load_config(
        None,
        model=str(tmp_path / "model"),
        data=str(visible),
        output_dir=str(tmp_path / "run"),
        split_fractions=(1.0, 0.0, 0.0),
        batch_size=4,
        max_steps=2,
        checkpoint_every=0,
        real_target_data=str(thermal),
        real_target_batch_size=8,
        loss={"target_identity_weight": 1.0, "alignment_weight": 1.0},
    )
    report = train(config).report
    split = load_puj_split()
    assert {split[i] for i in report["real_target"]["identity_list"]} == {"train"}
    log = next((tmp_path / "run" / "logs").rglob("*.csv")).read_text()
    assert "train/target_identity" in log and "train/distribution_alignment" in log


def test_real_targets_without_a_loss_term_are_refused(thermal, tmp_path):
    from hfr_hf.training import _real_targets, load_config

    config = load_config(None, model="m", data="d", output_dir=str(tmp_path), real_target_data=str(thermal))
    with pytest.raises(ValueError, match="no loss term uses it"):
        _real_targets(config, {})


# --- the measures ------------------------------------------------------------------------------------------------


def test_measures_use_measuring_people_only_and_match_the_written_protocols(thermal, xxs_folder, tmp_path):
    from hfr_hf.evaluation import evaluate_protocol, read_protocol, resolve_images
    from hfr_hf.evaluation.real_thermal import real_thermal_metrics, write_puj_protocols
    from hfr_hf.inference import embed_images, load_model

    model, processor = load_model(str(xxs_folder))
    model.eval()
    measures = real_thermal_metrics(model, processor, thermal)
    test_people = {p for p, s in load_puj_split().items() if s == "test"}
    assert measures["people"] == len(test_people) == 20
    assert measures["cross"]["gallery"] == 20 and measures["cross"]["probes"] == 101
    for camera in PUJ_CAMERAS:
        assert 0.0 < measures[camera]["eer"] < 0.5 and measures[camera]["rank1"] > 0.5  # thermal→thermal works
    assert measures["cross"]["rank1"] < measures["puj_t360"]["rank1"]  # the cross-sensor gap is real

    written = write_puj_protocols(thermal, tmp_path, relative_to=thermal.parent)
    cross = read_protocol(tmp_path / "puj_cross_identification.csv")
    assert {i for i in cross.identities} == test_people
    keys, files = resolve_images(cross, thermal.parent)
    embeddings = dict(zip(keys, embed_images(model, processor, files, progress=False, align="never")))
    entry = evaluate_protocol(cross, embeddings).report["folds"]["0"]
    assert entry["identification"]["rank1"] == pytest.approx(measures["cross"]["rank1"])
    assert len(written) == 6


def test_measures_refuse_a_folder_without_the_puj_sets(tmp_path):
    with pytest.raises(FileNotFoundError, match="puj_t360"):
        puj_images(tmp_path)


# --- the realism score -------------------------------------------------------------------------------------------


def test_realism_of_one_distribution_is_chance_and_of_two_is_one():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 32)), rng.normal(size=(200, 32))
    same = realism_score(a, b)
    assert abs(same["auc"] - 0.5) < 0.1
    shifted = realism_score(a, rng.normal(size=(200, 32)) + 0.8)
    assert shifted["auc"] > 0.99
    assert shifted["frechet"] > 3 * same["frechet"]  # finite samples of one distribution are not at 0


def test_realism_folds_by_person_do_not_tell_sets_apart_by_who_is_in_them():
    """Real and rendered faces of different people, the people drawn from one distribution: folds that mix a person's
    faces let the classifier learn the people (AUC near 1); folds by person leave only the spectrum (none): ~0.5."""
    rng = np.random.default_rng(2)

    def people(count):
        centres = rng.normal(size=(count, 32))
        ids = np.repeat(np.arange(count), 10)
        return centres[ids] + 0.15 * rng.normal(size=(len(ids), 32)), ids

    real, real_ids = people(20)
    rendered, rendered_ids = people(20)
    assert realism_score(real, rendered)["auc"] > 0.9
    grouped = realism_score(real, rendered, real_ids=real_ids, rendered_ids=rendered_ids)
    assert abs(grouped["auc"] - 0.5) < 0.15
    shifted = realism_score(real, rendered + 0.8, real_ids=real_ids, rendered_ids=rendered_ids)
    assert shifted["auc"] > 0.95  # a real difference is still found across people
    with pytest.raises(ValueError, match="both sets"):
        realism_score(real, rendered, real_ids=real_ids)


def test_realism_of_the_same_people_on_both_sides_keeps_each_person_in_one_fold():
    """Two cameras of the same people, no difference between them: with each side's people in their own folds the
    classifier learns a person from one side and is tested on that person's faces from the other (AUC far below
    0.5); `same_people` puts both sides of a person in one fold (~0.5), and a camera difference is still found."""
    rng = np.random.default_rng(3)
    ids = np.repeat(np.arange(20), 10)
    centres = rng.normal(size=(20, 32))[ids]
    first, second = centres + 0.15 * rng.normal(size=(200, 32)), centres + 0.15 * rng.normal(size=(200, 32))
    assert realism_score(first, second, real_ids=ids, rendered_ids=ids)["auc"] < 0.2
    same = realism_score(first, second, real_ids=ids, rendered_ids=ids, same_people=True)
    assert abs(same["auc"] - 0.5) < 0.15
    shifted = realism_score(first, second + 0.3, real_ids=ids, rendered_ids=ids, same_people=True)
    assert shifted["auc"] > 0.75


def test_frechet_distance_of_gaussians_with_known_moments():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5000, 3))
    b = rng.normal(size=(5000, 3)) * 2.0 + np.array([1.0, 0.0, 0.0])
    # ‖Δμ‖² + Tr(I + 4I − 2·2I) = 1 + 3
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_realism_refuses_too_few_faces():
    with pytest.raises(ValueError, match="at least 10"):
        realism_score(np.ones((3, 4)), np.ones((30, 4)))


def test_split_file_is_package_data():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "data/puj_split.json" in text
    assert json.loads((Path(__file__).resolve().parents[1] / "hfr_hf/data/puj_split.json").read_text())["rule"]
