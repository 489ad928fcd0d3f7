"""Pseudo-spectral renderers: aligned visible/grey face crops → long-wave thermal or NIR look-alikes.

Real cross-spectral sets are licence-gated, so development pairs are rendered. The renderers model what the
sensor sees, not what makes a benchmark easy (see DESIGN.md, "Pseudo-spectral data"):

- `ThermalRenderer` (LWIR, 8–14 µm): emitted heat, not reflected light. Skin is warm and almost textureless;
  the inner eye corners (canthi) are the hottest points; nose tip, cheeks and ears are cooler; hair is cool;
  the background and glasses (glass is opaque in LWIR) are cold. The camera is low resolution, blurry and
  noisy (temporal noise plus microbolometer column stripes), auto-gains the scene and is often viewed
  through a false-colour palette.
- `NIRRenderer` (active ~850 nm): grey; skin reflects NIR strongly and evenly (low melanin absorption, more
  sub-surface scattering: lower skin-texture contrast); the on-camera illuminator falls off with distance
  from the optical axis, leaves specular highlights (corneal glints, nose tip, forehead); irises are dark.

Both work on crops aligned to the 112×112 ArcFace template (`hfr_hf.alignment.ARCFACE_TEMPLATE`): the
template fixes where eyes, nose and mouth are; a simple segmentation from intensity and position tells skin
from hair and background. Everything a real sensor varies (heat-pattern pose and strength, resolution,
blur, gain, contrast, noise, palette) is drawn from a seed, so a render is reproducible and seeds differ.
Renders are synthetic; every dataset row built from them says so (`synthetic=True`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..alignment import ARCFACE_TEMPLATE

__all__ = [
    "PALETTES",
    "NIRRenderer",
    "ThermalRenderer",
    "apply_palette",
    "face_regions",
    "get_renderer",
    "glasses_score",
    "to_uint8_rgb",
]

SIZE = 112
_EYE_L, _EYE_R, _NOSE, _MOUTH_L, _MOUTH_R = (ARCFACE_TEMPLATE[i] for i in range(5))
_MOUTH = (_MOUTH_L + _MOUTH_R) / 2

# False-colour palettes as control points (position, RGB); interpolated to 256-entry lookup tables.
_PALETTE_POINTS: dict[str, list[tuple[float, tuple[int, int, int]]]] = {
    "white_hot": [(0.0, (0, 0, 0)), (1.0, (255, 255, 255))],
    "black_hot": [(0.0, (255, 255, 255)), (1.0, (0, 0, 0))],
    # FLIR-style "ironbow": black, deep blue-violet, magenta, red, orange, yellow, white.
    "iron": [
        (0.0, (0, 0, 0)),
        (0.15, (32, 0, 120)),
        (0.35, (140, 0, 150)),
        (0.55, (220, 50, 40)),
        (0.75, (250, 150, 0)),
        (0.9, (255, 225, 60)),
        (1.0, (255, 255, 230)),
    ],
    # matplotlib's "inferno", sampled every 1/8.
    "inferno": [
        (0.0, (0, 0, 4)),
        (0.125, (31, 12, 72)),
        (0.25, (85, 15, 109)),
        (0.375, (136, 34, 106)),
        (0.5, (186, 54, 85)),
        (0.625, (227, 89, 51)),
        (0.75, (249, 140, 10)),
        (0.875, (249, 201, 50)),
        (1.0, (252, 255, 164)),
    ],
}


def _lut(points: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    x = np.linspace(0.0, 1.0, 256)
    positions = [p for p, _ in points]
    channels = [np.interp(x, positions, [c[k] for _, c in points]) for k in range(3)]
    return np.stack(channels, -1).round().astype(np.uint8)


PALETTES: dict[str, np.ndarray] = {name: _lut(points) for name, points in _PALETTE_POINTS.items()}

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def apply_palette(grey: np.ndarray, palette: str = "white_hot") -> np.ndarray:
    """(H, W) uint8 intensities (hot = high) through a named palette → (H, W, 3) uint8 RGB."""
    if palette not in PALETTES:
        raise ValueError(f"Unknown palette {palette!r}; choose one of {', '.join(PALETTES)}.")
    return PALETTES[palette][grey]


def to_uint8_rgb(image: Any) -> np.ndarray:
    """A PIL image or numpy array (grey, RGB, RGBA; uint8) as (H, W, 3) uint8 RGB."""
    if hasattr(image, "convert"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"Renderers take 8-bit images, got dtype {array.dtype}; convert it to uint8 first.")
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        return np.repeat(array, 3, -1)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return np.ascontiguousarray(array[..., :3])
    raise ValueError(f"Expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {array.shape}.")


def _prepare(image: Any) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crop → (RGB float [0, 1], luminance float [0, 1]) at 112×112."""
    rgb = to_uint8_rgb(image)
    if rgb.shape[:2] != (SIZE, SIZE):  # renderers assume the 112×112 template geometry
        rgb = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    rgb_f = rgb.astype(np.float32) / 255.0
    luminance = rgb_f @ np.array([0.299, 0.587, 0.114], np.float32)
    return rgb_f, luminance


def _gauss(cx: float, cy: float, sx: float, sy: float | None = None) -> np.ndarray:
    sy = sx if sy is None else sy
    axis = np.arange(SIZE, dtype=np.float32)
    # separable: an outer product of two 1-d profiles is ~50× cheaper than a 2-d exp
    return np.outer(np.exp(-0.5 * ((axis - cy) / sy) ** 2), np.exp(-0.5 * ((axis - cx) / sx) ** 2))


def _ellipse(cx: float, cy: float, ax: float, ay: float, softness: float = 0.12) -> np.ndarray:
    """Soft elliptical mask: 1 inside, 0 outside, a logistic edge `softness` (in radii) wide."""
    r = np.sqrt(((_XX - cx) / ax) ** 2 + ((_YY - cy) / ay) ** 2)
    return 1.0 / (1.0 + np.exp(np.minimum((r - 1.0) / softness, 50.0)))


# Priors in template coordinates: inner face (eyes, brows, nose, mouth: skin whatever its intensity), the
# face oval (skin where the intensity agrees), the head (hair where darker than skin).
_INNER = _ellipse(56.0, 72.0, 31.0, 38.0, 0.08)
_FACE = _ellipse(56.0, 64.0, 46.0, 60.0, 0.1)
_HEAD = _ellipse(56.0, 50.0, 60.0, 66.0, 0.1)
_REFERENCE = (  # cheeks and nose: skin in nearly every aligned face
    (slice(66, 80), slice(30, 44)),
    (slice(66, 80), slice(68, 82)),
    (slice(58, 70), slice(51, 61)),
)


@dataclass
class FaceRegions:
    """Soft (112, 112) maps in [0, 1]: skin, hair (skin + hair ≤ 1; the rest is background)."""

    skin: np.ndarray
    hair: np.ndarray
    skin_level: float  # median luminance of the reference skin patches

    @property
    def background(self) -> np.ndarray:
        return np.clip(1.0 - self.skin - self.hair, 0.0, 1.0)


def face_regions(image: Any) -> FaceRegions:
    """Skin / hair / background of an aligned crop from intensity (and colour) plus template position.

    Skin statistics come from the cheeks and nose; a pixel is skin when it lies in the inner face, or in the
    face oval with skin-like intensity; hair is a non-skin pixel of the head darker than skin. Simple, and
    wrong for e.g. blond hair (taken for skin) or a backdrop of skin colour; that is the price of honesty.
    """
    rgb, luminance = _prepare(image)
    smooth = cv2.GaussianBlur(luminance, (0, 0), 1.5)
    reference = np.concatenate([smooth[r].ravel() for r in _REFERENCE])
    level = float(np.median(reference))
    spread = max(float(np.median(np.abs(reference - level))) * 1.4826, 0.03)
    distance = ((smooth - level) / (2.5 * spread)) ** 2
    if rgb[..., 0].std() > 1e-3 and not (np.allclose(rgb[..., 0], rgb[..., 1], atol=2 / 255)):
        # colour: chroma distance to the skin reference as well (hair and backdrops differ in hue)
        chroma = rgb - luminance[..., None]
        chroma = cv2.GaussianBlur(chroma, (0, 0), 1.5)
        ref_chroma = np.median(np.concatenate([chroma[r].reshape(-1, 3) for r in _REFERENCE]), 0)
        distance = distance + (np.linalg.norm(chroma - ref_chroma, axis=-1) / 0.06) ** 2
    skin_like = np.exp(-0.5 * distance)
    skin = np.maximum(_INNER, _FACE * skin_like)
    skin = cv2.GaussianBlur(skin, (0, 0), 1.0)  # heat diffuses: no pixel-sharp skin boundary
    darker = 1.0 / (1.0 + np.exp(-((level - smooth) / spread - 1.5) * 2.0))
    hair = (1.0 - skin) * _HEAD * darker
    return FaceRegions(skin.astype(np.float32), hair.astype(np.float32), level)


def _valley(profile: np.ndarray, width: int = 5) -> float:
    """Depth of the deepest thin dark line in a 1-d profile (how far it lies below both sides)."""
    best = 0.0
    for i in range(width, len(profile) - width):
        sides = min(profile[i - width : i].max(), profile[i + 1 : i + 1 + width].max())
        best = max(best, float(sides - profile[i]))
    return best


def glasses_score(image: Any) -> float:
    """Evidence of spectacles on an aligned crop: thin dark lines where frames run (the bridge between the
    eyes, the lower rims, the outer edges of the lenses), relative to the skin level. Above ~0.33 means
    glasses; on the AT&T + Yale faces this is right for 62 of 70 (8 errors, mostly thin rimless frames
    missed), so pass `glasses=` explicitly when the data says so."""
    _, luminance = _prepare(image)
    smooth = cv2.GaussianBlur(luminance, (0, 0), 0.8)
    level = max(float(np.median(np.concatenate([smooth[r].ravel() for r in _REFERENCE]))), 0.05)
    bridge = _valley(smooth[38:60, 52:61].mean(1))
    rims = np.mean([_valley(smooth[54:74, int(x) - 8 : int(x) + 8].mean(1)) for x in (_EYE_L[0], _EYE_R[0])])
    sides = np.mean([_valley(smooth[46:58, a:b].mean(0)) for a, b in ((14, 30), (82, 98))])
    return float((bridge + 1.5 * rims + 1.5 * sides) / level)


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _pick(rng: np.random.Generator, choices: dict[str, float]) -> str:
    names = list(choices)
    weights = np.array([choices[n] for n in names], np.float64)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _sensor_resolution(image: np.ndarray, factor: float) -> np.ndarray:
    """Sample at a coarser detector pitch and back (a 160×120 or 320×240 core sees a face with few pixels)."""
    if factor <= 1.05:
        return image
    small = max(8, int(round(SIZE / factor)))
    low = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
    return cv2.resize(low, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)


def _zoomed(image: np.ndarray, zoom: float, centre: tuple[float, float], to: tuple[float, float]) -> np.ndarray:
    """The (SIZE, SIZE) image scaled by `zoom` about `centre`, which lands on `to`; the edge pixels carry on
    outwards (black for a segmented render, the background otherwise)."""
    matrix = np.float32([[zoom, 0, to[0] - zoom * centre[0]], [0, zoom, to[1] - zoom * centre[1]]])
    return cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class ThermalRenderer:
    """Long-wave infrared look-alike of an aligned face crop.

    Args:
        palettes: palette name → probability of a render using it (`white_hot`, `black_hot`, `iron`,
            `inferno`); one name for a fixed palette.
        resolution: range of the detector's coarsening factor (1 = full 112 px, 2.5 ≈ a 45 px face).
        blur: range of the optics' Gaussian σ in pixels.
        noise: range of the temporal noise σ (fraction of full scale); column stripes get up to half of it.
        heat_shift: largest shift (pixels) of the heat pattern against the template (pose, alignment error).
        heat_scale: range of the heat pattern's scale about the nose against the template. With `heat_shift`, it
            augments what an adapter sees; where the landmarks are labels (detector training and its measures),
            both are 0 / (1, 1), so that the hot inner eye corners sit where the labelled eyes are.
        texture: range of how much of the visible image's low-frequency shading leaks into skin temperature
            (real skin temperature follows blood flow, not albedo: keep it small).
        features: range of the weight of the face's dark fine structure (brows, lid creases, nostrils, lip line,
            facial hair), taken from the visible image and rendered as cooler lines: real LWIR faces show them
            (hair insulates, creases and nostrils break the skin surface) while skin texture itself is gone.
        glasses_threshold: `glasses_score` above which the eye regions are rendered as cold glass, when the
            caller does not say (`glasses=` in `__call__`).
        background: range of the ambient (background) temperature, relative to skin near 0.8.
        segmented: probability that a render is segmented as prepared sets are (PUJ-T360 / PUJ-FONE: everything
            but the face set to black after the sensor), instead of showing hair and background.
        framing: range of the face's size in the frame relative to the aligned template (1 = the ArcFace crop;
            PUJ's registered crops resized to 112 show the face at about 0.63, centred 5 px higher and 5 px to
            the left); below 1 the render is zoomed out about that centre, its edge carried outwards.
        skin_level: range of the display level of the median skin pixel after the gain (0 = black, 1 = white), or
            None for the level the scene's automatic gain gives (skin near mid-grey, as a camera gained on the
            whole scene shows it). A camera gained on the face (region-of-interest gain, as face thermography and
            PUJ's stored images use: skin median at about 0.86–0.89, the hottest points white, cooler eyes, nose
            and edges spread below) puts skin near the top; the level is set by a gamma, so the hottest point
            stays the hottest and the order of temperatures is kept. The default, (0.84, 0.9), is the face gain:
            measured against the scene gain (None, the earlier default), it brings rendered faces closer to real
            LWIR ones in the frozen model's embeddings and its adapters met every real-thermal target on four seeds
            where the scene gain's missed some (README, "Real thermal faces").
        scale: range of the face's size about the midpoint of the eyes, relative to the aligned template (1 = the
            visible crop's geometry): real LWIR faces aligned by the cross-spectral detector fill more of the crop than
            MTCNN-aligned visible ones (about 1.2: the head's warm outline, temples and jaw included, reaches the
            crop's edges and bottom); above 1 the render is zoomed in.

    Calling it returns (112, 112, 3) uint8 RGB (grey palettes give three equal channels).
    """

    modality = "thermal"

    def __init__(
        self,
        palettes: str | dict[str, float] | None = None,
        resolution: tuple[float, float] = (1.0, 1.8),
        blur: tuple[float, float] = (0.4, 1.1),
        noise: tuple[float, float] = (0.004, 0.016),
        heat_shift: float = 3.0,
        heat_scale: tuple[float, float] = (0.93, 1.07),
        texture: tuple[float, float] = (0.02, 0.08),
        features: tuple[float, float] = (0.15, 0.45),
        glasses_threshold: float = 0.33,
        background: tuple[float, float] = (0.0, 0.3),
        segmented: float = 0.0,
        framing: tuple[float, float] = (1.0, 1.0),
        skin_level: tuple[float, float] | None = (0.84, 0.9),
        scale: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        if palettes is None:
            palettes = {"white_hot": 0.55, "iron": 0.2, "inferno": 0.15, "black_hot": 0.1}
        if isinstance(palettes, str):
            palettes = {palettes: 1.0}
        unknown = sorted(set(palettes) - set(PALETTES))
        if unknown:
            raise ValueError(f"Unknown palette(s) {', '.join(unknown)}; choose from {', '.join(PALETTES)}.")
        self.palettes = dict(palettes)
        self.resolution, self.blur, self.noise = resolution, blur, noise
        self.heat_shift, self.texture, self.glasses_threshold = heat_shift, texture, glasses_threshold
        self.heat_scale = heat_scale
        self.features, self.background, self.segmented, self.framing = features, background, segmented, framing
        self.skin_level, self.scale = skin_level, scale

    def temperature(
        self,
        image: Any,
        seed: int | np.random.Generator | None = None,
        glasses: bool | None = None,
        regions: FaceRegions | None = None,
    ) -> np.ndarray:
        """(112, 112) float32 relative temperature of the scene (0 = coldest, ~1 = hottest), before the
        sensor (no blur, noise, gain or palette). `regions`: `face_regions(image)`, when the caller has it."""
        rng = _rng(seed)
        _, luminance = _prepare(image)
        regions = face_regions(image) if regions is None else regions
        if glasses is None:
            glasses = glasses_score(image) > self.glasses_threshold
        dx, dy = rng.uniform(-self.heat_shift, self.heat_shift, 2)
        s = rng.uniform(*self.heat_scale)  # heat pattern scale about the nose

        def at(point: np.ndarray) -> tuple[float, float]:
            return float(_NOSE[0] + s * (point[0] - _NOSE[0]) + dx), float(_NOSE[1] + s * (point[1] - _NOSE[1]) + dy)

        amp = lambda low, high: rng.uniform(low, high)  # noqa: E731
        skin_t = np.full((SIZE, SIZE), amp(0.78, 0.86), np.float32)
        for eye, inward in ((_EYE_L, +1.0), (_EYE_R, -1.0)):
            ex, ey = at(eye)
            skin_t += amp(0.05, 0.12) * _gauss(ex + inward * 8.0 * s, ey + 1.5, 3.0 * s)  # inner canthus: hottest
            skin_t += amp(0.02, 0.05) * _gauss(ex + inward * 4.0 * s, ey, 9.0 * s, 6.0 * s)  # periorbital warmth
            skin_t -= amp(0.04, 0.10) * _gauss(ex - inward * 2.0 * s, ey, 5.0 * s, 3.0 * s)  # eyeball, cooler
            skin_t -= amp(0.06, 0.16) * _gauss(ex - inward * 16.0 * s, ey + 26.0 * s, 9.0 * s, 10.0 * s)  # cheek
        nx, ny = at(_NOSE)
        skin_t -= amp(0.04, 0.14) * _gauss(nx, ny - 2.0, 5.0 * s, 6.0 * s)  # nose tip: cold extremity
        skin_t -= amp(0.02, 0.06) * _gauss(nx, ny - 12.0, 3.0 * s, 8.0 * s)  # nasal bridge
        mx, my = at(_MOUTH)
        skin_t += amp(0.02, 0.07) * _gauss(mx, my, 12.0 * s, 2.5 * s)  # lips
        skin_t += amp(0.0, 0.05) * _gauss(mx, my - 60.0 * s, 22.0 * s, 10.0 * s)  # forehead (under hair: warm)
        skin_t += amp(0.0, 0.06) * _gauss(mx, SIZE + 8.0, 24.0, 12.0)  # neck/chin below
        # ears and the face's edge: cooler extremities, and emissivity drops at grazing angles
        lateral = np.clip((np.abs(_XX - nx) - 30.0 * s) / 20.0, 0.0, 1.0)
        skin_t -= amp(0.08, 0.18) * lateral
        # facial hair (brows, beard, moustache) insulates: dark low-frequency patches cool the skin under them
        shade = cv2.GaussianBlur(luminance, (0, 0), 2.0)
        dark = np.clip((regions.skin_level - shade) / max(regions.skin_level, 0.05), 0.0, 1.0)
        hairy_zones = _gauss(56.0, 40.0, 30.0, 5.0) + _gauss(56.0, 100.0, 26.0, 10.0) * (1 - _gauss(mx, my, 10, 3))
        skin_t -= amp(0.05, 0.2) * dark * np.clip(hairy_zones, 0.0, 1.0)
        # a trace of the visible shading: real thermal faces keep some of the 3-D shape (vessels, folds)
        skin_t += amp(*self.texture) * (cv2.GaussianBlur(luminance, (0, 0), 3.0) - regions.skin_level)
        # dark fine structure (brows, lid creases, nostrils, lip line, stubble) shows as cooler lines; bright
        # detail (specular highlights, skin pores) has no thermal counterpart and is dropped
        detail = cv2.GaussianBlur(luminance, (0, 0), 1.0) - cv2.GaussianBlur(luminance, (0, 0), 5.0)
        skin_t += amp(*self.features) * np.minimum(detail, 0.0) / max(regions.skin_level, 0.1)

        background_t = amp(*self.background) + amp(-0.05, 0.05) * (_YY / SIZE - 0.5)  # ambient, slight gradient
        hair_t = amp(0.45, 0.62)
        scene = regions.skin * skin_t + regions.hair * hair_t + regions.background * background_t
        if glasses:  # glass is opaque in LWIR: the lenses show the cold reflected surroundings
            lenses = np.zeros((SIZE, SIZE), np.float32)
            for eye in (_EYE_L, _EYE_R):
                lenses = np.maximum(lenses, _ellipse(eye[0], eye[1] + 1.0, 15.0, 11.0, 0.06))
            bar = _ellipse(56.0, 49.0, 5.0, 2.2, 0.2)
            lenses = np.maximum(lenses, bar)
            glass_t = background_t + amp(0.1, 0.25)
            scene = scene * (1 - lenses) + glass_t * lenses
        return cv2.GaussianBlur(scene.astype(np.float32), (0, 0), 0.6)  # lateral heat conduction

    def __call__(
        self,
        image: Any,
        seed: int | np.random.Generator | None = None,
        glasses: bool | None = None,
        palette: str | None = None,
    ) -> np.ndarray:
        """Render one aligned crop; `glasses` overrides the detector, `palette` the random choice."""
        rng = _rng(seed)
        regions = face_regions(image)  # once: the temperature, the face gain and the segmentation all use it
        scene = self.temperature(image, rng, glasses, regions)
        image = _sensor_resolution(scene, rng.uniform(*self.resolution))
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(*self.blur))
        # automatic gain control: stretch between a low percentile of the scene and its hottest point
        low = np.percentile(image, rng.uniform(0.5, 15.0))
        high = image.max() + rng.uniform(0.0, 0.08)
        image = np.clip((image - low) / max(high - low, 1e-3), 0.0, 1.0)
        gamma = rng.uniform(0.75, 1.35)  # drawn even when skin_level overrides it: the later draws stay the same
        if self.skin_level is not None:
            # gain on the face: the gamma that brings the median skin pixel to the drawn display level
            skin = regions.skin > 0.5
            median = float(np.clip(np.median(image[skin]), 0.02, 0.98))
            gamma = np.log(rng.uniform(*self.skin_level)) / np.log(median)
        image = image**gamma
        sigma = rng.uniform(*self.noise)
        image = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
        image = image + rng.normal(0.0, rng.uniform(0.0, sigma / 2), (1, SIZE)).astype(np.float32)  # columns
        name = palette or _pick(rng, self.palettes)
        if self.segmented and rng.random() < self.segmented:  # drawn last: segmented=0 changes no other draw
            face = cv2.GaussianBlur(regions.skin, (0, 0), 0.8) > 0.5
            image = np.where(face, image, 0.0)
        if self.framing != (1.0, 1.0):
            image = _zoomed(image, rng.uniform(*self.framing), (55.0, 62.0), (50.0, 57.0))
        if self.scale != (1.0, 1.0):
            eyes = tuple((_EYE_L + _EYE_R) / 2)
            image = _zoomed(image, rng.uniform(*self.scale), eyes, eyes)
        grey = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return apply_palette(grey, name)


class NIRRenderer:
    """Active near-infrared (~850 nm) look-alike of an aligned face crop: (112, 112, 3) uint8, grey.

    Args:
        texture: range of the factor on skin texture contrast (sub-surface scattering smooths skin in NIR).
        falloff: range of the illuminator's fall-off radius in pixels (smaller = stronger vignetting).
        specular: range of the specular highlight strength.
        iris: range of how much the irises darken.
        blur: range of the Gaussian σ of the optics.
        noise: range of the noise σ (fraction of full scale, shot-noise-like: grows with brightness).
    """

    modality = "nir"

    def __init__(
        self,
        texture: tuple[float, float] = (0.4, 0.75),
        falloff: tuple[float, float] = (45.0, 90.0),
        specular: tuple[float, float] = (0.15, 0.5),
        iris: tuple[float, float] = (0.35, 0.65),
        blur: tuple[float, float] = (0.3, 1.0),
        noise: tuple[float, float] = (0.005, 0.025),
    ) -> None:
        self.texture, self.falloff, self.specular = texture, falloff, specular
        self.iris, self.blur, self.noise = iris, blur, noise

    def __call__(self, image: Any, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Render one aligned crop."""
        rng = _rng(seed)
        rgb, luminance = _prepare(image)
        regions = face_regions(image)
        # NIR sees through melanin: closest to the red channel, where skin is smoothest
        nir = 0.6 * rgb[..., 0] + 0.3 * rgb[..., 1] + 0.1 * rgb[..., 2]
        base = cv2.GaussianBlur(nir, (0, 0), 2.5)
        nir = base + rng.uniform(*self.texture) * (nir - base)
        nir = nir + rng.uniform(0.05, 0.2) * regions.skin * (1.0 - nir)  # skin reflects NIR strongly
        dx, dy = rng.uniform(-1.5, 1.5, 2)
        for eye in (_EYE_L, _EYE_R):
            nir *= 1.0 - rng.uniform(*self.iris) * _gauss(eye[0] + dx, eye[1] + dy, 3.0)
        # the illuminator sits by the lens: irradiance falls off away from the optical axis
        cx, cy = SIZE / 2 + rng.uniform(-6, 6), SIZE / 2 + rng.uniform(-6, 6)
        radius = rng.uniform(*self.falloff)
        nir = nir * (1.0 / (1.0 + ((_XX - cx) ** 2 + (_YY - cy) ** 2) / radius**2))
        strength = rng.uniform(*self.specular)
        gx, gy = rng.uniform(-2.0, 2.0, 2)
        highlights = sum(_gauss(eye[0] + dx + gx, eye[1] + dy + gy, 0.9) for eye in (_EYE_L, _EYE_R))  # glints
        highlights = highlights + 0.5 * _gauss(_NOSE[0] + dx, _NOSE[1] - 3 + dy, 2.5)  # nose tip
        highlights = highlights + 0.25 * _gauss(56 + dx, 22 + dy, 10.0, 5.0) * regions.skin  # forehead
        nir = nir + strength * highlights
        nir = cv2.GaussianBlur(nir.astype(np.float32), (0, 0), rng.uniform(*self.blur))
        gain, contrast = rng.uniform(0.8, 1.3), rng.uniform(0.7, 0.95)
        mean = float(nir.mean())
        nir = (mean + contrast * (nir - mean)) * gain
        sigma = rng.uniform(*self.noise)
        nir = nir + rng.normal(0.0, 1.0, nir.shape).astype(np.float32) * sigma * np.sqrt(np.clip(nir, 0.01, 1.0))
        grey = (np.clip(nir, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(grey[..., None], 3, -1)


RENDERERS: dict[str, type] = {"thermal": ThermalRenderer, "nir": NIRRenderer}


def get_renderer(modality: str | ThermalRenderer | NIRRenderer, **options: Any) -> ThermalRenderer | NIRRenderer:
    """A renderer by modality name (`thermal`, `nir`), or the given renderer unchanged."""
    if not isinstance(modality, str):
        return modality
    if modality not in RENDERERS:
        raise ValueError(f"No renderer for modality {modality!r}; choose one of {', '.join(RENDERERS)}.")
    return RENDERERS[modality](**options)
