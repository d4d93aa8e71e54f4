"""The error every medical-image reader raises, and the small checks shared by the readers.

:class:`ImageError` carries a short stable ``code`` (``missing``, ``truncated``, ``too_large``...)
for reports and a one-line message that names the file and the fix. The checks here (file
present, pixel count under the decompression-bomb limit, frame/slice index in range) are the ones
the raster (:mod:`medvl.data.medimage`), DICOM (:mod:`medvl.data.dicom`) and NIfTI
(:mod:`medvl.data.nifti`) readers all make.
"""

from __future__ import annotations

from pathlib import Path

from medvl.errors import MedvlError

MAX_PIXELS = 89_478_485  # PIL's default MAX_IMAGE_PIXELS (1 GiB / 4 bytes / 3 channels)
REEXPORT = "re-export it as PNG or JPEG"  # the usual fix for a file that cannot be decoded


class ImageError(MedvlError):
    """An image cannot be read; ``code`` is a short stable reason such as ``truncated``.

    ``str(error)`` is ``"<path>: <reason>; <fix>"``; ``detail`` is the same without the path.
    """

    def __init__(self, path: str | Path, code: str, reason: str, fix: str):
        self.path, self.code = str(path), code
        self.detail = f"{one_line(reason)}; {fix}"
        super().__init__(f"{path}: {self.detail}")


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def require_file(path: Path) -> None:
    """Raise :class:`ImageError` (``missing``) unless ``path`` is an existing file."""
    if not path.is_file():
        raise ImageError(
            path,
            "missing",
            "image file not found",
            "check the path (relative to the JSONL file's folder)",
        )


def too_large(path: Path, what: str) -> ImageError:
    """The ``too_large`` error for an image of ``what`` (e.g. ``"9000x12000 px"``)."""
    return ImageError(
        path,
        "too_large",
        f"image is {what}, above the {MAX_PIXELS:,}-pixel decompression-bomb limit",
        "downscale it before use",
    )


def pick_index(path: Path, index: int | None, count: int, what: str) -> int:
    """The frame or slice to show out of ``count``: ``index``, or the middle one when None.

    Raises :class:`ImageError` (``bad_slice``) when ``index`` is out of range; ``what`` names the
    thing in the message (``"frame"``, ``"slice on axis 2"``).
    """
    if index is None:
        return count // 2
    if not 0 <= index < count:
        raise ImageError(
            path, "bad_slice", f"{what} {index} does not exist", f"pass 0..{count - 1}"
        )
    return index
