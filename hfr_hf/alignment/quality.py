"""Is there a face to compare? Checks that keep faceless input out of the decision path.

A verifier must refuse rather than score what is not a face: landmarks off the image or too close together warp
the image's black border or a few pixels into a "crop" (two such crops are near-identical: cosine ≈ 1), and a
blank or noise image taken as an aligned crop scores like a face. Four checks, each raising `AlignmentError`
with a sentence:

* `check_landmarks`: the points lie on the image with a face's eye geometry (distance, image-left eye first, roll);
* `check_layout`: five points have the nose and mouth where a face has them, within a tolerance of the template;
* `check_coverage`: most of the aligned crop comes from the image, not from the border;
* `check_crop`: the crop is not blank (nearly constant) and, when a face scorer is given, looks like a face to it
  (MTCNN's O-Net on the aligned crop: the 589 AT&T, Yale and deepface faces MTCNN aligns score ≥ 0.988; what
  MTCNN detects in 400 face-free images (10 seeded sets of `non_face_images`) scores ≤ 0.79).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "AlignmentError",
    "MAX_GEOMETRY_ERROR",
    "MAX_ROLL_DEGREES",
    "MIN_BLANK_STD",
    "MIN_COVERAGE",
    "MIN_EYE_DISTANCE",
    "MIN_FACE_SCORE",
    "TRAINED_FACE_CHECK",
    "check_coverage",
    "check_crop",
    "check_landmarks",
    "check_layout",
]

MIN_EYE_DISTANCE = 6.0  # pixels: below it a 112×112 crop is an 8× upsampling of a few pixels
MAX_ROLL_DEGREES = 60.0  # eye line against the horizontal (detected faces in the shared sets: ≤ 16°)
# Largest distance of a point from its template position after the best similarity fit, in eye distances
# (MTCNN's landmarks on the AT&T, Yale and deepface photos, profiles included: ≤ 0.21).
MAX_GEOMETRY_ERROR = 0.45
MIN_COVERAGE = 0.6  # share of the aligned crop that must come from inside the image
MIN_BLANK_STD = 3.0  # grey levels (0–255): a crop flatter than this holds no face
# MTCNN's O-Net probability for an aligned crop to count as a face. At 0.5, two thermal-texture crops that MTCNN
# detected (0.64, 0.79) passed, and a texture verified against itself scored cosine 1.0: "same person".
MIN_FACE_SCORE = 0.9
# A trained cross-spectral detector's default (`face_check_threshold` in its config): its own O-Net, trained with
# face-free scenes, is calibrated apart (README: 0 of 120 face-free images detected, every real PUJ crop passes).
TRAINED_FACE_CHECK = 0.5


class AlignmentError(ValueError):
    """No face could be aligned in an image (nothing detected, unusable landmarks, or no face in the crop)."""


def check_landmarks(points: np.ndarray, image_shape: tuple[int, ...]) -> None:
    """Refuse points (eyes first, image-left eye first) that cannot be a face in an image of `image_shape`
    ((H, W, ...)): not finite, off the image, eyes closer than `MIN_EYE_DISTANCE` px, the right eye left of the
    left one, or roll above `MAX_ROLL_DEGREES`."""
    points = np.asarray(points, np.float64)
    if not np.isfinite(points).all():
        raise AlignmentError("The landmarks contain NaN or infinite values.")
    height, width = image_shape[:2]
    off = (points[:, 0] < 0) | (points[:, 0] > width - 1) | (points[:, 1] < 0) | (points[:, 1] > height - 1)
    if off.any():
        first = points[np.argmax(off)]
        raise AlignmentError(
            f"Landmark ({first[0]:.1f}, {first[1]:.1f}) lies outside the {width}×{height} image; give points in "
            "the image's pixels (x to the right, y down from the top-left corner)."
        )
    dx, dy = points[1] - points[0]
    distance = float(np.hypot(dx, dy))
    if distance < MIN_EYE_DISTANCE:
        raise AlignmentError(
            f"The eyes are {distance:.1f} px apart; a face needs at least {MIN_EYE_DISTANCE:.0f} px between them."
        )
    if dx <= 0:
        raise AlignmentError("The first eye must be the one on the image's left (smaller x); swap the two eyes.")
    roll = float(np.degrees(np.arctan2(abs(dy), dx)))
    if roll > MAX_ROLL_DEGREES:
        raise AlignmentError(f"The eye line is tilted by {roll:.0f}°; faces up to {MAX_ROLL_DEGREES:.0f}° are aligned.")


def check_layout(points: np.ndarray, template: np.ndarray, matrix: np.ndarray) -> None:
    """Refuse five points whose nose or mouth lies further than `MAX_GEOMETRY_ERROR` eye distances from where the
    template has it after `matrix`, their best similarity fit onto the template (two points always fit)."""
    points = np.asarray(points, np.float64)
    if len(points) != len(template) or len(points) < 3:
        return
    fitted = points @ matrix[:, :2].T + matrix[:, 2]
    error = float(np.linalg.norm(fitted - template, axis=1).max() / np.linalg.norm(template[1] - template[0]))
    if error > MAX_GEOMETRY_ERROR:
        raise AlignmentError(
            f"The five landmarks do not have a face's layout (a point is {error:.2f} eye distances from where a "
            "face has it); give them in the order left eye, right eye, nose tip, left and right mouth corner."
        )


def check_coverage(matrix: np.ndarray, image_shape: tuple[int, ...], size: int) -> None:
    """Refuse an alignment whose (size, size) crop comes mostly from outside the image (the black border)."""
    height, width = image_shape[:2]
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    grid = (np.arange(16) + 0.5) * size / 16
    xs, ys = np.meshgrid(grid, grid)
    source = np.stack([xs.ravel(), ys.ravel()], 1) @ inverse[:, :2].T + inverse[:, 2]
    inside = (source[:, 0] >= -0.5) & (source[:, 0] <= width - 0.5) & (source[:, 1] >= -0.5)
    inside &= source[:, 1] <= height - 0.5
    if inside.mean() < MIN_COVERAGE:
        raise AlignmentError(
            f"Only {inside.mean():.0%} of the aligned face lies inside the image; the face must be in the picture."
        )


def check_crop(
    crop: np.ndarray, face_score: Callable[[np.ndarray], float] | None = None, minimum: float = MIN_FACE_SCORE
) -> float | None:
    """Refuse a (size, size, 3) uint8 crop that is blank, or that `face_score` (crop → probability) scores under
    `minimum`; returns the score (None without a scorer)."""
    grey = np.asarray(crop, np.float64).mean(axis=-1) if crop.ndim == 3 else np.asarray(crop, np.float64)
    if grey.size == 0 or float(grey.std()) < MIN_BLANK_STD:
        raise AlignmentError("The face crop is blank (nearly one colour); there is no face to compare.")
    if face_score is None:
        return None
    score = float(face_score(crop))
    if score < minimum:
        raise AlignmentError(
            f"The image does not look like a face crop to the detector (face score {score:.2f} < {minimum:g})."
        )
    return score
