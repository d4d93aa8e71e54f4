"""Reading one slice of a NIfTI volume (via nibabel) as an 8-bit RGB picture.

``axis`` is a *patient* axis in RAS+ space (0 sagittal, 1 coronal, 2 axial) whatever the voxel
order on disk; the slice is shown in radiological convention: patient's right on the image's
left, anterior (axial) or superior (coronal, sagittal) at the top, anterior on the left for
sagittal slices. 4-D volumes use their first volume. Only the needed bytes are read when nibabel
can. The public helpers (:func:`open_nifti`, :func:`nifti_ras_axes`, :func:`nifti_plane`,
:func:`radiological`) are shared with :mod:`medvl.data.images` and :mod:`medvl.data.volumes`.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medvl.data.image_errors import MAX_PIXELS, ImageError, one_line, pick_index, too_large
from medvl.data.windowing import apply_window, gray_to_rgb

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def open_nifti(path: Path, *, keep_open: bool = False) -> Any:
    """The nibabel image of ``path``; only the header is read until data is sliced.

    ``keep_open`` keeps one file handle for all slicing of the image: a ``.nii.gz`` then
    decompresses forward from where the last read stopped instead of from its start (use it
    when reading several planes, in file order: :func:`nifti_planes`)."""
    import nibabel as nib

    try:
        return nib.load(path, keep_file_open=True) if keep_open else nib.load(path)
    except Exception as exc:
        raise ImageError(
            path,
            "undecodable",
            f"NIfTI file cannot be read ({one_line(str(exc))})",
            "re-export it as .nii or .nii.gz",
        ) from exc


def nifti_ras_axes(image: Any) -> np.ndarray:
    """For each of the first 3 voxel axes: (RAS axis it runs along, +1 or -1 direction)."""
    from nibabel.orientations import io_orientation

    axes = io_orientation(image.affine)[:3]
    if np.isnan(axes).any():  # degenerate affine: take the voxel order as RAS
        return np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    return axes


def load_nifti(
    path: Path, window: tuple[float, float] | None, index: int | None, axis: int
) -> Image.Image:
    """Slice ``index`` (None: the middle one) across patient ``axis`` of ``path``, as 8-bit RGB
    in radiological orientation, through the resolved ``window`` (None: min..max)."""
    if axis not in (0, 1, 2):
        raise ImageError(
            path, "bad_slice", f"axis {axis} is not 0, 1 or 2", "0 sagittal, 1 coronal, 2 axial"
        )
    image = open_nifti(path)
    shape = (*image.shape[:3], 1, 1)[:3]
    axes = nifti_ras_axes(image)
    voxel_axis = int(np.flatnonzero(axes[:, 0] == axis)[0])
    position = pick_index(path, index, shape[voxel_axis], f"slice on axis {axis}")
    if axes[voxel_axis, 1] < 0:  # stored running towards L/P/I: count from the other end
        position = shape[voxel_axis] - 1 - position
    data = nifti_plane(image, voxel_axis, position, path)
    plane = radiological(data, [axes[v] for v in range(3) if v != voxel_axis])
    if plane.size > MAX_PIXELS:
        raise too_large(path, f"{plane.shape[1]}x{plane.shape[0]} px")
    return gray_to_rgb(apply_window(plane, window))


def nifti_plane(image: Any, voxel_axis: int, position: int, path: Path) -> np.ndarray:
    """One 2-D slice of a NIfTI image at ``position`` on ``voxel_axis`` (the voxel order on
    disk), scaled; raises :class:`ImageError` naming ``path`` when the data cannot be read."""
    shape = (*image.shape[:3], 1, 1)[:3]
    try:
        return _nifti_slice(image, shape, voxel_axis, position)
    except Exception as exc:
        raise _nifti_data_error(path, exc) from exc


#: Voxels per block when streaming a volume for planes across its stored slices (~128 MB
#: as float64).
STREAM_VOXELS = 1 << 24


def nifti_planes(
    image: Any, voxel_axis: int, positions: list[int], path: Path
) -> dict[int, np.ndarray]:
    """The 2-D slices at ``positions`` on ``voxel_axis``, each read once, in one pass in file
    order (open ``image`` with ``keep_open``).

    NIfTI stores voxel axis 2 slowest, so a plane across axis 2 is one contiguous run: those are
    read one by one in ascending order. A plane across axis 0 or 1 touches the whole volume, so
    the volume is streamed once in blocks of axis-2 slices and each plane is filled from every
    block: one read of the file (one decompression of a ``.nii.gz``) for any number of planes,
    never the whole volume in memory."""
    wanted = sorted(set(positions))
    if voxel_axis == 2 or len(image.shape) < 3:
        return {p: nifti_plane(image, voxel_axis, p, path) for p in wanted}
    shape = image.shape[:3]
    depth = shape[2]
    step = max(1, STREAM_VOXELS // max(1, shape[0] * shape[1]))
    out: dict[int, np.ndarray] = {}
    try:
        for start in range(0, depth, step):
            selector = (slice(None), slice(None), slice(start, start + step))
            block = np.asarray(image.dataobj[selector + (0,) * (len(image.shape) - 3)])
            for p in wanted:
                part = block[(slice(None),) * voxel_axis + (p,)]  # a view, no copy
                if p not in out:
                    out[p] = np.empty((*part.shape[:1], depth), dtype=part.dtype)
                out[p][:, start : start + part.shape[1]] = part
    except Exception as exc:
        raise _nifti_data_error(path, exc) from exc
    return out


def _nifti_slice(image: Any, shape: tuple[int, ...], voxel_axis: int, position: int) -> np.ndarray:
    """One 2-D slice, read through nibabel's proxy (scaled; only the needed bytes when possible)."""
    if len(image.shape) < 3:
        return np.take(np.asarray(image.dataobj).reshape(shape), position, axis=voxel_axis)
    selector: list[Any] = [slice(None)] * 3 + [0] * (len(image.shape) - 3)  # 4-D: first volume
    selector[voxel_axis] = position
    return np.asarray(image.dataobj[tuple(selector)])


def radiological(data: np.ndarray, axes: list[np.ndarray]) -> np.ndarray:
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
            path, "truncated", f"NIfTI data is truncated ({one_line(str(exc))})", "re-copy it"
        )
    return ImageError(
        path, "undecodable", f"NIfTI data cannot be read ({one_line(str(exc))})", "re-export it"
    )
