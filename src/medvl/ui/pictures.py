"""Pictures for the browser: any image medvl reads (PNG/JPEG/DICOM/NIfTI) as a small RGB image.

Browsers show neither DICOM nor NIfTI, and Gradio serves only files under folders it was told
about; so every tab hands Gradio decoded ``PIL`` pictures (which it copies into its own cache)
made by :func:`medvl.data.medimage.load_image`, with the same windowing and slicing rules the
models see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medvl.data.medimage import (
    MINMAX,
    WINDOW_PRESETS,
    ImageError,
    image_kind,
    load_image,
    nifti_ras_axes,
    open_nifti,
    read_dicom,
)

#: Window choices offered for DICOM/NIfTI: the file's own window first, then min..max and the
#: CT presets of :data:`medvl.data.medimage.WINDOW_PRESETS`.
FILE_WINDOW = "file default"
WINDOWS = (FILE_WINDOW, MINMAX, *WINDOW_PRESETS)
PREVIEW_SIDE = 640


def window_arg(name: str | None) -> str | None:
    """The ``window`` argument of :func:`load_image` for a choice of :data:`WINDOWS`."""
    return None if not name or name == FILE_WINDOW else name


def slice_count(path: str | Path, axis: int = 2) -> int:
    """Frames of a DICOM file or slices of a NIfTI volume along patient ``axis``; 1 otherwise."""
    path = Path(path)
    kind = image_kind(path)
    if kind == "dicom":
        return int(read_dicom(path, header_only=True).get("NumberOfFrames", 1) or 1)
    if kind == "nifti":
        image = open_nifti(path)
        shape = (*image.shape[:3], 1, 1)[:3]
        axes = nifti_ras_axes(image)
        return int(shape[int(np.flatnonzero(axes[:, 0] == axis)[0])])
    return 1


def render(
    path: str | Path, window: str | None = None, slice_index: int | None = None, axis: int = 2
) -> Image.Image:
    """The picture the model is given for ``path`` (full size); raises ``ImageError``."""
    kind = image_kind(path)
    return load_image(
        path,
        window=window_arg(window) if kind != "raster" else None,
        slice_index=slice_index if kind != "raster" else None,
        axis=axis,
    )


def picture(path: str | Path, side: int = PREVIEW_SIDE) -> Image.Image | None:
    """A preview of ``path`` no larger than ``side`` pixels; None when it cannot be read."""
    try:
        image = load_image(path)
    except ImageError:
        return None
    image.thumbnail((side, side))
    return image


def save_png(image: Image.Image, folder: Path, stem: str) -> Path:
    """Write ``image`` as ``folder/stem.png`` (what the chat sends the model) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.png"
    image.save(path, format="PNG")
    return path
