"""Alignment mechanics on synthetic images with known landmarks (no detector weights needed)."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from hfr_hf import EdgeFaceImageProcessor
from hfr_hf.alignment import (
    ARCFACE_TEMPLATE,
    AlignmentError,
    FaceAligner,
    FaceDetections,
    similarity_transform,
    transform_points,
)
from hfr_hf.alignment.folder import align_folder, aligned_crop_names, read_landmarks_csv


def random_similarity(rng, scale=(1.5, 3.0)):
    angle = rng.uniform(-0.5, 0.5)
    s = rng.uniform(*scale)
    rotation = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([rotation, rng.uniform(60, 120, (2, 1))])


def blob_image(points, shape=(420, 400), sigma=2.0):
    """A dark image with a Gaussian blob at each point (so centroids are measurable to sub-pixel)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape)
    for x, y in points:
        image += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return np.repeat((np.clip(image, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def blob_centroids(crop, near, radius=6):
    grey = crop[..., 0].astype(np.float64)
    yy, xx = np.mgrid[: grey.shape[0], : grey.shape[1]]
    centres = []
    for x, y in near:
        mask = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        weights = grey * mask
        centres.append([(weights * xx).sum() / weights.sum(), (weights * yy).sum() / weights.sum()])
    return np.array(centres)


class FakeDetector:
    """Stands in for MTCNN: returns the given detections for every image, and `face_score` as its O-Net's face
    check of any aligned crop."""

    def __init__(self, boxes, scores, landmarks, face_score=1.0):
        self.detections = FaceDetections(
            np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(landmarks, np.float32)
        )
        self.face_score = face_score

    def detect(self, images):
        return [self.detections for _ in images]

    def face_scores(self, crops):
        return np.full(len(crops), self.face_score, np.float32)


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    truth = random_similarity(rng)
    points = rng.uniform(0, 100, (5, 2))
    estimate = similarity_transform(points, transform_points(truth, points))
    np.testing.assert_allclose(estimate, truth, atol=1e-9)


def test_similarity_transform_never_reflects():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mirrored = points * [-1, 1]
    matrix = similarity_transform(points, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_given_landmarks_land_on_the_template(seed):
    rng = np.random.default_rng(seed)
    landmarks = transform_points(random_similarity(rng), ARCFACE_TEMPLATE)
    face = FaceAligner().from_landmarks(blob_image(landmarks), landmarks)
    assert face.crop.shape == (112, 112, 3) and face.source == "landmarks"
    np.testing.assert_allclose(transform_points(face.matrix, landmarks), ARCFACE_TEMPLATE, atol=1e-6)
    assert np.abs(blob_centroids(face.crop, ARCFACE_TEMPLATE) - ARCFACE_TEMPLATE).max() < 0.5


def test_eye_centres_alone_place_the_eyes():
    rng = np.random.default_rng(3)
    landmarks = transform_points(random_similarity(rng), ARCFACE_TEMPLATE)
    face = FaceAligner().from_landmarks(blob_image(landmarks), landmarks[:2])
    assert face.source == "eyes"
    assert np.abs(blob_centroids(face.crop, ARCFACE_TEMPLATE[:2]) - ARCFACE_TEMPLATE[:2]).max() < 0.5


def test_detected_and_given_landmarks_give_the_same_crop():
    rng = np.random.default_rng(4)
    landmarks = transform_points(random_similarity(rng), ARCFACE_TEMPLATE)
    image = blob_image(landmarks)
    aligner = FaceAligner(detector=FakeDetector([[50, 50, 300, 350]], [0.99], [landmarks]))
    detected = aligner.align(image)[0]
    given = aligner.from_landmarks(image, landmarks)
    np.testing.assert_array_equal(detected.crop, given.crop)
    assert detected.score == pytest.approx(0.99) and detected.source == "detected"


def test_template_scales_with_the_crop_size():
    rng = np.random.default_rng(5)
    landmarks = transform_points(random_similarity(rng), ARCFACE_TEMPLATE)
    face = FaceAligner(image_size=224).from_landmarks(blob_image(landmarks), landmarks)
    assert face.crop.shape == (224, 224, 3)
    np.testing.assert_allclose(transform_points(face.matrix, landmarks), ARCFACE_TEMPLATE * 2, atol=1e-6)


def two_faces():
    small = transform_points(np.array([[1.0, 0, 10], [0, 1.0, 10]]), ARCFACE_TEMPLATE)
    large = transform_points(np.array([[2.0, 0, 150], [0, 2.0, 150]]), ARCFACE_TEMPLATE)
    return FakeDetector([[10, 10, 120, 120], [150, 150, 370, 370]], [0.99, 0.9], [small, large])


@pytest.mark.parametrize("select, expected_scores", [("confidence", [0.99]), ("largest", [0.9]), ("all", [0.99, 0.9])])
def test_face_selection(select, expected_scores):
    faces = FaceAligner(select=select, detector=two_faces()).align(np.zeros((400, 400, 3), np.uint8))
    assert [f.score for f in faces] == pytest.approx(expected_scores)


def test_detections_that_fail_the_face_check_are_not_faces():
    rng = np.random.default_rng(4)
    landmarks = transform_points(random_similarity(rng), ARCFACE_TEMPLATE)
    image = blob_image(landmarks)
    doubtful = FakeDetector([[50, 50, 300, 350]], [0.99], [landmarks], face_score=0.6)
    with pytest.raises(AlignmentError, match=r"does not look like a face once aligned \(face score 0.60 < 0.9\)"):
        FaceAligner(detector=doubtful).align(image)
    face = FaceAligner(detector=doubtful, face_check=False).align(image)[0]  # raw detections, for study
    assert face.score == pytest.approx(0.99) and "face_score" not in face.extra


def test_the_face_check_drops_a_failing_face_and_keeps_the_others():
    class OneDoubtful(FakeDetector):
        def face_scores(self, crops):  # the small face (the first) fails
            return np.array([0.3] + [1.0] * (len(crops) - 1), np.float32)

    detector = two_faces()
    detector.__class__ = OneDoubtful
    faces = FaceAligner(select="all", detector=detector).align(np.zeros((400, 400, 3), np.uint8))
    assert [f.score for f in faces] == pytest.approx([0.9])
    assert faces[0].extra["face_score"] == pytest.approx(1.0) and faces[0].extra["face_check_threshold"] == 0.9


def test_a_detection_with_eyes_a_few_pixels_apart_is_no_face():
    # a box the cascade's regression shrank onto a noise speck: its crop may still score high
    speck = transform_points(np.array([[0.1, 0, 80], [0, 0.1, 30]]), ARCFACE_TEMPLATE)  # eyes 3.5 px apart
    image = np.random.default_rng(5).integers(0, 256, (198, 115, 3), dtype=np.uint8)
    tiny = FakeDetector([[80, 30, 91, 42]], [0.95], [speck], face_score=0.95)
    with pytest.raises(AlignmentError, match=r"too small to be a face \(eyes 3.5 px apart; a face needs at least 6"):
        FaceAligner(detector=tiny).align(image)
    assert len(FaceAligner(detector=tiny, face_check=False).align(image)) == 1  # the raw detection, for study
    both = two_faces()  # the small face's eyes are 35 px apart: kept beside it
    both.detections.landmarks[0] = speck
    faces = FaceAligner(select="all", detector=both).align(np.zeros((400, 400, 3), np.uint8))
    assert [f.score for f in faces] == pytest.approx([0.9])


def test_registered_twin_uses_the_visible_landmarks():
    rng = np.random.default_rng(6)
    landmarks = transform_points(random_similarity(rng), ARCFACE_TEMPLATE)
    visible = blob_image(landmarks)
    thermal = (rng.random((420, 400)) * 65535).astype(np.uint16)  # a 16-bit grey image of the same size
    aligner = FaceAligner(detector=FakeDetector([[50, 50, 300, 350]], [0.99], [landmarks]))
    face, twin = aligner.align_registered_pair(visible, thermal)
    np.testing.assert_array_equal(twin.matrix, face.matrix)
    assert twin.source == "twin" and twin.crop.shape == (112, 112, 3)
    with pytest.raises(AlignmentError, match="same size"):
        aligner.align_registered_pair(visible, thermal[:200])


@pytest.mark.parametrize(
    "points, message",
    [
        (np.zeros((3, 2)), "5 landmarks or 2 eye centres"),
        (np.full((5, 2), np.nan), "NaN"),
        (np.ones((5, 2)), "apart"),
    ],
)
def test_unusable_landmarks(points, message):
    with pytest.raises(AlignmentError, match=message):
        FaceAligner().from_landmarks(np.zeros((100, 100, 3), np.uint8), points)


def test_no_detection_is_an_alignment_error():
    aligner = FaceAligner(detector=FakeDetector(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))))
    with pytest.raises(AlignmentError, match="No face was detected"):
        aligner.align(np.zeros((100, 100, 3), np.uint8))


def test_processor_aligns_raw_photos_when_given_an_aligner():
    rng = np.random.default_rng(7)
    landmarks = transform_points(random_similarity(rng), ARCFACE_TEMPLATE)
    photo = blob_image(landmarks)
    aligner = FaceAligner(detector=FakeDetector([[50, 50, 300, 350]], [0.99], [landmarks]))
    processor = EdgeFaceImageProcessor()
    aligned = processor([photo, photo], aligner=aligner, return_tensors="pt").pixel_values
    expected = processor(aligner(photo), return_tensors="pt").pixel_values
    assert aligned.shape == (2, 3, 112, 112)
    torch.testing.assert_close(aligned[1:], expected)


def test_folder_alignment_mirrors_the_tree_and_lists_failures(tmp_path):
    rng = np.random.default_rng(8)
    landmarks = transform_points(random_similarity(rng), ARCFACE_TEMPLATE)
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "b").mkdir()
    Image.fromarray(blob_image(landmarks)).save(source / "a/face.png")
    Image.fromarray(blob_image(landmarks)).save(source / "b/face.jpg")
    (source / "b/notes.png").write_text("not an image")
    jpeg = (source / "b/face.jpg").read_bytes()
    (source / "b/truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    aligner = FaceAligner(detector=FakeDetector([[50, 50, 300, 350]], [0.99], [landmarks]))
    report = align_folder(source, tmp_path / "dst", aligner, progress=False)
    assert sorted(report.aligned) == ["a/face.png", "b/face.jpg"]
    assert set(report.failed) == {"b/notes.png", "b/truncated.jpg"}
    assert Image.open(tmp_path / "dst/a/face.png").size == (112, 112)
    assert (tmp_path / "dst/b/face.png").is_file()
    rows = list(csv.DictReader(open(report.csv_path)))
    assert {r["path"]: r["status"] for r in rows} == {
        "a/face.png": "aligned",
        "b/face.jpg": "aligned",
        "b/notes.png": "failed",
        "b/truncated.jpg": "failed",
    }
    assert all(r["reason"] for r in rows if r["status"] == "failed")
    assert float(rows[0]["left_eye_x"]) == pytest.approx(landmarks[0, 0], abs=0.01)


def test_folder_alignment_from_annotated_landmarks(tmp_path):
    rng = np.random.default_rng(9)
    landmarks = transform_points(random_similarity(rng), ARCFACE_TEMPLATE)
    (tmp_path / "src").mkdir()
    Image.fromarray(blob_image(landmarks)).save(tmp_path / "src/x.png")
    table = tmp_path / "landmarks.csv"
    table.write_text("path,lx,ly,rx,ry\nx.png," + ",".join(f"{v:.4f}" for v in landmarks[:2].ravel()) + "\n")
    detector = FakeDetector(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))  # would find nothing
    report = align_folder(
        tmp_path / "src", tmp_path / "dst", FaceAligner(detector=detector), read_landmarks_csv(table), progress=False
    )
    assert report.aligned == ["x.png"] and not report.failed
    crop = np.asarray(Image.open(tmp_path / "dst/x.png"))
    assert np.abs(blob_centroids(crop, ARCFACE_TEMPLATE[:2]) - ARCFACE_TEMPLATE[:2]).max() < 0.5


def test_crop_names_are_one_per_input():
    names = aligned_crop_names(["p/a.jpg", "p/a.png", "p/a.pgm", "p/b.JPG", "subject01.glasses", "subject01.gif"])
    assert names == {
        "p/a.jpg": "p/a.jpg.png",  # a.jpg, a.png and a.pgm would all be a.png
        "p/a.png": "p/a.png.png",
        "p/a.pgm": "p/a.pgm.png",
        "p/b.JPG": "p/b.png",
        "subject01.glasses": "subject01.glasses.png",  # not an image suffix: part of the name
        "subject01.gif": "subject01.png",
    }
    # a full name that is itself the name another input gets: that one moves to its full name too
    assert aligned_crop_names(["a.jpg", "a.png", "a.jpg.png"])["a.jpg.png"] == "a.jpg.png.png"
    # a crop that would be the folder of another's crop
    assert aligned_crop_names(["x/a.jpg", "x/a.png/b.jpg"]) == {
        "x/a.jpg": "x/a.jpg.png",
        "x/a.png/b.jpg": "x/a.png/b.png",
    }


def test_same_stem_inputs_keep_their_own_crops(tmp_path):
    rng = np.random.default_rng(10)
    landmarks = transform_points(random_similarity(rng), ARCFACE_TEMPLATE)
    source = tmp_path / "src"
    source.mkdir()
    brightness = {"a.png": 250, "a.jpg": 170, "a.pgm": 90, "subject01.glasses": 200, "subject01.happy": 120}
    for name, level in brightness.items():
        image = Image.fromarray((blob_image(landmarks)[..., 0] * (level / 255)).astype(np.uint8))  # a different face
        image.save(source / name, format="GIF" if name.startswith("subject") else None)
    aligner = FaceAligner(detector=FakeDetector([[50, 50, 300, 350]], [0.99], [landmarks]))
    report = align_folder(source, tmp_path / "dst", aligner, progress=False)
    assert sorted(report.aligned) == sorted(brightness) and not report.failed
    outputs = {r["path"]: r["output"] for r in csv.DictReader(open(report.csv_path))}
    assert outputs == {
        "a.jpg": "a.jpg.png",
        "a.png": "a.png.png",
        "a.pgm": "a.pgm.png",
        "subject01.glasses": "subject01.glasses.png",
        "subject01.happy": "subject01.happy.png",
    }
    # each crop is its own input's, not the last one written: the crops are as bright as their inputs, in order
    peaks = {name: int(np.asarray(Image.open(tmp_path / "dst" / outputs[name])).max()) for name in brightness}
    assert sorted(peaks, key=peaks.get) == sorted(brightness, key=brightness.get)
    assert len(set(peaks.values())) == len(brightness)


def test_all_faces_names_stay_distinct(tmp_path):
    (tmp_path / "src").mkdir()
    for name in ("a.png", "a_face0.png"):
        Image.fromarray(np.zeros((400, 400, 3), np.uint8)).save(tmp_path / "src" / name)
    report = align_folder(
        tmp_path / "src", tmp_path / "dst", FaceAligner(select="all", detector=two_faces()), progress=False
    )
    outputs = [r["output"] for r in csv.DictReader(open(report.csv_path))]
    assert sorted(outputs) == ["a_face0.png", "a_face0_face0.png", "a_face0_face1.png", "a_face1.png"]
    assert sorted(p.name for p in (tmp_path / "dst").glob("*.png")) == sorted(outputs)


def test_names_that_cannot_be_told_apart_stop_before_writing(tmp_path):
    (tmp_path / "src/a.png").mkdir(parents=True)  # a folder named like the crop of the file `a`
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "src/a", format="GIF")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "src/a.png/b.png")
    with pytest.raises(ValueError, match="cannot get distinct output names"):
        align_folder(tmp_path / "src", tmp_path / "dst", FaceAligner(detector=two_faces()), progress=False)
    assert not (tmp_path / "dst").exists()


def test_landmark_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,x\n")
    with pytest.raises(ValueError, match="first column must be 'path'"):
        read_landmarks_csv(bad)
    bad.write_text("path,a,b,c\nx.png,1,2,3\n")
    with pytest.raises(ValueError, match="bad.csv:2: expected a path and 4 or 10"):
        read_landmarks_csv(bad)


def test_stock_mtcnn_invents_no_face_once_its_detections_are_face_checked():
    """MTCNN as published frames thermal textures as faces (O-Net 0.8); the face check of the aligned crop
    (O-Net ≥ MIN_FACE_SCORE) keeps them out of everything an aligner feeds: verify, galleries, the Space."""
    from hfr_hf.evaluation.detection import false_detections, non_face_images

    raw, checked = 0, 0
    for seed in (1234, 4321):
        images, _ = non_face_images(40, seed=seed)
        raw += false_detections(FaceAligner(select="all", face_check=False), images)["faces"]
        checked += false_detections(FaceAligner(select="all"), images)["faces"]
    assert raw >= 4 and checked == 0


def test_the_face_check_keeps_every_real_visible_face(assets):
    """The shared photos' faces all pass MTCNN's face check, with room: what it refuses scores ≤ 0.79."""
    from hfr_hf.alignment.detector_training import find_images
    from hfr_hf.alignment.quality import MIN_FACE_SCORE

    faces = assets / "faces"
    photos = find_images([faces / "deepface", faces / "yale"]) + find_images([faces / "att"])[::4]
    results = FaceAligner().detect_and_align(photos)
    assert not [p for p, r in zip(photos, results) if isinstance(r, AlignmentError)]
    assert min(r[0].extra["face_score"] for r in results) >= MIN_FACE_SCORE + 0.05
