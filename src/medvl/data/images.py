"""Image checks done before any compute is spent: the file exists, decodes, and the Qwen-VL
image processor can take it (each side at least 28 px, aspect ratio at most 200, no more pixels
than the decompression-bomb limit).

Each problem is an :class:`ImageCheck` with a stable short ``code`` (for reports) and a one-line
``message`` that says what is wrong and how to fix it. ``decode=False`` reads headers, and the
last bytes of PNG and JPEG files (a file cut short lacks its end marker), without decoding;
``decode=True`` also decodes the pixels (corrupt data inside a complete file).
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medvl.data.dicom import PIXEL_KEYWORDS, read_dicom
from medvl.data.image_errors import MAX_PIXELS, ImageError, require_file
from medvl.data.medimage import image_kind, load_image, pil_error
from medvl.data.nifti import nifti_ras_axes, open_nifti
from medvl.data.record import Record

MIN_SIDE = 28  # Qwen-VL's smart_resize refuses a side shorter than patch (14) x merge (2)
MAX_ASPECT = 200  # ... and an aspect ratio above 200
CHECK_CODES = (
    "missing",
    "undecodable",
    "truncated",
    "no_pixel_data",
    "too_small",
    "aspect_ratio",
    "too_large",
    "outside_root",
)
_WINDOWS_ABSOLUTE_RE = re.compile(r"^([A-Za-z]:/|//)")


@dataclass(frozen=True)
class ImageHeader:
    """Size and kind of an image, read without decoding pixels.

    ``mode`` is the PIL mode for rasters, the ``PhotometricInterpretation`` for DICOM and the
    stored dtype for NIfTI; ``format`` is PIL's format name, ``"DICOM"`` or ``"NIFTI"``. For NIfTI
    the size is that of an axial slice. ``has_pixels`` is False for a DICOM without pixel data.
    """

    width: int
    height: int
    mode: str
    format: str
    has_pixels: bool = True

    @property
    def pixels(self) -> int:
        return self.width * self.height


def image_header(path: str | Path) -> ImageHeader:
    """Width, height, mode and format of ``path`` from its header alone (fast; no decoding).

    Raises :class:`ImageError` (``missing``, ``undecodable``, ``truncated`` when the header
    promises more bytes than the file holds or a PNG/JPEG lacks its end marker, ``too_large``
    past PIL's hard bomb limit).
    """
    path = Path(path)
    require_file(path)
    kind = image_kind(path)
    if kind == "dicom":
        return _dicom_header(path)
    if kind == "nifti":
        return _nifti_header(path)
    try:
        with warnings.catch_warnings():  # size is judged by the caller against MAX_PIXELS
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                header = ImageHeader(image.width, image.height, image.mode, image.format or "?")
    except Exception as exc:
        raise pil_error(path, exc) from exc
    _check_tail(path, header.format)
    return header


#: The bytes a complete file of each format ends with: PNG's IEND chunk (length 0, type, CRC)
#: and JPEG's EOI marker. Nothing may follow them but padding (:data:`_PADDING`).
_END_MARKERS = {"PNG": b"\x00\x00\x00\x00IEND\xaeB`\x82", "JPEG": b"\xff\xd9"}
#: Bytes some writers (cameras, PACS exports, block-aligned copies) append after the end marker.
_PADDING = b"\x00\xff \t\r\n"
_TAIL_BYTES = 4096


def _check_tail(path: Path, image_format: str) -> None:
    """Raise :class:`ImageError` (``truncated``) when a PNG or JPEG does not end with its end
    marker: the file was cut short (an interrupted copy or download).

    Reads at most the last 4 KB, never decodes, so the default (header-only) validation
    catches what would otherwise stop training when the record comes up.
    """
    marker = _END_MARKERS.get(image_format)
    if marker is None:
        return
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read().rstrip(_PADDING)
    if not tail.endswith(marker):
        end = "IEND chunk" if image_format == "PNG" else "end-of-image marker FF D9"
        raise ImageError(
            path,
            "truncated",
            f"{image_format} file is cut short: it does not end with its {end} "
            f"({size:,} bytes on disk)",
            "re-copy or re-download the file, or drop the record",
        )


def _dicom_header(path: Path) -> ImageHeader:
    ds = read_dicom(path, header_only=True)
    has_pixels = any(keyword in ds for keyword in PIXEL_KEYWORDS)
    if has_pixels and _pixel_data_cut_short(path, ds):
        raise ImageError(
            path, "truncated", "DICOM pixel data ends before its stated length", "re-copy the file"
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    mode = str(ds.get("PhotometricInterpretation", ""))
    return ImageHeader(cols, rows, mode, "DICOM", has_pixels)


def _pixel_data_cut_short(path: Path, ds: Any) -> bool:
    """True when the pixel element's stated length runs past the end of the file."""
    for keyword in PIXEL_KEYWORDS:
        if keyword in ds:
            element = ds.get_item(keyword, keep_deferred=True)
            length, start = getattr(element, "length", None), getattr(element, "value_tell", None)
            if length is not None and start is not None and length != 0xFFFFFFFF:
                return start + length > path.stat().st_size
    return False


def _nifti_header(path: Path) -> ImageHeader:
    image = open_nifti(path)
    shape = (*image.shape[:3], 1, 1)[:3]
    sizes = {int(ras): shape[voxel] for voxel, (ras, _) in enumerate(nifti_ras_axes(image))}
    if path.name.lower().endswith(".nii"):  # uncompressed: the file must hold every voxel
        voxels = int(np.prod(image.shape, dtype=np.int64))
        expected = int(image.header["vox_offset"]) + voxels * image.header.get_data_dtype().itemsize
        if path.stat().st_size < expected:
            raise ImageError(
                path,
                "truncated",
                f"NIfTI file holds {path.stat().st_size} of the {expected} bytes it declares",
                "re-copy it",
            )
    return ImageHeader(sizes[0], sizes[1], str(image.header.get_data_dtype()), "NIFTI")


@dataclass(frozen=True)
class ImageCheck:
    """One reason an image is unusable: ``code`` from :data:`CHECK_CODES`, one-line ``message``."""

    code: str
    message: str


def inspect_image(
    path: str | Path, *, decode: bool = True
) -> tuple[ImageHeader | None, ImageCheck | None]:
    """The image's header (None if unreadable) and the first reason it is unusable (or None)."""
    try:
        header = image_header(path)
    except ImageError as exc:
        return None, ImageCheck(exc.code, exc.detail)
    if not header.has_pixels:
        return header, ImageCheck(
            "no_pixel_data",
            "DICOM file has no pixel data (e.g. a report or a series header); "
            "point the record at an image DICOM instead",
        )
    size = size_problem(header.width, header.height)
    if size or not decode:
        return header, size
    try:
        load_image(path)
    except ImageError as exc:
        return header, ImageCheck(exc.code, exc.detail)
    return header, None


def check_image(path: str | Path, *, decode: bool = True) -> ImageCheck | None:
    """The first reason ``path`` cannot be used as a Qwen-VL image, or None when it can."""
    return inspect_image(path, decode=decode)[1]


def size_problem(width: int, height: int) -> ImageCheck | None:
    """Why an image (or video frame) of this size cannot go to Qwen-VL, or None."""
    dims = f"image is {width}x{height} px"
    if min(width, height) < MIN_SIDE:
        return ImageCheck("too_small", f"{dims}; each side must be at least {MIN_SIDE} px")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        return ImageCheck("aspect_ratio", f"{dims}; aspect ratio above {MAX_ASPECT} is refused")
    if width * height > MAX_PIXELS:
        return ImageCheck(
            "too_large",
            f"{dims}, above the {MAX_PIXELS:,}-pixel decompression-bomb limit; downscale it",
        )
    return None


def image_problem(path: str | Path, *, decode: bool = True) -> str | None:
    """Why ``path`` cannot be used as a Qwen-VL image (one line), or None when it can."""
    check = check_image(path, decode=decode)
    return check.message if check else None


def resolve_inside_root(root: str | Path, relative: str | Path) -> Path:
    """``relative`` joined to ``root``; raise :class:`ImageError` (``outside_root``) if it escapes.

    Backslashes are read as separators (datasets made on Windows). The check is lexical (``..``
    and absolute paths), so symlinks placed inside the dataset folder are trusted.
    """
    text = str(relative).replace("\\", "/")
    base = Path(os.path.abspath(root))
    if _WINDOWS_ABSOLUTE_RE.match(text) and os.name != "nt":
        raise _outside(relative, base, "is a Windows absolute path")
    joined = text if Path(text).is_absolute() else posixpath.join(base.as_posix(), text)
    candidate = Path(os.path.normpath(joined))
    if candidate != base and base not in candidate.parents:
        raise _outside(relative, base, "escapes the dataset root")
    return candidate


def _outside(relative: str | Path, root: Path, why: str) -> ImageError:
    return ImageError(
        relative,
        "outside_root",
        f"image path {why} {root}",
        "use a path relative to the JSONL file's folder, without '..'",
    )


def iter_record_image_checks(
    records: Iterable[Record],
    jsonl_path: str | Path,
    *,
    decode: bool = True,
    root: str | Path | None = None,
) -> Iterator[tuple[Record, int, Path, ImageCheck]]:
    """Yield ``(record, image index, path, check)`` for every unusable image.

    Each distinct file is checked once (VQA sets ask many questions about one image). With
    ``root``, image paths must stay inside it (``outside_root`` otherwise).
    """
    base = Path(jsonl_path).parent
    seen: dict[Path, ImageCheck | None] = {}
    for record in records:
        for index, path, check in record_image_paths(record, base, root):
            if check is None:
                if path not in seen:
                    seen[path] = check_image(path, decode=decode)
                check = seen[path]
            if check is not None:
                yield record, index, path, check


def record_image_paths(
    record: Record, base: Path, root: str | Path | None, *, allow_absolute: bool = False
) -> Iterator[tuple[int, Path, ImageCheck | None]]:
    """Each image's path (joined to ``base``; kept inside ``root`` when given).

    With ``allow_absolute`` (``medvl data validate`` without ``--root``), paths are taken as
    written: absolute, or relative to ``base`` with ``../`` included, because converters write
    images kept outside the output's folder that way (see
    :func:`medvl.data.formats.base.output_path`); only Windows drive paths are refused here.
    """
    for index, raw in enumerate(record.images):
        yield (index, *resolve_record_path(raw, base, root, allow_absolute=allow_absolute))


def record_video_paths(
    record: Record, base: Path, root: str | Path | None, *, allow_absolute: bool = False
) -> Iterator[tuple[int, str, Path, ImageCheck | None]]:
    """Each file or folder the record's videos read: ``(video index, field, path, check)``.

    ``field`` names the key within the record (``videos[0].frames[3]``, ``videos[1].volume``,
    ``videos[2].series``); paths follow :func:`record_image_paths`' rules.
    """
    for index, video in enumerate(record.videos):
        if video.frames is not None:
            named = [(f"videos[{index}].frames[{k}]", raw) for k, raw in enumerate(video.frames)]
        else:
            named = [(f"videos[{index}].{video.kind}", video.volume or video.series or "")]
        for field, raw in named:
            path, check = resolve_record_path(raw, base, root, allow_absolute=allow_absolute)
            yield index, field, path, check


@functools.lru_cache(maxsize=64)
def _is_inside(base: str, root: str) -> bool:
    return Path(os.path.abspath(base)).is_relative_to(os.path.abspath(root))


def resolve_record_path(
    raw: str, base: Path, root: str | Path | None, *, allow_absolute: bool = False
) -> tuple[Path, ImageCheck | None]:
    """One path of a record joined to ``base``, and an ``outside_root`` check when it leaves
    ``root`` (see :func:`record_image_paths`)."""
    if root is None:
        return (Path(raw) if Path(raw).is_absolute() else Path(base) / raw), None
    text = raw.replace("\\", "/")
    absolute = text.startswith("/") or bool(_WINDOWS_ABSOLUTE_RE.match(text))
    if allow_absolute and not _WINDOWS_ABSOLUTE_RE.match(text):
        return (Path(text) if text.startswith("/") else base / text), None
    if _is_inside(str(base), str(root)) and not absolute and ".." not in text.split("/"):
        return base / text, None  # inside the root by construction (the common case)
    if not (Path(text).is_absolute() or _WINDOWS_ABSOLUTE_RE.match(text)):
        text = os.path.relpath(base / text, root)
    try:
        return resolve_inside_root(root, text), None
    except ImageError as exc:
        return Path(raw), ImageCheck(exc.code, exc.detail)


def check_record_images(
    records: Iterable[Record],
    jsonl_path: str | Path,
    *,
    decode: bool = True,
    root: str | Path | None = None,
) -> list[str]:
    """One message per unusable image, naming the file, record id and image path."""
    return [
        f"{jsonl_path} (id {record.id!r}): field 'images[{index}]' ({path}): {check.message}"
        for record, index, path, check in iter_record_image_checks(
            records, jsonl_path, decode=decode, root=root
        )
    ]
