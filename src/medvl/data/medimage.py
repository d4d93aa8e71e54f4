"""Reading medical images as the RGB pictures a Qwen-VL processor expects.

One entry point, :func:`load_image`, turns every format medvl meets into an 8-bit RGB
``PIL.Image``: ordinary rasters (PNG, JPEG, BMP, TIFF, GIF, WebP, including 16-bit grayscale),
DICOM (via pydicom) and NIfTI volumes (via nibabel). The small public readers (``read_dicom``,
``open_nifti``, ``pil_error``...) are shared with the header-only checks in ``medvl.data.images``.

Choices made here, so that the same file always becomes the same picture:

* **Grey levels.** Single-channel data is mapped to 0..255 with a window ``(center, width)``
  using DICOM's ``LINEAR_EXACT`` function: ``y = ((x - center) / width + 0.5) * 255``, clipped
  and rounded. Without a window, high-bit-depth data (16-bit, 32-bit, float) is stretched over its
  own min..max (never clipped at 255); plain 8-bit images are left unchanged. Multi-frame GIF
  and TIFF files give their first frame; EXIF orientation is applied.
* **Transparency** is composited on *black*: medical images have black backgrounds (air), so a
  transparent margin reads as background rather than as a bright frame.
* **DICOM**: ``RescaleSlope``/``RescaleIntercept`` first, then the window (explicit, preset, the
  file's first ``WindowCenter``/``WindowWidth``, else min..max); ``MONOCHROME1`` is inverted after
  windowing; multi-frame files give the middle frame unless ``slice_index`` is set.
* **NIfTI**: ``axis`` is a *patient* axis in RAS+ space (0 sagittal, 1 coronal, 2 axial) whatever
  the voxel order on disk; the slice is shown in radiological convention: patient's right on the
  image's left, anterior (axial) or superior (coronal, sagittal) at the top, anterior on the left
  for sagittal slices. 4-D volumes use their first volume.
* **Decompression bombs**: anything over :data:`MAX_PIXELS` is refused before decoding.
"""

from __future__ import annotations

import logging
import re
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medvl.errors import MedvlError

logger = logging.getLogger(__name__)

MAX_PIXELS = 89_478_485  # PIL's default MAX_IMAGE_PIXELS (1 GiB / 4 bytes / 3 channels)
WINDOW_PRESETS: dict[str, tuple[float, float]] = {  # (center, width) in Hounsfield units
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
}
MINMAX = "minmax"  # window name that ignores a DICOM file's own window and stretches min..max
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")  # DICOM pixel elements
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_DICOM_MARKERS = ("SOPClassUID", "Modality", "Rows", "StudyInstanceUID")
_REEXPORT = "re-export it as PNG or JPEG"

Window = str | tuple[float, float] | None


class ImageError(MedvlError):
    """An image cannot be read; ``code`` is a short stable reason such as ``truncated``.

    ``str(error)`` is ``"<path>: <reason>; <fix>"``; ``detail`` is the same without the path.
    """

    def __init__(self, path: str | Path, code: str, reason: str, fix: str):
        self.path, self.code = str(path), code
        self.detail = f"{_one_line(reason)}; {fix}"
        super().__init__(f"{path}: {self.detail}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


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


def require_file(path: Path) -> None:
    """Raise :class:`ImageError` (``missing``) unless ``path`` is an existing file."""
    if not path.is_file():
        raise ImageError(
            path,
            "missing",
            "image file not found",
            "check the path (relative to the JSONL file's folder)",
        )


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
    center_width = _resolve_window(path, window)
    kind = image_kind(path)
    if kind == "dicom":
        return _load_dicom(path, center_width, window == MINMAX, slice_index)
    if kind == "nifti":
        return _load_nifti(path, center_width, slice_index, axis)
    return _load_raster(path, center_width)


def _resolve_window(path: Path, window: Window) -> tuple[float, float] | None:
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


def _gray_to_rgb(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8)).convert("RGB")


# ---------------------------------------------------------------- rasters (PIL)


def pil_error(path: Path, exc: BaseException) -> ImageError:
    """The :class:`ImageError` for an exception raised by PIL while opening or decoding ``path``."""
    if isinstance(exc, ImageError):
        return exc
    text = _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        count = re.search(r"\((\d+) pixels\)", text)
        return _too_large(path, f"{int(count.group(1)):,} px" if count else "too many pixels")
    if isinstance(exc, EOFError) or "truncat" in text.lower():
        reason = text if "truncat" in text.lower() else f"image file is truncated ({text})"
        return ImageError(path, "truncated", reason, f"re-copy it or {_REEXPORT}")
    if isinstance(exc, UnidentifiedImageError):
        text = "not a recognised image format"
    return ImageError(path, "undecodable", f"image cannot be decoded ({text})", _REEXPORT)


def _too_large(path: Path, what: str) -> ImageError:
    return ImageError(
        path,
        "too_large",
        f"image is {what}, above the {MAX_PIXELS:,}-pixel decompression-bomb limit",
        "downscale it before use",
    )


def _load_raster(path: Path, window: tuple[float, float] | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise _too_large(path, f"{image.width}x{image.height} px")
                image.load()
                return _raster_to_rgb(ImageOps.exif_transpose(image), window)
    except Exception as exc:  # includes the bomb warning, raised as an error above
        raise pil_error(path, exc) from exc


def _raster_to_rgb(image: Image.Image, window: tuple[float, float] | None) -> Image.Image:
    """Any PIL mode to RGB; grey data through the window, alpha composited on black."""
    if image.mode in _HIGH_DEPTH_MODES or (image.mode == "L" and window is not None):
        return _gray_to_rgb(apply_window(np.asarray(image), window))
    if window is not None:
        logger.debug("window ignored for %s image", image.mode)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")


# ---------------------------------------------------------------- DICOM (pydicom)


def read_dicom(path: Path, *, header_only: bool = False) -> Any:
    """The pydicom dataset of ``path``; ``header_only`` skips reading the pixel bytes."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    force = path.name.lower().endswith(DICOM_SUFFIXES)  # allow files without the 128-byte preamble
    try:  # header_only: values over 1 KB (the pixels) are skipped, not read
        ds = pydicom.dcmread(path, defer_size=1024 if header_only else None, force=force)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as exc:
        raise _not_dicom(path, _one_line(str(exc))) from exc
    meta = getattr(ds, "file_meta", None) or {}
    if "TransferSyntaxUID" not in meta and not any(k in ds for k in _DICOM_MARKERS):
        raise _not_dicom(path, "no DICOM header found")  # force=True read arbitrary bytes
    return ds


def _not_dicom(path: Path, why: str) -> ImageError:
    return ImageError(path, "undecodable", f"DICOM file cannot be read ({why})", _REEXPORT)


def _no_dicom_pixels(path: Path) -> ImageError:
    return ImageError(
        path,
        "no_pixel_data",
        "DICOM file has no pixel data (e.g. a report or a series header)",
        "point the record at an image DICOM instead",
    )


def _load_dicom(
    path: Path, window: tuple[float, float] | None, force_minmax: bool, index: int | None
) -> Image.Image:
    ds = read_dicom(path, header_only=False)
    if not any(tag in ds for tag in PIXEL_KEYWORDS):
        raise _no_dicom_pixels(path)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > MAX_PIXELS:
        raise _too_large(path, f"{cols}x{rows} px")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    frame = _pick_index(path, index, frames, "frame")
    pixels = _dicom_pixels(path, ds, frame if frames > 1 else None)
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
        window = _dicom_file_window(ds)
    gray = apply_window(values, window)
    if photometric == "MONOCHROME1":  # stored with white = low values
        gray = 255 - gray
    return _gray_to_rgb(gray)


def _dicom_pixels(path: Path, ds: Any, frame: int | None) -> np.ndarray:
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(ds, index=frame)
    except Exception as exc:  # missing codec, short pixel data, inconsistent group 0028...
        raise _dicom_pixel_error(path, ds, _one_line(str(exc))) from exc


def _dicom_pixel_error(path: Path, ds: Any, text: str) -> ImageError:
    if "less than expected" in text or "truncat" in text.lower():
        return ImageError(path, "truncated", f"DICOM pixel data is short ({text})", "re-copy it")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    fix = _REEXPORT
    if syntax is not None and syntax.is_compressed:
        fix = f"install a decoder for {syntax.name} (pylibjpeg, gdcm) or decompress the file"
    return ImageError(path, "undecodable", f"DICOM pixels cannot be decoded ({text})", fix)


def _first(value: Any) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _dicom_file_window(ds: Any) -> tuple[float, float] | None:
    """The first WindowCenter/WindowWidth pair stored in the file, if any and usable."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except (TypeError, ValueError, IndexError):
        return None
    return (center, width) if width > 0 else None


def _pick_index(path: Path, index: int | None, count: int, what: str) -> int:
    if index is None:
        return count // 2
    if not 0 <= index < count:
        raise ImageError(
            path, "bad_slice", f"{what} {index} does not exist", f"pass 0..{count - 1}"
        )
    return index


# ---------------------------------------------------------------- NIfTI (nibabel)


def open_nifti(path: Path) -> Any:
    """The nibabel image of ``path``; only the header is read until data is sliced."""
    import nibabel as nib

    try:
        return nib.load(path)
    except Exception as exc:
        raise ImageError(
            path,
            "undecodable",
            f"NIfTI file cannot be read ({_one_line(str(exc))})",
            "re-export it as .nii or .nii.gz",
        ) from exc


def nifti_ras_axes(image: Any) -> np.ndarray:
    """For each of the first 3 voxel axes: (RAS axis it runs along, +1 or -1 direction)."""
    from nibabel.orientations import io_orientation

    axes = io_orientation(image.affine)[:3]
    if np.isnan(axes).any():  # degenerate affine: take the voxel order as RAS
        return np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    return axes


def _load_nifti(
    path: Path, window: tuple[float, float] | None, index: int | None, axis: int
) -> Image.Image:
    if axis not in (0, 1, 2):
        raise ImageError(
            path, "bad_slice", f"axis {axis} is not 0, 1 or 2", "0 sagittal, 1 coronal, 2 axial"
        )
    image = open_nifti(path)
    shape = (*image.shape[:3], 1, 1)[:3]
    axes = nifti_ras_axes(image)
    voxel_axis = int(np.flatnonzero(axes[:, 0] == axis)[0])
    position = _pick_index(path, index, shape[voxel_axis], f"slice on axis {axis}")
    if axes[voxel_axis, 1] < 0:  # stored running towards L/P/I: count from the other end
        position = shape[voxel_axis] - 1 - position
    try:
        data = _nifti_slice(image, shape, voxel_axis, position)
    except Exception as exc:
        raise _nifti_data_error(path, exc) from exc
    plane = _radiological(data, [axes[v] for v in range(3) if v != voxel_axis])
    if plane.size > MAX_PIXELS:
        raise _too_large(path, f"{plane.shape[1]}x{plane.shape[0]} px")
    return _gray_to_rgb(apply_window(plane, window))


def _nifti_slice(image: Any, shape: tuple[int, ...], voxel_axis: int, position: int) -> np.ndarray:
    """One 2-D slice, read through nibabel's proxy (scaled; only the needed bytes when possible)."""
    if len(image.shape) < 3:
        return np.take(np.asarray(image.dataobj).reshape(shape), position, axis=voxel_axis)
    selector: list[Any] = [slice(None)] * 3 + [0] * (len(image.shape) - 3)  # 4-D: first volume
    selector[voxel_axis] = position
    return np.asarray(image.dataobj[tuple(selector)])


def _radiological(data: np.ndarray, axes: list[np.ndarray]) -> np.ndarray:
    """Orient a slice for display; ``axes`` gives (RAS axis, direction) of its two voxel axes.

    Both axes are flipped to run towards R/A/S and put in RAS order; transposing puts the higher
    RAS axis on the rows, and reversing both gives anterior/superior at the top and the patient's
    right (or, for sagittal slices, anterior) on the left: the radiological convention.
    """
    for i, (_, direction) in enumerate(axes):
        if direction < 0:
            data = np.flip(data, axis=i)
    if axes[0][0] > axes[1][0]:
        data = data.T
    return data.T[::-1, ::-1]


def _nifti_data_error(path: Path, exc: BaseException) -> ImageError:
    text = str(exc).lower()
    if isinstance(exc, (EOFError, zlib.error)) or "truncat" in text or "not enough data" in text:
        return ImageError(
            path, "truncated", f"NIfTI data is truncated ({_one_line(str(exc))})", "re-copy it"
        )
    return ImageError(
        path, "undecodable", f"NIfTI data cannot be read ({_one_line(str(exc))})", "re-export it"
    )


# ---------------------------------------------------------------- shared with the volume readers
# Public names for medvl.data.volumes and medvl.data.series, which window a whole series or
# volume at once instead of one slice.


def resolve_window(path: Path, window: Window) -> tuple[float, float] | None:
    """``(center, width)`` for a preset name or pair; None for ``None``/``"minmax"``."""
    return _resolve_window(path, window)


def dicom_file_window(ds: Any) -> tuple[float, float] | None:
    """The first WindowCenter/WindowWidth pair stored in a DICOM dataset, if any and usable."""
    return _dicom_file_window(ds)


def dicom_frame_pixels(path: Path, ds: Any, frame: int | None) -> np.ndarray:
    """The stored pixels of one frame (None: the only frame), as pydicom decodes them."""
    return _dicom_pixels(path, ds, frame)


def radiological(data: np.ndarray, axes: list[np.ndarray]) -> np.ndarray:
    """A 2-D slice in radiological display orientation (see :func:`_radiological`)."""
    return _radiological(data, axes)


def nifti_plane(image: Any, voxel_axis: int, position: int, path: Path) -> np.ndarray:
    """One 2-D slice of a NIfTI image at ``position`` on ``voxel_axis`` (the voxel order on
    disk), scaled; raises :class:`ImageError` naming ``path`` when the data cannot be read."""
    shape = (*image.shape[:3], 1, 1)[:3]
    try:
        return _nifti_slice(image, shape, voxel_axis, position)
    except Exception as exc:
        raise _nifti_data_error(path, exc) from exc
