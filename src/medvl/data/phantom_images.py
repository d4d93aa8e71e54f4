"""Drawing the phantom images: coarse synthetic X-ray, CT and MRI scenes with bright round lesions.

The images are meant for a *tiny* Qwen-VL model trained on CPU, whose vision tower sees one token
per 28x28 pixels. Every fact a question asks about is therefore drawn big and with strong contrast:

* **modality** is a global texture. X-ray: light background, dark lung fields crossed by bright,
  rib-like horizontal bands, fine grain. CT: black background, a flat mid-gray body cross-section
  inside a bright ring (skin/bone), grainy noise. MRI: dark background, a body with a smooth
  intensity gradient (bias field), a dark rim, bright elongated fluid areas and blotchy speckle.
* **organ** is a layout. Lung: two tall dark fields beside a midline mediastinum. Liver: one large
  blob, bigger on the patient's right. Brain: a large oval with folds near its edge and two central
  ventricles. Kidney: two bean shapes beside the spine.
* **lesions** are round discs painted at :data:`LESION_LEVEL` (~247/255), as in a narrow display
  window where only enhancing lesions saturate: the anatomy is drawn on a 0..:data:`WINDOW_TOP`
  scale and shown in the band :data:`DISPLAY_LOW`..:data:`DISPLAY_TOP` (92-117/255), just below
  the vision encoder's normalisation mean (0.41-0.48 per channel for Qwen2/2.5-VL, 0.5 for
  Qwen3-VL). This is what a random-weight vision tower can see. Its patch embedding is linear
  without bias and every block layer-normalises its input, so a flat patch's token keeps the
  *direction* of its normalised pixel values and loses their size: a flat bright patch and a flat
  light-gray one look alike. Lesions normalise positive in every channel; no background pixel
  does (all lie below the red mean). Inside the band, CLIP's unequal channel means turn each gray
  level into a different direction, so anatomy and modality stay visible too. Measured on tiny
  Qwen2-VL, stage 1 then stage 2 (the demo's recipes), greedy test accuracy: with the former light
  background (up to 209/255) presence 0.57, modality 0.96; with all anatomy in 0-102/255,
  presence 1.00 but modality 0.33; with this band, presence 1.00 and modality 0.89. Radii are
  absolute: ~8-9 px ("small", about one 28 px token across) or ~15-18 px ("large", about four
  tokens), whatever the image size.
* **side** follows the radiological convention: the patient's right is on the image's left, so a
  "left" lesion lies in the right half of the image (:data:`IMAGE_HALF_OF_SIDE`). Lesions are kept
  clear of the vertical midline so that the half is never ambiguous.

All randomness comes from the ``numpy.random.Generator`` passed in, so a scene rendered twice with
equally seeded generators gives identical pixels, and :func:`encode_png` writes no metadata.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

LESION_LEVEL = 0.97
#: Top of the scale the anatomy is drawn on, and the gray band it is displayed in.
WINDOW_TOP = 0.82
DISPLAY_LOW = 0.36
DISPLAY_TOP = 0.46
#: The brightest any non-lesion pixel can be.
BACKGROUND_MAX = DISPLAY_TOP
MODALITY_ORGANS: dict[str, tuple[str, ...]] = {
    "X-ray": ("lung",),
    "CT": ("lung", "liver", "kidney", "brain"),
    "MRI": ("brain", "liver", "kidney"),
}
IMAGE_HALF_OF_SIDE = {"right": "left", "left": "right"}
# Multiples of 28 (one merged vision token per 28x28 px) and a few others to exercise resizing.
ALIGNED_SIZES = (
    (112, 112),
    (140, 112),
    (112, 140),
    (168, 140),
    (168, 168),
    (196, 168),
    (224, 196),
    (224, 224),
)
ODD_SIZES = ((96, 80), (120, 100), (150, 130), (200, 180))
MIN_SIDE = 56
SIZE_RADIUS = {"small": 8.5, "large": 16.0}

# Where lesion centres may fall, per organ and patient side: (centre u, centre v, radius u,
# radius v) as fractions of the image width and height. Patient right = image left.
LESION_ZONES: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "lung": {"right": (0.30, 0.50, 0.12, 0.26), "left": (0.70, 0.50, 0.12, 0.26)},
    "liver": {"right": (0.30, 0.48, 0.15, 0.18), "left": (0.66, 0.42, 0.11, 0.16)},
    "brain": {"right": (0.33, 0.50, 0.13, 0.28), "left": (0.67, 0.50, 0.13, 0.28)},
    "kidney": {"right": (0.29, 0.55, 0.08, 0.19), "left": (0.71, 0.55, 0.08, 0.19)},
}


@dataclass(frozen=True)
class Lesion:
    """One round lesion: centre and radius in pixels, and the patient side it lies on."""

    x: float
    y: float
    r: float
    side: str


@dataclass(frozen=True)
class Scene:
    """Everything that determines an image apart from the texture noise."""

    modality: str
    organ: str
    width: int
    height: int
    lesions: tuple[Lesion, ...]


class _Canvas:
    """Pixel (x, y) and normalised (u, v) coordinate grids for one image size."""

    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        xs = np.arange(width, dtype=np.float32) + 0.5
        ys = np.arange(height, dtype=np.float32) + 0.5
        self.x, self.y = np.meshgrid(xs, ys)
        self.u, self.v = self.x / width, self.y / height

    def ellipse(self, cu: float, cv: float, ru: float, rv: float, edge: float = 1.5) -> np.ndarray:
        """A soft-edged filled ellipse mask in [0, 1] (normalised centre and radii)."""
        d = np.hypot((self.u - cu) / ru, (self.v - cv) / rv)
        scale = min(ru * self.w, rv * self.h) / edge
        return np.clip((1.0 - d) * scale + 0.5, 0.0, 1.0)

    def disc(self, x: float, y: float, r: float, edge: float = 1.0) -> np.ndarray:
        """A soft-edged disc mask in [0, 1], round in pixels (pixel centre and radius)."""
        return np.clip((r - np.hypot(self.x - x, self.y - y)) / edge + 0.5, 0.0, 1.0)

    def smooth_noise(self, rng: np.random.Generator, cell: int) -> np.ndarray:
        """Unit-variance-ish noise that varies over ``cell`` pixels (bilinear upsampling)."""
        low = rng.standard_normal((self.h // cell + 2, self.w // cell + 2)).astype(np.float32)
        image = Image.fromarray(low).resize((self.w, self.h), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32)


def _paint(img: np.ndarray, mask: np.ndarray, value: float | np.ndarray) -> None:
    """Blend ``value`` into ``img`` in place where ``mask`` is 1."""
    img += mask * (value - img)


# Intensities per modality for the organ layouts shared by CT and MRI.
_PALETTES: dict[str, dict[str, float]] = {
    "CT": {
        "tissue": 0.42,
        "organ": 0.58,
        "air": 0.06,
        "fluid": 0.20,
        "bone": 0.78,
        "hilum": 0.30,
        "folds": 0.03,
    },
    "MRI": {
        "tissue": 0.32,
        "organ": 0.58,
        "air": 0.05,
        "fluid": 0.78,
        "bone": 0.22,
        "hilum": 0.74,
        "folds": 0.10,
    },
}


def _draw_lung(c: _Canvas, img: np.ndarray, pal: dict[str, float]) -> None:
    for cu in (0.30, 0.70):
        _paint(img, c.ellipse(cu, 0.50, 0.16, 0.30), pal["air"])
    _paint(img, c.ellipse(0.54, 0.62, 0.10, 0.12), pal["organ"])  # heart, toward patient left
    _paint(img, c.ellipse(0.50, 0.86, 0.05, 0.045), pal["bone"])  # vertebra


def _draw_liver(c: _Canvas, img: np.ndarray, pal: dict[str, float]) -> None:
    _paint(img, c.ellipse(0.45, 0.44, 0.32, 0.24), pal["organ"])
    _paint(img, c.ellipse(0.31, 0.56, 0.17, 0.18), pal["organ"])  # large right lobe
    _paint(img, c.ellipse(0.50, 0.64, 0.03, 0.07), pal["fluid"])  # gallbladder
    _paint(img, c.ellipse(0.50, 0.84, 0.05, 0.045), pal["bone"])


def _draw_kidney(c: _Canvas, img: np.ndarray, pal: dict[str, float]) -> None:
    for cu, medial in ((0.29, 1.0), (0.71, -1.0)):
        _paint(img, c.ellipse(cu, 0.55, 0.10, 0.18), pal["organ"])
        _paint(img, c.ellipse(cu + medial * 0.075, 0.55, 0.035, 0.06), pal["hilum"])
    _paint(img, c.ellipse(0.50, 0.62, 0.06, 0.06), pal["bone"])


def _draw_brain(c: _Canvas, img: np.ndarray, pal: dict[str, float]) -> None:
    brain = c.ellipse(0.50, 0.50, 0.34, 0.40)
    d = np.hypot((c.u - 0.5) / 0.34, (c.v - 0.5) / 0.40)
    theta = np.arctan2(c.v - 0.5, c.u - 0.5)
    cortex = np.clip((d - 0.55) * 5.0, 0.0, 1.0) * brain
    folds = pal["folds"] * np.sin(16.0 * theta + 4.0 * np.sin(9.0 * d)) * cortex
    _paint(img, brain, pal["organ"] - 0.08)
    img += folds
    for cu in (0.45, 0.55):
        _paint(img, c.ellipse(cu, 0.48, 0.03, 0.11), pal["fluid"])  # ventricles


_ORGAN_DRAWERS = {
    "lung": _draw_lung,
    "liver": _draw_liver,
    "kidney": _draw_kidney,
    "brain": _draw_brain,
}


def _xray(c: _Canvas, organ: str, rng: np.random.Generator) -> np.ndarray:
    if organ != "lung":
        raise ValueError(f"the X-ray phantom only draws the chest, not {organ!r}")
    img = (0.60 + 0.08 * (c.v - 0.5)).astype(np.float32)
    body = c.ellipse(0.50, 0.56, 0.47, 0.56, edge=3.0)
    _paint(img, body, 0.64)
    for cu in (0.30, 0.70):
        _paint(img, c.ellipse(cu, 0.50, 0.17, 0.33, edge=2.5), 0.16)
    _paint(img, c.ellipse(0.50, 0.55, 0.07, 0.38), 0.72)  # mediastinum
    _paint(img, c.ellipse(0.54, 0.70, 0.09, 0.11), 0.70)  # heart, toward patient left
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (7.0 * c.v + 0.12 * np.sin(np.pi * c.u)))
    img += 0.14 * np.clip((wave - 0.65) * 5.0, 0.0, 1.0) * body  # ribs
    img += 0.02 * rng.standard_normal(img.shape, dtype=np.float32)
    return img


def _ct(c: _Canvas, organ: str, rng: np.random.Generator) -> np.ndarray:
    pal = _PALETTES["CT"]
    img = np.full((c.h, c.w), 0.03, dtype=np.float32)
    ru, rv, ring = (0.40, 0.45, 0.06) if organ == "brain" else (0.46, 0.40, 0.035)
    _paint(img, c.ellipse(0.50, 0.50, ru, rv), pal["bone"])
    _paint(img, c.ellipse(0.50, 0.50, ru - ring, rv - ring), pal["tissue"])
    _ORGAN_DRAWERS[organ](c, img, pal)
    img += 0.035 * rng.standard_normal(img.shape, dtype=np.float32)
    return img


def _mri(c: _Canvas, organ: str, rng: np.random.Generator) -> np.ndarray:
    pal = _PALETTES["MRI"]
    angle = rng.uniform(0.0, 2 * np.pi)
    bias = 0.8 + 0.45 * ((c.u - 0.5) * np.cos(angle) + (c.v - 0.5) * np.sin(angle))
    img = np.full((c.h, c.w), 0.05, dtype=np.float32)
    ru, rv = (0.40, 0.46) if organ == "brain" else (0.46, 0.40)
    _paint(img, c.ellipse(0.50, 0.50, ru, rv, edge=4.0), 0.12)  # dark rim
    _paint(img, c.ellipse(0.50, 0.50, ru - 0.03, rv - 0.03, edge=3.0), pal["tissue"])
    _ORGAN_DRAWERS[organ](c, img, pal)
    img *= bias * (1.0 + 0.15 * c.smooth_noise(rng, 3))
    img += np.abs(0.03 * rng.standard_normal(img.shape, dtype=np.float32))
    return img


_MODALITY_DRAWERS = {"X-ray": _xray, "CT": _ct, "MRI": _mri}


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Draw ``scene`` as an ``(height, width, 3)`` uint8 grayscale-in-RGB array."""
    if scene.organ not in MODALITY_ORGANS.get(scene.modality, ()):
        raise ValueError(f"no {scene.modality} phantom of the {scene.organ}")
    c = _Canvas(scene.width, scene.height)
    img = _MODALITY_DRAWERS[scene.modality](c, scene.organ, rng)
    np.clip(img, 0.0, WINDOW_TOP, out=img)
    img = DISPLAY_LOW + (DISPLAY_TOP - DISPLAY_LOW) * (img / WINDOW_TOP)
    for lesion in scene.lesions:
        level = LESION_LEVEL + 0.01 * rng.standard_normal(img.shape, dtype=np.float32)
        _paint(img, c.disc(lesion.x, lesion.y, lesion.r), level)
    gray = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes for a uint8 array, with no metadata chunks (so equal pixels give equal bytes).

    Compression level 1: the noise textures barely compress better at higher levels, which cost
    three times the time.
    """
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def lesion_radius(size: str, rng: np.random.Generator) -> float:
    """Radius in pixels: "small" 8.1-9.4 px, "large" 15.2-17.6 px, whatever the image size.

    Absolute sizes (like millimetres) because Qwen-VL sees images near their native resolution,
    and relative sizes could not separate the classes over a 2.3x range of image sizes.
    """
    return round(SIZE_RADIUS[size] * rng.uniform(0.95, 1.1), 1)


def _fits(x: float, y: float, r: float, width: int, height: int, placed: Sequence[Lesion]) -> bool:
    if not (r + 1 <= x <= width - r - 1 and r + 1 <= y <= height - r - 1):
        return False
    if abs(x - width / 2) < r + 2:  # keep clear of the midline: the half must be unambiguous
        return False
    return all(np.hypot(x - o.x, y - o.y) >= r + o.r + 3 for o in placed)


def place_lesions(
    organ: str,
    width: int,
    height: int,
    sides: Sequence[str],
    size: str,
    rng: np.random.Generator,
    tries: int = 60,
) -> tuple[Lesion, ...] | None:
    """Place one non-overlapping lesion per entry of ``sides``; ``None`` if they do not fit."""
    for _ in range(tries):
        placed: list[Lesion] = []
        for side in sides:
            cu, cv, ru, rv = LESION_ZONES[organ][side]
            r = lesion_radius(size, rng)
            for _ in range(tries):
                a, t = rng.uniform(0.0, 2 * np.pi), np.sqrt(rng.uniform(0.0, 1.0))
                x = round(float((cu + ru * t * np.cos(a)) * width), 1)
                y = round(float((cv + rv * t * np.sin(a)) * height), 1)
                if _fits(x, y, r, width, height, placed):
                    placed.append(Lesion(x, y, r, side))
                    break
            else:
                break
        if len(placed) == len(sides):
            return tuple(placed)
    return None


def sizes_from(width: int, height: int) -> list[tuple[int, int]]:
    """The given size, then every known size with a longer short side (fallbacks when crowded)."""
    short = min(width, height)
    bigger = sorted((s for s in ALIGNED_SIZES + ODD_SIZES if min(s) > short), key=min)
    return [(width, height), *bigger]
