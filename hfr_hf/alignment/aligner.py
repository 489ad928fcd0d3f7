"""Five-point face alignment to the 112×112 ArcFace template that EdgeFace was trained on.

Landmarks come from the MTCNN detector, from a dataset's annotations (five points or the two eye centres),
or from a pixel-registered visible twin of a thermal/NIR image. A least-squares similarity transform
(Umeyama) maps them to the template and OpenCV warps the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..edgeface_preprocessing import EdgeFacePreprocessor
from .detector import SPECTRA, detector_face_check_threshold, guess_spectrum, load_detector, white_hot_view
from .mtcnn import MTCNN, FaceDetections
from .quality import MIN_EYE_DISTANCE, AlignmentError, check_coverage, check_crop, check_landmarks, check_layout

__all__ = [
    "ARCFACE_TEMPLATE",
    "AlignedFace",
    "AlignmentError",
    "FaceAligner",
    "similarity_transform",
    "transform_points",
    "warp_face",
]

# insightface's five reference points for a 112×112 crop: left eye, right eye, nose tip, mouth corners
# ("left" = left side of the image).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
SELECTIONS = ("confidence", "largest", "all")


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity (rotation, uniform scale, translation; no reflection) mapping `src`
    points onto `dst` points (Umeyama 1991). Two points determine it exactly."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise AlignmentError(f"Landmarks must be matching (N, 2) arrays with N ≥ 2, got {src.shape} and {dst.shape}.")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var < 1e-12:
        raise AlignmentError("The landmarks coincide; they cannot define an alignment.")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int = 112) -> np.ndarray:
    """The (size, size) crop that `matrix` maps the image onto (bilinear, black outside the image)."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@dataclass
class AlignedFace:
    """One aligned face: the crop and where it came from."""

    crop: np.ndarray  # (size, size, 3) uint8 RGB
    landmarks: np.ndarray  # (5, 2) or (2, 2) points in the source image
    matrix: np.ndarray  # (2, 3) source → crop
    box: np.ndarray | None = None  # (4,) x1, y1, x2, y2 when detected
    score: float | None = None  # detector confidence when detected
    source: str = "detected"  # detected | landmarks | eyes | twin
    extra: dict = field(default_factory=dict)


class FaceAligner:
    """Detects faces with MTCNN (or takes given landmarks) and warps them to the ArcFace template.

    Args:
        select: which detected face(s) to keep: `confidence` (most confident), `largest` (largest box) or
            `all`.
        image_size: side of the aligned crop (112 for EdgeFace; the template scales with it).
        detector: an `MTCNN` instance; built with `min_face_size`, `thresholds` and `scale_factor` when None.
        min_face_size, scale_factor: the detectors' smallest face (pixels) and pyramid step; None keeps each
            detector's own: MTCNN's 20 and 0.709, a trained detector's from its config.
        thresholds: MTCNN's three thresholds (a trained detector uses those of its config).
        intensity_normalization: how grey, 16-bit and float images reach 8 bits before detection
            (see `EdgeFaceImageProcessor`).
        spectrum: `visible` (MTCNN as published), `nir` or `thermal` (the cross-spectral detector of
            `detector_weights`), or `auto`: chosen per image from its colour statistics (`guess_spectrum`):
            false-colour images go to the cross-spectral detector, colour photos to MTCNN, grey images to both
            (MTCNN's face when it is sure of it, score ≥ `auto_visible_score`, else the cross-spectral one). The
            choice is reported in each face's `extra["spectrum"]`.
        detector_weights: folder or Hub repository of a detector made by `hfr-hf train-detector` (needed for
            every spectrum but `visible`; the environment variable HFR_HF_DETECTOR gives a default).
        face_check: keep only detected faces whose aligned crop passes the face check of the detector that found
            them (`check_crop`; score and threshold in `extra`): detectors also frame textures, and what is
            aligned goes on to be compared. False only to study raw detections.

    Calling the aligner on an image returns the crop of the selected face, so it can be handed to the image
    processor: `processor(photos, aligner=FaceAligner())`.
    """

    def __init__(
        self,
        select: str = "confidence",
        image_size: int = 112,
        detector: MTCNN | None = None,
        min_face_size: int | None = None,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float | None = None,
        intensity_normalization: str = "auto",
        spectrum: str = "visible",
        detector_weights: str | os.PathLike | None = None,
        auto_visible_score: float = 0.95,
        face_check: bool = True,
    ) -> None:
        if select not in SELECTIONS:
            raise ValueError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}.")
        if spectrum not in SPECTRA:
            raise ValueError(f"spectrum must be one of {', '.join(SPECTRA)}, got {spectrum!r}.")
        detector_weights = detector_weights or os.environ.get("HFR_HF_DETECTOR") or None
        if spectrum != "visible" and detector_weights is None:
            raise ValueError(
                f"spectrum={spectrum!r} needs a cross-spectral detector: pass detector_weights=FOLDER_OR_REPO "
                "(train one with `hfr-hf train-detector --output FOLDER`) or set HFR_HF_DETECTOR."
            )
        self.spectrum = spectrum
        self.detector_weights = detector_weights
        self.auto_visible_score = float(auto_visible_score)
        self.face_check = face_check
        self._cross_detector: MTCNN | None = None
        self.select = select
        self.image_size = image_size
        self.template = ARCFACE_TEMPLATE * image_size / 112.0
        self._detector = detector
        options = dict(min_face_size=min_face_size, thresholds=thresholds, scale_factor=scale_factor)
        self._detector_options = {key: value for key, value in options.items() if value is not None}
        self._to_rgb = EdgeFacePreprocessor(intensity_normalization=intensity_normalization).to_rgb_uint8

    @property
    def detector(self) -> MTCNN:
        if self._detector is None:  # built on first use: landmark-only alignment needs no weights
            self._detector = MTCNN(**self._detector_options)
        return self._detector

    @property
    def cross_detector(self) -> MTCNN:
        """The cross-spectral detector (loaded on first use from `detector_weights`)."""
        if self._cross_detector is None:
            options = {k: v for k, v in self._detector_options.items() if k in ("min_face_size", "scale_factor")}
            self._cross_detector = load_detector(self.detector_weights, **options)
        return self._cross_detector

    def _detect(self, rgbs: list[np.ndarray]) -> tuple[list[FaceDetections], list[str]]:
        """Detections of each image with the detector its spectrum calls for, and that spectrum's name."""
        if self.spectrum == "visible":
            return self.detector.detect(rgbs), ["visible"] * len(rgbs)
        if self.spectrum in ("nir", "thermal"):
            results = self.cross_detector.detect(rgbs)
            if self.spectrum == "thermal":
                self._read_thermal_landmarks(rgbs, results, range(len(rgbs)))
            return results, [self.spectrum] * len(rgbs)
        kinds = [guess_spectrum(rgb) for rgb in rgbs]
        results: list = [None] * len(rgbs)
        spectra = list(kinds)
        visible = [i for i, kind in enumerate(kinds) if kind in ("visible", "grey")]
        for i, found in zip(visible, self.detector.detect([rgbs[i] for i in visible]) if visible else []):
            results[i] = found
        cross = [
            i
            for i, kind in enumerate(kinds)
            if kind == "thermal"
            or (kind == "grey" and (len(results[i]) == 0 or results[i].scores[0] < self.auto_visible_score))
        ]
        for i, found in zip(cross, self.cross_detector.detect([rgbs[i] for i in cross]) if cross else []):
            if kinds[i] == "thermal" or len(found) or not len(results[i]):
                results[i] = found
                spectra[i] = "thermal" if kinds[i] == "thermal" else "nir/thermal"
        self._read_thermal_landmarks(rgbs, results, [i for i, kind in enumerate(kinds) if kind == "thermal"])
        return results, ["visible" if s == "grey" else s for s in spectra]

    def _read_thermal_landmarks(self, rgbs: list[np.ndarray], results: list[FaceDetections], indices) -> None:
        """Where the cross-spectral detector has a landmark network (`MTCNN.lnet`, trained on white-hot thermal
        only), the landmarks of the faces in thermal images are its, read at O-Net's windows in a white-hot view
        of the image (`white_hot_view`: false colour mapped back to grey, black-hot inverted). Boxes and scores
        stay O-Net's. Not for `nir`, nor for grey images under `auto`, which may be NIR."""
        detector = self.cross_detector
        if detector.lnet is None:
            return
        for i in indices:
            found = results[i]
            if not len(found) or found.windows is None:
                continue
            view = white_hot_view(rgbs[i], found.boxes[0], found.windows)  # worked out only where it is read
            if view is not None:
                found.landmarks = detector.landmarks_at(view, found.windows)

    def to_rgb(self, image: Any) -> np.ndarray:
        """Any supported image (path, PIL, numpy, torch; grey, 16-bit, float) as (H, W, 3) uint8 RGB."""
        if isinstance(image, (str, os.PathLike)):
            from ..images import load_image

            image = load_image(image)
        return self._to_rgb(image)

    def from_landmarks(self, image: Any, landmarks: np.ndarray) -> AlignedFace:
        """Align with given points: five (eyes, nose, mouth corners) or two (eye centres), image-left first.

        Points that cannot be a face (off the image, eyes a few pixels apart or swapped, nose and mouth out of
        place), an alignment mostly outside the image and a blank crop raise `AlignmentError`."""
        rgb = self.to_rgb(image)
        try:
            if np.iscomplexobj(landmarks):
                raise TypeError  # the imaginary part would be dropped silently
            points = np.asarray(landmarks, np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise AlignmentError("Landmarks must be numbers: 5 or 2 (x, y) points.") from None
        if len(points) == 5:
            target, source = self.template, "landmarks"
        elif len(points) == 2:
            target, source = self.template[:2], "eyes"
        else:
            raise AlignmentError(f"Give 5 landmarks or 2 eye centres as (x, y) pairs, got {len(points)} points.")
        check_landmarks(points, rgb.shape)
        matrix = similarity_transform(points, target)
        check_layout(points, target, matrix)
        check_coverage(matrix, rgb.shape, self.image_size)
        crop = warp_face(rgb, matrix, self.image_size)
        check_crop(crop)
        return AlignedFace(crop, points, matrix, source=source)

    def _face_scores(self, crop: np.ndarray) -> list[tuple[float, float]]:
        """(score, the detector's face-check threshold) of each detector that judges `crop` (see face_score)."""
        kind = {"visible": "visible", "nir": "thermal", "thermal": "thermal"}.get(self.spectrum) or guess_spectrum(crop)
        detectors = [self.detector] if kind in ("visible", "grey") else []
        detectors += [self.cross_detector] if kind in ("thermal", "grey") else []
        return [(float(d.face_scores([crop])[0]), detector_face_check_threshold(d)) for d in detectors]

    def face_score(self, crop: np.ndarray) -> float:
        """How much an aligned (size, size, 3) uint8 crop looks like a face to a detector's last stage (O-Net
        probability, on the crop less a 1/14 margin, as its boxes frame faces): MTCNN's for `visible`, the
        cross-spectral detector's for `nir` and `thermal`; for `auto`, MTCNN's on colour photos, the
        cross-spectral one's on false-colour crops and the higher of the two on grey ones."""
        return max(score for score, _ in self._face_scores(crop))

    def check_crop(self, crop: np.ndarray) -> float:
        """Refuse (`AlignmentError`) a crop that is blank or that the detector does not take for a face; returns
        the face score. For crops given as already aligned, before they are compared. Each detector judges by its
        own threshold: MTCNN's `quality.MIN_FACE_SCORE`, a trained detector's calibrated `face_check_threshold`; on a grey
        crop under `auto` one of the two must take it for a face."""
        crop = np.asarray(crop)
        check_crop(crop)  # blank
        scores = self._face_scores(crop)
        score, threshold = max(scores, key=lambda pair: pair[0] - pair[1])
        return check_crop(crop, lambda _: score, threshold)

    def _faces(self, rgb: np.ndarray, detections: FaceDetections, source: str) -> list[AlignedFace]:
        faces = []
        for box, score, points in zip(detections.boxes, detections.scores, detections.landmarks):
            matrix = similarity_transform(points, self.template)
            faces.append(
                AlignedFace(warp_face(rgb, matrix, self.image_size), points, matrix, box, float(score), source)
            )
        return faces

    def _selected(self, faces: list[AlignedFace]) -> list[AlignedFace]:
        if self.select == "largest":
            areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
            return [faces[int(np.argmax(areas))]]
        if self.select == "confidence":
            return [max(faces, key=lambda f: f.score)]
        return faces

    def detect_and_align(self, images: list[Any]) -> list[list[AlignedFace] | AlignmentError]:
        """Align a batch (detection batched): per image the selected faces, or the error that stopped it.
        One bad image never stops the others."""
        results: list = [None] * len(images)
        rgbs, slots = [], []
        for i, image in enumerate(images):
            try:
                rgbs.append(self.to_rgb(image))
                slots.append(i)
            except (ValueError, TypeError, OSError) as error:
                results[i] = AlignmentError(str(error))
        detections, spectra = self._detect(rgbs) if rgbs else ([], [])
        for i, rgb, found, spectrum in zip(slots, rgbs, detections, spectra):
            faces = self._faces(rgb, found, "detected")
            for face in faces:
                face.extra["spectrum"] = spectrum
            kept = self._face_checked(faces) if self.face_check else faces
            if kept:
                results[i] = self._selected(kept)
            elif faces:
                results[i] = AlignmentError(_refused(faces))
            else:
                results[i] = AlignmentError("No face was detected.")
        return results

    def _face_checked(self, faces: list[AlignedFace]) -> list[AlignedFace]:
        """The detected faces whose aligned crop the detector that found them takes for a face (its face check:
        see `check_crop`); each face's score and threshold go to `extra`. A detector's box can frame a texture
        that its O-Net passes at the detection threshold, and the decision path must not score it as a face."""
        for spectrum in {face.extra["spectrum"] for face in faces}:
            group = [face for face in faces if face.extra["spectrum"] == spectrum]
            detector = self.detector if spectrum == "visible" else self.cross_detector
            threshold = detector_face_check_threshold(detector)
            for face, score in zip(group, detector.face_scores([face.crop for face in group])):
                face.extra.update(face_score=float(score), face_check_threshold=threshold)
        return [face for face in faces if _passes(face)]

    def align(self, image: Any) -> list[AlignedFace]:
        """The selected face(s) of one image; raises `AlignmentError` when none is found."""
        result = self.detect_and_align([image])[0]
        if isinstance(result, AlignmentError):
            raise result
        return result

    def align_registered_pair(self, visible: Any, target: Any) -> tuple[AlignedFace, AlignedFace]:
        """Align a pixel-registered visible/thermal (or NIR) pair with the landmarks found on the visible
        image, where detectors work best; the images must have the same size."""
        face = self.align(visible)[0]
        rgb = self.to_rgb(target)
        visible_shape = self.to_rgb(visible).shape[:2]
        if rgb.shape[:2] != visible_shape:
            raise AlignmentError(
                f"Registered images must have the same size; visible is {visible_shape}, target is {rgb.shape[:2]}."
            )
        twin = AlignedFace(warp_face(rgb, face.matrix, self.image_size), face.landmarks, face.matrix, source="twin")
        return face, twin

    def __call__(self, image: Any) -> np.ndarray:
        """The aligned crop of the selected face (for `processor(images, aligner=...)`)."""
        return self.align(image)[0].crop


def _eye_distance(face: AlignedFace) -> float:
    return float(np.linalg.norm(face.landmarks[1] - face.landmarks[0]))


def _passes(face: AlignedFace) -> bool:
    """A detected face passes the face check when its crop scores at least its detector's threshold and its eyes
    are `MIN_EYE_DISTANCE` apart, the rule for given landmarks: a box of a few pixels that the cascade's box
    regression shrank onto a noise speck is no face to compare."""
    score_ok = face.extra["face_score"] >= face.extra["face_check_threshold"]
    return score_ok and _eye_distance(face) >= MIN_EYE_DISTANCE


def _refused(faces: list[AlignedFace]) -> str:
    """The sentence for an image whose every detection failed the face check, about the one closest to passing."""
    best = max(
        faces,
        key=lambda f: (_eye_distance(f) >= MIN_EYE_DISTANCE, f.extra["face_score"] - f.extra["face_check_threshold"]),
    )
    if _eye_distance(best) < MIN_EYE_DISTANCE:
        return (
            f"No face was detected: what the detector found is too small to be a face (eyes {_eye_distance(best):.1f} "
            f"px apart; a face needs at least {MIN_EYE_DISTANCE:.0f} px)."
        )
    return (
        f"No face was detected: what the detector found does not look like a face once aligned (face score "
        f"{best.extra['face_score']:.2f} < {best.extra['face_check_threshold']:g})."
    )
