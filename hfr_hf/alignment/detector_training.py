"""Training of the cross-spectral face detector (`hfr_hf.alignment.detector`) on renders of visible photos.

Labels come for free: the visible MTCNN finds the face and its five landmarks in a visible photo; the photo is
composed into a scene (the whole frame, a tight crop where the face fills the frame, or the face pasted on a
synthetic background at a random scale and place), and the scene is rendered as a long-wave thermal or NIR
frame that is pixel-registered with it, so the visible labels are the render's labels.

- Thermal frames: the face's temperature comes from `ThermalRenderer.temperature` on the aligned crop, warped
  back into the frame with a taper at the crop's edge; the rest of the scene is cold (a low-contrast copy of
  the visible background, or masked to zero as segmented thermal sets ship it). Then the sensor: coarser pitch,
  optics blur, automatic gain, temporal noise, fixed-pattern column stripes and a palette (white-hot,
  black-hot, iron, inferno).
- NIR frames: the NIR channel mix, smoothed skin texture, dark irises, corneal glints, the illuminator's
  fall-off around the face, gain, blur and brightness-dependent noise, over the whole frame.
- Visible frames (a share of the mix), in colour or grey.

MTCNN-style samples are cut from every render: positives (IoU > 0.65 with the labelled box), part faces
(0.4-0.65), negatives (< 0.3, random windows and the P-Net proposals that miss the face) and windows of
face-free scenes (blank, noise, textures, gradients), at the networks' input sizes (12, 24, 48) through the
detector's own crop sampler, so training sees what inference sees. Each network is fine-tuned from MTCNN's
weights with the three MTCNN losses (face / not face, box offsets, landmarks).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .aligner import ARCFACE_TEMPLATE, similarity_transform
from .detector import NETWORKS, load_detector, save_detector
from .mtcnn import MTCNN
from .quality import TRAINED_FACE_CHECK

__all__ = [
    "DetectorTrainingConfig",
    "LabelledFace",
    "SceneSampler",
    "compose_scene",
    "find_images",
    "label_faces",
    "landmark_error",
    "negative_scene",
    "render_frame",
    "train_detector",
]

# Files never taken for images; anything else is tried (Yale's GIFs are named subject01.happy)
NOT_IMAGES = {".csv", ".txt", ".md", ".json", ".py", ".zip", ".gz", ".tar", ".npz", ".npy", ".safetensors", ".pt"}
_SIZES = {"pnet": 12, "rnet": 24, "onet": 48, "lnet": 48}
_SWAP = [1, 0, 2, 4, 3]  # landmark order after a horizontal flip (image-left stays first)
_TEMPLATE_IOD = float(np.linalg.norm(ARCFACE_TEMPLATE[1] - ARCFACE_TEMPLATE[0]))


@dataclass
class DetectorTrainingConfig:
    """What `train_detector` does. Every field is written to the detector's config.json."""

    networks: tuple[str, ...] = field(
        default=("pnet", "rnet", "onet"),
        metadata={
            "help": "MTCNN networks to fine-tune; or lnet alone, the landmark network of thermal faces, trained "
            "from init_detector's O-Net on white-hot thermal renders (the view FaceAligner gives it)"
        },
    )
    init_detector: str | None = field(
        default=None,
        metadata={
            "help": "detector (folder or Hub id) whose networks and inference settings training starts from and "
            "keeps; lnet needs one"
        },
    )
    renders_per_image: int = field(default=5, metadata={"help": "scenes rendered from each labelled photo"})
    samples_per_scene: tuple[int, int, int] = field(
        default=(4, 3, 9), metadata={"help": "positive, part and negative windows cut from each scene"}
    )
    negative_scenes: int = field(default=300, metadata={"help": "face-free scenes (blank, noise, textures)"})
    negative_photos: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "folders of face-free photos: half the face-free scenes and pasted-face backgrounds are cut "
            "from them (natural textures that synthetic ones miss)"
        },
    )
    landmark_weight: float = field(default=1.0, metadata={"help": "weight of O-Net's landmark loss"})
    mined_renders: int = field(
        default=0,
        metadata={
            "help": "scenes per photo rendered again once P-Net is tuned, whose tuned-P-Net proposals give R-Net "
            "and O-Net extra samples (MTCNN's own recipe: each stage learns from what the one before it "
            "passes); 0: none"
        },
    )
    mining_threshold: float = field(
        default=0.4, metadata={"help": "P-Net threshold of the proposals mined for R-Net and O-Net"}
    )
    bootstrap_scenes: int = field(
        default=0,
        metadata={
            "help": "fresh face-free scenes that the tuned P-Net and R-Net (at mining_threshold) scan before "
            "O-Net is trained: every window they still pass is an O-Net negative (bootstrapping: O-Net learns "
            "the textures and noise patches that look like faces to the stages before it); 0: none"
        },
    )
    real_thermal: str | None = field(
        default=None,
        metadata={
            "help": "folder holding the PUJ sets (puj_t360/, puj_fone/): the real LWIR images of the PUJ split's "
            "train people only, pseudo-labelled by real_thermal_labeller, join the photos (self-training)"
        },
    )
    real_thermal_labeller: str | None = field(
        default=None, metadata={"help": "detector (folder or Hub id) whose faces label the real_thermal images"}
    )
    real_renders_per_image: int = field(default=8, metadata={"help": "scenes composed from each real thermal face"})
    mirror_average: bool = field(
        default=False, metadata={"help": "saved for inference: O-Net averages each candidate and its mirror image"}
    )
    halving_pyramid: bool = field(
        default=True,
        metadata={"help": "saved for inference: P-Net's pyramid is built from the image's halvings (MTCNN docs)"},
    )
    scale_factor: float = field(
        default=0.6,
        metadata={
            "help": "saved for inference: P-Net's pyramid step (MTCNN's 0.709 costs a fifth more time per frame; "
            "the README's table measures both)"
        },
    )
    spectra: dict = field(
        default_factory=lambda: {"thermal": 0.6, "nir": 0.25, "visible": 0.15},
        metadata={"help": "share of each spectrum among the renders"},
    )
    epochs: int = field(default=3, metadata={"help": "passes over the samples, per network"})
    batch_size: int = 256
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate of the one-cycle schedule"})
    seed: int = 0
    thresholds: tuple[float, float, float] = field(
        default=(0.6, 0.7, 0.7), metadata={"help": "P-Net, R-Net, O-Net thresholds saved with the detector"}
    )
    face_check_threshold: float = field(
        default=TRAINED_FACE_CHECK,
        metadata={"help": "O-Net score an aligned crop needs to pass the face check (FaceAligner.check_crop)"},
    )
    min_face_size: int = 20
    exclude: tuple[str, ...] = field(default=(), metadata={"help": "glob patterns of images kept out of training"})


@dataclass
class LabelledFace:
    """A photo with its face: box (4,) and landmarks (5, 2), input pixels; a visible photo labelled by the visible
    detector, or a real thermal image pseudo-labelled by a cross-spectral one (`spectrum="thermal"`)."""

    image: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray
    path: str = ""
    spectrum: str = "visible"  # "thermal": a real LWIR image, whose scenes get the sensor model only


# ------------------------------------------------------------------------------------------------ sources


def find_images(folders: Sequence[str | os.PathLike], exclude: Sequence[str] = ()) -> list[Path]:
    """Image files under the folders (recursively, sorted), without those matching an `exclude` glob
    (matched against the full path, e.g. `*/att/s3[1-9]/*`). Files that are no image are skipped later."""
    paths = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder of images.")
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix.lower() in NOT_IMAGES or path.name.startswith("."):
                continue
            if path.name.upper().startswith("README"):
                continue
            if any(fnmatch.fnmatch(str(path), pattern) for pattern in exclude):
                continue
            paths.append(path)
    return paths


def _read_rgb(path: Path) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError):
        return None


def label_faces(
    paths: Sequence[Path], detector: MTCNN, min_score: float = 0.95, face_share: float = 0.2, progress: bool = False
):
    """Labelled faces of the photos where the visible detector finds a face with a score ≥ `min_score` (the
    most confident when several); returns the faces and the paths skipped.

    Photos of one size are detected in one batch, looking only for faces of at least `face_share` of the
    shorter side (these are portraits: a ~10× faster pyramid than the default 20 pixels)."""
    from tqdm.auto import tqdm

    images = {
        str(path): _read_rgb(path) for path in tqdm(paths, desc="reading photos", disable=not progress, leave=False)
    }
    by_shape: dict[tuple, list[str]] = {}
    for path, image in images.items():
        if image is not None:
            by_shape.setdefault(image.shape, []).append(path)
    found: dict[str, Any] = {}
    default = detector.min_face_size
    try:
        for shape, members in tqdm(by_shape.items(), desc="labelling photos", disable=not progress, leave=False):
            detector.min_face_size = max(default, int(face_share * min(shape[:2])))
            for start in range(0, len(members), 32):
                chunk = members[start : start + 32]
                found.update(zip(chunk, detector.detect([images[p] for p in chunk])))
    finally:
        detector.min_face_size = default
    faces, skipped = [], []
    for path in map(str, paths):
        result = found.get(path)
        if result is None or len(result) == 0 or result.scores[0] < min_score:
            skipped.append(path)
            continue
        box, points = result.boxes[0].astype(np.float64), result.landmarks[0].astype(np.float64)
        faces.append(LabelledFace(images[path], box, points, path))
    return faces, skipped


# ------------------------------------------------------------------------------------------------ scenes


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float32 in [0, 1]: a random mix of smooth noise at several scales, gradients and shapes."""
    out = np.zeros((height, width), np.float32)
    for _ in range(rng.integers(1, 4)):
        cell = int(rng.choice([2, 4, 8, 16, 32, 64]))
        small = rng.random((max(2, height // cell), max(2, width // cell))).astype(np.float32)
        out += rng.uniform(0.2, 1.0) * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    out += rng.uniform(0, 1.5) * (np.cos(angle) * xx + np.sin(angle) * yy) / max(height, width)
    for _ in range(rng.integers(0, 8)):  # shapes: rectangles, ellipses, lines of random tone
        tone = float(rng.uniform(0, 2))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        a, b = int(rng.integers(4, max(5, width // 3))), int(rng.integers(4, max(5, height // 3)))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.rectangle(out, (x, y), (x + a, y + b), tone, -1)
        elif kind == 1:
            cv2.ellipse(out, (x, y), (a // 2, b // 2), float(rng.uniform(0, 180)), 0, 360, tone, -1)
        else:
            cv2.line(
                out, (x, y), (int(rng.integers(0, width)), int(rng.integers(0, height))), tone, int(rng.integers(1, 6))
            )
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def negative_scene(rng: np.random.Generator, height: int, width: int, photos: Sequence[np.ndarray] = ()) -> np.ndarray:
    """A face-free (H, W, 3) uint8 visible-like scene: blank, noise, a texture, in grey or colour; or, half of the
    time when face-free `photos` are given, a random window of one of them (10-100 % of its side), resized."""
    if len(photos) and rng.random() < 0.5:
        photo = photos[int(rng.integers(len(photos)))]
        side = min(photo.shape[:2]) * rng.uniform(0.1, 1.0)
        h, w = max(8, int(side * min(1.0, height / width))), max(8, int(side * min(1.0, width / height)))
        y, x = int(rng.integers(0, photo.shape[0] - h + 1)), int(rng.integers(0, photo.shape[1] - w + 1))
        window = photo[y : y + h, x : x + w]
        return cv2.resize(window, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)
    kind = rng.choice(["blank", "noise", "texture", "texture", "texture"])
    if kind == "blank":
        grey = np.full((height, width), rng.uniform(0, 1), np.float32)
    elif kind == "noise":
        grey = np.clip(rng.normal(rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.3), (height, width)), 0, 1)
    else:
        grey = _texture(rng, height, width)
    rgb = grey[..., None] * rng.uniform(0.6, 1.0, 3)[None, None] + rng.uniform(0, 0.2, 3)[None, None]
    if rng.random() < 0.5:  # colour texture: channels from different textures
        rgb = np.stack([grey, _texture(rng, height, width), _texture(rng, height, width)], -1) * 0.5 + rgb * 0.5
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _head_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Soft elliptical (H, W) mask around a head given its landmarks (for pasting a face on a background)."""
    eyes = (landmarks[0] + landmarks[1]) / 2
    mouth = (landmarks[3] + landmarks[4]) / 2
    iod = max(float(np.linalg.norm(landmarks[1] - landmarks[0])), 2.0)
    centre = eyes + (mouth - eyes) * 0.35
    mask = np.zeros(shape, np.float32)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (int(iod * 1.45), int(iod * 1.95)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(iod * 0.12, 1.0))


def compose_scene(
    face: LabelledFace, rng: np.random.Generator, photos: Sequence[np.ndarray] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A visible scene made from one labelled photo, with the face's box and landmarks in scene pixels: the
    whole frame (cropped at random), a tight crop (the face fills 45-100 % of the frame's side) or the face
    pasted on a synthetic background at a random scale and place; flipped half of the time."""
    image, box, points = face.image, face.box.copy(), face.landmarks.copy()
    height, width = image.shape[:2]
    side = max(box[2] - box[0], box[3] - box[1])
    mode = rng.choice(["frame", "tight", "paste"], p=[0.3, 0.35, 0.35])
    if mode == "paste":
        out_h, out_w = int(rng.integers(96, 361)), int(rng.integers(96, 481))
        target = rng.uniform(24, 0.8 * min(out_h, out_w))  # box side in the scene
        scale = target / side
    elif mode == "tight":
        frame_side = side * rng.uniform(1.0, 2.2)
        out_side = rng.uniform(56, 256)
        scale = out_side / frame_side
        out_w = int(round(frame_side * rng.uniform(0.85, 1.15) * scale))
        out_h = int(round(frame_side * rng.uniform(0.9, 1.25) * scale))
    else:
        crop = rng.uniform(0.6, 1.0)
        out_scale = rng.uniform(96, 400) / max(height, width)
        scale = out_scale
        out_w, out_h = int(round(width * crop * scale)), int(round(height * crop * scale))
    scale = max(scale, 24.0 / side)  # the face stays detectable (min_face_size 20)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    # where the face centre lands: anywhere that keeps most of the face inside the scene
    half = side * scale / 2
    low, high = np.array([half * 0.9, half * 0.9]), np.array([out_w - half * 0.9, out_h - half * 0.9])
    if mode == "tight":
        place = np.array([out_w / 2, out_h / 2]) + rng.uniform(-0.08, 0.08, 2) * side * scale
    else:
        place = rng.uniform(np.minimum(low, high), np.maximum(low, high))
    matrix = np.array([[scale, 0, place[0] - scale * centre[0]], [0, scale, place[1] - scale * centre[1]]])
    border = cv2.BORDER_REPLICATE if rng.random() < 0.5 else cv2.BORDER_CONSTANT
    scene = cv2.warpAffine(
        image, matrix, (out_w, out_h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR, borderMode=border
    )
    points = points * scale + matrix[:, 2]
    box = np.array([box[0], box[1], box[2], box[3]]) * scale + np.tile(matrix[:, 2], 2)
    if mode == "paste":
        background = negative_scene(rng, out_h, out_w, photos)
        mask = _head_mask(points, (out_h, out_w))[..., None]
        scene = (scene * mask + background * (1 - mask)).astype(np.uint8)
    if rng.random() < 0.5:
        scene = np.ascontiguousarray(scene[:, ::-1])
        points = np.stack([out_w - 1 - points[:, 0], points[:, 1]], 1)[_SWAP]
        box = np.array([out_w - 1 - box[2], box[1], out_w - 1 - box[0], box[3]])
    return scene, box, points


# ------------------------------------------------------------------------------------------------ spectra


def _sensor(scene_t: np.ndarray, rng: np.random.Generator, face_side: float, palette: str) -> np.ndarray:
    """A thermal camera looking at a (H, W) relative-temperature scene → (H, W, 3) uint8 RGB."""
    from ..data.renderers import apply_palette

    height, width = scene_t.shape
    factor = rng.uniform(1.0, max(1.0, min(3.0, face_side / 28.0)))  # coarser detector pitch
    image = scene_t
    if factor > 1.05:
        small = (max(8, int(width / factor)), max(8, int(height / factor)))
        image = cv2.resize(
            cv2.resize(image, small, interpolation=cv2.INTER_AREA), (width, height), interpolation=cv2.INTER_LINEAR
        )
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.2) * max(1.0, face_side / 110.0))
    low = np.percentile(image, rng.uniform(0.5, 15.0))  # automatic gain control
    high = image.max() + rng.uniform(0.0, 0.1)
    image = np.clip((image - low) / max(high - low, 1e-3), 0.0, 1.0) ** rng.uniform(0.7, 1.4)
    sigma = rng.uniform(0.003, 0.03)
    image = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    image = image + rng.normal(0.0, rng.uniform(0.0, sigma), (1, width)).astype(np.float32)  # column stripes
    if rng.random() < 0.3:
        image = image + rng.normal(0.0, rng.uniform(0.0, sigma), (height, 1)).astype(np.float32)  # row stripes
    grey = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return apply_palette(grey, palette)


def _real_thermal_frame(
    scene: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, palette: str | None = None
) -> np.ndarray:
    """A scene composed from a real (white-hot) thermal image, seen again by a random sensor: its grey levels taken
    as temperatures, then pitch, blur, gain, noise, stripes and palette (`_sensor`; random when None)."""
    temperature = cv2.cvtColor(scene, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    face_side = float(np.linalg.norm(landmarks[1] - landmarks[0])) * 2.6
    return _sensor(temperature, rng, face_side, palette or _thermal_palette(rng))


def label_real_thermal(root: str | os.PathLike, labeller: str | os.PathLike, progress: bool = False):
    """Pseudo-labelled real LWIR faces of the PUJ split's `train` people under `root` (never a validation or
    measuring person): the faces `labeller` (a cross-spectral detector) finds whose landmarks are plausible (each
    within 0.1 face-box units of the set's mean, in anatomical order). Returns (faces, images read)."""
    from ..data.puj import load_puj_split, puj_images
    from ..edgeface_preprocessing import EdgeFacePreprocessor
    from ..evaluation.detection import face_region_box, landmark_plausibility
    from ..images import load_image
    from .aligner import FaceAligner

    people = sorted(p for p, s in load_puj_split().items() if s == "train")
    files = [f for camera in puj_images(root, people).values() for fs in camera.values() for f in fs]
    if not files:
        raise ValueError(f"No PUJ images of the split's training people were found under {root}.")
    to_rgb = EdgeFacePreprocessor().to_rgb_uint8
    images = [to_rgb(np.asarray(load_image(f))) for f in files]
    aligner = FaceAligner(spectrum="thermal", detector_weights=labeller)
    found = [(f, im, r[0]) for f, im, r in zip(files, images, aligner.detect_and_align(images)) if isinstance(r, list)]
    if not found:
        return [], len(files)
    plausible = landmark_plausibility(
        [face.landmarks for _, _, face in found], [face_region_box(im) for _, im, _ in found]
    )["plausible"]
    faces = [
        LabelledFace(im, np.asarray(face.box, np.float64), np.asarray(face.landmarks, np.float64), str(f), "thermal")
        for (f, im, face), ok in zip(found, plausible)
        if ok
    ]
    return faces, len(files)


def _thermal_palette(rng: np.random.Generator) -> str:
    return str(rng.choice(["white_hot", "black_hot", "iron", "inferno"], p=[0.45, 0.2, 0.2, 0.15]))


def labelled_renderer():
    """The `ThermalRenderer` of frames whose landmarks are labels (the detector's training and measures): its heat
    pattern registered with the face (`heat_shift=0`, `heat_scale=(1, 1)`). The adapter's default shifts the hot
    eye corners, nose and lips up to 3 px and 7 % against the face, an augmentation there but label noise here: a
    median 0.05 inter-ocular distance between where the labels put the eyes and where the render shows them.
    Its gain is the scene's (`skin_level=None`): the detector sees whole frames, hair and background included, and
    its figures were measured so; the adapter's face-gained renders (the renderer's default) are aligned crops."""
    from ..data.renderers import ThermalRenderer

    return ThermalRenderer(heat_shift=0.0, heat_scale=(1.0, 1.0), skin_level=None)


def render_frame(
    scene: np.ndarray,
    landmarks: np.ndarray | None,
    spectrum: str,
    rng: np.random.Generator,
    renderer=None,
    palette: str | None = None,
) -> np.ndarray:
    """The (H, W, 3) uint8 `thermal`, `nir` or `visible` frame of a visible scene, pixel-registered with it.

    `landmarks` (5, 2) place the face (None for a face-free scene); `renderer` is a `ThermalRenderer`
    (`labelled_renderer()` when None) for the face's temperature; `palette` the thermal palette (drawn at
    random when None)."""
    height, width = scene.shape[:2]
    luminance = cv2.cvtColor(scene, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    iod = float(np.linalg.norm(landmarks[1] - landmarks[0])) if landmarks is not None else 30.0
    face_side = iod * 2.6
    if spectrum == "visible":
        out = scene.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
        if rng.random() < 0.35:
            out = np.repeat(cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)[..., None], 3, -1)
        return np.clip(out, 0, 255).astype(np.uint8)
    if spectrum == "thermal":
        from ..data.renderers import SIZE, face_regions

        renderer = renderer or labelled_renderer()
        background = rng.uniform(0.0, 0.3) + rng.uniform(0.0, 0.3) * cv2.GaussianBlur(
            luminance, (0, 0), rng.uniform(1.0, 4.0)
        )
        masked = rng.random() < 0.25  # segmented thermal sets: background set to zero
        scene_t = np.zeros_like(luminance) if masked else background
        if landmarks is not None:
            matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
            crop = cv2.warpAffine(scene, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            face_t = renderer.temperature(crop, rng)
            regions = face_regions(crop)
            weight = regions.skin + regions.hair
            taper = np.minimum.outer(*(2 * [np.minimum(np.arange(SIZE), SIZE - 1 - np.arange(SIZE))])) / 10.0
            weight = (weight * np.clip(taper, 0, 1)).astype(np.float32)
            inverse = dict(flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
            skin_t = float(np.median(face_t[regions.skin > 0.5])) if (regions.skin > 0.5).any() else 0.8
            face_t = cv2.warpAffine(face_t, matrix, (width, height), **inverse)
            weight = cv2.warpAffine(weight, matrix, (width, height), **inverse)
            # the head goes on beyond the crop (forehead, scalp, jaw): warm skin, cooler where hair darkens the
            # visible image; without it the face would end above the brows, which real thermal heads never do
            head = _head_mask(landmarks, (height, width)) * (1 - weight)
            shade = cv2.GaussianBlur(luminance, (0, 0), max(1.0, iod * 0.1))
            level = float(np.median(luminance[weight > 0.5])) if (weight > 0.5).any() else 0.5
            hair = np.clip((level - shade) / max(level, 0.05), 0.0, 1.0)
            head_t = skin_t * rng.uniform(0.92, 1.0) - rng.uniform(0.1, 0.35) * hair
            if masked:
                keep = ((weight + head) > rng.uniform(0.3, 0.6)).astype(np.float32)
                weight, head = (
                    weight * keep / np.maximum(weight + head, 1e-6),
                    head * keep / np.maximum(weight + head, 1e-6),
                )
            scene_t = scene_t * (1 - weight - head) + face_t * weight + head_t * head
        else:
            scene_t = background + (rng.uniform(0, 0.6) * _texture(rng, height, width) if rng.random() < 0.5 else 0)
        return _sensor(scene_t.astype(np.float32), rng, face_side, palette or _thermal_palette(rng))
    if spectrum == "nir":
        rgb = scene.astype(np.float32) / 255.0
        nir = 0.6 * rgb[..., 0] + 0.3 * rgb[..., 1] + 0.1 * rgb[..., 2]
        base = cv2.GaussianBlur(nir, (0, 0), max(0.8, iod * 0.07))
        nir = base + rng.uniform(0.4, 0.75) * (nir - base)  # sub-surface scattering smooths skin
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        if landmarks is not None:
            sigma = max(iod * 0.085, 0.8)
            for eye in landmarks[:2]:  # dark irises, corneal glints
                spot = np.exp(-0.5 * (((xx - eye[0]) / sigma) ** 2 + ((yy - eye[1]) / sigma) ** 2))
                nir *= 1.0 - rng.uniform(0.35, 0.65) * spot
                glint = np.exp(-0.5 * (((xx - eye[0]) / (sigma * 0.3)) ** 2 + ((yy - eye[1]) / (sigma * 0.3)) ** 2))
                nir += rng.uniform(0.15, 0.5) * glint
            centre = landmarks.mean(0) + rng.uniform(-0.2, 0.2, 2) * iod
            radius = iod * rng.uniform(1.3, 2.6)
        else:
            centre = np.array([rng.uniform(0, width), rng.uniform(0, height)])
            radius = rng.uniform(0.3, 1.0) * max(height, width)
        nir = nir * (1.0 / (1.0 + ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / radius**2))
        nir = cv2.GaussianBlur(nir.astype(np.float32), (0, 0), rng.uniform(0.3, 1.0) * max(1.0, face_side / 110.0))
        mean = float(nir.mean())
        nir = (mean + rng.uniform(0.7, 1.0) * (nir - mean)) * rng.uniform(0.9, 1.8)
        noise = rng.normal(0.0, 1.0, nir.shape).astype(np.float32) * rng.uniform(0.005, 0.03)
        nir = nir + noise * np.sqrt(np.clip(nir, 0.01, 1.0))
        grey = (np.clip(nir, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(grey[..., None], 3, -1)
    raise ValueError(f"Unknown spectrum {spectrum!r}; choose thermal, nir or visible.")


# ------------------------------------------------------------------------------------------------ samples


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(boxes[:, 0], box[0]), np.maximum(boxes[:, 1], box[1])
    x2, y2 = np.minimum(boxes[:, 2], box[2]), np.minimum(boxes[:, 3], box[3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + (box[2] - box[0]) * (box[3] - box[1]) - inter, 1e-9)


def _jittered(box: np.ndarray, rng: np.random.Generator, count: int, spread: float) -> np.ndarray:
    """Square windows around a box: side ×U(0.8, 1.25), centre shifted up to `spread` sides."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1])
    sides = side * rng.uniform(0.8, 1.25, count)
    x = cx + rng.uniform(-spread, spread, count) * side - sides / 2
    y = cy + rng.uniform(-spread, spread, count) * side - sides / 2
    return np.stack([x, y, x + sides, y + sides], 1)


def _inner(box: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """Square windows 30-65 % of the face's side, centred anywhere inside the face box."""
    side = max(box[2] - box[0], box[3] - box[1])
    sides = side * rng.uniform(0.3, 0.65, count)
    cx, cy = rng.uniform(box[0], box[2], count), rng.uniform(box[1], box[3], count)
    return np.stack([cx - sides / 2, cy - sides / 2, cx + sides / 2, cy + sides / 2], 1)


def _random_windows(rng: np.random.Generator, height: int, width: int, count: int) -> np.ndarray:
    sides = np.exp(rng.uniform(np.log(12), np.log(max(13, min(height, width))), count))
    x = rng.uniform(0, np.maximum(width - sides, 1))
    y = rng.uniform(0, np.maximum(height - sides, 1))
    return np.stack([x, y, x + sides, y + sides], 1)


class SceneSampler:
    """Cuts MTCNN training samples out of rendered frames with the detector's own crop sampler.

    Each call returns, per network input size, uint8 crops (N, 3, s, s), labels (N,) (1 face, 0 not a face,
    -1 part face), box offsets (N, 4) and landmarks (N, 10) relative to the window (x1..x5, y1..y5)."""

    def __init__(
        self,
        detector: MTCNN,
        networks: Sequence[str],
        per_frame: tuple[int, int, int] = (6, 4, 12),
        proposal_share: float = 0.3,
    ):
        self.detector = detector
        self.sizes = sorted({_SIZES[n] for n in networks})
        self.per_frame = per_frame
        self.proposal_share = proposal_share  # frames whose P-Net proposals give hard samples (P-Net is costly)

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray, box: np.ndarray | None, landmarks: np.ndarray | None, rng):
        positives, parts, negatives = self.per_frame
        height, width = frame.shape[:2]
        prepared = self.detector._prepare(frame)
        proposals = np.zeros((0, 4))
        if rng.random() < self.proposal_share:
            proposals, _ = self.detector._stage_one([prepared])
        scale = np.tile(np.asarray(prepared.scale), 2)
        proposals = proposals / scale  # working → input pixels (close enough for labelling)
        windows, labels = [], []
        if box is not None:
            for spread, wanted, low, high, label in (
                (0.12, positives, 0.65, 1.01, 1),
                (0.35, parts, 0.4, 0.65, -1),
            ):
                candidates = np.concatenate([_jittered(box, rng, wanted * 6, spread), proposals])
                iou = _iou(candidates, box)
                chosen = np.nonzero((iou >= low) & (iou < high))[0]
                chosen = rng.permutation(chosen)[:wanted]
                windows.append(candidates[chosen])
                labels += [label] * len(chosen)
        easy_pool = _random_windows(rng, height, width, negatives * 3)
        hard_pool = proposals
        if box is not None:
            # besides windows beside the face, windows inside it: a part of a face (nostrils and mouth under a
            # white-hot forehead look like eyes and a mouth) is not a face
            easy_pool = np.concatenate([easy_pool, _jittered(box, rng, negatives, 1.2)])
            hard_pool = np.concatenate([hard_pool, _inner(box, rng, negatives)])
            easy_pool = easy_pool[_iou(easy_pool, box) < 0.3]
            hard_pool = hard_pool[_iou(hard_pool, box) < 0.3]
        # half the negatives from the P-Net proposals and windows inside the face (the hard ones), the rest random
        hard = rng.permutation(len(hard_pool))[: negatives // 2]
        easy = rng.permutation(len(easy_pool))[: negatives - len(hard)]
        candidates = np.concatenate([hard_pool[hard], easy_pool[easy]])
        windows.append(candidates)
        labels += [0] * len(candidates)
        windows = np.concatenate(windows) if windows else np.zeros((0, 4))
        labels = np.asarray(labels, np.int64)
        sides = windows[:, 2] - windows[:, 0] + 1
        offsets = np.zeros((len(windows), 4), np.float32)
        points = np.zeros((len(windows), 10), np.float32)
        if box is not None:
            offsets = ((box[None] - windows) / sides[:, None]).astype(np.float32)
            points = np.concatenate(
                [
                    (landmarks[None, :, 0] - windows[:, :1] + 1) / sides[:, None],
                    (landmarks[None, :, 1] - windows[:, 1:2] + 1) / sides[:, None],
                ],
                1,
            ).astype(np.float32)
        working = windows * scale
        owners = np.zeros(len(windows), np.int64)
        out = {}
        for size in self.sizes:
            crops = (
                self.detector._crops([prepared], working, owners, size)
                if len(windows)
                else torch.zeros(0, 3, size, size)
            )
            out[size] = (crops * 128.0 + 127.5).round().clamp(0, 255).to(torch.uint8)
        return out, labels, offsets, points


# ------------------------------------------------------------------------------------------------ training


def _losses(name: str, net, crops, labels, offsets, points, landmark_weight: float = 1.0):
    """MTCNN's three losses on a batch: face/not-face (positives and negatives), box offsets (positives and
    parts), landmarks (positives and parts, O-Net and the landmark network only)."""
    x = (crops.float() - 127.5) / 128.0
    outputs = net(x)
    if name == "pnet":
        box, prob = outputs[0][:, :, 0, 0], outputs[1][:, 0, 0]
    else:
        box, prob = outputs[0], outputs[-1]
    decided = labels >= 0
    cls = F.binary_cross_entropy(prob[decided].clamp(1e-6, 1 - 1e-6), labels[decided].float())
    face = labels != 0
    reg = F.mse_loss(box[face], offsets[face]) if face.any() else prob.sum() * 0
    total = cls + 0.5 * reg
    parts = {"cls": float(cls.detach()), "box": float(reg.detach())}
    if name in ("onet", "lnet"):
        lmk = F.mse_loss(outputs[1][face], points[face]) if face.any() else prob.sum() * 0
        total = total + landmark_weight * lmk
        parts["landmarks"] = float(lmk.detach())
    return total, parts


def _fit(name: str, net, data, config: DetectorTrainingConfig, generator: torch.Generator, progress: bool):
    from tqdm.auto import tqdm

    crops, labels, offsets, points = data
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    steps_per_epoch = max(1, math.ceil(len(labels) / config.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.learning_rate, total_steps=steps_per_epoch * config.epochs, pct_start=0.15
    )
    history = []
    bar = tqdm(total=steps_per_epoch * config.epochs, desc=f"training {name}", disable=not progress, leave=False)
    for epoch in range(config.epochs):
        order = torch.randperm(len(labels), generator=generator)
        sums: dict[str, float] = {}
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            loss, parts = _losses(
                name, net, crops[index], labels[index], offsets[index], points[index], config.landmark_weight
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value * len(index)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.3f}")
        history.append({key: value / len(labels) for key, value in sums.items()})
    bar.close()
    net.eval()
    return history


@torch.inference_mode()
def _evaluate_losses(name, net, data) -> dict[str, float]:
    crops, labels, offsets, points = data
    _, parts = _losses(name, net, crops, labels, offsets, points)
    x = (crops.float() - 127.5) / 128.0
    prob = net(x)[-1]
    prob = prob[:, 0, 0] if name == "pnet" else prob
    decided = labels >= 0
    parts["accuracy"] = float(((prob[decided] > 0.5).long() == labels[decided]).float().mean())
    return parts


def landmark_error(found: np.ndarray, expected: np.ndarray) -> float:
    """Mean point-to-point distance of (5, 2) landmarks, over the expected inter-ocular distance."""
    iod = max(float(np.linalg.norm(expected[1] - expected[0])), 1e-6)
    return float(np.linalg.norm(found - expected, axis=1).mean() / iod)


def _render_samples(
    faces, sampler, config, rng, renders: int, negatives: int, progress: bool, desc: str, photos: Sequence = ()
):
    """Render scenes and cut samples; returns per-size tensors. Thermal frames are white-hot for the landmark
    network (the view `FaceAligner` gives it), in a random palette otherwise."""
    from tqdm.auto import tqdm

    renderer = labelled_renderer()
    palette = "white_hot" if "lnet" in config.networks else None
    spectra, weights = list(config.spectra), np.array(list(config.spectra.values()), np.float64)
    chunks: dict[int, list] = {size: [] for size in sampler.sizes}
    labels, offsets, points = [], [], []
    jobs = [(face, None) for face in faces for _ in range(renders)] + [(None, None)] * negatives
    for face, _ in tqdm(jobs, desc=desc, disable=not progress, leave=False):
        spectrum = spectra[int(rng.choice(len(spectra), p=weights / weights.sum()))]
        if face is None:
            scene = negative_scene(rng, int(rng.integers(48, 361)), int(rng.integers(48, 481)), photos)
            box = points_ = None
        else:
            scene, box, points_ = compose_scene(face, rng, photos)
        if face is not None and face.spectrum == "thermal":
            frame = _real_thermal_frame(scene, points_, rng, palette)
        else:
            frame = render_frame(scene, points_, spectrum, rng, renderer, palette)
        crops, lab, off, pts = sampler(frame, box, points_, rng)
        for size in sampler.sizes:
            chunks[size].append(crops[size])
        labels.append(lab)
        offsets.append(off)
        points.append(pts)
    labels_t = torch.from_numpy(np.concatenate(labels))
    offsets_t = torch.from_numpy(np.concatenate(offsets))
    points_t = torch.from_numpy(np.concatenate(points))
    return {size: (torch.cat(chunks[size]), labels_t, offsets_t, points_t) for size in sampler.sizes}


def train_detector(
    folders: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    config: DetectorTrainingConfig | None = None,
    validation_share: float = 0.1,
    progress: bool = True,
) -> dict[str, Any]:
    """Label the visible photos under `folders`, render scenes, fine-tune the networks, save the detector
    (config.json + model.safetensors) and report.json into `output`; returns the report.

    A share of the labelled photos (`validation_share`, whole identities when the folder names them: the
    parent folder or the file-name prefix before the first '.' or '_') is kept out of training and used for
    the held-out losses in the report."""
    config = config or DetectorTrainingConfig()
    unknown = sorted(set(config.networks) - set(_SIZES))
    if unknown or not config.networks:
        raise ValueError(f"networks must be some of {', '.join(_SIZES)}, got {', '.join(config.networks) or 'none'}.")
    if "lnet" in config.networks and (len(config.networks) > 1 or not config.init_detector):
        raise ValueError(
            "The landmark network lnet is trained alone and from a trained detector's O-Net: networks=('lnet',) "
            "with init_detector=FOLDER (`hfr-hf train-detector --networks lnet --init FOLDER`)."
        )
    output = Path(output)
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    paths = find_images(folders, config.exclude)
    if not paths:
        raise ValueError(f"No images were found under {', '.join(map(str, folders))}.")
    visible = MTCNN(min_face_size=config.min_face_size)
    faces, skipped = label_faces(paths, visible, progress=progress)
    if len(faces) < 2:
        raise ValueError(f"The visible detector labelled {len(faces)} of {len(paths)} photos; at least 2 are needed.")
    identities = sorted({_identity(face.path) for face in faces})
    held = set(rng.permutation(identities)[: max(1, int(round(len(identities) * validation_share)))].tolist())
    train_faces = [f for f in faces if _identity(f.path) not in held]
    val_faces = [f for f in faces if _identity(f.path) in held] or faces[:1]
    photos = _face_free_photos(config.negative_photos)
    real_faces, real_read = [], 0
    if config.real_thermal:
        if not config.real_thermal_labeller:
            raise ValueError("real_thermal needs real_thermal_labeller: the detector whose faces label those images.")
        real_faces, real_read = label_real_thermal(config.real_thermal, config.real_thermal_labeller, progress)
    sampler = SceneSampler(visible, config.networks, config.samples_per_scene)
    train = _render_samples(
        train_faces,
        sampler,
        config,
        rng,
        config.renders_per_image,
        config.negative_scenes,
        progress,
        "rendering scenes",
        photos,
    )
    if real_faces:
        extra = _render_samples(
            real_faces,
            sampler,
            config,
            rng,
            config.real_renders_per_image,
            0,
            progress,
            "composing real thermal",
            photos,
        )
        _append_samples(train, extra)
    val = _render_samples(
        val_faces, sampler, config, rng, 2, max(10, config.negative_scenes // 10), progress, "rendering held-out scenes"
    )
    rendered = time.perf_counter()
    if config.init_detector:  # its networks and detection settings (thresholds, pyramid, mirror averaging) are kept
        detector = load_detector(config.init_detector)
    else:
        # detects (mining, bootstrapping) with the pyramid it will be saved with
        detector = MTCNN(
            min_face_size=config.min_face_size,
            thresholds=config.thresholds,
            scale_factor=config.scale_factor,
            halving_pyramid=config.halving_pyramid,
        )
    if "lnet" in config.networks:
        detector.lnet = copy.deepcopy(detector.onet)
    networks: dict[str, Any] = {}
    mined: dict[str, int] = {}
    bootstrapped = 0
    tuned_pnet = "pnet" in config.networks or config.init_detector
    for name in config.networks:
        size = _SIZES[name]
        net = getattr(detector, name)
        if name != "pnet" and config.mined_renders > 0 and not mined and tuned_pnet:
            mined = _add_mined_samples(train, train_faces, detector, config, rng, progress, photos)
        if name == "onet" and config.bootstrap_scenes > 0:
            bootstrapped = _add_face_free_negatives(train, detector, config, rng, progress, photos)
        before = _evaluate_losses(name, net, val[size])
        history = _fit(name, net, train[size], config, generator, progress)
        after = _evaluate_losses(name, net, val[size])
        networks[name] = {
            "samples": _sample_counts(train[size][1]),
            "train_loss": history,
            "held_out_before": before,
            "held_out_after": after,
        }
    training_data = {
        "folders": [str(f) for f in folders],
        "photos_labelled": len(faces),
        "photos_skipped": len(skipped),
        "held_out_identities": sorted(held),
        "face_free_photos": len(photos),
        "mined_samples": mined,
        "bootstrapped_negatives": bootstrapped,
        "real_thermal": None
        if not real_faces
        else {
            "root": str(config.real_thermal),
            "labeller": str(config.real_thermal_labeller),
            "people": sorted({Path(f.path).name.split("_")[0] for f in real_faces}),
            "images_read": real_read,
            "faces_labelled": len(real_faces),
        },
        "note": "renders of visible photos (labels from the visible MTCNN)"
        + (
            "; real LWIR images of the PUJ split's train people, pseudo-labelled by the labeller detector"
            if real_faces
            else "; no real thermal or NIR images"
        ),
    }
    if config.init_detector:  # the starting detector's config, with what this training added
        saved = dict(detector.config)
        saved["networks"] = [n for n in NETWORKS if n in set(saved.get("networks", [])) | set(config.networks)]
        further = {**asdict(config), "networks": list(config.networks), "training_data": training_data}
        saved["further_training"] = [*saved.get("further_training", []), further]
    else:
        saved = {**asdict(config), "networks": list(config.networks), "training_data": training_data}
    save_detector(detector, output, saved)
    report = {
        "output": str(output),
        "photos": len(paths),
        "labelled": len(faces),
        "skipped": skipped,
        "identities": len(identities),
        "held_out_identities": sorted(held),
        "networks": networks,
        "seconds": {"rendering": rendered - start, "total": time.perf_counter() - start},
        "config": saved,
    }
    (output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _append_samples(samples: dict, extra: dict) -> None:
    """Add `extra`'s crops, labels, offsets and landmarks to `samples`, for every crop size both have."""
    for size in set(samples) & set(extra):
        samples[size] = tuple(torch.cat([old, new]) for old, new in zip(samples[size], extra[size]))


def _add_mined_samples(train: dict, faces, detector: MTCNN, config, rng, progress: bool, photos) -> dict[str, int]:
    """Render fresh scenes, cut samples around the proposals of the tuned P-Net (every scene, at
    `mining_threshold`) and add them to the R-Net and O-Net training samples; returns the counts added."""
    names = [n for n in config.networks if n != "pnet"]
    saved = detector.thresholds
    detector.thresholds = (config.mining_threshold, *saved[1:])
    try:
        sampler = SceneSampler(detector, names, config.samples_per_scene, proposal_share=1.0)
        extra = _render_samples(
            faces,
            sampler,
            config,
            rng,
            config.mined_renders,
            config.negative_scenes // 2,
            progress,
            "mining P-Net proposals",
            photos,
        )
    finally:
        detector.thresholds = saved
    _append_samples(train, extra)
    return _sample_counts(next(iter(extra.values()))[1])  # every crop size holds the same samples


def _add_face_free_negatives(train: dict, detector: MTCNN, config, rng, progress: bool, photos) -> int:
    """Scan `bootstrap_scenes` fresh face-free frames with the tuned P-Net and R-Net (both at `mining_threshold`)
    and add every window they pass, as a negative, to O-Net's samples; returns how many. Random windows of
    face-free scenes rarely frame what the cascade takes for a face (a noise patch, a textured blob); these do."""
    from tqdm.auto import tqdm

    renderer = labelled_renderer()
    spectra, weights = list(config.spectra), np.array(list(config.spectra.values()), np.float64)
    saved = detector.thresholds
    detector.thresholds = (config.mining_threshold, config.mining_threshold, saved[2])
    crops = []
    try:
        for _ in tqdm(range(config.bootstrap_scenes), desc="bootstrapping face-free scenes", disable=not progress):
            spectrum = spectra[int(rng.choice(len(spectra), p=weights / weights.sum()))]
            scene = negative_scene(rng, int(rng.integers(48, 361)), int(rng.integers(48, 481)), photos)
            frame = render_frame(scene, None, spectrum, rng, renderer)
            prepared = [detector._prepare(frame)]
            with torch.inference_mode():
                boxes, owners = detector._stage_one(prepared)
                if len(boxes):
                    boxes, owners = detector._stage_two(prepared, boxes, owners)
                # at most a scene's share of negatives from each frame, so that no single texture dominates
                keep = rng.permutation(len(boxes))[: config.samples_per_scene[2]]
                if len(keep):
                    crops.append(detector._crops(prepared, boxes[keep], owners[keep], _SIZES["onet"]))
    finally:
        detector.thresholds = saved
    if not crops:
        return 0
    crops_t = (torch.cat(crops) * 128.0 + 127.5).round().clamp(0, 255).to(torch.uint8)
    count = len(crops_t)
    extra = (crops_t, torch.zeros(count, dtype=torch.int64), torch.zeros(count, 4), torch.zeros(count, 10))
    _append_samples(train, {_SIZES["onet"]: extra})
    return count


def _sample_counts(labels: torch.Tensor) -> dict[str, int]:
    """Positive (1), part (-1) and negative (0) samples among `labels`."""
    return {
        "positive": int((labels == 1).sum()),
        "part": int((labels == -1).sum()),
        "negative": int((labels == 0).sum()),
    }


def _face_free_photos(folders: Sequence[str | os.PathLike]) -> list[np.ndarray]:
    """The face-free photos under `folders` as RGB uint8 arrays (none without folders)."""
    if not folders:
        return []
    from ..images import load_image

    paths = find_images(folders)
    if not paths:
        raise ValueError(f"No face-free photos were found under {', '.join(map(str, folders))}.")
    return [np.asarray(load_image(path).convert("RGB")) for path in paths]


def _identity(path: str) -> str:
    """Identity key of a photo: the parent folder when it names a person (AT&T's s1..s40), else the file name
    up to the first '.' or '_' (Yale's subject01.happy, deepface's img12 is its own identity)."""
    p = Path(path)
    if p.parent.name.startswith("s") and p.parent.name[1:].isdigit():
        return f"{p.parent.parent.name}/{p.parent.name}"
    stem = p.name.split(".")[0].split("_")[0]
    return f"{p.parent.name}/{stem}"
