"""Reading one DICOM file (via pydicom) as an 8-bit RGB picture.

``RescaleSlope``/``RescaleIntercept`` are applied first, then the window (explicit, preset, the
file's first ``WindowCenter``/``WindowWidth``, else min..max); ``MONOCHROME1`` is inverted after
windowing; ``PALETTE COLOR`` goes through its lookup table; colour data passes through.
Multi-frame files give the middle frame unless a frame index is given. The small public readers
(:func:`read_dicom`, :func:`dicom_file_window`, :func:`dicom_frame_pixels`) are shared with the
header-only checks in :mod:`medvl.data.images` and the series reader in :mod:`medvl.data.series`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medvl.data.image_errors import (
    MAX_PIXELS,
    REEXPORT,
    ImageError,
    one_line,
    pick_index,
    too_large,
)
from medvl.data.windowing import apply_window, gray_to_rgb

DICOM_SUFFIXES = (".dcm", ".dicom")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")  # DICOM pixel elements
_DICOM_MARKERS = ("SOPClassUID", "Modality", "Rows", "StudyInstanceUID")


def read_dicom(path: Path, *, header_only: bool = False) -> Any:
    """The pydicom dataset of ``path``; ``header_only`` skips reading the pixel bytes."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    force = path.name.lower().endswith(DICOM_SUFFIXES)  # allow files without the 128-byte preamble
    try:  # header_only: values over 1 KB (the pixels) are skipped, not read
        ds = pydicom.dcmread(path, defer_size=1024 if header_only else None, force=force)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as exc:
        raise _not_dicom(path, one_line(str(exc))) from exc
    meta = getattr(ds, "file_meta", None) or {}
    if "TransferSyntaxUID" not in meta and not any(k in ds for k in _DICOM_MARKERS):
        raise _not_dicom(path, "no DICOM header found")  # force=True read arbitrary bytes
    return ds


def _not_dicom(path: Path, why: str) -> ImageError:
    return ImageError(path, "undecodable", f"DICOM file cannot be read ({why})", REEXPORT)


def _no_dicom_pixels(path: Path) -> ImageError:
    return ImageError(
        path,
        "no_pixel_data",
        "DICOM file has no pixel data (e.g. a report or a series header)",
        "point the record at an image DICOM instead",
    )


def load_dicom(
    path: Path, window: tuple[float, float] | None, force_minmax: bool, index: int | None
) -> Image.Image:
    """One frame of the DICOM file ``path`` as an 8-bit RGB image.

    ``window`` is a resolved ``(center, width)`` or None (the file's own window, else min..max;
    ``force_minmax`` skips the file's window); ``index`` picks the frame (None: the middle one).
    """
    ds = read_dicom(path, header_only=False)
    if not any(tag in ds for tag in PIXEL_KEYWORDS):
        raise _no_dicom_pixels(path)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > MAX_PIXELS:
        raise too_large(path, f"{cols}x{rows} px")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    frame = pick_index(path, index, frames, "frame")
    pixels = dicom_frame_pixels(path, ds, frame if frames > 1 else None)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim == 3:  # colour: pydicom already converted YBR to RGB
        if pixels.dtype == np.uint8:
            return Image.fromarray(pixels).convert("RGB")
        return Image.fromarray(apply_window(pixels)).convert("RGB")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    values = pixels.astype(np.float64) * slope + intercept
    if window is None and not force_minmax:
        window = dicom_file_window(ds)
    gray = apply_window(values, window)
    if photometric == "MONOCHROME1":  # stored with white = low values
        gray = 255 - gray
    return gray_to_rgb(gray)


def dicom_frame_pixels(path: Path, ds: Any, frame: int | None) -> np.ndarray:
    """The stored pixels of one frame (None: the only frame), as pydicom decodes them."""
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(ds, index=frame)
    except Exception as exc:  # missing codec, short pixel data, inconsistent group 0028...
        raise _dicom_pixel_error(path, ds, one_line(str(exc))) from exc


def _dicom_pixel_error(path: Path, ds: Any, text: str) -> ImageError:
    if "less than expected" in text or "truncat" in text.lower():
        return ImageError(path, "truncated", f"DICOM pixel data is short ({text})", "re-copy it")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    fix = REEXPORT
    if syntax is not None and syntax.is_compressed:
        fix = f"install a decoder for {syntax.name} (pylibjpeg, gdcm) or decompress the file"
    return ImageError(path, "undecodable", f"DICOM pixels cannot be decoded ({text})", fix)


def _first(value: Any) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def dicom_file_window(ds: Any) -> tuple[float, float] | None:
    """The first WindowCenter/WindowWidth pair stored in a DICOM dataset, if any and usable."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except (TypeError, ValueError, IndexError):
        return None
    return (center, width) if width > 0 else None
