"""Drawing the 3-D phantom: small CT/MRI-like volumes with bright spherical lesions.

A volume is an array indexed ``[x, y, z]`` in RAS+ voxel order (x towards the patient's right,
y anterior, z superior), so a NIfTI file with a positive diagonal affine needs no reorientation
and slice ``z = 0`` is the most inferior one. Every volume spans a :data:`FOV_MM` cube:
``size`` x ``size`` pixels of ``FOV_MM / size`` mm in plane and ``slices`` slices of
``FOV_MM / slices`` mm (thick slices, as in a low-dose survey scan).

What a tiny random-weight Qwen-VL can see (the reasons are in :mod:`medvl.data.phantom_images`):
the anatomy lies in a narrow gray band of the display window (:data:`DISPLAY_LOW` ..
:data:`DISPLAY_TOP`, below the vision encoder's normalisation mean) and lesions are the only
bright things (:data:`LESION_LEVEL`). The body is an ellipsoid holding a few organ ellipsoids and
a spine; CT adds fine grain, MRI a smooth bias field and speckle. Each patient has one anatomy
(drawn once, shared by all their volumes, shifted a little per study), which is why a split must
keep a patient's volumes together.

Lesions are spheres of :data:`LESION_RADIUS_MM` (28-36 mm: 7-9 px across at 64 px, about 2
slices of 16 in radius) placed inside the body, all in one half (upper = superior, lower =
inferior) and clear of the middle, so "in which half" always has one answer. Values are drawn in
display units (0..1 of the window) and stored as CT Hounsfield units or MRI signal: stored =
center + (display - 0.5) * width, so the record's window shows exactly the drawn picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medvl.data.phantom_images import DISPLAY_LOW, DISPLAY_TOP, LESION_LEVEL
from medvl.data.windowing import WINDOW_PRESETS, apply_window

FOV_MM = 256.0
LESION_RADIUS_MM = (28.0, 36.0)
LESION_GAP_MM = 12.0
#: Display level halfway between the brightest anatomy and a lesion: only lesions lie above.
BRIGHT_LEVEL = (DISPLAY_TOP + LESION_LEVEL) / 2
MIN_SIZE, MAX_SIZE = 32, 512
MIN_SLICES, MAX_SLICES = 4, 256
#: The window each modality is stored for: CT in Hounsfield units ("abdomen", 40/400 HU), MRI in
#: arbitrary signal units 0..1000.
WINDOWS: dict[str, str | tuple[float, float]] = {"CT": "abdomen", "MRI": (500.0, 1000.0)}
AIR_HU = -1000.0
_MID_GAP_MM = 6.0  # lesions stay this far from the middle plane (the half is never ambiguous)
_EDGE_MM = 16.0  # and this far from the top and bottom of the volume

# Display levels per modality (inside DISPLAY_LOW..DISPLAY_TOP; air and background are 0).
_PALETTES: dict[str, dict[str, float]] = {
    "CT": {"tissue": 0.40, "liver": 0.45, "kidney": 0.44, "spine": 0.46, "fluid": 0.36},
    "MRI": {"tissue": 0.38, "liver": 0.41, "kidney": 0.43, "spine": 0.36, "fluid": 0.45},
}


@dataclass(frozen=True)
class Ellipsoid:
    """Centre and semi-axes as fractions of the field of view, and the display level's name."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    tissue: str


@dataclass(frozen=True)
class Anatomy:
    """One patient's body: the body ellipsoid and the organs inside it (fractions of the FOV)."""

    body: Ellipsoid
    organs: tuple[Ellipsoid, ...]


@dataclass(frozen=True)
class Sphere:
    """One lesion: centre (x, y, z) and radius in millimetres from the volume's corner."""

    centre: tuple[float, float, float]
    radius: float


@dataclass(frozen=True)
class VolumeScene:
    """Everything that determines a volume apart from its noise."""

    modality: str
    size: int
    slices: int
    anatomy: Anatomy
    shift: tuple[float, float, float]  # this study's position offset, fractions of the FOV
    lesions: tuple[Sphere, ...]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along x, y, z."""
        return (FOV_MM / self.size, FOV_MM / self.size, FOV_MM / self.slices)


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """A patient's body and organs with small random variation in size and position."""

    def jitter(value: float, amount: float = 0.03) -> float:
        return float(value + rng.uniform(-amount, amount))

    # The body runs past both ends of the scan (a trunk CT), so no slice is blank.
    body = Ellipsoid((0.5, 0.5, 0.5), (jitter(0.43), jitter(0.33), 0.62), "tissue")
    organs = (
        Ellipsoid((jitter(0.64), jitter(0.48), jitter(0.58)), (0.15, 0.13, 0.16), "liver"),
        Ellipsoid((jitter(0.36), jitter(0.62), jitter(0.40)), (0.05, 0.05, 0.09), "kidney"),
        Ellipsoid((jitter(0.64), jitter(0.62), jitter(0.40)), (0.05, 0.05, 0.09), "kidney"),
        Ellipsoid((jitter(0.40), jitter(0.42), jitter(0.62)), (0.07, 0.06, 0.07), "fluid"),
        Ellipsoid((0.5, jitter(0.76, 0.01), 0.5), (0.035, 0.035, 0.7), "spine"),
    )
    return Anatomy(body, organs)


def _inside_body(scene_anatomy: Anatomy, shift: np.ndarray, point_mm: np.ndarray) -> float:
    """The ellipsoid distance of a point from the body centre (< 1 inside)."""
    body = scene_anatomy.body
    centre = (np.array(body.centre) + shift) * FOV_MM
    return float(np.linalg.norm((point_mm - centre) / (np.array(body.radii) * FOV_MM)))


def place_lesions(
    anatomy: Anatomy,
    shift: tuple[float, float, float],
    count: int,
    half: str,
    rng: np.random.Generator,
    slice_mm: float,
) -> tuple[Sphere, ...] | None:
    """``count`` spheres in the given half, well inside the body, :data:`LESION_GAP_MM` apart
    and each cut near its middle by a slice plane (visible even with thick slices); None if
    the random placement keeps failing (the caller redraws)."""
    lesions: list[Sphere] = []
    offset = np.array(shift)
    for _ in range(200):
        if len(lesions) == count:
            return tuple(lesions)
        radius = float(rng.uniform(*LESION_RADIUS_MM))
        low = _EDGE_MM + radius if half == "lower" else FOV_MM / 2 + _MID_GAP_MM + radius
        high = FOV_MM / 2 - _MID_GAP_MM - radius if half == "lower" else FOV_MM - _EDGE_MM - radius
        centre = np.array(
            [
                rng.uniform(0.25, 0.75) * FOV_MM,
                rng.uniform(0.3, 0.7) * FOV_MM,
                rng.uniform(low, high),
            ]
        )
        nearest = abs((centre[2] / slice_mm - 0.5) - np.round(centre[2] / slice_mm - 0.5))
        if _inside_body(anatomy, offset, centre) > 0.62 or nearest * slice_mm > radius / 2:
            continue
        if any(
            np.linalg.norm(centre - np.array(other.centre)) < radius + other.radius + LESION_GAP_MM
            for other in lesions
        ):
            continue
        lesions.append(Sphere((float(centre[0]), float(centre[1]), float(centre[2])), radius))
    return tuple(lesions) if len(lesions) == count else None


def _grid(scene: VolumeScene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates in mm, each broadcastable to (size, size, slices)."""
    sx, sy, sz = scene.spacing
    x = (np.arange(scene.size, dtype=np.float32) + 0.5) * sx
    y = (np.arange(scene.size, dtype=np.float32) + 0.5) * sy
    z = (np.arange(scene.slices, dtype=np.float32) + 0.5) * sz
    return x[:, None, None], y[None, :, None], z[None, None, :]


def _ellipsoid_mask(grid: tuple, shape: Ellipsoid, shift: np.ndarray, edge_mm: float) -> np.ndarray:
    """Soft mask in [0, 1] of an ellipsoid (edge about ``edge_mm`` wide)."""
    centre = (np.array(shape.centre) + shift) * FOV_MM
    radii = np.array(shape.radii) * FOV_MM
    d = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)))
    return np.clip((1.0 - d) * float(radii.min()) / edge_mm + 0.5, 0.0, 1.0)


def bright_slab(display: np.ndarray) -> list[int] | None:
    """First and last slice (inclusive) showing lesion voxels; None without any."""
    hit = np.flatnonzero((display > BRIGHT_LEVEL).any(axis=(0, 1)))
    return [int(hit[0]), int(hit[-1])] if hit.size else None


def render_display(scene: VolumeScene, rng: np.random.Generator) -> np.ndarray:
    """The volume in display units (float32, 0..1 of the window), shape (size, size, slices)."""
    grid = _grid(scene)
    shift = np.array(scene.shift)
    palette = _PALETTES[scene.modality]
    shape = (scene.size, scene.size, scene.slices)
    body = _ellipsoid_mask(grid, scene.anatomy.body, shift, edge_mm=3.0)
    volume = np.broadcast_to(body * palette["tissue"], shape).astype(np.float32)
    for organ in scene.anatomy.organs:
        mask = _ellipsoid_mask(grid, organ, shift, edge_mm=2.0) * body
        volume += mask * (palette[organ.tissue] - volume)
    if scene.modality == "MRI":  # a smooth bias field and speckle
        x, _, z = grid
        bias = 0.025 * np.sin(x / FOV_MM * 3.1 + rng.uniform(0, 6)) * np.cos(z / FOV_MM * 2.3)
        volume += body * (bias + rng.normal(0.0, 0.012, shape)).astype(np.float32)
    else:  # CT grain
        volume += body * rng.normal(0.0, 0.008, shape).astype(np.float32)
    volume = np.where(body > 0.5, np.clip(volume, DISPLAY_LOW - 0.08, DISPLAY_TOP), volume)
    for lesion in scene.lesions:
        d = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, lesion.centre, strict=True)))
        mask = np.clip((lesion.radius - d) / scene.spacing[0] + 0.5, 0.0, 1.0)
        volume += mask * (LESION_LEVEL - volume)
    return np.clip(volume, 0.0, 1.0).astype(np.float32)


def window_of(modality: str) -> tuple[float, float]:
    """(center, width) the modality's values are stored for."""
    window = WINDOWS[modality]
    return WINDOW_PRESETS[window] if isinstance(window, str) else window


def to_stored(display: np.ndarray, modality: str) -> np.ndarray:
    """Display units -> int16 HU (CT; air outside the body at -1000) or MRI signal (>= 0)."""
    center, width = window_of(modality)
    stored = center + (display.astype(np.float64) - 0.5) * width
    floor = AIR_HU if modality == "CT" else 0.0
    stored = np.where(display <= 0.0, floor, np.maximum(stored, floor))
    return np.rint(stored).astype(np.int16)


def axial_frames(stored: np.ndarray, modality: str) -> list[np.ndarray]:
    """The axial slices, inferior to superior, windowed to uint8 and oriented as the radiological
    display (anterior at the top, the patient's right on the image's left)."""
    window = window_of(modality)
    return [apply_window(stored[:, :, z].T[::-1, ::-1], window) for z in range(stored.shape[2])]
