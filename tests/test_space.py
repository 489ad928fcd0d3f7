"""The Gradio Space (spaces/edgeface-hfr): its logic directly, then the running app through gradio_client."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spaces/edgeface-hfr"))

import hfr_space  # noqa: E402
from hfr_space import (  # noqa: E402
    FALLBACK_THRESHOLDS,
    Calibration,
    FaceEngine,
    SpaceError,
    add_click,
    default_model,
    parse_adapters,
    parse_points,
    read_image,
)

# PUJ-T360 thermal faces are registered: the eyes sit at the same pixels in every image, and MTCNN finds no face
THERMAL_EYES = "75, 95; 123, 95"


@pytest.fixture(scope="module")
def engine(xxs_folder, one_torch_thread):
    return FaceEngine(xxs_folder, adapters="none")


@pytest.fixture(scope="module")
def thermal(assets):
    root = assets / "thermal/puj_t360"
    return {
        "s01_gallery": root / "GalleryPristine/S01_011adsgreg.tiff",
        "s01_probe": root / "ProbePristine/S01_012adsgreg.tiff",
        "s02_probe": root / "ProbePristine/S02_011adsgreg.tiff",
    }


# ------------------------------------------------------------------------------------------ settings, parsing


def test_adapters_setting_names_spectra_or_one_adapter_for_all():
    assert parse_adapters("thermal=a/b, nir=hub/repo") == {"thermal": "a/b", "nir": "hub/repo"}
    assert parse_adapters("runs/xedgeface/adapter") == {"all": "runs/xedgeface/adapter"}
    assert parse_adapters("") == {}
    with pytest.raises(SpaceError, match="SPECTRUM one of vis, nir, thermal"):
        parse_adapters("uv=path")
    with pytest.raises(SpaceError, match="twice"):
        parse_adapters("thermal=a,thermal=b")


def test_model_setting_prefers_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HFR_HF_MODEL", str(tmp_path))
    assert default_model() == str(tmp_path)
    monkeypatch.delenv("HFR_HF_MODEL")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hfr_space, "REPO_ROOT", tmp_path)
    assert default_model() == hfr_space.DEFAULT_HUB_MODEL
    (tmp_path / "runs/edgeface-xxs").mkdir(parents=True)
    (tmp_path / "runs/edgeface-xxs/config.json").write_text("{}")
    assert default_model() == str(tmp_path / "runs/edgeface-xxs")


def test_missing_model_is_one_sentence(tmp_path):
    with pytest.raises(SpaceError, match="could not be fetched from the Hub"):
        FaceEngine("nobody/no-such-model-anywhere", adapters="none")
    with pytest.raises(SpaceError, match="no config.json"):
        FaceEngine(tmp_path, adapters="none")


def test_landmarks_are_two_eyes_or_five_points():
    np.testing.assert_array_equal(parse_points("10, 20; 30, 21"), [[10, 20], [30, 21]])
    assert parse_points("1 2 3 4 5 6 7 8 9 10").shape == (5, 2)
    assert parse_points("") is None and parse_points(None) is None
    with pytest.raises(SpaceError, match="Click the second eye too"):
        parse_points("10, 20")
    with pytest.raises(SpaceError, match="got 3 points"):
        parse_points("1 2 3 4 5 6")


def test_clicks_fill_one_eye_then_the_other_then_start_over():
    assert add_click("", 10, 20) == ("10, 20", False)
    assert add_click("10, 20", 30, 21) == ("10, 20; 30, 21", True)
    assert add_click("10, 20; 30, 21", 5, 6) == ("5, 6", False)


# ------------------------------------------------------------------------------------------------ calibration


def test_thresholds_come_from_the_report_per_spectrum(tmp_path):
    report = {"thresholds": {"thermal": {"1e-2": 0.31, "1e-3": 0.42}, "vis": {"1e-2": 0.25, "1e-3": 0.33}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    calibration = Calibration.from_folders([tmp_path / "absent", tmp_path])
    thermal = calibration.threshold("thermal", "1e-3")
    assert (thermal.value, thermal.calibrated) == (0.42, True)
    nir = calibration.threshold("nir", "1e-2")  # no NIR entry: the visible threshold, said to be uncalibrated
    assert (nir.value, nir.calibrated) == (0.25, False)
    assert "not calibrated for NIR" in nir.note


def test_without_a_report_thresholds_are_labelled_uncalibrated(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"global_step": 10}))  # a report without thresholds
    threshold = Calibration.from_folders([tmp_path]).threshold("thermal", "1e-2")
    assert threshold.value == FALLBACK_THRESHOLDS["1e-2"] and not threshold.calibrated
    assert threshold.note.startswith("uncalibrated")


def test_broken_report_is_refused_with_its_path(tmp_path):
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(SpaceError, match="report.json is not readable JSON"):
        Calibration.from_folders([tmp_path])
    (tmp_path / "report.json").write_text(json.dumps({"thresholds": {"vis": 0.3}}))
    with pytest.raises(SpaceError, match="must map spectrum"):
        Calibration.from_folders([tmp_path])


# ----------------------------------------------------------------------------------------------------- images


def test_unreadable_files_give_a_readable_message(tmp_path, assets):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(SpaceError, match="notes.txt could not be read as an image"):
        read_image(tmp_path / "notes.txt")
    data = (assets / "faces/deepface/img25.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(SpaceError, match="cut.jpg could not be decoded"):
        read_image(tmp_path / "cut.jpg")


def test_large_images_are_downscaled_and_report_the_scale(tmp_path):
    Image.fromarray(np.zeros((1500, 3000), np.uint8)).save(tmp_path / "wide.png")
    rgb, scale = read_image(tmp_path / "wide.png", max_side=1000)
    assert rgb.shape == (500, 1000, 3) and rgb.dtype == np.uint8
    assert scale == pytest.approx(1 / 3)


def test_exif_orientation_is_applied_and_the_scale_refers_to_the_upright_image(tmp_path):
    image = Image.fromarray(np.zeros((100, 2000, 3), np.uint8))  # stored wide; orientation 6 shows it tall
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.jpg", exif=exif)
    rgb, scale = read_image(tmp_path / "rotated.jpg", max_side=1000)
    assert rgb.shape[:2] == (1000, 50)
    assert scale == pytest.approx(0.5)


def test_sixteen_bit_thermal_images_keep_their_range(tmp_path, thermal):
    counts = np.asarray(Image.open(thermal["s01_gallery"])).astype(np.uint16) * 40 + 20000
    Image.fromarray(counts).save(tmp_path / "t16.tiff")
    rgb16, _ = read_image(tmp_path / "t16.tiff")
    rgb8, _ = read_image(thermal["s01_gallery"])
    assert np.abs(rgb16.astype(int) - rgb8.astype(int)).max() <= 1  # min-max stretch of an affine copy


# ------------------------------------------------------------------------------------------- engine, real model


def test_genuine_photo_pair_scores_above_an_impostor_pair(engine, assets):
    photos = assets / "faces/deepface"
    genuine = engine.verify(photos / "img1.jpg", photos / "img2.jpg")
    impostor = engine.verify(photos / "img1.jpg", photos / "img13.jpg")
    assert genuine.score > impostor.score
    assert genuine.accepted and not impostor.accepted
    assert genuine.reference.crop.shape == (112, 112, 3)
    assert genuine.reference.how.startswith("detected")


def test_thermal_faces_without_detection_align_from_the_eyes(engine, thermal):
    with pytest.raises(SpaceError, match="No face was found in the reference and probe images. Click the two eye"):
        engine.verify(thermal["s01_gallery"], thermal["s01_probe"], "thermal")
    with pytest.raises(SpaceError, match="No face was found in the probe image. Click the two eye centres on it"):
        engine.verify(thermal["s01_gallery"], thermal["s01_probe"], "thermal", reference_points=THERMAL_EYES)
    eyes = dict(reference_points=THERMAL_EYES, probe_points=THERMAL_EYES)
    genuine = engine.verify(thermal["s01_gallery"], thermal["s01_probe"], "thermal", **eyes)
    impostor = engine.verify(thermal["s01_gallery"], thermal["s02_probe"], "thermal", **eyes)
    assert genuine.score > impostor.score
    assert genuine.probe.how == "two eye centres"


def test_with_a_detector_thermal_faces_are_found_without_clicks(
    xxs_folder, reduced_detector, thermal, monkeypatch, one_torch_thread
):
    monkeypatch.setenv("HFR_HF_DETECTOR", str(reduced_detector))
    engine = FaceEngine(xxs_folder, adapters="none")
    genuine = engine.verify(thermal["s01_gallery"], thermal["s01_probe"], "thermal")
    assert "detector" in genuine.probe.how and "detector" in genuine.reference.how
    # clicks stay available beside detection (and are the fallback for faces the detector misses)
    impostor = engine.verify(thermal["s01_gallery"], thermal["s02_probe"], "thermal", probe_points=THERMAL_EYES)
    assert impostor.probe.how == "two eye centres"
    assert genuine.score > impostor.score


def test_landmarks_refer_to_the_uploaded_pixels_even_when_downscaled(engine, thermal, tmp_path):
    big = Image.open(thermal["s01_probe"]).resize((206 * 6, 240 * 6), Image.Resampling.BICUBIC)
    big.save(tmp_path / "big.png")  # 1236×1440: read at 1024 pixels high
    eyes_big = "; ".join(f"{6 * x}, {6 * y}" for x, y in parse_points(THERMAL_EYES))
    small = engine.align(thermal["s01_probe"], THERMAL_EYES)
    large = engine.align(tmp_path / "big.png", eyes_big)
    embeddings = engine.embed([small.crop, large.crop], "thermal")
    assert float(embeddings[0] @ embeddings[1]) > 0.95


def test_a_crop_sized_upload_counts_as_aligned_only_when_it_holds_a_face(engine, assets, tmp_path):
    from hfr_hf.alignment import FaceAligner

    face = FaceAligner()(assets / "faces/att/s4/1.pgm")
    Image.fromarray(face).save(tmp_path / "face.png")
    assert engine.align(tmp_path / "face.png").crop.shape == (112, 112, 3)
    Image.fromarray(np.full((480, 640), 90, np.uint8)).save(tmp_path / "wall.png")
    with pytest.raises(SpaceError, match="No face was found in the reference image"):
        engine.verify(tmp_path / "wall.png", tmp_path / "face.png")


@pytest.mark.parametrize(
    "reference, probe",
    [("grey", "black"), ("noise", "grey"), ("noise", "noise")],
)
def test_faceless_crops_are_refused_not_scored(engine, reference, probe, tmp_path):
    """Measured before the face check: grey vs black 0.75, noise vs grey 0.45, both "Same person"."""
    rng = np.random.default_rng(0)
    images = {
        "grey": np.full((112, 112, 3), 128, np.uint8),
        "black": np.zeros((112, 112, 3), np.uint8),
        "noise": rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
    }
    for name, image in images.items():
        Image.fromarray(image).save(tmp_path / f"{name}.png")
    with pytest.raises(SpaceError, match="is not taken as an aligned face crop"):
        engine.verify(tmp_path / f"{reference}.png", tmp_path / f"{probe}.png", far="1e-3")


@pytest.mark.parametrize(
    "points, message",
    [
        ("-5000, -5000; -4000, -5000", "outside the 206×240 image"),
        ("100, 100; 100.001, 100", "0.0 px apart"),
        ("123, 95; 75, 95", "swap the two eyes"),
    ],
)
def test_eye_clicks_that_cannot_be_a_face_are_refused(engine, thermal, points, message):
    """Measured before: off-image clicks on an impostor pair (0.047 aligned) gave 1.0000 "Same person"."""
    with pytest.raises(SpaceError, match=f"The probe landmarks cannot align a face: .*{message}"):
        engine.verify(
            thermal["s01_gallery"], thermal["s02_probe"], "thermal", reference_points=THERMAL_EYES, probe_points=points
        )


def test_identification_ranks_the_right_person_first(engine, assets):
    att = assets / "faces/att"
    people = [f"s{i}" for i in range(1, 11)]
    entries, skipped = engine.enrol([att / p / "1.pgm" for p in people] + [att / "s3/2.pgm"], [*people, "s3"])
    assert skipped == [] and len(entries) == 11
    for person in ("s3", "s7"):
        probe = engine.align(att / person / "6.pgm")
        matches, threshold = engine.identify(entries, probe)
        assert matches[0].name == person and matches[0].accepted
        assert [m.rank for m in matches] == list(range(1, 11))
        assert matches[0].score > matches[1].score
    assert matches[-1].images == 1 and {m.name: m.images for m in matches}["s3"] == 2


def counted_embeddings(engine, monkeypatch) -> list[tuple[int, str]]:
    """(number of crops, spectrum) of every call of the engine's embedding, from now on."""
    calls, embed = [], engine.embed

    def counted(crops, spectrum):
        calls.append((len(crops), spectrum))
        return embed(crops, spectrum)

    monkeypatch.setattr(engine, "embed", counted)
    return calls


def per_request_ranking(engine, gallery, probe, spectrum) -> list[tuple[str, float]]:
    """Identify as the Space did before it kept a gallery: the probe and every enrolled crop embedded together by
    the probe spectrum's network, each person ranked by the best of their images' scores."""
    embeddings = engine.embed([probe.crop, *(entry.crop for entry in gallery)], spectrum)
    best: dict[str, float] = {}
    for entry, score in zip(gallery, embeddings[1:] @ embeddings[0]):
        best[entry.name] = max(best.get(entry.name, -1.0), float(score))
    return sorted(best.items(), key=lambda item: -item[1])


def test_identify_embeds_only_the_probe_and_ranks_as_embedding_everything_per_request(engine, assets, monkeypatch):
    att = assets / "faces/att"
    calls = counted_embeddings(engine, monkeypatch)
    people = [f"s{i}" for i in range(1, 9)]
    gallery, _ = engine.enrol([att / p / f"{n}.pgm" for p in people for n in (1, 2)], [p for p in people for _ in "12"])
    assert calls == [(16, "vis")]  # one network serves every spectrum here: one batch, at enrolment
    probes = {person: engine.align(att / person / "7.pgm") for person in ("s2", "s5")}
    results = {}
    for (person, probe), spectrum in zip(probes.items(), ("vis", "nir")):
        calls.clear()
        results[person] = engine.identify(gallery, probe, spectrum)
        assert calls == [(1, spectrum)]  # the probe alone; the gallery is not embedded again
    for (person, probe), spectrum in zip(probes.items(), ("vis", "nir")):
        matches, threshold = results[person]
        expected = per_request_ranking(engine, gallery, probe, spectrum)
        assert [m.name for m in matches] == [name for name, _ in expected] and matches[0].name == person
        np.testing.assert_allclose([m.score for m in matches], [score for _, score in expected], atol=1e-5)
        assert [m.accepted for m in matches] == [score >= threshold.value for _, score in expected]
        assert {m.images for m in matches} == {2} and [m.rank for m in matches] == list(range(1, 9))


def test_a_thermal_probe_searches_the_gallery_its_own_network_enrolled(thermal_engine, assets, monkeypatch):
    att = assets / "faces/att"
    calls = counted_embeddings(thermal_engine, monkeypatch)
    people = [f"s{i}" for i in range(1, 7)]
    gallery, _ = thermal_engine.enrol([att / p / "1.pgm" for p in people], people)
    assert calls == [(6, "vis"), (6, "thermal")]  # base model and thermal adapter, each once
    assert gallery.galleries[None].fingerprint != gallery.galleries["thermal"].fingerprint
    probe = thermal_engine.align(att / "s4/5.pgm")
    scores, thresholds = {}, {}
    for spectrum in ("vis", "thermal", "vis"):
        calls.clear()
        matches, threshold = thermal_engine.identify(gallery, probe, spectrum, "1e-3")
        assert calls == [(1, spectrum)]
        expected = per_request_ranking(thermal_engine, gallery, probe, spectrum)
        assert [m.name for m in matches] == [name for name, _ in expected]
        np.testing.assert_allclose([m.score for m in matches], [score for _, score in expected], atol=1e-5)
        scores[spectrum], thresholds[spectrum] = {m.name: m.score for m in matches}, threshold.value
    assert thresholds == {"vis": FALLBACK_THRESHOLDS["1e-3"], "thermal": 0.3}  # each network's own calibration
    assert abs(scores["thermal"]["s4"] - scores["vis"]["s4"]) > 1e-3  # the other network scored the thermal probe


def test_identify_on_an_empty_gallery_says_enrol_first(engine, assets):
    probe = engine.align(assets / "faces/att/s1/1.pgm")
    for empty in ([], hfr_space.EnrolledGallery([], {})):
        with pytest.raises(SpaceError, match="The gallery is empty: enrol some images first."):
            engine.identify(empty, probe)


def test_enrolment_skips_bad_images_with_reasons(engine, assets, tmp_path):
    (tmp_path / "bob_1.txt").write_text("not an image")
    entries, skipped = engine.enrol([assets / "faces/deepface/img25.jpg", tmp_path / "bob_1.txt"])
    assert [e.name for e in entries] == ["img"]  # from the file name img25.jpg
    assert skipped == [f"bob_1.txt: bob_1.txt {hfr_space.UNREADABLE}"]
    with pytest.raises(SpaceError, match="No gallery image could be used"):
        engine.enrol([tmp_path / "bob_1.txt"])
    with pytest.raises(SpaceError, match="3 names were given for 1 images"):
        engine.enrol([assets / "faces/deepface/img25.jpg"], ["a", "b", "c"])


@pytest.fixture(scope="module")
def thermal_adapter(xxs_folder, tmp_path_factory, one_torch_thread):
    """A visibly different thermal adapter (its LayerNorm copies rescaled), its report.json beside it as training
    writes it: thresholds 0.2 / 0.3 for thermal probes."""
    import torch

    from hfr_hf.adapters import add_adapter, save_adapter
    from hfr_hf.inference import load_model

    run = tmp_path_factory.mktemp("thermal-run")
    model, _ = load_model(xxs_folder)
    adapted = add_adapter(model, "ln", adapter_name="thermal")
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "ln_tuning_layers.thermal" in name and name.endswith("weight"):
                parameter.mul_(1.5)
    save_adapter(adapted, run / "adapter")
    (run / "report.json").write_text(json.dumps({"thresholds": {"thermal": {"1e-2": 0.2, "1e-3": 0.3}}}))
    return run / "adapter"


@pytest.fixture(scope="module")
def thermal_engine(xxs_folder, thermal_adapter):
    """The base model for visible and NIR probes, the thermal adapter for thermal ones."""
    return FaceEngine(xxs_folder, adapters=f"thermal={thermal_adapter}")


def test_spectrum_adapters_switch_per_probe_and_bring_their_thresholds(
    xxs_folder, thermal_adapter, thermal_engine, assets
):
    engine = thermal_engine
    crop = engine.align(assets / "faces/att/s1/1.pgm").crop
    base, thermal = engine.embed([crop], "vis"), engine.embed([crop], "thermal")
    assert float(base[0] @ thermal[0]) < 0.999  # another network served the thermal probe
    np.testing.assert_allclose(engine.embed([crop], "vis"), base, atol=1e-6)  # and switching back restores the base
    assert engine.threshold("thermal", "1e-3").value == 0.3 and engine.threshold("thermal", "1e-3").calibrated
    assert engine.threshold("nir", "1e-2").value == FALLBACK_THRESHOLDS["1e-2"]  # NIR: base model, uncalibrated
    assert (
        "serves thermal probes" in engine.describe() and "Visible, NIR probes use the base model" in engine.describe()
    )

    everywhere = FaceEngine(xxs_folder, adapters=str(thermal_adapter))
    np.testing.assert_allclose(everywhere.embed([crop], "vis"), thermal, atol=1e-6)  # one network for all spectra


def test_without_adapters_the_page_says_every_spectrum_uses_the_base_model(engine):
    assert "every spectrum (visible, NIR, thermal) uses the base model" in engine.describe()
    assert "Thresholds uncalibrated" in engine.describe()


# -------------------------------------------------------------------------------------- the app, gradio_client


@pytest.fixture(scope="module")
def client(space_url):
    from gradio_client import Client

    return Client(space_url, verbose=False)


def _verify(client, reference, probe, spectrum="vis", far="1e-2", reference_points="", probe_points=""):
    from gradio_client import handle_file

    return client.predict(
        handle_file(str(reference)) if reference else None,
        handle_file(str(probe)) if probe else None,
        spectrum,
        far,
        reference_points,
        probe_points,
        api_name="/verify",
    )


def test_app_scores_a_genuine_pair_above_an_impostor_pair(client, assets):
    photos = assets / "faces/deepface"
    reference_crop, probe_crop, genuine, decision = _verify(client, photos / "img1.jpg", photos / "img2.jpg")
    impostor = _verify(client, photos / "img1.jpg", photos / "img13.jpg")
    assert genuine > impostor[2]
    assert decision.startswith("### Same person") and impostor[3].startswith("### Different people")
    assert Image.open(reference_crop).size == (112, 112) and Image.open(probe_crop).size == (112, 112)
    assert "uncalibrated" in decision


def test_app_aligns_thermal_probes_from_typed_eyes(client, thermal):
    genuine = _verify(
        client, thermal["s01_gallery"], thermal["s01_probe"], "thermal", "1e-3", THERMAL_EYES, THERMAL_EYES
    )
    impostor = _verify(
        client, thermal["s01_gallery"], thermal["s02_probe"], "thermal", "1e-3", THERMAL_EYES, THERMAL_EYES
    )
    assert genuine[2] > impostor[2]
    assert "thermal probe" in genuine[3] and "FAR 0.1 %" in genuine[3]


def test_app_identifies_on_a_small_att_gallery(client, assets):
    from gradio_client import handle_file

    att = assets / "faces/att"
    people = [f"s{i}" for i in range(11, 19)]
    enrolled, status = client.predict(
        [handle_file(str(att / p / "1.pgm")) for p in people], "\n".join(people), api_name="/enrol"
    )
    assert status.startswith("Enrolled 8 images of 8 people")
    assert [item["caption"] for item in enrolled] == people
    for person in ("s12", "s17"):
        _, ranking, note = client.predict(
            handle_file(str(att / person / "4.pgm")), "vis", "1e-2", "", api_name="/identify"
        )
        assert ranking["headers"] == ["rank", "name", "score", "images", "match"]
        assert ranking["data"][0][:2] == [1, person] and ranking["data"][0][4] == "yes"
        assert len(ranking["data"]) == 8


@pytest.mark.parametrize(
    "make_probe, message",
    [
        (lambda d, a: d / "notes.txt", "notes.txt could not be read as an image; upload a PNG"),
        (lambda d, a: d / "fake.jpg", "fake.jpg could not be read as an image"),
        (lambda d, a: d / "cut.jpg", "cut.jpg could not be decoded"),
        (lambda d, a: d / "wall.png", "No face was found in the probe image. Click the two eye centres"),
        (lambda d, a: None, "Upload both a reference image and a probe image."),
    ],
    ids=["text", "text-named-jpg", "truncated", "no-face", "missing"],
)
def test_app_answers_bad_uploads_with_a_readable_message(client, assets, tmp_path, make_probe, message):
    from gradio_client.exceptions import AppError

    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "fake.jpg").write_bytes(b"%PDF-1.4 not a JPEG")
    data = (assets / "faces/deepface/img25.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(np.full((480, 640, 3), 128, np.uint8)).save(tmp_path / "wall.png")
    with pytest.raises(AppError) as error:
        _verify(client, assets / "faces/deepface/img1.jpg", make_probe(tmp_path, assets))
    assert message in str(error.value)
    assert "Traceback" not in str(error.value)


def test_app_explains_half_given_landmarks_and_an_empty_gallery(assets, space_url):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    fresh = Client(space_url, verbose=False)  # a new session: nothing enrolled
    with pytest.raises(AppError, match="Click the second eye too"):
        _verify(fresh, assets / "faces/deepface/img1.jpg", assets / "faces/deepface/img2.jpg", probe_points="10, 20")
    with pytest.raises(AppError, match="The gallery is empty"):
        fresh.predict(handle_file(str(assets / "faces/att/s1/1.pgm")), "vis", "1e-2", "", api_name="/identify")


@pytest.mark.parametrize("side, message", [(30000, "is too large"), (10000, "100 megapixels")])
def test_huge_uploads_are_refused_before_decoding(side, message, tmp_path):
    from .test_images import png_header

    with pytest.raises(SpaceError, match=message):
        read_image(png_header(tmp_path / "bomb.png", side, side))


def test_identical_crops_are_returned_under_names_of_their_own(tmp_path, monkeypatch):
    """Gradio names returned arrays by their content and rewrites that file for every request returning the same
    image, racing a client still downloading it; the app returns each image as a PNG of its own instead."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    import app  # spaces/edgeface-hfr/app.py (its folder is on sys.path above)

    crop = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    first, second = app.as_file(crop), app.as_file(crop)
    assert first != second and Path(first).is_relative_to(tmp_path) and Path(second).is_relative_to(tmp_path)
    assert np.array_equal(np.asarray(Image.open(first)), crop) and np.array_equal(np.asarray(Image.open(second)), crop)


def test_four_concurrent_users_get_every_answer_whole(space_url, assets):
    """The Space under load, short (scripts/load_space.py runs the long one): 4 gradio_client users, each with its
    own session and gallery, share 20 verify and identify requests with real photos; every request answers, and
    every returned crop opens as a whole 112×112 PNG."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from load_space import run_load

    run = run_load(space_url, users=4, requests=20, photos=assets / "faces/deepface")
    assert run["requests"] == 20
    assert run["failed"] == 0, run["failures"]
