"""Detection and alignment on the shared real faces, and bad inputs, with the real MTCNN weights."""

import csv

import numpy as np
import pytest
from PIL import Image

from hfr_hf.alignment import AlignmentError, FaceAligner
from hfr_hf.evaluation import roc_auc
from hfr_hf.inference import cosine_similarity, embed_images, load_model


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner()


@pytest.fixture(scope="module")
def deepface(assets):
    return sorted((assets / "faces/deepface").glob("img*.jpg"), key=lambda p: int(p.stem[3:]))


def test_deepface_photos_are_aligned(aligner, deepface):
    results = aligner.detect_and_align(deepface)
    assert len(deepface) == 25
    assert sum(not isinstance(r, Exception) for r in results) >= 24


def pair_scores(assets, folder, aligner):
    with open(assets / "faces/deepface/master.csv", newline="") as handle:
        pairs = [(row["file_x"], row["file_y"], row["Decision"].strip() == "Yes") for row in csv.DictReader(handle)]
    names = sorted({name for a, b, _ in pairs for name in (a, b)})
    model, processor = load_model(folder)
    paths = [assets / "faces/deepface" / name for name in names]
    align = "never" if aligner is None else "always"
    embeddings = embed_images(model, processor, paths, progress=False, aligner=aligner, align=align)
    index = {name: i for i, name in enumerate(names)}
    similarity = cosine_similarity(embeddings, embeddings)
    scores = np.array([similarity[index[a], index[b]] for a, b, _ in pairs])
    labels = np.array([same for _, _, same in pairs])
    return roc_auc(scores[labels], scores[~labels])


def test_alignment_makes_the_deepface_pairs_separate(xxs_folder, assets, aligner):
    aligned = pair_scores(assets, xxs_folder, aligner)
    resized = pair_scores(assets, xxs_folder, None)
    assert aligned >= 0.99
    assert aligned > resized


def photo(assets, name="img1.jpg"):
    return np.asarray(Image.open(assets / "faces/deepface" / name).convert("RGB"))


def test_large_image_landmarks_map_back(aligner, assets):
    small = photo(assets)
    reference = aligner.align(small)[0]
    factor = 7800 / max(small.shape[:2])
    big = np.zeros((8000, 8000, 3), np.uint8)
    resized = np.asarray(
        Image.fromarray(small).resize((round(small.shape[1] * factor), round(small.shape[0] * factor)))
    )
    big[100 : 100 + resized.shape[0], 100 : 100 + resized.shape[1]] = resized
    face = aligner.align(big)[0]
    expected = reference.landmarks * factor + 100
    eye_distance = np.linalg.norm(expected[1] - expected[0])
    assert np.abs(face.landmarks - expected).max() < 0.1 * eye_distance


def test_rgba_png_and_sixteen_bit_tiff(aligner, assets, tmp_path):
    rgb = photo(assets)
    reference = aligner.align(rgb)[0].landmarks
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "face.png")
    np.testing.assert_allclose(aligner.align(tmp_path / "face.png")[0].landmarks, reference, atol=1e-3)
    grey16 = np.asarray(Image.fromarray(rgb).convert("L"), np.uint16) * 257
    Image.fromarray(grey16).save(tmp_path / "face16.tiff")
    assert Image.open(tmp_path / "face16.tiff").mode.startswith("I;16")
    face = aligner.align(tmp_path / "face16.tiff")[0]
    eye_distance = np.linalg.norm(reference[1] - reference[0])
    assert np.abs(face.landmarks - reference).max() < 0.15 * eye_distance


def test_bad_files_fail_alone(aligner, assets, tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image at all")
    jpeg = (assets / "faces/deepface/img1.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[:2000])
    Image.fromarray(np.full((480, 640, 3), 128, np.uint8)).save(tmp_path / "blank.png")
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(tmp_path / "tiny.png")
    inputs = [tmp_path / "notes.jpg", tmp_path / "truncated.jpg", tmp_path / "blank.png", tmp_path / "tiny.png"]
    inputs.append(assets / "faces/deepface/img1.jpg")
    results = aligner.detect_and_align(inputs)
    for result in results[:4]:
        assert isinstance(result, AlignmentError)
    assert "could not be read as an image" in str(results[0])
    assert "could not be read as an image" in str(results[1])
    assert "No face was detected" in str(results[2]) and "No face was detected" in str(results[3])
    assert results[4][0].crop.shape == (112, 112, 3)


def test_face_check_takes_aligned_faces_and_refuses_what_is_not_one(aligner, deepface, assets):
    """O-Net's face score on aligned crops: every aligned deepface photo passes; noise, smooth noise, a gradient
    and background patches of the Yale frames do not (measured: faces ≥ 0.99, these ≤ 0.2)."""
    import cv2

    faces = [r[0].crop for r in aligner.detect_and_align(deepface) if not isinstance(r, Exception)]
    assert min(aligner.check_crop(crop) for crop in faces) >= 0.9
    rng = np.random.default_rng(0)
    gradient = np.repeat(np.repeat(np.linspace(0, 255, 112, dtype=np.uint8)[None, :, None], 112, 0), 3, 2)
    not_faces = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), gradient]
    not_faces += [cv2.GaussianBlur(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), (0, 0), s) for s in (2, 5)]
    for path in sorted((assets / "faces/yale").glob("subject0*.normal")):
        frame = np.asarray(Image.open(path).convert("RGB"))
        not_faces.append(np.ascontiguousarray(frame[:112, :112]))  # the top-left corner: wall, no face
    for crop in not_faces:
        with pytest.raises(AlignmentError, match="blank|does not look like a face"):
            aligner.check_crop(crop)


def test_every_yale_face_gets_its_own_crop(assets, tmp_path):
    from hfr_hf.cli import main

    # subject01.glasses, subject01.happy, ...: GIFs whose "suffix" is the condition, all once aligned to subject01.png
    yale = assets / "faces/yale"
    assert main(["align", str(yale), str(tmp_path / "out")]) in (0, 3)  # 3: some faces were not found
    rows = list(csv.DictReader(open(tmp_path / "out/alignment.csv")))
    aligned = [r for r in rows if r["status"] == "aligned"]
    assert len(rows) == len(list(yale.iterdir())) == 164
    assert len({r["output"] for r in aligned}) == len(aligned)  # no crop overwrote another
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(r["output"] for r in aligned)
    assert {"subject01.glasses.png", "subject01.happy.png"} <= {r["output"] for r in aligned}
    assert len(aligned) >= 160
