"""Measures of a face detector + aligner on thermal images: how often a face is found, whether its landmarks
fall where a face has them, what it finds where there is no face, and landmark error on renders.

- `landmark_plausibility`: for registered, segmented thermal crops (PUJ-T360 / PUJ-FONE: the face fills most of
  the frame, the background is zero) each detection's five landmarks are normalised by the bounding box of the
  face region (the non-zero pixels, independent of the detector) and compared with their mean over the set; a
  face is plausible when every landmark lies within `tolerance` (a fraction of the face box) of its mean
  position and the points are in anatomical order (eyes above nose above mouth, image-left eye left).
- `render_landmark_errors`: on thermal/NIR renders of held-out visible photos the visible detector's landmarks
  are the truth; the error is the mean point distance over the inter-ocular distance.
- `false_detections`: faces reported per image on images without faces.
- `face_check_rates`: how many given crops pass an aligner's face check (not blank, O-Net score at the
  detector's threshold), the check that `hfr-hf verify` and the Space apply to uploads taken as aligned crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "face_check_rates",
    "face_region_box",
    "false_detections",
    "landmark_plausibility",
    "non_face_images",
    "render_landmark_errors",
]


def face_region_box(image: np.ndarray, level: int = 0) -> np.ndarray:
    """(4,) x1, y1, x2, y2 of the pixels brighter than `level` (a segmented face on a zero background)."""
    grey = image if image.ndim == 2 else image.max(-1)
    ys, xs = np.nonzero(grey > level)
    if len(xs) == 0:
        return np.array([0.0, 0.0, grey.shape[1] - 1.0, grey.shape[0] - 1.0])
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)


def landmark_plausibility(landmarks: Sequence[np.ndarray], boxes: Sequence[np.ndarray], tolerance: float = 0.1):
    """Per face: plausible or not (see the module doc), and the summary over the set.

    Returns {"plausible": bool array, "deviation": (N, 5) distances in face-box units, "mean": (5, 2) mean
    normalised positions, "rate": share plausible}."""
    points = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    size = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
    normalised = (points - boxes[:, None, :2]) / size[:, None, :]
    mean = normalised.mean(0)
    deviation = np.linalg.norm(normalised - mean[None], axis=2)
    ordered = (
        (points[:, 0, 0] < points[:, 1, 0])
        & (points[:, 3, 0] < points[:, 4, 0])
        & (np.maximum(points[:, 0, 1], points[:, 1, 1]) < points[:, 2, 1])
        & (points[:, 2, 1] < np.minimum(points[:, 3, 1], points[:, 4, 1]))
    )
    plausible = ordered & (deviation.max(1) <= tolerance)
    return {"plausible": plausible, "deviation": deviation, "mean": mean, "rate": float(plausible.mean())}


def render_landmark_errors(faces, aligner, spectrum: str, renders: int = 2, seed: int = 0) -> dict[str, Any]:
    """Landmark error (over the inter-ocular distance) of `aligner` on `spectrum` renders of labelled faces
    (`hfr_hf.alignment.detector_training.LabelledFace`), the render's labels being the visible detections.

    Returns {"found": share of renders with a face, "nme": per found render, "median", "mean"}."""
    from ..alignment.detector_training import compose_scene, landmark_error, render_frame

    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for face in faces:
        for _ in range(renders):
            scene, _, points = compose_scene(face, rng)
            frames.append(render_frame(scene, points, spectrum, rng))
            truth.append(points)
    errors = []
    for result, expected in zip(aligner.detect_and_align(frames), truth):
        if isinstance(result, Exception):
            continue
        errors.append(landmark_error(result[0].landmarks, expected))
    errors = np.asarray(errors)
    return {
        "renders": len(frames),
        "found": len(errors) / max(len(frames), 1),
        "median": float(np.median(errors)) if len(errors) else float("nan"),
        "mean": float(errors.mean()) if len(errors) else float("nan"),
        "nme": errors,
    }


def non_face_images(count: int = 40, seed: int = 1234) -> tuple[list[np.ndarray], list[str]]:
    """Images without faces and their kinds: blank frames, noise, textures (fresh seeds, not those of
    training), thermal-sensor renders of textures, and crops of scikit-learn's two bundled photos (a temple in
    China, a flower), which are not in training. Sizes 96-640 pixels."""
    from ..alignment.detector_training import negative_scene, render_frame

    rng = np.random.default_rng(seed)
    images, kinds = [], []
    for i in range(count):
        height, width = int(rng.integers(96, 481)), int(rng.integers(96, 641))
        kind = ("blank", "noise", "texture", "thermal texture")[i % 4]
        if kind == "blank":
            images.append(np.full((height, width, 3), int(rng.integers(0, 256)), np.uint8))
        elif kind == "noise":
            images.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        else:
            scene = negative_scene(rng, height, width)
            images.append(scene if kind == "texture" else render_frame(scene, None, "thermal", rng))
        kinds.append(kind)
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:  # scikit-learn is optional: the synthetic images remain
        return images, kinds
    for photo in load_sample_images().images:
        for _ in range(max(1, count // 8)):
            side = int(rng.integers(96, min(photo.shape[:2])))
            y, x = int(rng.integers(0, photo.shape[0] - side)), int(rng.integers(0, photo.shape[1] - side))
            crop = np.ascontiguousarray(photo[y : y + side, x : x + side])
            images.append(crop)
            kinds.append("photo")
            images.append(render_frame(crop, None, str(rng.choice(["thermal", "nir"])), rng))
            kinds.append("photo render")
    return images, kinds


def false_detections(aligner, images: Sequence[np.ndarray]) -> dict[str, Any]:
    """Faces reported on images that have none: per image (with select='all' every face counts)."""
    counts = []
    for result in aligner.detect_and_align(list(images)):
        counts.append(0 if isinstance(result, Exception) else len(result))
    counts = np.asarray(counts)
    return {
        "images": len(counts),
        "faces": int(counts.sum()),
        "per_image": float(counts.mean()),
        "images_with_a_face": int((counts > 0).sum()),
        "counts": counts,
    }


def face_check_rates(aligner, crops: Sequence[np.ndarray]) -> dict[str, Any]:
    """Crops (S×S uint8 RGB, S the aligner's size) that pass `aligner.check_crop`, and their face scores."""
    from ..alignment import AlignmentError

    scores = []
    for crop in crops:
        try:
            scores.append(aligner.check_crop(crop))
        except AlignmentError:
            scores.append(None)
    passed = [s is not None for s in scores]
    return {"crops": len(scores), "passed": int(sum(passed)), "rate": float(np.mean(passed)) if scores else 0.0}
