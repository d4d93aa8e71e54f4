"""Reading medical images as the RGB pictures a Qwen-VL processor expects.

One entry point, :func:`load_image`, turns every format medvl meets into an 8-bit RGB
``PIL.Image``: ordinary rasters (PNG, JPEG, BMP, TIFF, GIF, WebP, including 16-bit grayscale,
read here with PIL), DICOM (:mod:`medvl.data.dicom`, via pydicom) and NIfTI volumes
(:mod:`medvl.data.nifti`, via nibabel). Grey levels go through :mod:`medvl.data.windowing`;
every failure is an :class:`~medvl.data.image_errors.ImageError` naming the file and the fix.

Choices made here, so that the same file always becomes the same picture:

* **Grey levels.** Single-channel data is mapped to 0..255 with a window ``(center, width)``
  using DICOM's ``LINEAR_EXACT`` function: ``y = ((x - center) / width + 0.5) * 255``, clipped
  and rounded. Without a window, high-bit-depth data (16-bit, 32-bit, float) is stretched over its
  own min..max (never clipped at 255); plain 8-bit images are left unchanged. Multi-frame GIF
  and TIFF files give their first frame; EXIF orientation is applied.
* **Transparency** is composited on *black*: medical images have black backgrounds (air), so a
  transparent margin reads as background rather than as a bright frame.
* **DICOM** and **NIfTI**: see :mod:`medvl.data.dicom` (rescale, window, ``MONOCHROME1``, middle
  frame) and :mod:`medvl.data.nifti` (patient axis, radiological orientation).
* **Decompression bombs**: anything over :data:`MAX_PIXELS` is refused before decoding.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Names re-exported below were defined here before the DICOM, NIfTI, windowing and error parts
# moved to their own modules; ui/pictures.py, data/volumes.py and data/series.py still import
# them from here.
from medvl.data.dicom import (
    DICOM_SUFFIXES,
    PIXEL_KEYWORDS,
    dicom_file_window,
    dicom_frame_pixels,
    load_dicom,
    read_dicom,
)
from medvl.data.image_errors import (
    MAX_PIXELS,
    REEXPORT,
    ImageError,
    one_line,
    require_file,
    too_large,
)
from medvl.data.nifti import (
    NIFTI_SUFFIXES,
    load_nifti,
    nifti_plane,
    nifti_ras_axes,
    open_nifti,
    radiological,
)
from medvl.data.windowing import (
    MINMAX,
    WINDOW_PRESETS,
    Window,
    apply_window,
    gray_to_rgb,
    resolve_window,
)

__all__ = [
    "MINMAX",
    "NIFTI_SUFFIXES",
    "PIXEL_KEYWORDS",
    "WINDOW_PRESETS",
    "ImageError",
    "apply_window",
    "dicom_file_window",
    "dicom_frame_pixels",
    "image_kind",
    "load_image",
    "nifti_plane",
    "nifti_ras_axes",
    "open_nifti",
    "pil_error",
    "radiological",
    "read_dicom",
    "resolve_window",
]

logger = logging.getLogger(__name__)

_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def image_kind(path: str | Path) -> str:
    """``"dicom"``, ``"nifti"`` or ``"raster"``, from the suffix or the DICOM/NIfTI magic bytes."""
    name = Path(path).name.lower()
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    try:
        with open(path, "rb") as f:
            head = f.read(348)
    except OSError:
        return "raster"
    if head[128:132] == b"DICM":
        return "dicom"
    if head[344:348] in (b"n+1\0", b"ni1\0"):
        return "nifti"
    return "raster"


def load_image(
    path: str | Path,
    *,
    window: Window = None,
    slice_index: int | None = None,
    axis: int = 2,
) -> Image.Image:
    """Decode ``path`` into an 8-bit RGB image; raise :class:`ImageError` naming the file.

    ``window`` is ``(center, width)``, a preset name from :data:`WINDOW_PRESETS`, ``"minmax"``,
    or None (the DICOM file's window, else min..max for high-bit-depth data). It applies to
    single-channel data; colour images pass through. ``slice_index`` picks a DICOM frame or a
    NIfTI slice along ``axis`` (NIfTI only); the default is the middle one.
    """
    path = Path(path)
    require_file(path)
    center_width = resolve_window(path, window)
    kind = image_kind(path)
    if kind == "dicom":
        return load_dicom(path, center_width, window == MINMAX, slice_index)
    if kind == "nifti":
        return load_nifti(path, center_width, slice_index, axis)
    return _load_raster(path, center_width)


# ---------------------------------------------------------------- rasters (PIL)


def pil_error(path: Path, exc: BaseException) -> ImageError:
    """The :class:`ImageError` for an exception raised by PIL while opening or decoding ``path``."""
    if isinstance(exc, ImageError):
        return exc
    text = one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        count = re.search(r"\((\d+) pixels\)", text)
        return too_large(path, f"{int(count.group(1)):,} px" if count else "too many pixels")
    if isinstance(exc, EOFError) or "truncat" in text.lower():
        reason = text if "truncat" in text.lower() else f"image file is truncated ({text})"
        return ImageError(path, "truncated", reason, f"re-copy it or {REEXPORT}")
    if isinstance(exc, UnidentifiedImageError):
        text = "not a recognised image format"
    return ImageError(path, "undecodable", f"image cannot be decoded ({text})", REEXPORT)


def _load_raster(path: Path, window: tuple[float, float] | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise too_large(path, f"{image.width}x{image.height} px")
                image.load()
                return _raster_to_rgb(ImageOps.exif_transpose(image), window)
    except Exception as exc:  # includes the bomb warning, raised as an error above
        raise pil_error(path, exc) from exc


def _raster_to_rgb(image: Image.Image, window: tuple[float, float] | None) -> Image.Image:
    """Any PIL mode to RGB; grey data through the window, alpha composited on black."""
    if image.mode in _HIGH_DEPTH_MODES or (image.mode == "L" and window is not None):
        return gray_to_rgb(apply_window(np.asarray(image), window))
    if window is not None:
        logger.debug("window ignored for %s image", image.mode)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")
