"""Paired data: renderers (properties that can fail), augmentation, loaders, splits, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from datasets import Image as ImageFeature
from PIL import Image

from hfr_hf.alignment import ARCFACE_TEMPLATE
from hfr_hf.alignment.detector_training import labelled_renderer
from hfr_hf.data import (
    Augment,
    BadRow,
    NIRRenderer,
    PairTransform,
    ThermalRenderer,
    check_disjoint_splits,
    face_regions,
    load_pairs_csv,
    pairs_from_folders,
    pseudo_pairs_from_folder,
    split_identities,
)


def _face(seed: int = 0) -> np.ndarray:
    """A tiny synthetic 'face': mid-grey oval on a dark background, dark hair cap, dark eyes."""
    yy, xx = np.mgrid[0:112, 0:112]
    image = np.full((112, 112), 40, np.uint8)
    image[((xx - 56) / 40) ** 2 + ((yy - 64) / 52) ** 2 < 1] = 150
    image[(((xx - 56) / 44) ** 2 + ((yy - 30) / 26) ** 2 < 1) & (yy < 36)] = 20
    for x in (38, 73):
        image[((xx - x) / 5) ** 2 + ((yy - 52) / 3) ** 2 < 1] = 30
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.int16) + rng.integers(-25, 25, image.shape)  # skin texture
    return np.repeat(np.clip(noisy, 0, 255).astype(np.uint8)[..., None], 3, -1)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64).mean(-1)


def _hf_energy(grey: np.ndarray) -> float:
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


@pytest.fixture(scope="module")
def yale_crops(assets):
    """Aligned Yale crops: subject01 and subject02 with glasses, and without."""
    from hfr_hf.alignment import FaceAligner

    names = ["subject01.glasses", "subject02.glasses", "subject01.noglasses", "subject02.noglasses"]
    results = FaceAligner().detect_and_align([assets / "faces/yale" / n for n in names])
    return {n: r[0].crop for n, r in zip(names, results)}


# --- renderers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("renderer", [ThermalRenderer(), NIRRenderer()], ids=["thermal", "nir"])
def test_render_is_deterministic_per_seed_and_varies_across_seeds(renderer):
    face = _face()
    assert np.array_equal(renderer(face, seed=3), renderer(face, seed=3))
    assert not np.array_equal(renderer(face, seed=3), renderer(face, seed=4))


def test_thermal_background_is_colder_than_face():
    scene = ThermalRenderer().temperature(_face(), seed=0)
    assert scene[40:90, 40:72].mean() > scene[:, :8].mean() + 0.3


def test_segmented_thermal_is_black_off_the_face_and_leaves_unsegmented_renders_as_they_were():
    face = _face()
    segmented = ThermalRenderer(palettes="white_hot", segmented=1.0)(face, seed=0)
    plain = ThermalRenderer(palettes="white_hot")(face, seed=0)
    assert segmented[:, :6].max() == 0 and segmented[:8].max() == 0  # background and hair cap: black
    assert np.array_equal(segmented[50:90, 40:72], plain[50:90, 40:72])  # the face itself is untouched
    assert np.array_equal(ThermalRenderer(segmented=0.0)(face, seed=5), ThermalRenderer()(face, seed=5))
    # PUJ framing: the face is about 0.63 as wide as in the template crop
    framed = ThermalRenderer(palettes="white_hot", segmented=1.0, framing=(0.63, 0.63))(face, seed=0)
    width = lambda image: np.ptp(np.flatnonzero((image[..., 0] > 20).any(0)))  # noqa: E731
    assert width(framed) == pytest.approx(0.63 * width(segmented), rel=0.1)


def test_thermal_skin_level_puts_the_median_skin_pixel_where_asked_and_is_the_default():
    face = _face()
    bright = ThermalRenderer(palettes="white_hot", noise=(0.0, 0.0), skin_level=(0.88, 0.88))(face, seed=0)
    skin = face_regions(face).skin > 0.5
    assert np.median(bright[..., 0][skin]) / 255 == pytest.approx(0.88, abs=0.03)
    plain = ThermalRenderer(palettes="white_hot", noise=(0.0, 0.0), skin_level=None)(face, seed=0)
    assert np.median(plain[..., 0][skin]) / 255 < 0.8  # the scene's gain leaves skin well below white
    assert bright[50:56, 44:50].mean() > bright[68:76, 50:62].mean()  # the order of temperatures is kept
    default = ThermalRenderer(palettes="white_hot", noise=(0.0, 0.0))(face, seed=0)
    assert 0.84 - 0.03 <= np.median(default[..., 0][skin]) / 255 <= 0.9 + 0.03  # the face gain is the default
    assert np.array_equal(ThermalRenderer(skin_level=(0.84, 0.9))(face, seed=5), ThermalRenderer()(face, seed=5))
    # the detector's labelled renders keep the scene gain its figures were measured with
    assert labelled_renderer().skin_level is None


def test_thermal_scale_zooms_about_the_eyes_and_keeps_the_default():
    face = _face()
    segmented = ThermalRenderer(palettes="white_hot", segmented=1.0)(face, seed=0)
    zoomed = ThermalRenderer(palettes="white_hot", segmented=1.0, scale=(1.25, 1.25))(face, seed=0)
    width = lambda image: np.ptp(np.flatnonzero((image[..., 0] > 20).any(0)))  # noqa: E731
    assert width(zoomed) == pytest.approx(1.25 * width(segmented), rel=0.1)
    # about the eyes' midpoint (not the crop's centre, 4 px lower): the face's top edge moves twice as far from
    # the eyes' row at scale 2 (about the centre it would end 4 px higher)
    eyes = float(ARCFACE_TEMPLATE[:2, 1].mean())
    top = lambda image: int(np.flatnonzero((image[..., 0] > 20).any(1))[0])  # noqa: E731
    doubled = ThermalRenderer(palettes="white_hot", segmented=1.0, scale=(2.0, 2.0))(face, seed=0)
    assert eyes - top(doubled) == pytest.approx(2.0 * (eyes - top(segmented)), abs=2.0)
    assert np.array_equal(ThermalRenderer(scale=(1.0, 1.0))(face, seed=5), ThermalRenderer()(face, seed=5))


def test_labelled_renders_keep_the_heat_pattern_on_the_labelled_face():
    """The detector's renders (labels = the visible landmarks) put the hottest inner eye corner at one place for
    every seed; the adapter's default renderer moves it (heat_shift, heat_scale), as augmentation."""
    from hfr_hf.alignment.detector_training import labelled_renderer

    face = _face()

    def hottest(renderer):
        return {
            np.unravel_index(np.argmax(renderer.temperature(face, seed=s)[40:64, 30:60]), (24, 30)) for s in range(6)
        }

    assert len(hottest(labelled_renderer())) == 1
    assert len(hottest(ThermalRenderer())) > 3


def test_thermal_hair_is_colder_than_skin():
    scene = ThermalRenderer().temperature(_face(), seed=0)
    assert scene[12:24, 40:72].mean() < scene[62:82, 30:82].mean() - 0.1


def test_thermal_inner_eye_corners_are_hottest_on_the_face():
    scene = ThermalRenderer(heat_shift=0.0).temperature(_face(), seed=0)
    assert scene[50:56, 44:50].mean() > scene[68:76, 50:62].mean()  # inner canthus warmer than nose tip


def test_thermal_has_less_high_frequency_energy_than_input():
    face = _face()
    render = ThermalRenderer(palettes="white_hot")(face, seed=0)
    assert _hf_energy(_grey(render)) < 0.5 * _hf_energy(_grey(face))


def test_thermal_palette_output_is_rgb():
    render = ThermalRenderer(palettes="iron")(_face(), seed=0)
    assert render.shape == (112, 112, 3) and render.dtype == np.uint8
    assert np.abs(render[..., 0].astype(int) - render[..., 2]).max() > 50  # colour, not grey


def test_thermal_glasses_are_darker_than_skin(yale_crops):
    renderer = ThermalRenderer(palettes="white_hot")
    render = _grey(renderer(yale_crops["subject01.glasses"], seed=0))  # glasses detected, not told
    lenses = np.concatenate([render[47:56, 32:44].ravel(), render[47:56, 68:80].ravel()])
    assert lenses.mean() < render[66:80, 30:82].mean() - 40


def test_glasses_score_separates_yale_pairs(yale_crops):
    from hfr_hf.data import glasses_score

    for subject in ("subject01", "subject02"):
        assert glasses_score(yale_crops[f"{subject}.glasses"]) > glasses_score(yale_crops[f"{subject}.noglasses"])


def test_face_regions_on_real_face(yale_crops):
    regions = face_regions(yale_crops["subject02.noglasses"])
    assert regions.skin[60:90, 40:72].mean() > 0.9
    assert regions.skin[:, :4].mean() < 0.5  # the crop's side is not skin


def test_nir_is_grey_and_centre_brighter_on_flat_input():
    flat = np.full((112, 112, 3), 128, np.uint8)
    render = NIRRenderer(specular=(0.0, 0.0))(flat, seed=0)
    assert np.array_equal(render[..., 0], render[..., 1]) and np.array_equal(render[..., 1], render[..., 2])
    grey = _grey(render)
    assert grey[46:66, 46:66].mean() > grey[:10, :10].mean() + 20


def test_nir_has_dark_irises():
    flat = np.full((112, 112, 3), 128, np.uint8)
    grey = _grey(NIRRenderer(specular=(0.0, 0.0))(flat, seed=0))
    assert grey[49:55, 35:42].mean() < grey[62:70, 35:42].mean()


# --- augmentation ------------------------------------------------------------------------------------------


def test_augment_is_deterministic_and_varies():
    face, augment = _face(), Augment()
    assert np.array_equal(augment(face, 1), augment(face, 1))
    assert not np.array_equal(augment(face, 1), augment(face, 2))
    assert augment(face, 1).shape == (112, 112, 3)


# --- splits ------------------------------------------------------------------------------------------------


def test_split_identities_is_disjoint_seeded_and_complete():
    people = [f"p{i}" for i in range(20)]
    splits = split_identities(people * 3, (0.6, 0.2, 0.2), seed=1)
    assert set(splits) == set(people) and set(splits.values()) == {"train", "validation", "test"}
    assert splits == split_identities(people, (0.6, 0.2, 0.2), seed=1)
    assert splits != split_identities(people, (0.6, 0.2, 0.2), seed=2)


def test_shared_identities_raise():
    with pytest.raises(ValueError, match="more than one split"):
        check_disjoint_splits(["a", "b", "a"], ["train", "train", "test"])


# --- loaders and bad input ---------------------------------------------------------------------------------


def _write_folder(root: Path, people: dict[str, int], prefix: str = "") -> None:
    for n, (person, count) in enumerate(people.items()):
        (root / person).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            Image.fromarray(_face(n * 10 + k)).save(root / person / f"{prefix}{k}.png")


def _write_csv(path: Path, rows: list[tuple]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["vis_file", "target_file", "identity", "split"])
        writer.writerows(rows)
    return path


def test_load_metadata_csv_gives_image_features(tmp_path):
    _write_folder(tmp_path / "vis", {"a": 1, "b": 1})
    _write_folder(tmp_path / "nir", {"a": 1, "b": 1})
    _write_csv(
        tmp_path / "metadata.csv",
        [("vis/a/0.png", "nir/a/0.png", "a", "train"), ("vis/b/0.png", "nir/b/0.png", "b", "test")],
    )
    dataset = load_pairs_csv(tmp_path, modality="nir")
    assert isinstance(dataset.features["vis"], ImageFeature) and isinstance(dataset.features["target"], ImageFeature)
    assert dataset[0]["vis"].size == (112, 112) and dataset["modality"] == ["nir", "nir"]
    assert dataset["synthetic"] == [False, False] and dataset["split"] == ["train", "test"]


def test_csv_missing_and_corrupt_images_raise_or_are_skipped(tmp_path):
    _write_folder(tmp_path / "vis", {"a": 1})
    (tmp_path / "broken.png").write_bytes(b"not an image")
    path = _write_csv(
        tmp_path / "pairs.csv",
        [
            ("vis/a/0.png", "vis/a/0.png", "a", ""),
            ("vis/a/0.png", "gone.png", "a", ""),
            ("broken.png", "vis/a/0.png", "a", ""),
        ],
    )
    with pytest.raises(ValueError, match="2 bad entries"):
        load_pairs_csv(path)
    bad: list[BadRow] = []
    dataset = load_pairs_csv(path, skip_bad=True, bad_rows=bad)
    assert len(dataset) == 1
    assert [b.where for b in bad] == ["pairs.csv line 3", "pairs.csv line 4"]
    assert "does not exist" in bad[0].reason and "could not be read" in bad[1].reason


def test_csv_with_shared_identities_across_splits_raises(tmp_path):
    _write_folder(tmp_path / "vis", {"a": 2})
    path = _write_csv(
        tmp_path / "pairs.csv",
        [("vis/a/0.png", "vis/a/1.png", "a", "train"), ("vis/a/1.png", "vis/a/0.png", "a", "test")],
    )
    with pytest.raises(ValueError, match="identity-disjoint"):
        load_pairs_csv(path)


def test_pairs_from_folders_pairs_by_identity(tmp_path):
    _write_folder(tmp_path / "vis", {"a": 2, "b": 1})
    _write_folder(tmp_path / "thermal", {"a": 1, "b": 2}, prefix="t")
    dataset = pairs_from_folders(tmp_path)
    assert sorted(dataset["identity"]) == ["a", "a", "b", "b"]
    assert all(Path(v).parent.name == Path(t).parent.name for v, t in zip(dataset["vis_path"], dataset["target_path"]))


def test_pairs_from_folders_identity_in_one_modality(tmp_path):
    _write_folder(tmp_path / "vis", {"a": 1, "lonely": 1})
    _write_folder(tmp_path / "thermal", {"a": 1})
    with pytest.raises(ValueError, match="lonely"):
        pairs_from_folders(tmp_path)
    bad: list[BadRow] = []
    assert pairs_from_folders(tmp_path, skip_bad=True, bad_rows=bad)["identity"] == ["a"]
    assert bad[0].where == "lonely"


def test_pseudo_pairs_single_image_identity(tmp_path):
    _write_folder(tmp_path, {"a": 3, "single": 1})
    with pytest.raises(ValueError, match="single"):
        pseudo_pairs_from_folder(tmp_path)
    bad: list[BadRow] = []
    dataset = pseudo_pairs_from_folder(tmp_path, skip_bad=True, bad_rows=bad)
    assert set(dataset["identity"]) == {"a"} and bad[0].where == "single"


def test_pseudo_pairs_are_synthetic_render_another_image_and_are_deterministic(tmp_path):
    _write_folder(tmp_path, {"a": 3, "b": 2})
    dataset = pseudo_pairs_from_folder(tmp_path, modality="thermal", seed=0)
    assert all(dataset["synthetic"]) and set(dataset["modality"]) == {"thermal"}
    assert "target" not in dataset.column_names  # an unrendered source is never mistaken for a target
    assert all(v != t for v, t in zip(dataset["vis_path"], dataset["target_path"]))
    transform = PairTransform("thermal", Augment(), seed=0)
    first, again = dataset.with_transform(transform)[:2], dataset.with_transform(transform)[:2]
    assert np.array_equal(first["target"][0], again["target"][0]) and first["target"][0].shape == (112, 112, 3)
    transform.set_epoch(1)
    assert not np.array_equal(dataset.with_transform(transform)[:1]["target"][0], first["target"][0])


def test_eager_pseudo_pairs_store_rendered_targets(tmp_path):
    _write_folder(tmp_path, {"a": 2, "b": 2})
    dataset = pseudo_pairs_from_folder(tmp_path, modality="nir", eager=True)
    assert isinstance(dataset.features["target"], ImageFeature) and all(dataset["synthetic"])
    target = np.asarray(dataset[0]["target"].convert("RGB"))
    assert np.array_equal(target[..., 0], target[..., 1])  # NIR renders are grey
