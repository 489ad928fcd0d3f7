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

__all__ = [
    "ARCFACE_TEMPLATE",
    "MTCNN",
    "AlignedFace",
    "AlignmentError",
    "FaceAligner",
    "FaceDetections",
    "similarity_transform",
    "transform_points",
    "warp_face",
]
