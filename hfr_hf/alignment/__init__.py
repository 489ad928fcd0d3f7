"""Face detection (MTCNN) and five-point alignment to the EdgeFace template, offline."""

from .aligner import (
    ARCFACE_TEMPLATE,
    AlignedFace,
    AlignmentError,
    FaceAligner,
    similarity_transform,
    transform_points,
    warp_face,
)
from .mtcnn import MTCNN, FaceDetections
from .quality import check_coverage, check_crop, check_landmarks, check_layout

__all__ = [
    "ARCFACE_TEMPLATE",
    "MTCNN",
    "AlignedFace",
    "AlignmentError",
    "FaceAligner",
    "FaceDetections",
    "check_coverage",
    "check_crop",
    "check_landmarks",
    "check_layout",
    "similarity_transform",
    "transform_points",
    "warp_face",
]
