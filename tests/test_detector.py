"""The cross-spectral detector: weights as a folder, spectrum choice, full-frame renders, training samples, a
reduced training that proves the mechanism, and the aligner and CLI using what it saves.

The detector's figures on the real thermal images (found ≥ 98 %, landmarks, identification) come from the full
training (`hfr-hf train-detector`, README) and `scripts/bench_detector.py`; `test_detector_assets.py` trains a
reduced detector in the session and pins what that one reaches.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hfr_hf.alignment import MTCNN, AlignmentError, FaceAligner
from hfr_hf.alignment.detector import (
    guess_spectrum,
    load_detector,
    resolve_detector_folder,
    save_detector,
    white_hot_view,
)
from hfr_hf.alignment.detector_training import (
    DetectorTrainingConfig,
    SceneSampler,
    compose_scene,
    find_images,
    label_faces,
    negative_scene,
    render_frame,
    train_detector,
)
from hfr_hf.cli import main
from hfr_hf.data.renderers import apply_palette


@pytest.fixture(scope="module")
def visible() -> MTCNN:
    return MTCNN()


@pytest.fixture(scope="module")
def att_faces(assets, visible):
    paths = [assets / f"faces/att/s{i}/{j}.pgm" for i in (1, 2, 3) for j in (1, 5)]
    faces, skipped = label_faces(paths, visible)
    assert not skipped
    return faces


def test_weights_round_trip_through_a_folder(tmp_path):
    detector = MTCNN()
    with torch.no_grad():
        detector.onet.fc6_2.bias.add_(1.0)
    save_detector(detector, tmp_path / "det", {"networks": ["onet"], "thresholds": [0.5, 0.6, 0.8]})
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_detector(tmp_path / "det")
    torch.testing.assert_close(loaded.onet.fc6_2.bias, detector.onet.fc6_2.bias)
    torch.testing.assert_close(loaded.rnet.fc5_1.bias, MTCNN().rnet.fc5_1.bias)  # not saved: visible weights
    assert loaded.thresholds == (0.5, 0.6, 0.8)
    assert load_detector(tmp_path / "det", thresholds=(0.1, 0.2, 0.3)).thresholds == (0.1, 0.2, 0.3)


def test_config_settings_reach_the_aligner_and_options_override_them(tmp_path):
    config = {"networks": ["onet"], "min_face_size": 40, "scale_factor": 0.6}
    save_detector(MTCNN(), tmp_path / "det", config)
    loaded = FaceAligner(spectrum="thermal", detector_weights=tmp_path / "det").cross_detector
    assert (loaded.min_face_size, loaded.scale_factor) == (40, 0.6)
    assert loaded.halving_pyramid  # not in this config: trained detectors build the pyramid from halvings
    chosen = FaceAligner(spectrum="thermal", detector_weights=tmp_path / "det", min_face_size=24).cross_detector
    assert (chosen.min_face_size, chosen.scale_factor) == (24, 0.6)
    save_detector(MTCNN(), tmp_path / "reference", {**config, "halving_pyramid": False})
    assert not load_detector(tmp_path / "reference").halving_pyramid
    assert not FaceAligner().detector.halving_pyramid and FaceAligner().detector.min_face_size == 20


@pytest.mark.parametrize(
    "weights, message",
    [("{tmp}", "is not a detector folder"), ("no/such/thing", "neither a folder nor a Hub repository")],
)
def test_bad_detector_weights_are_one_sentence(tmp_path, weights, message):
    with pytest.raises(ValueError, match=message):
        resolve_detector_folder(weights.replace("{tmp}", str(tmp_path)))


def test_aligner_spectrum_needs_weights(monkeypatch):
    monkeypatch.delenv("HFR_HF_DETECTOR", raising=False)
    with pytest.raises(ValueError, match="needs a cross-spectral detector"):
        FaceAligner(spectrum="thermal")
    with pytest.raises(ValueError, match="spectrum must be one of"):
        FaceAligner(spectrum="lwir")


def test_guess_spectrum_from_colour(assets):
    photo = np.asarray(Image.open(assets / "faces/deepface/img1.jpg").convert("RGB"))
    grey = np.asarray(Image.open(assets / "thermal/puj_t360/GalleryPristine/S01_011adsgreg.tiff").convert("L"))
    assert guess_spectrum(photo) == "visible"
    assert guess_spectrum(np.repeat(grey[..., None], 3, -1)) == "grey"
    assert guess_spectrum(apply_palette(grey, "iron")) == "thermal"
    assert guess_spectrum(apply_palette(grey, "inferno")) == "thermal"


def test_find_images_reads_yale_names_and_excludes(assets):
    paths = find_images([assets / "faces/yale"], exclude=["*/subject1[3-5]*"])
    assert len(paths) == 12 * 11 - 1  # subject01 has 10 conditions
    assert all("subject13" not in str(p) for p in paths)


@pytest.mark.parametrize("spectrum", ["thermal", "nir", "visible"])
def test_renders_are_registered_frames(att_faces, spectrum):
    rng = np.random.default_rng(0)
    for face in att_faces:
        scene, box, points = compose_scene(face, rng)
        frame = render_frame(scene, points, spectrum, rng)
        assert frame.shape == scene.shape and frame.dtype == np.uint8
        height, width = frame.shape[:2]
        assert (points[:, 0] > -1).all() and (points[:, 0] < width).all()
        assert (points[:, 1] > -1).all() and (points[:, 1] < height).all()
        assert points[0, 0] < points[1, 0]  # image-left eye first, flipped or not
        assert box[0] <= points[:, 0].min() and points[:, 0].max() <= box[2]


def test_samples_are_labelled_by_overlap(att_faces, visible):
    sampler = SceneSampler(visible, ["rnet", "onet"], per_frame=(4, 3, 8), proposal_share=1.0)
    rng = np.random.default_rng(1)
    scene, box, points = compose_scene(att_faces[0], rng)
    crops, labels, offsets, landmarks = sampler(render_frame(scene, points, "thermal", rng), box, points, rng)
    assert crops[24].shape[1:] == (3, 24, 24) and crops[48].shape[1:] == (3, 48, 48)
    assert len(crops[48]) == len(labels) == len(offsets) == len(landmarks)
    assert (labels == 1).sum() >= 1 and (labels == 0).sum() >= 4
    positive = labels == 1
    # the targets of a positive window put the landmarks inside it and the box nearly on it
    assert ((landmarks[positive] > 0) & (landmarks[positive] < 1)).all()
    assert np.abs(offsets[positive]).max() < 0.35


def test_reduced_training_learns_and_saves(att_faces, assets, tmp_path):
    folder = assets / "faces/att"
    config = DetectorTrainingConfig(
        renders_per_image=3,
        negative_scenes=20,
        epochs=2,
        mined_renders=1,
        bootstrap_scenes=40,
        mining_threshold=0.1,
        mirror_average=True,
        exclude=tuple(f"*/s{i}/*" for i in range(4, 41)),
    )
    report = train_detector([folder], tmp_path / "det", config, progress=False)
    assert report["labelled"] == 30 and report["held_out_identities"]
    # the tuned P-Net's proposals add samples to R-Net's and O-Net's, not to P-Net's
    mined = report["config"]["training_data"]["mined_samples"]
    assert mined["positive"] > 0 and mined["negative"] > 0
    samples = {name: report["networks"][name]["samples"] for name in ("pnet", "rnet", "onet")}
    for kind in ("positive", "part"):
        assert samples["rnet"][kind] == samples["onet"][kind] == samples["pnet"][kind] + mined[kind]
    # what the tuned P-Net and R-Net pass on face-free scenes adds negatives to O-Net's samples only
    bootstrapped = report["config"]["training_data"]["bootstrapped_negatives"]
    assert 0 < bootstrapped <= 40 * config.samples_per_scene[2]
    assert samples["rnet"]["negative"] == samples["pnet"]["negative"] + mined["negative"]
    assert samples["onet"]["negative"] == samples["rnet"]["negative"] + bootstrapped
    onet = report["networks"]["onet"]
    assert onet["train_loss"][-1]["cls"] < onet["train_loss"][0]["cls"]
    assert onet["held_out_after"]["accuracy"] > onet["held_out_before"]["accuracy"]
    saved = json.loads((tmp_path / "det/config.json").read_text())
    assert saved["networks"] == ["pnet", "rnet", "onet"] and saved["training_data"]["photos_labelled"] == 30
    aligner = FaceAligner(spectrum="thermal", detector_weights=tmp_path / "det")
    assert aligner.cross_detector.mirror_average  # saved with the detector, applied at inference
    changed = aligner.cross_detector.onet.fc6_2.weight
    assert not torch.equal(changed, MTCNN().onet.fc6_2.weight)  # the aligner uses the trained weights


def test_auto_reports_the_spectrum_chosen(assets, tmp_path):
    detector = MTCNN()
    save_detector(detector, tmp_path / "same", {"networks": ["onet"]})  # visible weights: finds visible faces
    aligner = FaceAligner(spectrum="auto", detector_weights=tmp_path / "same")
    photo = np.asarray(Image.open(assets / "faces/deepface/img1.jpg").convert("RGB"))
    grey = np.asarray(Image.open(assets / "faces/yale/subject01.normal").convert("L"))
    results = aligner.detect_and_align([photo, apply_palette(grey, "iron"), grey, np.zeros((8, 8, 5))])
    assert results[0][0].extra["spectrum"] == "visible"
    assert isinstance(results[1], AlignmentError) or results[1][0].extra["spectrum"] == "thermal"
    assert results[2][0].extra["spectrum"] == "visible"  # grey, and MTCNN is sure of it
    assert isinstance(results[3], AlignmentError)  # bad input: one error, the others still done


def test_cli_train_detector_then_align_thermal(assets, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in (1, 2):
        for j in (1, 2, 3):
            Image.open(assets / f"faces/att/s{i}/{j}.pgm").save(folder / f"s{i}_{j}.png")
    argv = [
        "train-detector",
        str(folder),
        "--output",
        str(tmp_path / "det"),
        "--renders-per-image",
        "1",
        "--negative-scenes",
        "5",
        "--epochs",
        "1",
        "--networks",
        "onet",
        "--negatives",
        str(tmp_path / "face_free"),
        "--landmark-weight",
        "2",
        "--bootstrap-scenes",
        "3",
    ]
    (tmp_path / "face_free").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(tmp_path / f"face_free/{i}.png")
    assert main(argv) == 0
    assert "Detector saved to" in capsys.readouterr().out
    report = json.loads((tmp_path / "det/report.json").read_text())
    assert list(report["networks"]) == ["onet"]
    config = report["config"]
    assert config["landmark_weight"] == 2 and config["training_data"]["face_free_photos"] == 2
    assert config["bootstrap_scenes"] == 3
    thermal = tmp_path / "thermal"
    thermal.mkdir()
    for path in sorted((assets / "thermal/puj_t360/GalleryPristine").glob("*.tiff"))[:3]:
        (thermal / path.name).write_bytes(path.read_bytes())
    (thermal / "broken.tiff").write_bytes(b"not an image")
    code = main(
        ["align", str(thermal), str(tmp_path / "out"), "--spectrum", "thermal", "--detector", str(tmp_path / "det")]
    )
    assert code in (0, 3)  # 3: some images failed, reported one sentence each
    assert "broken.tiff" in capsys.readouterr().err


def test_face_free_photos_give_face_free_scenes_and_backgrounds():
    rng = np.random.default_rng(0)
    photo = np.zeros((200, 300, 3), np.uint8)
    photo[..., 0] = np.arange(300, dtype=np.uint8)[None, :] % 251  # a gradient: windows differ by place
    photo[..., 2] = 77  # a channel no synthetic scene has constant
    scenes = [negative_scene(rng, 60, 90, [photo]) for _ in range(40)]
    assert all(scene.shape == (60, 90, 3) and scene.dtype == np.uint8 for scene in scenes)
    from_photo = [scene for scene in scenes if (scene[..., 1] == 0).all() and (scene[..., 2] == 77).all()]
    assert 10 <= len(from_photo) <= 30  # about half
    assert len({int(scene[..., 0].mean()) for scene in from_photo}) > 3  # random windows
    plain = [negative_scene(np.random.default_rng(0), 60, 90) for _ in range(5)]
    assert not any((scene[..., 2] == 77).all() for scene in plain)


def test_cli_train_detector_bad_folder(tmp_path, capsys):
    assert main(["train-detector", str(tmp_path / "missing"), "--output", str(tmp_path / "det")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "det").exists()


def test_push_detector_dry_run_writes_card_and_weights(tmp_path, capsys):
    save_detector(MTCNN(), tmp_path / "det", {"networks": ["onet"], "training_data": {"folders": ["/x/faces/att"]}})
    assert (
        main(["push", "someone/thermal-mtcnn", "--detector", str(tmp_path / "det"), "--dry-run", str(tmp_path / "dry")])
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "dry").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (tmp_path / "dry/README.md").read_text()
    assert "AT&T (ORL)" in card and "MIT" in card and "No real thermal" in card
    load_detector(tmp_path / "dry")  # the pushed folder loads as a detector


def test_detector_card_names_the_real_thermal_data_and_its_terms():
    from hfr_hf.hub.detector import detector_card

    real = {"root": "/a/thermal", "labeller": "runs/base", "people": ["S01", "S02"], "faces_labelled": 20}
    config = {"networks": ["onet"], "training_data": {"folders": ["/x/faces/att"], "real_thermal": real}}
    card = detector_card(config, None, "someone/thermal-mtcnn")
    assert "No real thermal" not in card and "2 PUJ people (20 faces)" in card and "S01, S02" in card
    assert "GPL-3.0" in card and "Rodríguez Pulecio" in card


@pytest.mark.parametrize("where", ["training", "further training"])
def test_push_detector_refuses_internal_photos(tmp_path, capsys, where):
    internal = {"training_data": {"folders": ["/x/deepface"]}}
    config = {"networks": ["onet"], **internal}
    if where == "further training":  # a landmark network trained on them, on a publishable detector
        config = {
            "networks": ["onet", "lnet"],
            "training_data": {"folders": ["/x/att"]},
            "further_training": [internal],
        }
    detector = MTCNN()
    detector.lnet = copy.deepcopy(detector.onet)
    save_detector(detector, tmp_path / "det", config)
    assert main(["push", "someone/d", "--detector", str(tmp_path / "det"), "--dry-run", str(tmp_path / "dry")]) == 1
    assert "internal tests only" in capsys.readouterr().err
    assert not (tmp_path / "dry").exists()


def test_detector_card_says_where_thermal_landmarks_come_from():
    from hfr_hf.hub.detector import detector_card

    config = {"networks": ["onet"], "training_data": {"folders": ["/x/faces/att"]}}
    assert "landmark network" not in detector_card(config, None, "someone/d")
    further = {"training_data": {"folders": ["/x/faces/yale"]}}
    card = detector_card({**config, "networks": ["onet", "lnet"], "further_training": [further]}, None, "someone/d")
    assert "landmark network" in card and "white-hot view" in card and "Yale" in card


def _warm_face_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A grey white-hot frame: a warm oval (the face) on a cooler, noisy background; and the oval's box."""
    rng = np.random.default_rng(seed)
    grey = np.clip(rng.normal(70, 12, (120, 160)), 0, 255)
    yy, xx = np.mgrid[0:120, 0:160]
    grey[((xx - 80) / 28) ** 2 + ((yy - 60) / 36) ** 2 <= 1] = 200
    return grey.astype(np.uint8), np.array([52.0, 24.0, 108.0, 96.0])


@pytest.mark.parametrize("palette", ["white_hot", "black_hot", "iron", "inferno"])
def test_white_hot_view_undoes_palettes_and_black_hot(palette):
    grey, box = _warm_face_scene()
    view = white_hot_view(apply_palette(grey, palette), box)
    assert view.shape == (120, 160, 3) and np.array_equal(view[..., 0], grey)  # the temperatures, hot = bright


def test_white_hot_view_refuses_a_colour_photo(assets):
    photo = np.asarray(Image.open(assets / "faces/deepface/img1.jpg").convert("RGB"))
    assert white_hot_view(photo, np.array([0.0, 0.0, 50.0, 50.0])) is None


@pytest.mark.parametrize("mirror_average", [False, True])
def test_landmarks_at_reads_what_o_net_read(assets, mirror_average):
    detector = MTCNN(mirror_average=mirror_average)
    photo = np.asarray(Image.open(assets / "faces/deepface/img1.jpg").convert("RGB"))
    found = detector.detect(photo)[0]
    assert len(found) and found.windows.shape == (len(found), 4)
    again = detector.landmarks_at(photo, found.windows, detector.onet)
    np.testing.assert_allclose(again, found.landmarks, atol=1e-3)


def test_landmark_network_reads_thermal_faces_in_white_hot(assets, tmp_path):
    detector = MTCNN()
    detector.lnet = copy.deepcopy(detector.onet)
    with torch.no_grad():
        detector.lnet.fc6_2.bias.add_(0.05)  # every landmark 5 % of its window right and down
    save_detector(detector, tmp_path / "det", {"networks": ["onet", "lnet"]})
    torch.testing.assert_close(load_detector(tmp_path / "det").lnet.fc6_2.bias, detector.lnet.fc6_2.bias)
    assert load_detector(_saved_without_lnet(tmp_path)).lnet is None
    white = np.asarray(Image.open(assets / "faces/att/s1/1.pgm").convert("RGB"))  # face brighter than around it
    thermal = FaceAligner(spectrum="thermal", detector_weights=tmp_path / "det")
    nir = FaceAligner(spectrum="nir", detector_weights=tmp_path / "det")  # NIR: O-Net's landmarks
    face, plain = thermal.align(white)[0], nir.align(white)[0]
    np.testing.assert_allclose(face.box, plain.box)  # boxes and scores stay O-Net's
    windows = thermal.cross_detector.detect(white)[0].windows
    np.testing.assert_allclose(face.landmarks, thermal.cross_detector.landmarks_at(white, windows)[0], atol=1e-4)
    side = windows[0, 2] - windows[0, 0] + 1  # the same crops as O-Net's, read by the shifted network
    np.testing.assert_allclose(face.landmarks - plain.landmarks, 0.05 * side, atol=0.05)


def _saved_without_lnet(tmp_path):
    return save_detector(MTCNN(), tmp_path / "plain", {"networks": ["onet"]})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"networks": ("lnet",)}, "from a trained detector's O-Net"),
        ({"networks": ("onet", "lnet"), "init_detector": "somewhere"}, "trained alone"),
    ],
)
def test_landmark_network_training_needs_a_detector_to_start_from(changes, message, tmp_path):
    config = dataclasses.replace(DetectorTrainingConfig(), **changes)
    with pytest.raises(ValueError, match=message):
        train_detector([tmp_path], tmp_path / "det", config, progress=False)
