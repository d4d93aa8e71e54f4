"""Grey levels to 8-bit pixels: display windows (presets, ``(center, width)``, min..max).

Single-channel data is mapped to 0..255 with a window ``(center, width)`` using DICOM's
``LINEAR_EXACT`` function: ``y = ((x - center) / width + 0.5) * 255``, clipped and rounded.
Without a window the data is stretched over its own min..max. Shared by every image reader
(:mod:`medvl.data.medimage`, :mod:`medvl.data.dicom`, :mod:`medvl.data.nifti`) and the volume
readers, so that the same file always becomes the same picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medvl.data.image_errors import ImageError

WINDOW_PRESETS: dict[str, tuple[float, float]] = {  # (center, width) in Hounsfield units
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
}
MINMAX = "minmax"  # window name that ignores a DICOM file's own window and stretches min..max

Window = str | tuple[float, float] | None


def resolve_window(path: Path, window: Window) -> tuple[float, float] | None:
    """``(center, width)`` for a preset name or pair; None for ``None``/``"minmax"``.

    Raises :class:`ImageError` (``bad_window``) naming ``path`` for an unknown preset or a width
    that is not positive.
    """
    if window is None or window == MINMAX:
        return None
    if isinstance(window, str):
        if window.lower() not in WINDOW_PRESETS:
            names = ", ".join([*WINDOW_PRESETS, MINMAX])
            raise ImageError(
                path, "bad_window", f"unknown window preset {window!r}", f"use one of {names}"
            )
        return WINDOW_PRESETS[window.lower()]
    center, width = (float(v) for v in window)
    if not width > 0:
        raise ImageError(
            path, "bad_window", f"window width must be > 0, got {width}", "pass (center, width)"
        )
    return center, width


def apply_window(values: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Map values to uint8 through ``(center, width)`` (DICOM LINEAR_EXACT), or over min..max.

    NaN maps to 0; a constant image with no window becomes all zeros.
    """
    data = np.asarray(values)
    if window is None:
        finite = data[np.isfinite(data)] if data.dtype.kind == "f" else data
        if finite.size == 0 or finite.min() == finite.max():
            return np.zeros(data.shape, dtype=np.uint8)
        low, high = float(finite.min()), float(finite.max())
        window = ((low + high) / 2, high - low)
    center, width = window
    out = data.astype(np.float64)  # in place from here on: one float buffer, no temporaries
    out -= center
    out /= width
    out += 0.5
    out *= 255.0
    np.nan_to_num(out, copy=False, nan=0.0)
    np.clip(out, 0.0, 255.0, out=out)
    return np.rint(out, out=out).astype(np.uint8)


def gray_to_rgb(values: np.ndarray) -> Image.Image:
    """An RGB ``PIL.Image`` from a 2-D uint8 grey array (the three channels equal)."""
    return Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8)).convert("RGB")
