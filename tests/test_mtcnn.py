"""MTCNN in PyTorch: weight conversion, detection rates and landmarks on the shared real faces, edge cases.

Measured with the defaults (2 CPU threads): 25/25 deepface photos, 164/164 Yale and 400/400 AT&T faces found, the
landmarks of every first detection in a plausible layout; a 640×480 photo takes about 45 ms. The thresholds below
leave a little room for numerical differences across platforms.
"""

from __future__ import annotations

import importlib.util
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hfr_hf.alignment import mtcnn as mtcnn_module
from hfr_hf.alignment.mtcnn import (
    MTCNN,
    FaceDetections,
    ONet,
    PNet,
    RNet,
    convert_keras_weights,
    load_mtcnn_weights,
)

NETWORKS = {"pnet": PNet, "rnet": RNet, "onet": ONet}


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN()


def rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def deepface(assets) -> list[np.ndarray]:
    paths = sorted((assets / "faces/deepface").glob("img*.jpg"))
    assert len(paths) == 25
    return [rgb(p) for p in paths]


def plausible(landmarks: np.ndarray) -> bool:
    """Left eye left of the right eye, eyes above the mouth corners, nose between both in x and y."""
    left_eye, right_eye, nose, left_mouth, right_mouth = landmarks
    eyes_low, mouth_high = max(left_eye[1], right_eye[1]), min(left_mouth[1], right_mouth[1])
    return bool(
        left_eye[0] < right_eye[0]
        and left_mouth[0] < right_mouth[0]
        and eyes_low < mouth_high
        and min(left_eye[0], left_mouth[0]) < nose[0] < max(right_eye[0], right_mouth[0])
        and eyes_low < nose[1] < mouth_high
    )


def check_detections(faces: FaceDetections, height: int, width: int) -> None:
    k = len(faces.scores)
    assert faces.boxes.shape == (k, 4) and faces.landmarks.shape == (k, 5, 2)
    assert faces.boxes.dtype == faces.scores.dtype == faces.landmarks.dtype == np.float32
    assert np.all(np.diff(faces.scores) <= 0), "not sorted by score"
    assert np.all((faces.scores > 0.7) & (faces.scores <= 1))
    assert np.all(faces.boxes[:, 0] < faces.boxes[:, 2]) and np.all(faces.boxes[:, 1] < faces.boxes[:, 3])
    assert np.all(faces.boxes >= 0) and np.all(faces.boxes[:, [0, 2]] <= width - 1)
    assert np.all(faces.boxes[:, [1, 3]] <= height - 1)


def detection_summary(detector: MTCNN, images: list[np.ndarray]) -> tuple[int, int]:
    results = detector.detect(images)
    assert len(results) == len(images)
    for image, faces in zip(images, results):
        check_detections(faces, *image.shape[:2])
    found = [faces for faces in results if len(faces)]
    return len(found), sum(plausible(faces.landmarks[0]) for faces in found)


# ------------------------------------------------------------------------------------------------------ weights


@pytest.mark.parametrize("name", ["pnet", "rnet", "onet"])
def test_every_layer_receives_an_array_of_its_shape(name):
    arrays = load_mtcnn_weights(name)
    state = convert_keras_weights(name, arrays)
    expected = NETWORKS[name]().state_dict()
    assert len(arrays) == len(state) == len(expected)  # every array used once, every parameter set
    assert {key: tuple(v.shape) for key, v in state.items()} == {key: tuple(v.shape) for key, v in expected.items()}
    for (key, tensor), array in zip(state.items(), arrays):
        assert tensor.numel() == array.size, key
        assert torch.isfinite(tensor).all() and tensor.abs().sum() > 0, key
    NETWORKS[name]().load_state_dict(state, strict=True)


def test_conversion_rejects_mismatched_arrays():
    arrays = load_mtcnn_weights("rnet")
    with pytest.raises(ValueError, match="holds 15 arrays"):
        convert_keras_weights("rnet", arrays[:-1])
    swapped = list(arrays)
    swapped[3], swapped[6] = swapped[6], swapped[3]  # conv2 and conv3 kernels exchanged
    with pytest.raises(ValueError, match="conv2.weight"):
        convert_keras_weights("rnet", swapped)
    with pytest.raises(ValueError, match="Unknown MTCNN network"):
        convert_keras_weights("qnet", arrays)


def test_dense_after_permute_flatten_matches_keras():
    """The Keras nets flatten NHWC maps after Permute((2, 1, 3)); the torch ones flatten NCHW maps."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(a.shape).astype(np.float32) for a in load_mtcnn_weights("rnet")]
    fc4 = convert_keras_weights("rnet", arrays)["fc4.weight"]
    nhwc = rng.standard_normal((2, 3, 3, 64)).astype(np.float32)
    keras = nhwc.transpose(0, 2, 1, 3).reshape(2, -1) @ arrays[9]
    torch_out = torch.from_numpy(nhwc).permute(0, 3, 1, 2).flatten(1) @ fc4.T
    np.testing.assert_allclose(torch_out.numpy(), keras, rtol=1e-4, atol=1e-4)


def test_conv_kernels_match_keras_orientation():
    """Keras kernels are (kh, kw, in, out) applied to NHWC maps; check one converted conv against a direct sum."""
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(a.shape).astype(np.float32) for a in load_mtcnn_weights("onet")]
    state = convert_keras_weights("onet", arrays)
    kernel, bias = arrays[9], arrays[10]  # conv4: 2×2, 64 -> 128, asymmetric enough to catch a transposition
    nhwc = rng.standard_normal((1, 3, 4, 64)).astype(np.float32)
    keras = np.stack(
        [
            np.stack([np.einsum("hwc,hwco->o", nhwc[0, i : i + 2, j : j + 2], kernel) + bias for j in range(3)])
            for i in range(2)
        ]
    )  # (2, 3, 128)
    conv = torch.nn.functional.conv2d(
        torch.from_numpy(nhwc).permute(0, 3, 1, 2), state["conv4.weight"], state["conv4.bias"]
    )
    np.testing.assert_allclose(conv[0].permute(1, 2, 0).numpy(), keras, rtol=1e-4, atol=1e-3)


def test_loading_is_fast_and_never_imports_the_tensorflow_package():
    start = time.perf_counter()
    MTCNN()
    assert time.perf_counter() - start < 3.0  # about 0.05 s measured
    assert "mtcnn" not in sys.modules and "tensorflow" not in sys.modules


def test_missing_package_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mtcnn" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match="pip install mtcnn"):
        MTCNN()


# ----------------------------------------------------------------------------------------------- real faces


def test_deepface_photos(detector, deepface):
    found, plausible_count = detection_summary(detector, deepface)
    assert found >= 24, f"faces found in {found}/25 photos"
    assert plausible_count >= found - 1, f"plausible landmarks in {plausible_count}/{found}"


def test_yale_faces(detector, assets):
    paths = sorted((assets / "faces/yale").glob("subject*"))
    assert len(paths) == 164
    found, plausible_count = detection_summary(detector, [rgb(p) for p in paths])
    assert found >= 160, f"faces found in {found}/164 Yale images"
    assert plausible_count >= 0.97 * found, f"plausible landmarks in {plausible_count}/{found}"


def test_att_faces(detector, assets):
    paths = sorted((assets / "faces/att").glob("s*/*.pgm"))
    assert len(paths) == 400
    images = [rgb(p) for p in paths]
    assert all(image.shape == (112, 92, 3) for image in images)
    found, plausible_count = detection_summary(detector, images)
    assert found >= 395, f"faces found in {found}/400 AT&T images"
    assert plausible_count >= 0.97 * found, f"plausible landmarks in {plausible_count}/{found}"


def test_batch_equals_one_by_one(detector, deepface, assets):
    images = [deepface[0], rgb(assets / "faces/att/s1/1.pgm"), deepface[5], rgb(assets / "faces/att/s2/1.pgm")]
    batched = detector.detect(images)
    for image, faces in zip(images, batched):
        alone = detector.detect(image)[0]
        assert len(alone) == len(faces)
        np.testing.assert_allclose(faces.boxes, alone.boxes, atol=1e-2)
        np.testing.assert_allclose(faces.landmarks, alone.landmarks, atol=1e-2)


def test_mirror_average_undoes_the_mirror(detector, deepface, assets):
    """Averaging O-Net on each candidate and its mirror keeps the same faces and landmarks (within a few hundredths
    of the inter-ocular distance: a wrong sign or a swap of the eyes would move them by about one), and is
    mirror-equivariant: the mirrored image's face is the face mirrored."""
    mirrored_detector = MTCNN(mirror_average=True)
    images = [deepface[0], deepface[5], rgb(assets / "faces/att/s1/1.pgm")]
    for image in images:
        plain, averaged = detector.detect(image)[0], mirrored_detector.detect(image)[0]
        assert len(plain) >= 1 and len(averaged) >= 1
        iod = np.linalg.norm(plain.landmarks[0, 1] - plain.landmarks[0, 0])
        assert np.abs(averaged.landmarks[0] - plain.landmarks[0]).max() < 0.1 * iod
        assert np.abs(averaged.boxes[0] - plain.boxes[0]).max() < 0.1 * iod
        flipped = mirrored_detector.detect(np.ascontiguousarray(image[:, ::-1]))[0]
        width = image.shape[1]
        back = flipped.landmarks[0][[1, 0, 2, 4, 3]].copy()
        back[:, 0] = width - 1 - back[:, 0]
        assert np.abs(back - averaged.landmarks[0]).max() < 0.05 * iod


def test_mirror_average_of_a_mirror_symmetric_answer_is_that_answer():
    rng = np.random.default_rng(0)
    offsets, points, scores = rng.normal(0, 0.1, (5, 4)), rng.uniform(0, 1, (5, 10)), rng.uniform(0, 1, 5)
    widths = rng.uniform(20, 200, 5)
    # what O-Net would answer on the mirror images if it were exactly mirror-equivariant
    m_offsets = np.stack([-offsets[:, 2], offsets[:, 1], -offsets[:, 0], offsets[:, 3]], 1)
    order = [1, 0, 2, 4, 3]
    m_points = np.concatenate([1 + 1 / widths[:, None] - points[:, :5][:, order], points[:, 5:][:, order]], 1)
    averaged = mtcnn_module._average_mirrored((offsets, points, scores), (m_offsets, m_points, scores), widths)
    for got, expected in zip(averaged, (offsets, points, scores)):
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_halving_pyramid_finds_the_same_faces(detector, deepface):
    """Levels downscaled from the nearest halving differ from the reference's by a grey level or two: the same
    best face, box and landmarks within a few hundredths of its side."""
    fast = MTCNN(halving_pyramid=True)
    for image in deepface[:8]:
        reference, found = detector.detect(image)[0], fast.detect(image)[0]
        assert len(reference) >= 1 and len(found) >= 1
        side = reference.boxes[0, 2] - reference.boxes[0, 0]
        np.testing.assert_allclose(found.boxes[0], reference.boxes[0], atol=0.05 * side)
        np.testing.assert_allclose(found.landmarks[0], reference.landmarks[0], atol=0.03 * side)


def test_nearest_halving_is_the_smallest_that_covers_a_level(deepface):
    prepared = MTCNN()._prepare(cv2.resize(deepface[0], (640, 480), interpolation=cv2.INTER_AREA))
    assert [h.shape[:2] for h in prepared.halvings][:4] == [(480, 640), (240, 320), (120, 160), (60, 80)]
    for size, expected in (((384, 288), 640), ((320, 240), 320), ((321, 200), 640), ((12, 9), 40)):
        assert prepared.nearest_halving(size).shape[1] == expected
    level = cv2.resize(prepared.nearest_halving((137, 103)), (137, 103), interpolation=cv2.INTER_AREA)
    reference = cv2.resize(prepared.image, (137, 103), interpolation=cv2.INTER_AREA)
    assert np.abs(level.astype(int) - reference).mean() < 3


def test_downscaled_input_maps_back_to_input_pixels(assets):
    """A photo larger than max_image_side gives the same face, in its own pixels."""
    image = rgb(assets / "faces/att/s3/4.pgm")
    image = cv2.resize(image, (460, 560), interpolation=cv2.INTER_CUBIC)
    full = MTCNN().detect(image)[0]
    reduced = MTCNN(max_image_side=280).detect(image)[0]
    assert len(full) == len(reduced) == 1
    side = full.boxes[0, 2] - full.boxes[0, 0]
    np.testing.assert_allclose(reduced.boxes, full.boxes, atol=0.06 * side)
    np.testing.assert_allclose(reduced.landmarks, full.landmarks, atol=0.04 * side)


def test_8000_pixel_image(detector, deepface):
    photo = deepface[0]
    face = detector.detect(photo)[0]
    assert len(face) >= 1
    canvas = np.full((8000, 8000, 3), 90, np.uint8)
    top, left = 3000, 4500
    canvas[top : top + photo.shape[0], left : left + photo.shape[1]] = photo
    found = detector.detect(canvas)[0]
    assert len(found) >= 1
    expected_box = face.boxes[0] + [left, top, left, top]
    side = expected_box[2] - expected_box[0]
    np.testing.assert_allclose(found.boxes[0], expected_box, atol=0.1 * side)
    np.testing.assert_allclose(found.landmarks[0], face.landmarks[0] + [left, top], atol=0.06 * side)


def test_20_pixel_face(detector, assets):
    face = rgb(assets / "faces/att/s5/1.pgm")[10:102]  # 92×92, the face fills it
    tiny = cv2.resize(face, (20, 20), interpolation=cv2.INTER_AREA)
    found = detector.detect(tiny)[0]
    check_detections(found, 20, 20)
    assert len(found) == 1 and plausible(found.landmarks[0])


# ---------------------------------------------------------------------------------------------------- no face


def test_images_without_a_face(detector):
    rng = np.random.default_rng(0)
    smooth_noise = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 4)
    images = [
        np.full((240, 320, 3), 128, np.uint8),
        smooth_noise,
        rng.integers(0, 256, (112, 92, 3), dtype=np.uint8),
        np.zeros((20, 20, 3), np.uint8),
        np.zeros((1, 1, 3), np.uint8),
    ]
    for faces in detector.detect(images):
        assert faces.boxes.shape == (0, 4) and faces.scores.shape == (0,) and faces.landmarks.shape == (0, 5, 2)
        assert faces.boxes.dtype == faces.scores.dtype == faces.landmarks.dtype == np.float32
    assert detector.detect([]) == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((20, 20), np.uint8), "shape"),
        (np.zeros((20, 20, 4), np.uint8), "shape"),
        (np.zeros((20, 20, 3), np.float32), "uint8"),
        (np.zeros((0, 20, 3), np.uint8), "empty"),
        ([np.zeros((20, 20, 3), np.uint8), "face.jpg"], "not an"),
        ("face.jpg", "takes an"),
    ],
)
def test_bad_input_raises(detector, bad, message):
    with pytest.raises(ValueError, match=message):
        detector.detect(bad)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="scale_factor"):
        MTCNN(scale_factor=1.2)
    with pytest.raises(ValueError, match="min_face_size"):
        MTCNN(min_face_size=0)


def test_module_exports():
    assert set(mtcnn_module.__all__) >= {"MTCNN", "FaceDetections"}
