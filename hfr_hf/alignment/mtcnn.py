"""MTCNN face detector in PyTorch: boxes, scores and five landmarks for face alignment.

MTCNN is the three-stage cascade of Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", IEEE Signal Processing Letters 23(10), 2016: a fully convolutional P-Net proposes
windows over an image pyramid, R-Net (24×24 crops) rejects most of them and refines the boxes, O-Net (48×48 crops)
gives the final boxes, scores and five landmarks.

The weights are those of the PyPI package `mtcnn` by Iván de Paz Centeno (MIT licence), stored there as lists of
numpy arrays in Keras layout (`mtcnn/assets/weights/{pnet,rnet,onet}.lz4`). They are converted to PyTorch layouts
when the detector is built. Only those files are read: the package's own code imports TensorFlow and is never
imported here. The pipeline follows that package (version 1.0): pixels normalised as (x - 127.5) / 128, pyramid
downscaled with area interpolation, P-Net box regression and NMS per scale then across scales, R-Net and O-Net on
bilinear crops of the square boxes (zero, i.e. mid-grey, outside the image), NMS in 'min' mode at the end.
Departures, each for a measured reason, are commented where they happen: standard greedy NMS; crops sampled from
a halved copy of the image when the box is large (anti-aliasing); small images upscaled (finer landmarks); and a
grey border around the coarsest pyramid levels, with the pyramid running on until one window spans the whole
frame, so that a face filling the frame (AT&T crops, 20×20 thumbnails) is still found.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FaceDetections", "MTCNN", "PNet", "RNet", "ONet", "load_mtcnn_weights", "convert_keras_weights"]

# Side (in pixels) below which an image is upscaled before detection: finer P-Net sampling of small faces gives
# better boxes and landmarks (measured: landmark error on 16-pixel faces 0.09 -> 0.03 inter-ocular distances).
_MIN_WORKING_SIDE = 200
# Grey border around the coarse P-Net levels (those under 48 pixels, whose 12-pixel window spans over a quarter of
# the image), as a fraction of the image's longer side: a face that fills the frame is then seen whole by one window
# (measured on tight 64×64 / 56×56 AT&T face crops: 81% / 43% found without it, 91% / 84% with it).
_BORDER_FRACTION = 0.15
_COARSE_LEVEL_SIDE = 48
# P-Net NMS inside one pyramid level, fixed in the reference (`nms_pnet1`).
_PNET_SCALE_NMS = 0.5
# Crops per R-Net / O-Net forward pass and pixels per P-Net forward pass: bounds memory on large batches.
_RNET_CHUNK = 4096
_ONET_CHUNK = 1024
_PNET_PIXELS = 1 << 22


# --------------------------------------------------------------------------------------------------- networks


class PNet(nn.Module):
    """Proposal network: fully convolutional, a 12×12 window every 2 pixels. Returns box offsets (N, 4, h, w)
    and face probabilities (N, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        # TF 'same' pooling pads at the bottom/right only, which is what ceil_mode does
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 4, 1)
        self.conv4_2 = nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x), torch.softmax(self.conv4_2(x), dim=1)[:, 1]


class RNet(nn.Module):
    """Refinement network on 24×24 crops. Returns box offsets (N, 4) and face probabilities (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # TF 'same'
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2)  # TF 'valid'
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.fc4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.fc5_1 = nn.Linear(128, 4)
        self.fc5_2 = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.fc4(x.flatten(1)))
        return self.fc5_1(x), torch.softmax(self.fc5_2(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output network on 48×48 crops. Returns box offsets (N, 4), landmarks (N, 10) as x1..x5, y1..y5 relative
    to the crop, and face probabilities (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # TF 'same'
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2)  # TF 'valid'
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)  # TF 'same'
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.fc5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.fc6_1 = nn.Linear(256, 4)
        self.fc6_2 = nn.Linear(256, 10)
        self.fc6_3 = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.fc5(x.flatten(1)))
        return self.fc6_1(x), self.fc6_2(x), torch.softmax(self.fc6_3(x), dim=1)[:, 1]


# ------------------------------------------------------------------------------------------- weight conversion


# Order of the arrays in each Keras weight list (the order in which the Keras model creates its layers) and the
# kind of each: conv kernel, dense kernel that follows Permute((2, 1, 3)) + Flatten, PReLU alphas, or plain vector.
def _layer(name: str, kind: str, prelu: str | None = None) -> list[tuple[str, str]]:
    """Kernel and bias of one layer, then the alphas of the PReLU that follows it, if any."""
    return [(f"{name}.weight", kind), (f"{name}.bias", "vector")] + ([(f"{prelu}.weight", "prelu")] if prelu else [])


_KERAS_LAYOUT: dict[str, list[tuple[str, str]]] = {
    "pnet": [
        *_layer("conv1", "conv", "prelu1"),
        *_layer("conv2", "conv", "prelu2"),
        *_layer("conv3", "conv", "prelu3"),
        *_layer("conv4_1", "conv"),
        *_layer("conv4_2", "conv"),
    ],
    "rnet": [
        *_layer("conv1", "conv", "prelu1"),
        *_layer("conv2", "conv", "prelu2"),
        *_layer("conv3", "conv", "prelu3"),
        *_layer("fc4", "flatten_dense", "prelu4"),
        *_layer("fc5_1", "dense"),
        *_layer("fc5_2", "dense"),
    ],
    "onet": [
        *_layer("conv1", "conv", "prelu1"),
        *_layer("conv2", "conv", "prelu2"),
        *_layer("conv3", "conv", "prelu3"),
        *_layer("conv4", "conv", "prelu4"),
        *_layer("fc5", "flatten_dense", "prelu5"),
        *_layer("fc6_1", "dense"),
        *_layer("fc6_2", "dense"),
        *_layer("fc6_3", "dense"),
    ],
}
_NETWORKS: dict[str, type[nn.Module]] = {"pnet": PNet, "rnet": RNet, "onet": ONet}


def _flatten_dense(kernel: np.ndarray, channels: int) -> np.ndarray:
    """Keras dense kernel (W*H*C, out) fed by Permute((2, 1, 3)) + Flatten of an NHWC map, i.e. inputs ordered
    (w, h, c), as a torch Linear weight (out, C*H*W) fed by flattening an NCHW map, i.e. inputs ordered (c, h, w)."""
    side = math.isqrt(kernel.shape[0] // channels)
    kernel = kernel.reshape(side, side, channels, kernel.shape[1])  # (w, h, c, out)
    return np.ascontiguousarray(kernel.transpose(3, 2, 1, 0).reshape(kernel.shape[3], -1))


def convert_keras_weights(name: str, arrays: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """The state dict of `PNet`/`RNet`/`ONet` (`name` in 'pnet', 'rnet', 'onet') from the package's Keras arrays.

    Raises ValueError when the number of arrays or the shape of any converted array does not match the network.
    """
    if name not in _KERAS_LAYOUT:
        raise ValueError(f"Unknown MTCNN network {name!r}; expected one of {sorted(_KERAS_LAYOUT)}.")
    layout = _KERAS_LAYOUT[name]
    expected = {key: tuple(value.shape) for key, value in _NETWORKS[name]().state_dict().items()}
    if len(arrays) != len(layout) or set(expected) != {key for key, _ in layout}:
        raise ValueError(f"The {name} weight file holds {len(arrays)} arrays; the network needs {len(layout)}.")
    state: dict[str, torch.Tensor] = {}
    for (key, kind), array in zip(layout, arrays):
        array = np.asarray(array, dtype=np.float32)
        if kind == "conv":  # (kh, kw, in, out) -> (out, in, kh, kw)
            array = array.transpose(3, 2, 0, 1)
        elif kind == "dense":  # (in, out) -> (out, in)
            array = array.T
        elif kind == "flatten_dense":
            channels = expected[key][1] // 9  # the last conv map of R-Net and O-Net is 3×3
            array = _flatten_dense(array, channels)
        else:  # biases and PReLU alphas, (1, 1, C) for the shared-axes conv PReLUs
            array = array.reshape(-1)
        if tuple(array.shape) != expected[key]:
            raise ValueError(
                f"The {name} weight for {key} converts to shape {tuple(array.shape)}; the network needs {expected[key]}."
            )
        state[key] = torch.from_numpy(np.ascontiguousarray(array))
    return state


def _weights_folder() -> str:
    spec = importlib.util.find_spec("mtcnn")  # locates the package without importing it (it imports TensorFlow)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The MTCNN weights come from the `mtcnn` package (MIT); install it with `pip install mtcnn` "
            "(TensorFlow is not needed: only its weight files are read)."
        )
    return os.path.join(spec.submodule_search_locations[0], "assets", "weights")


def load_mtcnn_weights(name: str) -> list[np.ndarray]:
    """The Keras weight arrays of one network ('pnet', 'rnet' or 'onet') from the installed `mtcnn` package."""
    path = os.path.join(_weights_folder(), f"{name}.lz4")
    if not os.path.isfile(path):
        raise ImportError(f"{path} is missing; reinstall the weights with `pip install --force-reinstall mtcnn`.")
    import joblib  # a dependency of `mtcnn`, needed only here

    return list(joblib.load(path))


# --------------------------------------------------------------------------------------------------- box utils


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy NMS; indices kept, best first. The reference suppresses a box overlapping any better box, even one
    that was itself suppressed; greedy NMS (as in the paper's code) only lets kept boxes suppress."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        denominator = np.minimum(areas[i], areas[rest]) if mode == "min" else areas[i] + areas[rest] - inter
        overlap = inter / np.maximum(denominator, 1e-9)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _batched_nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float, mode: str = "union"):
    """NMS within each group (image, or image and scale) in one pass: each group is shifted far from the others."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(np.abs(boxes).max()) * 2 + 1
    shifted = boxes + (groups.astype(np.float64) * span)[:, None]
    return _nms(shifted, scores, threshold, mode)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares of their longer side, same centre."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


# landmark order in a mirror image: the two eyes and the two mouth corners change places
_MIRRORED_POINTS = [1, 0, 2, 4, 3]


def _average_mirrored(direct, mirrored, widths: np.ndarray):
    """O-Net's answers (box offsets (N, 4), landmarks (N, 10), scores (N,)) for crops and for their mirror
    images, averaged in the crops' frame; `widths` (N,) are the boxes' widths in pixels."""
    offsets, points, scores = direct
    m_offsets, m_points, m_scores = mirrored
    # a mirrored crop's left edge is the crop's right edge: dx1' = -dx2, dx2' = -dx1; y unchanged
    m_offsets = np.stack([-m_offsets[:, 2], m_offsets[:, 1], -m_offsets[:, 0], m_offsets[:, 3]], 1)
    # a point decodes to x = w·p + x1 - 1 (the reference's convention), so its mirror decodes from 1 - p + 1/w
    m_x = 1.0 + 1.0 / widths[:, None] - m_points[:, :5][:, _MIRRORED_POINTS]
    m_y = m_points[:, 5:][:, _MIRRORED_POINTS]
    m_points = np.concatenate([m_x, m_y], 1)
    return (offsets + m_offsets) / 2, (points + m_points) / 2, (scores + m_scores) / 2


def _decode_points(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """O-Net's landmarks, relative to its input boxes as x1..x5 then y1..y5, in pixels (K, 5, 2), as the
    reference decodes them."""
    w = boxes[:, 2:3] - boxes[:, 0:1] + 1
    h = boxes[:, 3:4] - boxes[:, 1:2] + 1
    return np.stack([w * points[:, :5] + boxes[:, 0:1] - 1, h * points[:, 5:] + boxes[:, 1:2] - 1], axis=2)


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Box regression as in the reference: offsets scaled by (side + 1)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


# --------------------------------------------------------------------------------------------------- detector


@dataclass
class FaceDetections:
    """Faces found in one image, best first. Coordinates are pixels of the input image.

    boxes: (K, 4) float32, x1, y1, x2, y2.
    scores: (K,) float32, O-Net face probability.
    landmarks: (K, 5, 2) float32 (x, y): left eye, right eye, nose tip, left mouth corner, right mouth corner,
        "left" meaning the left side of the image (the subject's right).
    windows: (K, 4) float32, the square boxes O-Net read each face from (`MTCNN.landmarks_at` reads them again).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    windows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, 5, 2), np.float32),
            np.zeros((0, 4), np.float32),
        )


@dataclass
class _Prepared:
    """One image as the cascade sees it, with the map back to input pixels."""

    halvings: list[np.ndarray]  # (h, w, 3) uint8 working image (the pyramid's source), then its halvings
    scale: tuple[float, float]  # working pixels per input pixel, (x, y)
    height: int  # input image size
    width: int
    device: torch.device
    normalised: dict[int, torch.Tensor] = field(default_factory=dict)

    def level(self, index: int) -> torch.Tensor:
        """Halving `index` normalised (an anti-aliased crop source), made when first asked for: the windows of a
        face or two read only one or two of them."""
        if index not in self.normalised:
            self.normalised[index] = _normalise(self.halvings[index]).to(self.device)
        return self.normalised[index]

    @property
    def image(self) -> np.ndarray:
        return self.halvings[0]

    # Pixel centres map onto pixel centres under cv2.resize: x_working + 0.5 = (x_input + 0.5) * scale.
    def to_input(self, coordinates: np.ndarray) -> np.ndarray:
        """Working-image coordinates (..., 2k: x, y pairs such as boxes or points) in input pixels."""
        pairs = coordinates.reshape(*coordinates.shape[:-1], -1, 2)
        return ((pairs + 0.5) / np.asarray(self.scale) - 0.5).reshape(coordinates.shape)

    def to_working(self, coordinates: np.ndarray) -> np.ndarray:
        """Input-pixel coordinates (..., 2k) in working-image pixels."""
        pairs = coordinates.reshape(*coordinates.shape[:-1], -1, 2)
        return ((pairs + 0.5) * np.asarray(self.scale) - 0.5).reshape(coordinates.shape)

    def nearest_halving(self, size: tuple[int, int]) -> np.ndarray:
        """The smallest halving of the working image at least `size` (width, height)."""
        fits = [h for h in self.halvings if h.shape[1] >= size[0] and h.shape[0] >= size[1]]
        return fits[-1] if fits else self.image


def _normalise(image: np.ndarray) -> torch.Tensor:
    """(h, w, 3) uint8 -> (3, h, w) float32 (x - 127.5) / 128, as the network was trained."""
    if not image.flags.writeable:  # torch wants writable memory; a copy of a read-only view is cheap here
        image = image.copy()
    return (torch.from_numpy(image).permute(2, 0, 1).float() - 127.5) * (1.0 / 128.0)


class MTCNN(nn.Module):
    """MTCNN face detector (P-Net, R-Net, O-Net) with the weights of the `mtcnn` package.

    Args:
        min_face_size: smallest face side to look for, in pixels of the working image: the input, downscaled when
            its longer side exceeds max_image_side, or upscaled when its shorter side is under 200 pixels (so in a
            small image faces smaller than min_face_size are found too).
        scale_factor: ratio between successive levels of the P-Net image pyramid.
        thresholds: face-probability thresholds of P-Net, R-Net and O-Net.
        nms_thresholds: overlap thresholds of the NMS after P-Net (across scales), R-Net and O-Net ('min' mode).
        max_image_side: images with a longer side are downscaled for detection (results are in input pixels).
        mirror_average: run O-Net on each candidate and on its mirror image and average the two answers (score,
            box offsets, landmarks): one more O-Net pass per candidate for steadier landmarks. Off in MTCNN as
            published; a trained detector's config may turn it on.
        halving_pyramid: downscale each P-Net level from the nearest halving of the image instead of from the
            image itself: a pyramid about 4× cheaper to build (a fifth of the time of a 640×480 frame), whose
            pixels differ from the reference's by a grey level or two (area averaging in two steps). Off in
            MTCNN as published, whose visible figures stand on the reference; trained detectors turn it on.
        device: where the three networks run.

    Example:
        >>> detector = MTCNN()
        >>> faces = detector.detect(rgb_uint8_image)[0]
        >>> faces.boxes, faces.scores, faces.landmarks
    """

    def __init__(
        self,
        min_face_size: int = 20,
        scale_factor: float = 0.709,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        nms_thresholds: tuple[float, float, float] = (0.7, 0.7, 0.7),
        max_image_side: int = 1600,
        mirror_average: bool = False,
        halving_pyramid: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be a positive number of pixels, got {min_face_size}.")
        if not 0.0 < scale_factor < 1.0:
            raise ValueError(f"scale_factor must lie strictly between 0 and 1, got {scale_factor}.")
        if len(thresholds) != 3 or len(nms_thresholds) != 3:
            raise ValueError("thresholds and nms_thresholds must each hold three values (P-Net, R-Net, O-Net).")
        if max_image_side < 24:
            raise ValueError(f"max_image_side must be at least 24 pixels, got {max_image_side}.")
        self.min_face_size = int(min_face_size)
        self.scale_factor = float(scale_factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.max_image_side = int(max_image_side)
        self.mirror_average = bool(mirror_average)
        self.halving_pyramid = bool(halving_pyramid)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for name in ("pnet", "rnet", "onet"):
            getattr(self, name).load_state_dict(convert_keras_weights(name, load_mtcnn_weights(name)))
        # a trained detector may add a landmark network: O-Net's shape, trained on white-hot thermal only
        self.lnet: ONet | None = None
        self.eval()
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.pnet.conv1.weight.device

    def forward(self, images: list[np.ndarray] | np.ndarray) -> list[FaceDetections]:
        return self.detect(images)

    # ------------------------------------------------------------------------------------------------ input

    @staticmethod
    def _validate(images: list[np.ndarray] | np.ndarray) -> list[np.ndarray]:
        if isinstance(images, np.ndarray):
            images = list(images) if images.ndim == 4 else [images]
        elif isinstance(images, (list, tuple)):
            images = list(images)
        else:
            raise ValueError(
                f"MTCNN.detect takes an (H, W, 3) uint8 RGB numpy array or a list of them, got {type(images).__name__}."
            )
        for index, image in enumerate(images):
            if not isinstance(image, np.ndarray):
                raise ValueError(f"Image {index} is a {type(image).__name__}, not an (H, W, 3) uint8 numpy array.")
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"Image {index} has shape {image.shape}; MTCNN needs (H, W, 3) RGB.")
            if image.dtype != np.uint8:
                raise ValueError(f"Image {index} has dtype {image.dtype}; MTCNN needs uint8 pixels.")
            if image.shape[0] == 0 or image.shape[1] == 0:
                raise ValueError(f"Image {index} is empty (shape {image.shape}).")
        return images

    def _prepare(self, image: np.ndarray) -> _Prepared:
        """The working image (downscaled when large, upscaled when small) and its halvings, the crop sources."""
        height, width = image.shape[:2]
        scale = 1.0
        if max(height, width) > self.max_image_side:
            scale = self.max_image_side / max(height, width)
        elif min(height, width) < _MIN_WORKING_SIDE:
            scale = min(_MIN_WORKING_SIDE / min(height, width), self.max_image_side / max(height, width))
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        scale_xy = (image.shape[1] / width, image.shape[0] / height)  # as applied, after rounding
        sources = [np.ascontiguousarray(image)]
        while min(sources[-1].shape[:2]) >= 48:
            previous = sources[-1]
            size = (previous.shape[1] // 2, previous.shape[0] // 2)
            sources.append(cv2.resize(previous, size, interpolation=cv2.INTER_AREA))
        return _Prepared(sources, scale_xy, height, width, self.device)

    def _pyramid(self, height: int, width: int) -> list[tuple[float, int]]:
        """P-Net levels as (scale, border): the first maps min_face_size to the 12-pixel window, each next one is
        scale_factor smaller, down to the level where the whole (bordered) image is one window."""
        short, long = min(height, width), max(height, width)

        def border(scale: float) -> int:
            return round(_BORDER_FRACTION * long * scale) if short * scale < _COARSE_LEVEL_SIDE else 0

        levels, scale = [], 12.0 / self.min_face_size
        while short * scale + 2 * border(scale) >= 12:
            levels.append((scale, border(scale)))
            scale *= self.scale_factor
        # One last level where the bordered image is 12 pixels, so the largest window covers the whole frame
        last = 12.0 / (short + 2 * _BORDER_FRACTION * long)
        if last < 12.0 / self.min_face_size and (not levels or short * levels[-1][0] + 2 * levels[-1][1] > 13):
            levels.append((last, border(last)))
        return levels

    # ---------------------------------------------------------------------------------------------- stages

    def _stage_one(self, prepared: list[_Prepared]) -> tuple[np.ndarray, np.ndarray]:
        """P-Net over every pyramid level of every image (images of equal size are batched).
        Returns square candidate boxes (M, 4) in working pixels and their image indices (M,)."""
        threshold = self.thresholds[0]
        by_shape: dict[tuple[int, int], list[int]] = {}
        for index, item in enumerate(prepared):
            by_shape.setdefault(item.image.shape[:2], []).append(index)
        all_boxes, all_scores, all_groups = [], [], []
        for (height, width), members in by_shape.items():
            for level, (scale, border) in enumerate(self._pyramid(height, width)):
                size = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
                sx, sy = size[0] / width, size[1] / height
                per_call = max(1, _PNET_PIXELS // ((size[0] + 2 * border) * (size[1] + 2 * border)))
                for start in range(0, len(members), per_call):
                    chunk = members[start : start + per_call]
                    # Pyramid downscaled with area interpolation, as the reference (from the image itself there).
                    sources = [
                        prepared[i].nearest_halving(size) if self.halving_pyramid else prepared[i].image for i in chunk
                    ]
                    batch = np.stack([cv2.resize(source, size, interpolation=cv2.INTER_AREA) for source in sources])
                    batch = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().sub_(127.5).div_(128.0)
                    if border:  # 0 is mid-grey, what the reference's crops see outside the image
                        batch = F.pad(batch, (border,) * 4)
                    # Channels-last, as the permuted batch is until padding: faster convolutions on CPU.
                    batch = batch.contiguous(memory_format=torch.channels_last)
                    offsets, probs = self.pnet(batch)
                    b, y, x = torch.nonzero(probs > threshold, as_tuple=True)
                    if len(b) == 0:
                        continue
                    reg = offsets[b, :, y, x].cpu().numpy().astype(np.float64)
                    scores = probs[b, y, x].cpu().numpy().astype(np.float64)
                    b, y, x = b.cpu().numpy(), y.cpu().numpy(), x.cpu().numpy()
                    # Each output cell is a 12×12 window with stride 2 on the scaled image.
                    boxes = np.stack([x * 2, y * 2, x * 2 + 12, y * 2 + 12], axis=1).astype(np.float64)
                    boxes = (boxes + reg * 12 - border) / np.array([sx, sy, sx, sy])
                    all_boxes.append(boxes)
                    all_scores.append(scores)
                    images = np.asarray(chunk)[b]
                    all_groups.append(np.stack([images, np.full_like(images, level)], axis=1))
        if not all_boxes:
            return np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
        boxes, scores, groups = np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_groups)
        keep = _batched_nms(boxes, scores, groups[:, 0] * 1000 + groups[:, 1], _PNET_SCALE_NMS)
        boxes, scores, images = boxes[keep], scores[keep], groups[keep, 0]
        keep = _batched_nms(boxes, scores, images, self.nms_thresholds[0])
        return _square(boxes[keep]), images[keep]

    def _crops(self, prepared: list[_Prepared], boxes: np.ndarray, images: np.ndarray, size: int) -> torch.Tensor:
        """(M, 3, size, size) bilinear crops of the boxes, zero (mid-grey) outside the image.

        The reference samples the full-resolution image, which aliases for boxes much larger than the crop; each
        box is sampled instead from the halving of the image where its sampling step is between 1 and 2 pixels.
        """
        out = torch.zeros((len(boxes), 3, size, size), device=self.device)
        steps = (boxes[:, 2] - boxes[:, 0] + 1) / size
        wanted = np.floor(np.log2(np.maximum(steps, 1.0))).astype(np.int64)
        grid_unit = (np.arange(size) + 0.5) / size
        for image_index in np.unique(images):
            item = prepared[image_index]
            on_image = images == image_index
            chosen = np.minimum(wanted, len(item.halvings) - 1)
            for level in np.unique(chosen[on_image]):
                rows = np.nonzero(on_image & (chosen == level))[0]
                source = item.level(level)
                fy = source.shape[1] / item.image.shape[0]
                fx = source.shape[2] / item.image.shape[1]
                b = boxes[rows]
                # Sample the centres of a size×size grid over the box's pixels [x1, x2] (w = x2 - x1 + 1).
                xs = b[:, :1] + grid_unit[None] * (b[:, 2:3] - b[:, :1] + 1) - 0.5
                ys = b[:, 1:2] + grid_unit[None] * (b[:, 3:4] - b[:, 1:2] + 1) - 0.5
                xs = ((xs + 0.5) * fx - 0.5) * 2 / max(source.shape[2] - 1, 1) - 1
                ys = ((ys + 0.5) * fy - 0.5) * 2 / max(source.shape[1] - 1, 1) - 1
                grid = np.empty((len(rows), size, size, 2), np.float32)
                grid[..., 0] = xs[:, None, :]
                grid[..., 1] = ys[:, :, None]
                # All crops of this level in one call: stacked along the height of a single sampling grid.
                grid_t = torch.from_numpy(grid.reshape(1, len(rows) * size, size, 2)).to(self.device)
                sampled = F.grid_sample(source[None], grid_t, mode="bilinear", padding_mode="zeros", align_corners=True)
                out[torch.from_numpy(rows).to(self.device)] = sampled[0].view(3, len(rows), size, size).transpose(0, 1)
        return out

    @staticmethod
    def _run_chunked(net: nn.Module, crops: torch.Tensor, chunk: int) -> list[np.ndarray]:
        # Channels-last: R-Net and O-Net run 2-2.5× faster on CPU over many crops, to the same values (1e-6).
        crops = crops.contiguous(memory_format=torch.channels_last)
        outputs = [net(crops[start : start + chunk]) for start in range(0, len(crops), chunk)]
        return [torch.cat([o[k] for o in outputs]).cpu().numpy().astype(np.float64) for k in range(len(outputs[0]))]

    def _stage_two(self, prepared, boxes: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """R-Net on all candidates of all images at once: filter, regress, NMS, square."""
        offsets, scores = self._run_chunked(self.rnet, self._crops(prepared, boxes, images, 24), _RNET_CHUNK)
        keep = scores > self.thresholds[1]
        boxes, scores, images = _regress(boxes[keep], offsets[keep]), scores[keep], images[keep]
        keep = _batched_nms(boxes, scores, images, self.nms_thresholds[1])
        return _square(boxes[keep]), images[keep]

    def _output_answers(self, net: nn.Module, crops: torch.Tensor, boxes: np.ndarray) -> list[np.ndarray]:
        """Box offsets, landmarks and scores of an O-Net-shaped `net` for 48×48 crops of `boxes`, each averaged
        with its mirror image's when the detector mirror-averages."""
        if not (self.mirror_average and len(crops)):
            return self._run_chunked(net, crops, _ONET_CHUNK)
        both = self._run_chunked(net, torch.cat([crops, crops.flip(3)]), _ONET_CHUNK)  # one pass for the two
        answers, mirrored = [a[: len(crops)] for a in both], [a[len(crops) :] for a in both]
        return list(_average_mirrored(answers, mirrored, boxes[:, 2] - boxes[:, 0] + 1))

    def _stage_three(self, prepared, boxes: np.ndarray, images: np.ndarray):
        """O-Net on all candidates of all images at once: filter, landmarks, regress, NMS ('min' mode).
        Returns the regressed boxes, scores, landmarks, image indices and the square boxes O-Net read."""
        offsets, points, scores = self._output_answers(self.onet, self._crops(prepared, boxes, images, 48), boxes)
        keep = scores > self.thresholds[2]
        boxes, offsets, points, scores, images = boxes[keep], offsets[keep], points[keep], scores[keep], images[keep]
        landmarks = _decode_points(boxes, points)
        windows = boxes
        boxes = _regress(boxes, offsets)
        keep = _batched_nms(boxes, scores, images, self.nms_thresholds[2], mode="min")
        return boxes[keep], scores[keep], landmarks[keep], images[keep], windows[keep]

    # ---------------------------------------------------------------------------------------------- public

    @torch.inference_mode()
    def face_scores(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """O-Net's face probability for aligned (S, S, 3) uint8 face crops, each taken less a margin of S/14 (an
        aligned 112×112 crop has ~8 px around what MTCNN's boxes frame) and resized to 48×48."""
        inputs = []
        for crop in crops:
            crop = np.asarray(crop)
            if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8 or min(crop.shape[:2]) < 14:
                raise ValueError(f"face_scores takes (S, S, 3) uint8 crops, S ≥ 14; got {crop.dtype} {crop.shape}.")
            m = crop.shape[0] // 14
            inner = np.ascontiguousarray(crop[m : crop.shape[0] - m, m : crop.shape[1] - m])
            inputs.append(_normalise(cv2.resize(inner, (48, 48), interpolation=cv2.INTER_AREA)))
        if not inputs:
            return np.zeros(0, np.float32)
        scores = self._run_chunked(self.onet, torch.stack(inputs).to(self.device), _ONET_CHUNK)[2]
        return scores.reshape(-1).astype(np.float32)

    @torch.inference_mode()
    def detect(self, images: list[np.ndarray] | np.ndarray) -> list[FaceDetections]:
        """Faces in one (H, W, 3) uint8 RGB image or a list of them (sizes may differ).

        Returns one `FaceDetections` per image, best score first; empty arrays where no face is found.
        Raises ValueError for anything but non-empty (H, W, 3) uint8 arrays.
        """
        images = self._validate(images)
        if not images:
            return []
        prepared = [self._prepare(image) for image in images]
        boxes, owners = self._stage_one(prepared)
        if len(boxes):
            boxes, owners = self._stage_two(prepared, boxes, owners)
        scores, landmarks, windows = np.zeros(0), np.zeros((0, 5, 2)), np.zeros((0, 4))
        if len(boxes):
            boxes, scores, landmarks, owners, windows = self._stage_three(prepared, boxes, owners)
        results = []
        for index, item in enumerate(prepared):
            mine = np.nonzero(owners == index)[0]
            if len(mine) == 0:
                results.append(FaceDetections.empty())
                continue
            mine = mine[np.argsort(-scores[mine], kind="stable")]
            box = item.to_input(boxes[mine])
            box[:, [0, 2]] = box[:, [0, 2]].clip(0, item.width - 1)  # boxes fitted to the image, as the reference
            box[:, [1, 3]] = box[:, [1, 3]].clip(0, item.height - 1)
            results.append(
                FaceDetections(
                    boxes=box.astype(np.float32),
                    scores=scores[mine].astype(np.float32),
                    landmarks=item.to_input(landmarks[mine]).astype(np.float32),
                    windows=item.to_input(windows[mine]).astype(np.float32),
                )
            )
        return results

    @torch.inference_mode()
    def landmarks_at(self, image: np.ndarray, windows: np.ndarray, net: nn.Module | None = None) -> np.ndarray:
        """(K, 5, 2) landmarks that `net` (an O-Net-shaped network; the landmark network `lnet` when None, else
        O-Net) reads in one (H, W, 3) uint8 image at `windows` (K, 4), the square boxes of
        `FaceDetections.windows` in input pixels: the same crops O-Net read, taken from another rendering of the
        image (`FaceAligner` gives the landmark network a white-hot view of a thermal image)."""
        image = self._validate(image)[0]
        net = net or self.lnet or self.onet
        windows = np.asarray(windows, np.float64).reshape(-1, 4)
        if not len(windows):
            return np.zeros((0, 5, 2), np.float32)
        prepared = self._prepare(image)
        working = prepared.to_working(windows)
        crops = self._crops([prepared], working, np.zeros(len(working), np.int64), 48)
        points = self._output_answers(net, crops, working)[1]
        return prepared.to_input(_decode_points(working, points)).astype(np.float32)
