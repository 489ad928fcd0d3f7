"""Cross-spectral face detector: MTCNN's cascade with R-Net and O-Net (optionally P-Net) fine-tuned on
pseudo-thermal and pseudo-NIR renders of visible photos (`hfr_hf.alignment.detector_training`).

The detector is a model, not code: a folder (or Hub repository) holding `config.json` (which networks were
fine-tuned, the thresholds to use, what it was trained on) and `model.safetensors` (the fine-tuned networks'
state dicts, keys `rnet.*`, `onet.*`, `pnet.*`, and `lnet.*` for a landmark network of thermal faces). Networks
not in the file keep MTCNN's visible weights, so a folder only needs what training changed. `guess_spectrum` tells
visible, false-colour thermal and grey images apart from their colour statistics, for
`FaceAligner(spectrum="auto")`; `white_hot_view` renders a thermal image white-hot for the landmark network.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .mtcnn import MTCNN

__all__ = [
    "CONFIG_NAME",
    "DETECTOR_TYPE",
    "SPECTRA",
    "WEIGHTS_NAME",
    "guess_spectrum",
    "load_detector",
    "resolve_detector_folder",
    "save_detector",
    "white_hot_view",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DETECTOR_TYPE = "hfr-hf-cross-spectral-mtcnn"
SPECTRA = ("visible", "nir", "thermal", "auto")
NETWORKS = ("pnet", "rnet", "onet", "lnet")  # lnet: the landmark network of thermal faces (optional)


def save_detector(detector: MTCNN, folder: str | os.PathLike, config: dict[str, Any]) -> Path:
    """Write `config.json` and `model.safetensors` (the networks named in `config["networks"]`) into `folder`.

    Written to temporary names first and renamed, so a failure leaves no half-written detector."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    networks = list(config.get("networks", NETWORKS))
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        raise ValueError(f"Unknown MTCNN network(s) {', '.join(unknown)}; choose from {', '.join(NETWORKS)}.")
    state = {
        f"{name}.{key}": value.detach().cpu().contiguous()
        for name in networks
        for key, value in getattr(detector, name).state_dict().items()
    }
    config = {"detector_type": DETECTOR_TYPE, **config, "networks": networks}
    save_file(state, str(folder / (WEIGHTS_NAME + ".tmp")), metadata={"format": "pt"})
    (folder / (CONFIG_NAME + ".tmp")).write_text(json.dumps(config, indent=2) + "\n")
    os.replace(folder / (WEIGHTS_NAME + ".tmp"), folder / WEIGHTS_NAME)
    os.replace(folder / (CONFIG_NAME + ".tmp"), folder / CONFIG_NAME)
    return folder


def resolve_detector_folder(weights: str | os.PathLike) -> Path:
    """A local detector folder, or a Hub repository id fetched (or found in the local cache) with
    huggingface_hub. Raises ValueError with what to do when neither is there."""
    path = Path(weights)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
            raise ValueError(
                f"{path} is not a detector folder: it needs {CONFIG_NAME} and {WEIGHTS_NAME} "
                "(train one with `hfr-hf train-detector --output FOLDER`)."
            )
        return path
    text = str(weights)
    if text.count("/") != 1 or os.path.exists(text):
        raise ValueError(
            f"Detector weights {text!r} are neither a folder nor a Hub repository id (namespace/name); "
            "train a detector with `hfr-hf train-detector --output FOLDER` and pass that folder."
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md"]))
    except Exception as error:  # offline, missing repository, no access: one sentence for all
        raise ValueError(
            f"Could not fetch the detector {text!r} from the Hub ({type(error).__name__}); check the repository "
            "id and the network, or pass a local folder made by `hfr-hf train-detector`."
        ) from error


def load_detector(weights: str | os.PathLike, device: str | torch.device = "cpu", **options: Any) -> MTCNN:
    """An `MTCNN` with the fine-tuned networks of a detector folder or Hub repository and its thresholds.

    `options` (min_face_size, thresholds, scale_factor, halving_pyramid, ...) override those of the folder's
    config."""
    from safetensors.torch import load_file

    folder = resolve_detector_folder(weights)
    config = json.loads((folder / CONFIG_NAME).read_text())
    if config.get("detector_type") != DETECTOR_TYPE:
        raise ValueError(f"{folder / CONFIG_NAME} is not a {DETECTOR_TYPE} config (detector_type is missing).")
    keys = ("min_face_size", "thresholds", "scale_factor", "mirror_average", "halving_pyramid")
    # folders saved before halving_pyramid was a setting get it too: their figures were measured again with it
    settings = {"halving_pyramid": True, **{key: config[key] for key in keys if key in config}}
    settings.update({key: value for key, value in options.items() if value is not None})
    if "thresholds" in settings:
        settings["thresholds"] = tuple(settings["thresholds"])
    detector = MTCNN(device=device, **settings)
    state = load_file(str(folder / WEIGHTS_NAME))
    if "lnet" in config.get("networks", []):
        from .mtcnn import ONet

        detector.lnet = ONet()
    for name in config.get("networks", []):
        part = {key[len(name) + 1 :]: value for key, value in state.items() if key.startswith(name + ".")}
        getattr(detector, name).load_state_dict(part)
    detector.eval()
    detector.to(device)
    detector.config = config
    return detector


def detector_face_check_threshold(detector: MTCNN) -> float:
    """The O-Net score a detector needs to take an aligned crop for a face: a trained detector's calibrated
    `face_check_threshold` (`TRAINED_FACE_CHECK` when its config has none), MTCNN's `MIN_FACE_SCORE` otherwise."""
    from .quality import MIN_FACE_SCORE, TRAINED_FACE_CHECK

    config = getattr(detector, "config", None)
    if not config:
        return MIN_FACE_SCORE
    return float(config.get("face_check_threshold") or TRAINED_FACE_CHECK)


# ------------------------------------------------------------------------------------------------ spectrum


_PALETTE_DISTANCE = 12.0  # median distance to a palette's curve under which colours are that palette's


def _false_colour_luts() -> list[np.ndarray]:
    from ..data.renderers import PALETTES  # imported late: data imports alignment

    return [PALETTES[name].astype(np.float32) for name in ("iron", "inferno")]


def _palette_entries(pixels: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of (N, 3) float32 pixels' nearest entry of a (256, 3) palette, and its distance (in chunks: a JPEG
    of a false-colour image has tens of thousands of colours)."""
    entries, distances = [], []
    for start in range(0, len(pixels), 4096):
        chunk = pixels[start : start + 4096]
        # channel by channel, not a matrix product: BLAS threads left spinning would slow torch's next pass
        squared = sum((chunk[:, c, None] - lut[None, :, c]) ** 2 for c in range(3))
        entries.append(squared.argmin(1))
        distances.append(np.sqrt(squared.min(1)))
    return np.concatenate(entries).astype(np.uint8), np.concatenate(distances)


def _is_grey(pixels: np.ndarray) -> bool:
    """Whether (N, 3) pixels are grey: channels equal within 3 levels on average."""
    pixels = np.asarray(pixels, np.float32)
    return float((np.abs(pixels[:, 0] - pixels[:, 1]) + np.abs(pixels[:, 1] - pixels[:, 2])).mean()) < 3.0


def _nearest_palette(pixels: np.ndarray) -> int | None:
    """The false-colour palette (index into `_false_colour_luts()`) that explains (N, 3) float32 pixels: the one
    whose curve they lie closest to, by median distance, when that is under `_PALETTE_DISTANCE`; else None."""
    distances = [float(np.median(_palette_entries(pixels, lut)[1])) for lut in _false_colour_luts()]
    return int(np.argmin(distances)) if min(distances) < _PALETTE_DISTANCE else None


@functools.lru_cache(maxsize=4)
def _quantised_levels(index: int) -> np.ndarray:
    """(64, 64, 64) uint8: the entry of palette `index` nearest to each colour at 6 bits per channel (cell
    centres), for colours off the palette's curve (compression, resizing); built once (about a second)."""
    centres = (np.arange(64, dtype=np.float32) * 4 + 1.5)[np.indices((64, 64, 64)).reshape(3, -1)].T
    return _palette_entries(np.ascontiguousarray(centres), _false_colour_luts()[index])[0].reshape(64, 64, 64)


def _palette_levels(rgb: np.ndarray, index: int) -> np.ndarray:
    """The (H, W) uint8 grey levels of an (H, W, 3) false-colour image: each pixel's entry of palette `index`,
    exact for the palette's own colours, the nearest at 6 bits per channel for the others."""
    pack = lambda c: (c[..., 0].astype(np.int32) << 16) | (c[..., 1].astype(np.int32) << 8) | c[..., 2]  # noqa: E731
    codes, palette = pack(rgb).ravel(), pack(_false_colour_luts()[index].astype(np.int32))
    order = np.argsort(palette, kind="stable")
    levels = order[np.minimum(np.searchsorted(palette[order], codes), 255)].astype(np.uint8)
    other = palette[levels] != codes
    if other.any():
        off = rgb.reshape(-1, 3)[other] >> 2
        levels[other] = _quantised_levels(index)[off[:, 0], off[:, 1], off[:, 2]]
    return levels.reshape(rgb.shape[:2])


def guess_spectrum(rgb: np.ndarray) -> str:
    """`visible`, `thermal` (a false-colour palette) or `grey` for an (H, W, 3) uint8 RGB image.

    Grey images (channels equal within 3 levels on average) may be visible, NIR or white/black-hot thermal;
    colour says nothing there, so `FaceAligner(spectrum="auto")` runs both detectors on them. A colour image
    is thermal when its pixels lie close to a false-colour palette's curve (iron, inferno): a median distance
    to the nearest palette entry under 12 levels, where photos of people lie at 20 and more."""
    pixels = np.asarray(rgb, np.float32).reshape(-1, 3)
    if len(pixels) > 4096:
        pixels = pixels[np.linspace(0, len(pixels) - 1, 4096).astype(np.int64)]
    if _is_grey(pixels):
        return "grey"
    return "thermal" if _nearest_palette(pixels) is not None else "visible"


def white_hot_view(rgb: np.ndarray, box: np.ndarray, windows: np.ndarray | None = None) -> np.ndarray | None:
    """A thermal (H, W, 3) uint8 RGB image as white-hot grey (hot = bright), the one rendering the landmark
    network (`MTCNN.lnet`) reads; None for a colour image that no false-colour palette explains.

    A false-colour image (iron, inferno) goes back through its palette to the grey levels that made it. A grey
    image is inverted when it is black-hot, judged at the face `box` (x1, y1, x2, y2): in LWIR the face is
    warmer than what surrounds it (hair, background), so black-hot shows its centre darker than a ring around
    the box (measured on held-out renders: 244 of 245 white-hot and 91 of 91 black-hot faces told apart; all
    426 real PUJ images taken as white-hot). `windows` (K, 4), the boxes the landmark network will read, limit
    the work to them and the ring; the rest of the view is black."""
    rgb = np.asarray(rgb)
    box = np.asarray(box, np.float64)
    left, top, right, bottom = 0, 0, rgb.shape[1], rgb.shape[0]
    if windows is not None:
        spans = np.vstack([np.asarray(windows, np.float64).reshape(-1, 4), _ring_box(box)])
        margin = 4 + 0.1 * (spans[:, 2] - spans[:, 0]).max()  # halvings average a few pixels beyond a window
        left, top = (max(0, int(np.floor(v - margin))) for v in spans[:, :2].min(0))
        right, bottom = (
            min(limit, int(np.ceil(v + margin)) + 1) for v, limit in zip(spans[:, 2:].max(0), (right, bottom))
        )
    part = np.ascontiguousarray(rgb[top:bottom, left:right])
    if part.size == 0:
        return None
    sample = part.reshape(-1, 3)[:: max(1, part.shape[0] * part.shape[1] // 1024)]
    if _is_grey(sample):
        grey = cv2.cvtColor(part, cv2.COLOR_RGB2GRAY)
        if not _looks_white_hot(grey, box - [left, top, left, top]):
            grey = 255 - grey
    else:
        index = _nearest_palette(sample.astype(np.float32))
        if index is None:
            return None
        grey = _palette_levels(part, index)
    view = np.zeros_like(rgb)
    view[top:bottom, left:right] = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    return view


_RING = (1.05, 1.6)  # the ring around a face box the polarity is judged on, in box half-sides


def _centre_and_half(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A face box's centre (x, y) and half-sides, at least a pixel."""
    return (box[:2] + box[2:4]) / 2, np.maximum((box[2:4] - box[:2]) / 2, 1.0)


def _ring_box(box: np.ndarray) -> np.ndarray:
    """(4,) the box that holds the polarity ring of a face `box`."""
    centre, half = _centre_and_half(box)
    return np.concatenate([centre - _RING[1] * half, centre + _RING[1] * half])


def _looks_white_hot(grey: np.ndarray, box: np.ndarray) -> bool:
    """Whether the centre of the face `box` (its middle 60 %) is at least as bright as a ring of 1.05-1.6 box
    half-sides around it (the whole image where that ring falls outside it)."""
    (cx, cy), (hw, hh) = _centre_and_half(box[:4])
    x1, y1, x2, y2 = _ring_box(box[:4])
    height, width = grey.shape
    left, right = int(max(0, x1)), int(min(width, x2 + 1))
    top, bottom = int(max(0, y1)), int(min(height, y2 + 1))
    window = grey[top:bottom:2, left:right:2]  # every other pixel: medians need no more
    ys, xs = np.mgrid[top:bottom:2, left:right:2]
    reach = np.maximum(np.abs(xs - cx) / hw, np.abs(ys - cy) / hh)
    centre = window[reach <= 0.6]
    ring = window[(reach > _RING[0]) & (reach < _RING[1])]
    if not len(centre):
        return True
    around = ring if len(ring) else grey.astype(np.float32).ravel()
    return bool(np.median(centre) >= np.median(around))
