"""Cross-spectral face detector: MTCNN's cascade with R-Net and O-Net (optionally P-Net) fine-tuned on
pseudo-thermal and pseudo-NIR renders of visible photos (`hfr_hf.alignment.detector_training`).

The detector is a model, not code: a folder (or Hub repository) holding `config.json` (which networks were
fine-tuned, the thresholds to use, what it was trained on) and `model.safetensors` (the fine-tuned networks'
state dicts, keys `rnet.*`, `onet.*`, `pnet.*`). Networks not in the file keep MTCNN's visible weights, so a
folder only needs what training changed. `guess_spectrum` tells visible, false-colour thermal and grey images
apart from their colour statistics, for `FaceAligner(spectrum="auto")`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DETECTOR_TYPE = "hfr-hf-cross-spectral-mtcnn"
SPECTRA = ("visible", "nir", "thermal", "auto")
NETWORKS = ("pnet", "rnet", "onet")


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

    `options` (min_face_size, thresholds, scale_factor, ...) override those of the folder's config."""
    from safetensors.torch import load_file

    folder = resolve_detector_folder(weights)
    config = json.loads((folder / CONFIG_NAME).read_text())
    if config.get("detector_type") != DETECTOR_TYPE:
        raise ValueError(f"{folder / CONFIG_NAME} is not a {DETECTOR_TYPE} config (detector_type is missing).")
    settings = {
        key: config[key] for key in ("min_face_size", "thresholds", "scale_factor", "mirror_average") if key in config
    }
    settings.update({key: value for key, value in options.items() if value is not None})
    if "thresholds" in settings:
        settings["thresholds"] = tuple(settings["thresholds"])
    detector = MTCNN(device=device, **settings)
    state = load_file(str(folder / WEIGHTS_NAME))
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


def _false_colour_luts() -> list[np.ndarray]:
    from ..data.renderers import PALETTES  # imported late: data imports alignment

    return [PALETTES[name].astype(np.float32) for name in ("iron", "inferno")]


def guess_spectrum(rgb: np.ndarray) -> str:
    """`visible`, `thermal` (a false-colour palette) or `grey` for an (H, W, 3) uint8 RGB image.

    Grey images (channels equal within 3 levels on average) may be visible, NIR or white/black-hot thermal;
    colour says nothing there, so `FaceAligner(spectrum="auto")` runs both detectors on them. A colour image
    is thermal when its pixels lie close to a false-colour palette's curve (iron, inferno): a median distance
    to the nearest palette entry under 12 levels, where photos of people lie at 20 and more."""
    pixels = np.asarray(rgb, np.float32).reshape(-1, 3)
    if len(pixels) > 4096:
        pixels = pixels[np.linspace(0, len(pixels) - 1, 4096).astype(np.int64)]
    chroma = np.abs(pixels[:, 0] - pixels[:, 1]) + np.abs(pixels[:, 1] - pixels[:, 2])
    if float(chroma.mean()) < 3.0:
        return "grey"
    for lut in _false_colour_luts():
        distance = np.sqrt(((pixels[:, None, :] - lut[None, :, :]) ** 2).sum(-1)).min(1)
        if float(np.median(distance)) < 12.0:
            return "thermal"
    return "visible"
