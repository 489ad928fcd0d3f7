"""No face, no score: landmarks, alignments and crops that cannot be a face are refused, never aligned."""

import numpy as np
import pytest

from hfr_hf import EdgeFaceImageProcessor
from hfr_hf.alignment import ARCFACE_TEMPLATE, AlignmentError, FaceAligner, transform_points
from hfr_hf.alignment.quality import MAX_GEOMETRY_ERROR, check_crop

from .test_alignment import blob_image, random_similarity


def face_points(seed=0):
    return transform_points(random_similarity(np.random.default_rng(seed)), ARCFACE_TEMPLATE)


@pytest.mark.parametrize(
    "points, message",
    [
        ([[-5000, -5000], [-4000, -5000]], "outside the 400×420 image"),  # the Space's hostile eye clicks
        ([[-5000, -5000], [-4000, -5000], [-4500, -4800], [-4800, -4600], [-4200, -4600]], "outside"),
        ([[200, 200], [200.001, 200]], "0.0 px apart"),
        ([[250, 200], [200, 200]], "swap the two eyes"),
        ([[200, 200], [210, 290]], "tilted"),
        ([[5000, 5000], [5050, 5000]], "outside"),
    ],
)
def test_landmarks_that_cannot_be_a_face_are_refused(points, message):
    image = blob_image(face_points())
    with pytest.raises(AlignmentError, match=message):
        FaceAligner().from_landmarks(image, np.asarray(points, float))


def test_five_points_out_of_a_face_layout_are_refused():
    points = face_points(1)
    upside_down = points[[0, 1, 2, 3, 4]].copy()
    upside_down[3:, 1] = points[0, 1] - (points[3:, 1] - points[0, 1])  # mouth corners above the eyes
    image = blob_image(points)
    with pytest.raises(AlignmentError, match="layout"):
        FaceAligner().from_landmarks(image, upside_down)
    FaceAligner().from_landmarks(image, points)  # the same points in a face's layout align


def test_layout_tolerance_admits_what_the_detector_gives():
    """Noise of a tenth of the eye distance on every point (real detections: ≤ 0.21 after the fit) aligns."""
    rng = np.random.default_rng(2)
    points = face_points(2)
    eye_distance = np.linalg.norm(points[1] - points[0])
    noisy = points + rng.uniform(-0.1, 0.1, points.shape) * eye_distance
    assert MAX_GEOMETRY_ERROR > 0.3
    FaceAligner().from_landmarks(blob_image(points), noisy)


def test_an_alignment_mostly_outside_the_image_is_refused():
    image = blob_image(face_points(3))
    with pytest.raises(AlignmentError, match="inside the image"):
        FaceAligner().from_landmarks(image, [[1, 1], [20, 1]])  # a face above the top-left corner


@pytest.mark.parametrize("value", [0, 128, 255])
def test_a_blank_image_aligned_from_landmarks_is_refused(value):
    image = np.full((420, 400, 3), value, np.uint8)
    with pytest.raises(AlignmentError, match="blank"):
        FaceAligner().from_landmarks(image, face_points(4))


def test_check_crop_refuses_blank_and_takes_a_scorer():
    rng = np.random.default_rng(5)
    with pytest.raises(AlignmentError, match="blank"):
        check_crop(np.full((112, 112, 3), 7, np.uint8))
    noise = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert check_crop(noise) is None  # not blank; without a scorer nothing more is judged
    with pytest.raises(AlignmentError, match="face score 0.10"):
        check_crop(noise, lambda crop: 0.1)
    assert check_crop(noise, lambda crop: 0.9) == pytest.approx(0.9)


@pytest.mark.parametrize(
    "image",
    [np.zeros((0, 0, 3), np.uint8), np.zeros((0, 5), np.uint8), np.zeros((3, 0, 0), np.float32)],
    ids=["0x0x3", "0x5", "3x0x0"],
)
def test_zero_size_images_are_refused_by_the_processor(image):
    with pytest.raises(ValueError, match="empty"):
        EdgeFaceImageProcessor()(image, return_tensors="np")
