"""The cross-spectral detector on the real thermal images and on held-out renders.

Trained weights are never committed, so this module trains the detector once per session with the project's own
function (`train_detector`, what `hfr-hf train-detector` runs; the `reduced_detector` fixture in conftest.py) by
the README's three-step recipe, reduced (fewer renders and epochs): a base training on renders of the AT&T, Yale and
deepface photos minus the held-out identities (conftest's HELD_OUT), then a self-trained one that adds the real
LWIR images of the PUJ split's 15 train people, pseudo-labelled by the base (the validation and the 20 measuring
people are never read), face-free photos, mined samples and mirror averaging, then the landmark network of thermal
faces from its O-Net. These tests hold it to the issue's targets where it reaches them and pin the rest, so that
nothing silently gets worse. Measured (one training, two threads): 425/426 found (201/202 of the measuring people),
93 % with plausible landmarks; rank-1 1.000 / 1.000 and EER 0.087 / 0.052 on T360 / FONE against 1.000 / 0.962 and
0.101 / 0.113 for the registered crops resized; on the measuring people alone EER 0.119 vs 0.071 (T360) and 0.060
vs 0.119 (FONE); no face on two face-free sets of 60; median landmark error on held-out renders 0.056 thermal
(0.071 without the landmark network) and 0.042 NIR. The README's full recipe does better on most of these (its
table; thermal renders 0.049).
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hfr_hf.alignment import FaceAligner
from hfr_hf.alignment.detector_training import find_images, label_faces
from hfr_hf.evaluation import eer, identification_metrics, probe_gallery_scores
from hfr_hf.evaluation.detection import (
    face_check_rates,
    face_region_box,
    false_detections,
    landmark_plausibility,
    non_face_images,
    render_landmark_errors,
)
from hfr_hf.evaluation.real_thermal import real_thermal_metrics
from hfr_hf.inference import embed_images, load_model

from .conftest import HELD_OUT


@pytest.fixture(scope="module")
def thermal(reduced_detector):
    return FaceAligner(spectrum="thermal", detector_weights=reduced_detector)


@pytest.fixture(scope="module")
def puj(assets):
    files = sorted((assets / "thermal").glob("puj_*/*/*.tiff"))
    assert len(files) == 426
    return files, [np.asarray(Image.open(f)) for f in files]


@pytest.fixture(scope="module")
def puj_results(puj, thermal):
    return puj[0], puj[1], thermal.detect_and_align(puj[1])


def test_real_thermal_faces_are_found(puj_results, puj):
    from hfr_hf.data.puj import load_puj_split

    files, _, results = puj_results
    found = np.array([not isinstance(r, Exception) for r in results])
    visible = FaceAligner().detect_and_align(puj[1][::6])
    assert np.mean([not isinstance(r, Exception) for r in visible]) < 0.05  # MTCNN as it was: almost none
    assert found.mean() >= 0.98
    split = load_puj_split()
    measuring = np.array([split[f.name.split("_")[0]] == "test" for f in files])
    assert measuring.sum() == 202 and found[measuring].mean() >= 0.98  # people no training read


def test_real_thermal_landmarks_are_plausible(puj_results):
    _, images, results = puj_results
    kept = [(im, r[0]) for im, r in zip(images, results) if not isinstance(r, Exception)]
    plausible = landmark_plausibility([f.landmarks for _, f in kept], [face_region_box(im) for im, _ in kept], 0.1)
    # eyes in the upper half, the mouth well below them, in face-box units of the segmented head (hair included):
    # the trained detectors put the eyes at 0.36 and the mouth corners at 0.656-0.662
    assert plausible["mean"][:2, 1].max() < 0.5 and plausible["mean"][3:, 1].min() > 0.62
    assert plausible["rate"] >= 0.9


def _identification(model, processor, files, results, use_detector: bool) -> dict:
    index = {str(f): r for f, r in zip(*results)}
    out = {}
    for camera in ("puj_t360", "puj_fone"):
        sets = {}
        for part in ("GalleryPristine", "ProbePristine"):
            chosen = [f for f in files if camera in str(f) and f.parent.name == part]
            crops = []
            for f in chosen:
                found = index[str(f)]
                if use_detector and not isinstance(found, Exception):
                    crops.append(found[0].crop)
                else:  # the registered crop simply resized
                    image = Image.open(f).convert("RGB").resize((112, 112), Image.Resampling.BILINEAR)
                    crops.append(np.asarray(image))
            sets[part] = (embed_images(model, processor, crops, progress=False), [f.name[:3] for f in chosen])
        (g, g_ids), (p, p_ids) = sets["GalleryPristine"], sets["ProbePristine"]
        similarity = p @ g.T
        genuine, impostor = probe_gallery_scores(similarity, p_ids, g_ids)
        out[camera] = (identification_metrics(similarity, p_ids, g_ids)["rank1"], eer(genuine, impostor))
    return out


@pytest.mark.parametrize("people", ["all", "measuring"])
def test_thermal_identification_with_detector_alignment(puj_results, xxs_folder, people):
    from hfr_hf.data.puj import load_puj_split

    model, processor = load_model(xxs_folder)
    files, _, results = puj_results
    split = load_puj_split()
    chosen = [f for f in files if people == "all" or split[f.name.split("_")[0]] == "test"]
    aligned = _identification(model, processor, chosen, (files, results), use_detector=True)
    resized = _identification(model, processor, chosen, (files, results), use_detector=False)
    for camera in aligned:  # rank-1 over the enrolled people (chance 0.04 for all 25)
        assert aligned[camera][0] >= resized[camera][0], (camera, aligned, resized)
    if people == "all":  # EER at least as good as the registered crops resized, on each camera
        for camera in aligned:
            assert aligned[camera][1] <= resized[camera][1], (camera, aligned, resized)
    else:
        # The measuring people alone are a dozen per camera, and one person misaligned moves a camera's EER by several
        # hundredths: five trainings of the reduced recipe gave T360 0.078-0.134 (0.071 resized; 0.134 with one person
        # misaligned), FONE 0.065-0.083 (0.119 resized). The two cameras' mean is pinned: 0.074-0.108, 0.095 resized.
        mean = lambda figures: sum(eer for _, eer in figures.values()) / len(figures)  # noqa: E731
        assert mean(aligned) <= mean(resized) + 0.03, (aligned, resized)


@pytest.fixture(scope="module")
def held_out_faces(assets, thermal):
    paths = [
        p
        for p in find_images([assets / "faces/att", assets / "faces/yale"])
        if any(fnmatch.fnmatch(str(p), pattern) for pattern in HELD_OUT)
    ][::3]
    faces, _ = label_faces(paths, thermal.detector)
    assert len(faces) >= 40
    return faces


@pytest.mark.parametrize("spectrum", ["thermal", "nir"])
def test_held_out_render_landmarks(held_out_faces, reduced_detector, spectrum):
    aligner = FaceAligner(spectrum=spectrum, detector_weights=reduced_detector)
    errors = render_landmark_errors(held_out_faces, aligner, spectrum, renders=1, seed=3)
    assert errors["found"] >= 0.95
    assert errors["median"] <= {"thermal": 0.09, "nir": 0.06}[spectrum]


def test_landmark_network_reads_thermal_landmarks_better_than_o_net(held_out_faces, thermal, reduced_detector):
    """The landmark network (trained from the self-trained detector's O-Net on white-hot renders, reading a
    white-hot view of each thermal image) against that detector's O-Net alone, on the same held-out renders."""
    config = json.loads((Path(reduced_detector) / "config.json").read_text())
    assert config["networks"] == ["pnet", "rnet", "onet", "lnet"] and config["thresholds"][2] == 0.7
    start = config["further_training"][-1]["init_detector"]  # the self-trained detector, without lnet
    o_net = FaceAligner(spectrum="thermal", detector_weights=start)
    assert o_net.cross_detector.lnet is None and thermal.cross_detector.mirror_average
    with_lnet = render_landmark_errors(held_out_faces, thermal, "thermal", renders=2, seed=5)
    without = render_landmark_errors(held_out_faces, o_net, "thermal", renders=2, seed=5)
    assert with_lnet["found"] >= without["found"] - 0.02
    assert with_lnet["median"] < without["median"], (with_lnet["median"], without["median"])


@pytest.mark.parametrize("seed", [1234, 4321])
def test_no_faces_invented(reduced_detector, seed):
    images, _ = non_face_images(40, seed=seed)
    result = false_detections(FaceAligner(select="all", spectrum="thermal", detector_weights=reduced_detector), images)
    assert result["images"] == 60 and result["faces"] == 0


def test_few_faces_invented_over_many_face_free_images(reduced_detector):
    # 1,200 more images (seeds 0-19), where two sets of 60 show 0 or a few: before bootstrapping, a CI training of
    # the reduced recipe framed 9 faces here; bootstrapped trainings 1-2 (a warm oval of a head's proportions)
    aligner = FaceAligner(select="all", spectrum="thermal", detector_weights=reduced_detector)
    faces = sum(false_detections(aligner, non_face_images(40, seed=seed)[0])["faces"] for seed in range(20))
    assert faces <= 3


def test_visible_spectrum_is_mtcnn_unchanged(assets, reduced_detector):
    photos = sorted((assets / "faces/deepface").glob("img*.jpg"))[:6]
    plain = FaceAligner().detect_and_align(photos)
    chosen = FaceAligner(spectrum="visible", detector_weights=reduced_detector).detect_and_align(photos)
    for a, b in zip(plain, chosen):
        np.testing.assert_array_equal(a[0].landmarks, b[0].landmarks)


@pytest.fixture(scope="module")
def non_face_crops():
    """The face-free images resized to crops, as an upload taken for an aligned crop would be."""
    return [np.asarray(Image.fromarray(image).convert("RGB").resize((112, 112))) for image in non_face_images(40)[0]]


def test_face_check_follows_the_spectrum(puj_results, thermal, reduced_detector, non_face_crops):
    """Detector-aligned thermal crops pass the cross-spectral detector's face check, which MTCNN's refuses; the
    face-free images pass neither (the check guards `hfr-hf verify` and the Space against scoring no face)."""
    _, _, results = puj_results
    crops = [r[0].crop for r in results if not isinstance(r, Exception)][::2]
    auto = FaceAligner(spectrum="auto", detector_weights=reduced_detector)
    assert face_check_rates(FaceAligner(), crops)["rate"] <= 0.2
    assert face_check_rates(thermal, crops)["rate"] >= 0.95
    assert face_check_rates(auto, crops)["rate"] >= 0.95
    for aligner in (thermal, auto):
        assert face_check_rates(aligner, non_face_crops)["passed"] == 0


def test_face_check_takes_the_detectors_own_threshold(puj_results, reduced_detector, tmp_path):
    """A detector's `face_check_threshold` (config.json) decides its face check; MTCNN keeps MIN_FACE_SCORE."""
    import json
    import shutil

    from hfr_hf.alignment import AlignmentError
    from hfr_hf.alignment.quality import MIN_FACE_SCORE

    _, _, results = puj_results
    default = FaceAligner(spectrum="thermal", detector_weights=reduced_detector)
    crops = [r[0].crop for r in results if not isinstance(r, Exception)][:20]
    crop = min(crops, key=default.face_score)  # the least sure one, whose score is below 1
    score = default.check_crop(crop)
    assert score >= MIN_FACE_SCORE
    strict = tmp_path / "strict"
    shutil.copytree(reduced_detector, strict)
    config = json.loads((strict / "config.json").read_text())
    config["face_check_threshold"] = (1 + score) / 2  # above this crop's score
    (strict / "config.json").write_text(json.dumps(config))
    with pytest.raises(AlignmentError, match="face score"):
        FaceAligner(spectrum="thermal", detector_weights=strict).check_crop(crop)
    assert FaceAligner(spectrum="thermal", detector_weights=strict).face_score(crop) == pytest.approx(score)


def test_verify_judges_thermal_crops_with_the_thermal_detector(
    puj_results, thermal, reduced_detector, xxs_folder, tmp_path, capsys
):
    from hfr_hf.cli import main

    files, _, results = puj_results
    visible = FaceAligner()
    crops = {}
    for f, r in zip(files, results):  # two crops of one person that MTCNN's O-Net does not take for faces
        if (
            not isinstance(r, Exception)
            and visible.face_score(r[0].crop) < 0.5
            and thermal.face_score(r[0].crop) >= 0.5
        ):
            crops.setdefault(f.name[:3], []).append(r[0].crop)
    person, (a, b) = next((p, c[:2]) for p, c in crops.items() if len(c) >= 2)
    paths = [tmp_path / f"{person}_{i}.png" for i in (1, 2)]
    for path, crop in zip(paths, (a, b)):
        Image.fromarray(crop).save(path)
    args = ["verify", *map(str, paths), "--model", str(xxs_folder), "--json"]
    assert main(args) == 1
    assert "--spectrum thermal" in capsys.readouterr().err  # the refusal says how to judge a thermal crop
    assert main([*args, "--spectrum", "thermal", "--detector", str(reduced_detector)]) == 0
    import json

    assert -1.0 <= json.loads(capsys.readouterr().out)["cosine"] <= 1.0


def test_real_thermal_measures_with_detector_alignment(assets, thermal, xxs_folder):
    model, processor = load_model(xxs_folder)
    measures = real_thermal_metrics(model, processor, assets / "thermal", aligner=thermal)
    alignment = measures["alignment"]
    assert alignment["spectrum"] == "thermal" and alignment["detector"] == str(thermal.detector_weights)
    assert alignment["aligned"] + alignment["resized"] == measures["images"]
    assert alignment["aligned"] >= 0.9 * measures["images"]
    resized = real_thermal_metrics(model, processor, assets / "thermal")
    assert "alignment" not in resized and measures["puj_t360"]["eer"] != resized["puj_t360"]["eer"]
    for camera in ("puj_t360", "puj_fone"):
        assert measures[camera]["rank1"] > 0.5 and measures[camera]["eer"] < 0.3  # thermal→thermal works


def test_real_thermal_self_training_reads_only_the_training_people(assets, reduced_detector, tmp_path):
    """`real_thermal` (self-training): the PUJ split's train people's images, pseudo-labelled by a detector with
    plausible landmarks, join the renders; no validation or measuring person is read."""
    import hfr_hf.data.puj as puj
    from hfr_hf.alignment.detector_training import DetectorTrainingConfig, label_real_thermal, train_detector

    read, original = [], puj.puj_images

    def recording(root, identities=None):
        images = original(root, identities)
        read.extend(person for camera in images.values() for person in camera)
        return images

    split = puj.load_puj_split()
    train_people = {p for p, s in split.items() if s == "train"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(puj, "puj_images", recording)
        faces, images_read = label_real_thermal(assets / "thermal", reduced_detector)
    assert set(read) == train_people and images_read == 176
    assert 0.8 * images_read <= len(faces) <= images_read  # most are found with plausible landmarks
    for face in faces:
        assert face.spectrum == "thermal" and split[Path(face.path).name.split("_")[0]] == "train"
        assert face.image.dtype == np.uint8 and face.image.shape[2] == 3
        x1, y1, x2, y2 = face.box
        assert (face.landmarks[:, 0] > x1).all() and (face.landmarks[:, 0] < x2).all()

    config = DetectorTrainingConfig(
        renders_per_image=1,
        negative_scenes=10,
        epochs=1,
        networks=("onet",),
        real_thermal=str(assets / "thermal"),
        real_thermal_labeller=str(reduced_detector),
        real_renders_per_image=1,
        exclude=tuple(f"*/s{i}/*" for i in range(3, 41)),
    )
    report = train_detector([assets / "faces/att"], tmp_path / "det", config, progress=False)
    real = report["config"]["training_data"]["real_thermal"]
    assert real["faces_labelled"] == len(faces) and set(real["people"]) <= train_people
    # 20 photos and the real faces, one scene each, 4 positives per scene (fewer where a window misses)
    assert report["networks"]["onet"]["samples"]["positive"] > 4 * 20 + 2 * len(faces)
    with pytest.raises(ValueError, match="real_thermal_labeller"):
        train_detector([assets / "faces/att"], tmp_path / "x", DetectorTrainingConfig(real_thermal="x"))
