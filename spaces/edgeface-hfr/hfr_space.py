"""The Space's logic without the page: load the model and its spectrum adapters, read and align uploads
(detection, or clicked / typed landmarks), embed, score, decide at a calibrated threshold, enrol and identify.
Enrolment embeds the gallery once per network the Space serves, into `hfr_hf.gallery` galleries held in memory;
Identify embeds only the probe and searches the gallery of the probe's network.

Every problem a visitor can cause (unreadable file, no face, bad landmarks, empty gallery) raises `SpaceError`
with one readable sentence, which `app.py` shows in the page. Settings come from the environment:

- `HFR_HF_MODEL`: a converted EdgeFace folder or Hub repo id. Default: `runs/edgeface-xxs` when it exists
  (the repository's main job output), else the Hub model `hfr-hf/edgeface-xxs-hfr`.
- `HFR_HF_ADAPTERS`: xEdgeFace adapters, `thermal=PATH_OR_REPO,nir=PATH_OR_REPO`; a bare `PATH_OR_REPO` (or
  `all=...`) serves every spectrum, visible included (the paper's single network). Empty or unset: the first
  of `<model>/adapter` and `<model>/../xedgeface/adapter` that exists serves every spectrum; `none`: no adapter.
  Without an adapter every spectrum uses the base model.
- `HFR_HF_DETECTOR`: a cross-spectral detector folder or Hub repo (`hfr-hf train-detector`): uploads are then
  aligned with `FaceAligner(spectrum="auto")`, so thermal and NIR faces are found without clicks. Unset: MTCNN.
- Thresholds: `report.json` (`{"thresholds": {"thermal": {"1e-2": t, "1e-3": t}, "vis": {...}}}`, cosine
  thresholds at FAR 1 % / 0.1 % keyed by probe spectrum) in the adapter folder or its parent (the training
  output), or for the base model in the model folder. A spectrum without its own entry uses the `vis` one,
  marked as not calibrated for that spectrum; without any report, `FALLBACK_THRESHOLDS`, marked uncalibrated.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps

if TYPE_CHECKING:
    from hfr_hf.gallery import Gallery

__all__ = [
    "DEFAULT_HUB_MODEL",
    "FALLBACK_THRESHOLDS",
    "FARS",
    "SPECTRA",
    "Calibration",
    "EnrolledGallery",
    "FaceEngine",
    "GalleryEntry",
    "Match",
    "NoFaceError",
    "SpaceError",
    "UNREADABLE",
    "Threshold",
    "VerifyResult",
    "add_click",
    "default_model",
    "format_points",
    "parse_adapters",
    "parse_points",
    "read_image",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LOCAL_MODEL = "runs/edgeface-xxs"
DEFAULT_HUB_MODEL = "hfr-hf/edgeface-xxs-hfr"
# page label -> key used in report.json and HFR_HF_ADAPTERS
SPECTRA = {"visible": "vis", "NIR": "nir", "thermal": "thermal"}
FARS = {"1 %": "1e-2", "0.1 %": "1e-3"}
SPECTRUM_LABELS = {key: label for label, key in SPECTRA.items()}
FAR_LABELS = {key: label for label, key in FARS.items()}
# Uncalibrated fallback: thresholds at FAR 1 % / 0.1 % of the frozen EdgeFace-XXS on the 78,000 AT&T impostor pairs
# (visible light, MTCNN-aligned): 0.2607 / 0.3253. Other data, other spectra and adapters shift them.
FALLBACK_THRESHOLDS = {"1e-2": 0.26, "1e-3": 0.33}
MAX_SIDE = 1024  # uploads are downscaled so that detection takes the same time on any camera
MAX_GALLERY = 50
UNREADABLE = "could not be read as an image; upload a PNG, JPEG, TIFF, BMP, PGM or WebP file."
ALL_SPECTRA = "all"


class SpaceError(ValueError):
    """A problem with what the visitor gave; the message is shown in the page as it is."""


class NoFaceError(SpaceError):
    """The detector found no face in one of the images, and no landmarks were given for it."""

    def __init__(self, *roles: str) -> None:
        self.roles = roles
        where = f"the {roles[0]} image" if len(roles) == 1 else f"the {' and '.join(roles)} images"
        super().__init__(
            f"No face was found in {where}. Click the two eye centres on {'it' if len(roles) == 1 else 'each'} "
            "(the image-left eye first) or type their coordinates, then run again."
        )


# ---------------------------------------------------------------------------------------------------- settings


def default_model() -> str:
    """`HFR_HF_MODEL`, else the repository's `runs/edgeface-xxs` when it exists, else the Hub model."""
    if os.environ.get("HFR_HF_MODEL"):
        return os.environ["HFR_HF_MODEL"]
    for base in (Path.cwd(), REPO_ROOT):
        if (base / DEFAULT_LOCAL_MODEL / "config.json").is_file():
            return str(base / DEFAULT_LOCAL_MODEL)
    return DEFAULT_HUB_MODEL


def local_folder(name_or_path: str | os.PathLike, what: str) -> Path:
    """A local folder for a path or a Hub repo id (downloaded, or read from the Hub cache when offline)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HFValidationError

    try:
        return Path(snapshot_download(str(name_or_path)))
    except HFValidationError:
        raise SpaceError(f"The {what} {name_or_path} is neither a folder nor a Hub repo id.") from None
    except Exception as error:  # offline and not cached, missing repo, no access
        raise SpaceError(
            f"The {what} {name_or_path} is not a local folder and could not be fetched from the Hub "
            f"({type(error).__name__}); set it to a folder or a reachable repo id."
        ) from error


def parse_adapters(spec: str | None) -> dict[str, str]:
    """`HFR_HF_ADAPTERS` → {spectrum key or "all": path or repo id}."""
    adapters: dict[str, str] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = (key.strip().lower(), value.strip()) if sep else (ALL_SPECTRA, key)
        if key not in (*SPECTRA.values(), ALL_SPECTRA) or not value:
            raise SpaceError(
                f"HFR_HF_ADAPTERS entry {item!r} is not 'SPECTRUM=PATH' with SPECTRUM one of "
                f"{', '.join([*SPECTRA.values(), ALL_SPECTRA])} (or a bare PATH for every spectrum)."
            )
        if key in adapters:
            raise SpaceError(f"HFR_HF_ADAPTERS names spectrum {key!r} twice.")
        adapters[key] = value
    return adapters


def default_adapters(model_dir: Path) -> dict[str, str]:
    """The adapter beside the model, when there is one: it serves every spectrum."""
    for candidate in (model_dir / "adapter", model_dir.parent / "xedgeface" / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return {ALL_SPECTRA: str(candidate)}
    return {}


# ------------------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Threshold:
    value: float
    far: str  # "1e-2" | "1e-3"
    calibrated: bool
    note: str  # what the threshold was calibrated on, for the page


@dataclass
class Calibration:
    """Cosine thresholds per probe spectrum and FAR, from a `report.json`, or the uncalibrated fallback."""

    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def from_folders(cls, folders: Sequence[Path]) -> Calibration:
        """The first `report.json` with thresholds among `folders`; none → fallback."""
        for folder in folders:
            path = folder / "report.json"
            if not path.is_file():
                continue
            try:
                report = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise SpaceError(f"{path} is not readable JSON ({error}); fix or remove it.") from error
            thresholds = report.get("thresholds") if isinstance(report, dict) else None
            if thresholds is None:
                continue  # e.g. a training report from before thresholds were written
            try:
                clean = {
                    str(spectrum): {str(far): float(value) for far, value in values.items() if value is not None}
                    for spectrum, values in thresholds.items()
                }
            except (AttributeError, TypeError, ValueError) as error:
                raise SpaceError(
                    f"{path}: 'thresholds' must map spectrum -> {{FAR: cosine threshold}}, got {thresholds!r}."
                ) from error
            return cls(clean, path)
        return cls()

    @property
    def calibrated(self) -> bool:
        return self.source is not None

    def threshold(self, spectrum: str, far: str) -> Threshold:
        """The threshold for probes of `spectrum` (key: vis, nir, thermal) at FAR key `far` (1e-2, 1e-3)."""
        label = SPECTRUM_LABELS.get(spectrum, spectrum)
        own = self.thresholds.get(spectrum, {})
        if far in own:
            return Threshold(own[far], far, True, f"calibrated for {label} probes ({self.source})")
        vis = self.thresholds.get("vis", {})
        if far in vis:
            return Threshold(
                vis[far], far, False, f"not calibrated for {label} probes: the visible-light threshold ({self.source})"
            )
        return Threshold(
            FALLBACK_THRESHOLDS[far],
            far,
            False,
            "uncalibrated: default for the frozen EdgeFace-XXS on visible-light faces (AT&T); "
            "ship a report.json with thresholds for calibrated decisions",
        )


# ------------------------------------------------------------------------------------------------------ images


@functools.cache
def _to_rgb():
    from hfr_hf.image_processing_edgeface import EdgeFaceImageProcessor

    # The package's conversion: 8-bit images as they are, grey, 16-bit and float (thermal) ones to 8-bit RGB.
    return EdgeFaceImageProcessor().to_rgb_uint8


def _open(path: str | os.PathLike, max_side: int) -> tuple[Image.Image, int]:
    """Decode an image file upright (EXIF orientation applied), and the upright original's width; large JPEGs are
    decoded at reduced size (DCT scaling, several times faster)."""
    from hfr_hf.images import MAX_PIXELS, check_pixels

    name = Path(path).name
    try:
        with warnings.catch_warnings():  # the size is judged below, by the package's limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as header:
                width, height = header.size
                transposed = header.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
    except Image.DecompressionBombError:
        raise SpaceError(f"{name} is too large; images up to {MAX_PIXELS // 10**6} megapixels work.") from None
    except Exception:  # PIL raises several unrelated types for non-images
        raise SpaceError(f"{name} {UNREADABLE}") from None
    try:
        check_pixels(width, height, name)
    except ValueError as error:
        raise SpaceError(str(error)) from None
    try:
        with Image.open(path) as image:
            scale = min(1.0, max_side / max(width, height))
            if image.format == "JPEG" and scale < 1.0:
                image.draft("RGB", (round(width * scale), round(height * scale)))
            image.load()
            return ImageOps.exif_transpose(image), height if transposed else width
    except Exception:
        raise SpaceError(f"{name} could not be decoded (the file may be truncated or corrupt).") from None


def read_image(image: Any, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """An uploaded image (path, PIL or array; grey, 16-bit, float and TIFF too) as (H, W, 3) uint8 RGB, downscaled
    so that its longer side is at most `max_side`, and the scale from the upright original to it (1.0 when it was
    small enough): landmarks given in the original's pixels are multiplied by it."""
    if image is None:
        raise SpaceError("No image was given.")
    original_width = None
    if isinstance(image, (str, os.PathLike)):
        image, original_width = _open(image, max_side)
    try:
        rgb = _to_rgb()(image)
    except (TypeError, ValueError) as error:
        raise SpaceError(f"This image cannot be used: {error}") from None
    original_width = original_width or rgb.shape[1]
    if max(rgb.shape[:2]) > max_side:
        factor = max_side / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb), rgb.shape[1] / original_width


def parse_points(text: str | None) -> np.ndarray | None:
    """Landmarks typed or clicked as text: 4 numbers (the two eye centres) or 10 (five points: eyes, nose tip,
    mouth corners), image-left first, as x y pairs in any separators. Empty → None."""
    numbers = _numbers(text)
    if not numbers:
        return None
    if len(numbers) not in (4, 10):
        points = len(numbers) // 2
        hint = " Click the second eye too." if len(numbers) == 2 else ""
        raise SpaceError(
            f"Landmarks need the 2 eye centres (4 numbers) or 5 points (10 numbers), got {points} "
            f"point{'s' if points != 1 else ''} ({len(numbers)} numbers).{hint}"
        )
    return np.asarray([float(n) for n in numbers], np.float64).reshape(-1, 2)


def _point_array(points: Any) -> np.ndarray:
    """Landmarks given as numbers (an array or a list of pairs) rather than text."""
    try:
        if np.iscomplexobj(points):
            raise TypeError
        return np.asarray(points, np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise SpaceError("Landmarks must be numbers: the 2 eye centres or 5 points, as (x, y) pairs.") from None


def _numbers(text: str | None) -> list[str]:
    return re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", text or "")


def format_points(points: Sequence[Sequence[float]]) -> str:
    return "; ".join(f"{x:.0f}, {y:.0f}" for x, y in points)


def add_click(text: str | None, x: float, y: float) -> tuple[str, bool]:
    """The landmark box after a click at (x, y), and whether it now holds both eyes: the first click gives one
    eye, the second the other; a click on a box that holds anything but one point starts over."""
    numbers = [float(n) for n in _numbers(text)]
    points = [[*numbers[0:2]], [x, y]] if len(numbers) == 2 else [[x, y]]
    return format_points(points), len(points) == 2


# ------------------------------------------------------------------------------------------------------ engine


@dataclass
class AlignedInput:
    crop: np.ndarray  # (112, 112, 3) uint8
    how: str  # how it was aligned, for the page


@dataclass
class VerifyResult:
    reference: AlignedInput
    probe: AlignedInput
    score: float
    threshold: Threshold
    accepted: bool
    network: str
    timings: dict[str, float]


@dataclass
class GalleryEntry:
    name: str
    crop: np.ndarray
    how: str
    source: str = ""  # the uploaded file's name, or "image N"


class EnrolledGallery(Sequence[GalleryEntry]):
    """A visitor's enrolled faces: their aligned crops (what the page shows), and their embeddings in one
    `hfr_hf.gallery.Gallery` per network the Space serves (adapter name, None for the base model), made at
    enrolment. Nothing changes afterwards, so concurrent requests of one session only read it.

    The galleries are held in memory, in the visitor's `gr.State`, rather than in a folder per session: a Space's
    disk is ephemeral anyway, 50 images are 100 KB of embeddings per network (twice that with the index), and
    nothing is left to clean up when a session ends or the process dies."""

    def __init__(self, entries: Sequence[GalleryEntry], galleries: dict[str | None, Gallery]) -> None:
        self.entries = list(entries)
        self.galleries = galleries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):
        return self.entries[index]


@dataclass
class Match:
    rank: int
    name: str
    score: float
    images: int
    accepted: bool


class FaceEngine:
    """The model, its spectrum adapters, the aligner and the thresholds; thread-safe for a queued Space."""

    def __init__(self, model: str | os.PathLike | None = None, adapters: dict[str, str] | str | None = None) -> None:
        from hfr_hf.alignment import FaceAligner
        from hfr_hf.inference import load_model

        self.model_name = str(model or default_model())
        self.model_dir = local_folder(self.model_name, "model")
        if not (self.model_dir / "config.json").is_file():
            raise SpaceError(f"{self.model_name} is not a model folder (no config.json); make one with hfr-hf convert.")
        if adapters is None:
            adapters = os.environ.get("HFR_HF_ADAPTERS", "")
        if isinstance(adapters, str):
            adapters = {} if adapters.strip().lower() == "none" else parse_adapters(adapters)
            adapters = adapters or default_adapters(self.model_dir)
        self.model, self.processor = load_model(self.model_dir)
        self.model.requires_grad_(False)
        # HFR_HF_DETECTOR (a folder or Hub repo from `hfr-hf train-detector`): thermal and NIR uploads are found
        # without clicks, the spectrum chosen per image; clicks stay the fallback for faces it misses
        detector = os.environ.get("HFR_HF_DETECTOR") or None
        self.aligner = FaceAligner(spectrum="auto" if detector else "visible", detector_weights=detector)
        self.adapter_dirs: dict[str, Path] = {}
        self.calibrations: dict[str | None, Calibration] = {None: Calibration.from_folders([self.model_dir])}
        if adapters:
            from hfr_hf.adapters import load_adapter

            for key, where in adapters.items():
                folder = local_folder(where, f"{key} adapter")
                self.model = load_adapter(self.model, folder, adapter_name=key).eval()
                self.adapter_dirs[key] = folder
                self.calibrations[key] = Calibration.from_folders([folder, folder.parent])
        self._lock = threading.Lock()  # the active adapter is model state shared by concurrent requests
        # what each network's gallery is stamped with, and checked against at every search
        self.fingerprints = {name: self._fingerprint(spectrum) for name, spectrum in self.networks().items()}
        self._warm_up()

    def _warm_up(self) -> None:
        """Build the detector, run every network once and make a gallery (importing datasets and FAISS), at start-up
        rather than in the first request."""
        self.aligner.detect_and_align([np.zeros((240, 320, 3), np.uint8)])
        blank = np.zeros((self.aligner.image_size, self.aligner.image_size, 3), np.uint8)
        self.embed_gallery([GalleryEntry("warm-up", blank, "")])

    # -- which network serves a spectrum

    def adapter_for(self, spectrum: str) -> str | None:
        """Adapter name used for probes of `spectrum`: its own, else the all-spectra one, else None (base)."""
        if spectrum in self.adapter_dirs:
            return spectrum
        return ALL_SPECTRA if ALL_SPECTRA in self.adapter_dirs else None

    def networks(self) -> dict[str | None, str]:
        """The networks this Space serves (adapter name, None for the base model), each with a spectrum it serves."""
        served: dict[str | None, str] = {}
        for spectrum in SPECTRA.values():
            served.setdefault(self.adapter_for(spectrum), spectrum)
        return served

    def network_label(self, spectrum: str) -> str:
        name = self.adapter_for(spectrum)
        return "base model (no adapter)" if name is None else f"adapter {self.adapter_dirs[name].name!r} ({name})"

    def threshold(self, spectrum: str, far: str) -> Threshold:
        return self.calibrations[self.adapter_for(spectrum)].threshold(spectrum, far)

    @contextmanager
    def _network(self, spectrum: str) -> Iterator[Any]:
        name = self.adapter_for(spectrum)
        with self._lock:
            if not self.adapter_dirs:
                yield self.model
            elif name is None:
                with self.model.disable_adapter():
                    yield self.model
            else:
                self.model.set_adapter(name)
                yield self.model

    def _fingerprint(self, spectrum: str) -> dict:
        """The gallery fingerprint (base weights, adapter weights) of the network that serves `spectrum`."""
        from hfr_hf.gallery import Embedder

        with self._network(spectrum) as network:
            fingerprint = Embedder(network, self.processor).fingerprint
        # under disable_adapter PEFT still names the last active adapter, but the base network has none
        return fingerprint if self.adapter_for(spectrum) is not None else {**fingerprint, "adapter": ""}

    def embed(self, crops: Sequence[np.ndarray], spectrum: str) -> np.ndarray:
        """(N, 512) L2-normalised embeddings of aligned crops, all through the network that serves `spectrum`
        (the visible reference too: one network for both sides of a comparison)."""
        from hfr_hf.inference import embed_images

        with self._network(spectrum) as network:  # embed_images runs under torch.inference_mode
            return embed_images(network, self.processor, list(crops), progress=False)

    # -- alignment

    def align(self, image: Any, points: str | np.ndarray | None = None, role: str = "image") -> AlignedInput:
        """Align one upload: from the given landmarks (in the uploaded image's pixels), else by detection; a
        112×112 image without a detectable face is taken as an already aligned crop if it passes the face check of
        the aligner's detector (not blank, O-Net score at its threshold), else refused."""
        from hfr_hf.alignment import AlignmentError

        rgb, scale = read_image(image)
        landmarks = parse_points(points) if isinstance(points, (str, type(None))) else _point_array(points)
        if landmarks is not None:
            try:
                face = self.aligner.from_landmarks(rgb, landmarks.reshape(-1, 2) * scale)
            except AlignmentError as error:
                raise SpaceError(f"The {role} landmarks cannot align a face: {error}") from None
            how = "two eye centres" if len(landmarks.reshape(-1, 2)) == 2 else "five given landmarks"
            return AlignedInput(face.crop, how)
        try:
            face = self.aligner.align(rgb)[0]
            spectrum = face.extra.get("spectrum", "visible")
            detector = "" if spectrum == "visible" else f", {spectrum} detector"
            return AlignedInput(face.crop, f"detected (confidence {face.score:.2f}{detector})")
        except AlignmentError:
            if rgb.shape[:2] != (self.aligner.image_size, self.aligner.image_size):
                raise NoFaceError(role) from None
        try:  # a crop-sized upload counts as an aligned crop only if it holds a face
            score = self.aligner.check_crop(rgb)
        except AlignmentError as error:
            raise SpaceError(
                f"The {role} is {rgb.shape[1]}×{rgb.shape[0]} but is not taken as an aligned face crop: "
                f"{str(error)[0].lower()}{str(error)[1:]} Click the two eye centres on it (the image-left eye first) "
                "if it holds a face, then run again."
            ) from None
        return AlignedInput(rgb, f"taken as an aligned crop (face score {score:.2f})")

    # -- tasks

    def verify(
        self,
        reference: Any,
        probe: Any,
        spectrum: str = "vis",
        far: str = "1e-2",
        reference_points: str | None = None,
        probe_points: str | None = None,
    ) -> VerifyResult:
        """Compare a visible reference with a probe of `spectrum`; decide at the threshold for FAR `far`."""
        _check_choice(spectrum, SPECTRA.values(), "spectrum")
        _check_choice(far, FARS.values(), "FAR")
        start = time.perf_counter()
        aligned, missing = [], []
        for image, points, role in ((reference, reference_points, "reference"), (probe, probe_points, "probe")):
            try:
                aligned.append(self.align(image, points, role))
            except NoFaceError:
                missing.append(role)
        if missing:
            raise NoFaceError(*missing)
        ref, prb = aligned
        aligned = time.perf_counter()
        embeddings = self.embed([ref.crop, prb.crop], spectrum)
        embedded = time.perf_counter()
        score = float(embeddings[0] @ embeddings[1])
        threshold = self.threshold(spectrum, far)
        return VerifyResult(
            ref,
            prb,
            score,
            threshold,
            score >= threshold.value,
            self.network_label(spectrum),
            {"align_s": aligned - start, "embed_s": embedded - aligned},
        )

    def enrol(self, images: Sequence[Any], names: Sequence[str] | None = None) -> tuple[EnrolledGallery, list[str]]:
        """Align gallery images (visible light) and embed them once per network (see `embed_gallery`). Names: one
        per image in order; missing ones come from the file name (`alice_2.jpg` → `alice`). Returns the gallery and
        one readable line per image that was skipped."""
        images = [i for i in images or [] if i is not None]
        if not images:
            raise SpaceError("Add at least one gallery image (one or more photos per person).")
        if len(images) > MAX_GALLERY:
            raise SpaceError(f"The gallery takes up to {MAX_GALLERY} images; {len(images)} were given.")
        names = [n.strip() for n in names or [] if n.strip()]
        if len(names) > len(images):
            raise SpaceError(f"{len(names)} names were given for {len(images)} images; give at most one per image.")
        entries, skipped = [], []
        for index, image in enumerate(images):
            label = Path(image).name if isinstance(image, (str, os.PathLike)) else f"image {index + 1}"
            name = names[index] if index < len(names) else _name_from_file(image, index)
            try:
                face = self.align(image, role=f"gallery ({label})")
            except SpaceError as error:
                skipped.append(f"{label}: {error}")
                continue
            entries.append(GalleryEntry(name, face.crop, face.how, label))
        if not entries:
            raise SpaceError("No gallery image could be used: " + " ".join(skipped))
        return self.embed_gallery(entries), skipped

    def embed_gallery(self, entries: Sequence[GalleryEntry]) -> EnrolledGallery:
        """The entries' crops embedded by every network this Space serves, each into an in-memory gallery."""
        from hfr_hf.gallery import Gallery

        names, sources = [e.name for e in entries], [e.source or e.name for e in entries]
        galleries = {}
        for network, spectrum in self.networks().items():
            vectors = self.embed([e.crop for e in entries], spectrum)
            fingerprint = self.fingerprints[network]
            empty = Gallery.in_memory(fingerprint, vectors.shape[1], fusion="max")
            galleries[network] = empty.add(names, sources, vectors, fingerprint, spectrum="visible")
        return EnrolledGallery(entries, galleries)

    def identify(
        self, gallery: EnrolledGallery, probe: AlignedInput, spectrum: str = "vis", far: str = "1e-2"
    ) -> tuple[list[Match], Threshold]:
        """Rank the enrolled people by their best score against the probe (max over each person's images): the
        probe alone is embedded, and searched in the gallery that the network serving `spectrum` enrolled."""
        _check_choice(spectrum, SPECTRA.values(), "spectrum")
        _check_choice(far, FARS.values(), "FAR")
        if not gallery:
            raise SpaceError("The gallery is empty: enrol some images first.")
        if not isinstance(gallery, EnrolledGallery):
            raise TypeError(f"identify takes the EnrolledGallery that enrol returns, not {type(gallery).__name__}.")
        network = self.adapter_for(spectrum)
        store, threshold = gallery.galleries[network], self.threshold(spectrum, far)
        people = store.identities()
        probe_vector = self.embed([probe.crop], spectrum)
        found = store.search(probe_vector, self.fingerprints[network], len(people), "max", threshold.value)[0]
        matches = [
            Match(rank, c.identity, c.score, people[c.identity], c.score >= threshold.value)
            for rank, c in enumerate(found.candidates, start=1)
        ]
        return matches, threshold

    def describe(self) -> str:
        """Markdown: what this Space runs."""
        lines = [f"**Model** `{self.model_name}`."]
        if not self.adapter_dirs:
            lines.append("**No spectrum adapter loaded**: every spectrum (visible, NIR, thermal) uses the base model.")
        else:
            for key, folder in self.adapter_dirs.items():
                serves = "every spectrum" if key == ALL_SPECTRA else f"{key} probes"
                lines.append(f"**Adapter** `{folder}` serves {serves} (both images of a comparison).")
            missing = [label for label, key in SPECTRA.items() if self.adapter_for(key) is None]
            if missing:
                text = ", ".join(missing)
                lines.append(f"{text[0].upper()}{text[1:]} probes use the base model.")
        calibrated = {str(c.source) for c in self.calibrations.values() if c.calibrated}
        lines.append(
            f"**Thresholds** from {', '.join(f'`{s}`' for s in sorted(calibrated))}."
            if calibrated
            else f"**Thresholds uncalibrated** (no report.json): FAR 1 % → {FALLBACK_THRESHOLDS['1e-2']}, "
            f"FAR 0.1 % → {FALLBACK_THRESHOLDS['1e-3']}, measured for the frozen EdgeFace-XXS on visible faces."
        )
        return "  \n".join(lines)


def _check_choice(value: str, allowed, what: str) -> None:
    if value not in allowed:
        raise SpaceError(f"Unknown {what} {value!r}; choose one of {', '.join(allowed)}.")


def _name_from_file(image: Any, index: int) -> str:
    if not isinstance(image, (str, os.PathLike)):
        return f"person {index + 1}"
    stem = Path(image).stem
    return re.sub(r"[_\-\s]*\d+$", "", stem) or stem
