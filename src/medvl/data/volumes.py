"""Reading a record's videos as ordered RGB frames (slices of a series or volume).

:func:`load_frames` is the one entry point every consumer uses (token counting, training
features, inference, the UI); :func:`read_video` returns the same frames with what was done
(slice indices used, spacing, ordering rule, warnings such as a missing slice), and
:func:`describe_video` the same facts from headers only, without decoding pixels.

* ``frames``: each file through :func:`medvl.data.medimage.load_image`, in the order given.
* ``volume`` (NIfTI; a DICOM file given as ``volume`` is read as a series) and ``series`` (a
  DICOM series folder or one multi-frame file, see :mod:`medvl.data.series`): a voxel grid
  with a RAS+ affine, cut along the patient ``axis`` whatever the voxel order on disk.
  **Slices run from the lowest to the highest RAS+ coordinate** (nibabel's RAS+: x grows
  towards the patient's right, y anterior, z superior): axial from inferior to superior (feet
  to head), coronal from posterior to anterior, sagittal from the patient's left to right
  (:data:`AXIS_ORDER`). Each frame is shown in radiological convention, as
  :func:`medvl.data.medimage.load_image` shows one NIfTI slice: the patient's right on the
  image's left, anterior (axial) or superior (coronal, sagittal) at the top. Planes with
  unequal pixel spacing (a coronal cut of 5 mm slices) are resized to square pixels.
* ``sample`` picks slice indices along the axis (:func:`sample_indices`); ``window`` applies
  one window to every frame of the video (preset, ``[center, width]``, ``minmax``, or absent:
  the DICOM series' own window, else min..max over the sampled slices), so grey levels mean the
  same thing in every frame.

A DICOM series' header index (grouping, order, spacing) is cached per process while its files
are unchanged (:func:`series_index`), and its warnings are logged once: training reads the same
series every epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from medvl.data.medimage import (
    MINMAX,
    NIFTI_SUFFIXES,
    apply_window,
    image_kind,
    load_image,
    nifti_plane,
    nifti_ras_axes,
    open_nifti,
    radiological,
    resolve_window,
)
from medvl.data.nifti import nifti_planes
from medvl.data.series_cache import series_index, warn_once
from medvl.data.video import VideoSpec
from medvl.errors import MedvlError

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

RAS_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
AXIS_ORDER = {
    "axial": "inferior to superior",
    "coronal": "posterior to anterior",
    "sagittal": "left to right",
}


class Grid(Protocol):
    """A voxel grid: ``shape`` (3 voxel axes), a RAS+ ``affine`` and one plane at a time."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def plane(self, voxel_axis: int, position: int) -> np.ndarray: ...

    def planes(self, voxel_axis: int, positions: list[int]) -> list[np.ndarray]: ...

    def spacing(self, voxel_axis: int) -> float | None: ...


@dataclass
class VideoFrames:
    """The frames of one video entry and how they were chosen."""

    frames: list[Image.Image]
    indices: list[int]  # slice indices used, 0 = first slice along the axis (see AXIS_ORDER)
    count: int  # slices along the axis before sampling
    spacing_mm: float | None = None
    order_rule: str | None = None  # DICOM: ImagePositionPatient, InstanceNumber, ...
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)  # patient_id, study_uid, series_uid


def load_frames(spec: VideoSpec, base_dir: str | Path) -> list[Image.Image]:
    """The entry's frames in order, as 8-bit RGB images of one size.

    Training calls this for every sample in every epoch: a series' warnings (a missing slice,
    file-name order) are logged once per series and process, and its header index is cached
    (:func:`series_index`)."""
    result = read_video(spec, base_dir)
    warn_once(spec.paths(base_dir)[0], spec.series_uid, result.warnings)
    return result.frames


def read_video(spec: VideoSpec, base_dir: str | Path) -> VideoFrames:
    """Decode the entry's frames; see the module docstring for order, orientation, window."""
    if spec.frames is not None:
        frames = [load_image(path, window=spec.window) for path in spec.paths(base_dir)]
        return VideoFrames(frames, list(range(len(frames))), len(frames))
    info, grid, extras = _open(spec, base_dir)
    frames = _frames(grid, spec, info, extras)
    info.frames = frames
    return info


def describe_video(spec: VideoSpec, base_dir: str | Path) -> VideoFrames:
    """Everything :func:`read_video` reports except the frames (empty): headers only."""
    if spec.frames is not None:
        count = len(spec.frames)
        return VideoFrames([], list(range(count)), count)
    return _open(spec, base_dir)[0]


def video_shape(spec: VideoSpec, base_dir: str | Path) -> tuple[int, int, int]:
    """(frames, width, height) that :func:`read_video` gives a ``volume``/``series`` entry,
    from headers only: counting a video's tokens needs no decoded slice."""
    info, grid, _ = _open(spec, base_dir)
    voxel_axis, _ = _axis(grid, spec.axis)
    axes = nifti_ras_axes(grid)
    others = [v for v in range(3) if v != voxel_axis]
    high, low = _display_axes(axes, others)
    rows_mm, cols_mm = _plane_spacing(grid, axes, others)
    width, height = _square_size(grid.shape[low], grid.shape[high], rows_mm, cols_mm)
    return len(info.indices), width, height


def video_meta(spec: VideoSpec, base_dir: str | Path) -> dict[str, str]:
    """Patient/study/series ids of a DICOM series (``patient_id``, ``study_uid``,
    ``series_uid``, ``modality``); empty for NIfTI volumes and frame lists, which carry none."""
    return describe_video(spec, base_dir).meta if spec.series else {}


# ---------------------------------------------------------------- sampling


def sample_indices(count: int, spacing_mm: float | None, sample: dict[str, Any]) -> list[int]:
    """Slice indices chosen by ``sample`` among ``count`` slices ``spacing_mm`` apart.

    * ``{}``: every slice.
    * ``{"n": N}``: N indices evenly spaced, the first and last slice included (rounded half
      up); N >= count gives every slice, N == 1 the middle one (lower middle when even).
    * ``{"every_mm": K}``: the slice nearest to each multiple of K mm from the first slice
      (one every round(K / spacing) slices when K is a multiple of the spacing); K below the
      spacing gives every slice. Needs ``spacing_mm``.
    * ``{"slab": [FIRST, LAST]}``: only slices FIRST..LAST (inclusive), with ``n`` or
      ``every_mm`` applied inside the slab, counted from FIRST.
    """
    if count < 1:
        raise MedvlError("the volume has no slices along this axis")
    first, last = sample.get("slab", (0, count - 1))
    if last > count - 1:
        raise MedvlError(
            f"sample.slab [{first}, {last}] is outside the {count} slices (0..{count - 1})"
        )
    span = last - first + 1
    if sample.get("n") is not None:
        local = _evenly(span, int(sample["n"]))
    elif sample.get("every_mm") is not None:
        if not spacing_mm:
            raise MedvlError("sample.every_mm needs the slice spacing, which is unknown here")
        local = _every(span, float(sample["every_mm"]) / spacing_mm)
    else:
        local = list(range(span))
    return [first + i for i in local]


def _evenly(span: int, n: int) -> list[int]:
    if n >= span:
        return list(range(span))
    if n == 1:
        return [(span - 1) // 2]
    # round(j * (span - 1) / (n - 1)) half up, in integers: no float ties
    return [(2 * j * (span - 1) + (n - 1)) // (2 * (n - 1)) for j in range(n)]


def _every(span: int, step: float) -> list[int]:
    picked: list[int] = []
    j = 0
    while j * step <= span - 1 + 1e-9:
        index = int(np.floor(j * step + 0.5 + 1e-9))
        if index <= span - 1 and (not picked or index != picked[-1]):
            picked.append(index)
        j += 1
    return picked


# ---------------------------------------------------------------- grids


class NiftiGrid:
    """A NIfTI image as a :class:`Grid` (4-D: its first volume)."""

    def __init__(self, path: Path):
        self.path = path
        self.image = open_nifti(path, keep_open=True)
        self.shape = (*self.image.shape[:3], 1, 1)[:3]
        self.affine = np.asarray(self.image.affine, dtype=np.float64)

    def plane(self, voxel_axis: int, position: int) -> np.ndarray:
        return nifti_plane(self.image, voxel_axis, position, self.path)

    def planes(self, voxel_axis: int, positions: list[int]) -> list[np.ndarray]:
        """The planes at ``positions``, read in one pass in file order (:func:`nifti_planes`):
        a ``.nii.gz`` is decompressed once, not once per plane."""
        read = nifti_planes(self.image, voxel_axis, positions, self.path)
        return [read[p] for p in positions]

    def spacing(self, voxel_axis: int) -> float | None:
        """Millimetres between voxels along ``voxel_axis`` (the affine's column length)."""
        value = float(np.linalg.norm(self.affine[:3, voxel_axis]))
        return value if value > 0 else None


def _open(spec: VideoSpec, base_dir: str | Path) -> tuple[VideoFrames, Grid, dict[str, Any]]:
    """(facts without frames, the grid, DICOM extras: file window, MONOCHROME1)."""
    path = spec.paths(base_dir)[0]
    if spec.volume and not path.is_file():
        raise MedvlError(f"{path}: volume file not found; check the path")
    dicom_file = bool(spec.volume) and image_kind(path) == "dicom"  # multi-frame: a series
    if spec.volume and not dicom_file:
        if not path.name.lower().endswith(NIFTI_SUFFIXES) and image_kind(path) != "nifti":
            raise MedvlError(
                f"{path}: 'volume' must be a NIfTI file (.nii, .nii.gz) or a DICOM file"
            )
        grid: Grid = NiftiGrid(path)
        extras: dict[str, Any] = {"path": path}
        info = VideoFrames([], [], 0)
    else:
        series = series_index(path, spec.series_uid)  # a folder, or one (multi-frame) file
        grid = series.grid()
        extras = {"path": path, "file_window": series.file_window, "invert": series.invert}
        info = VideoFrames([], [], 0, None, series.order_rule, list(series.warnings), series.ids)
        logger.debug("%s: slices ordered by %s", path, series.order_rule)
    voxel_axis, _ = _axis(grid, spec.axis)
    info.count = grid.shape[voxel_axis]
    info.spacing_mm = grid.spacing(voxel_axis)
    try:
        info.indices = sample_indices(info.count, info.spacing_mm, spec.sample)
    except MedvlError as exc:
        raise MedvlError(f"{path}: {exc} ({spec.axis} axis)") from exc
    return info, grid, extras


def _axis(grid: Grid, axis: str) -> tuple[int, float]:
    """(voxel axis running along the patient ``axis``, +1 if it runs towards R/A/S else -1)."""
    axes = nifti_ras_axes(grid)
    voxel_axis = int(np.flatnonzero(axes[:, 0] == RAS_AXIS[axis])[0])
    return voxel_axis, float(axes[voxel_axis, 1])


# ---------------------------------------------------------------- frames


def _frames(
    grid: Grid, spec: VideoSpec, info: VideoFrames, extras: dict[str, Any]
) -> list[Image.Image]:
    path = extras["path"]
    voxel_axis, direction = _axis(grid, spec.axis)
    axes = nifti_ras_axes(grid)
    others = [v for v in range(3) if v != voxel_axis]
    positions = [i if direction > 0 else info.count - 1 - i for i in info.indices]
    in_plane = [axes[v] for v in others]
    planes = [radiological(p, in_plane) for p in grid.planes(voxel_axis, positions)]
    window = resolve_window(path, spec.window)
    if window is None and spec.window != MINMAX:
        window = extras.get("file_window")
    if window is None:
        window = _minmax_window(planes)
    rows_mm, cols_mm = _plane_spacing(grid, axes, others)
    frames = []
    for plane in planes:
        gray = apply_window(plane, window) if window else np.zeros(plane.shape, np.uint8)
        if extras.get("invert"):
            gray = 255 - gray
        frames.append(_square_pixels(Image.fromarray(gray).convert("RGB"), rows_mm, cols_mm))
    return frames


def _minmax_window(planes: list[np.ndarray]) -> tuple[float, float] | None:
    """The window stretching min..max of all planes together; None when they are constant."""
    lows, highs = [], []
    for plane in planes:
        finite = plane[np.isfinite(plane)]
        if finite.size:
            lows.append(float(finite.min()))
            highs.append(float(finite.max()))
    if not lows or min(lows) == max(highs):
        return None
    low, high = min(lows), max(highs)
    return (low + high) / 2, high - low


def _plane_spacing(grid: Grid, axes: np.ndarray, others: list[int]) -> tuple[float, float]:
    """(mm between displayed rows, mm between displayed columns): rows follow the higher RAS
    axis of the two in-plane voxel axes (see ``medimage._radiological``)."""
    high, low = _display_axes(axes, others)
    return (
        float(np.linalg.norm(grid.affine[:3, high])),
        float(np.linalg.norm(grid.affine[:3, low])),
    )


def _display_axes(axes: np.ndarray, others: list[int]) -> tuple[int, int]:
    """(in-plane voxel axis shown down the rows, the one across the columns): rows follow the
    higher RAS axis (see :func:`medvl.data.nifti.radiological`)."""
    high, low = sorted(others, key=lambda v: axes[v, 0], reverse=True)
    return high, low


def _square_size(width: int, height: int, rows_mm: float, cols_mm: float) -> tuple[int, int]:
    """(width, height) at which one pixel covers as many mm down as across (the finer spacing
    is kept; unchanged when within 1 % or unknown)."""
    if rows_mm <= 0 or cols_mm <= 0 or abs(rows_mm / cols_mm - 1) < 0.01:
        return width, height
    finest = min(rows_mm, cols_mm)
    return max(1, round(width * cols_mm / finest)), max(1, round(height * rows_mm / finest))


def _square_pixels(image: Image.Image, rows_mm: float, cols_mm: float) -> Image.Image:
    """Resize so one pixel covers as many mm down as across (:func:`_square_size`)."""
    size = _square_size(image.width, image.height, rows_mm, cols_mm)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR)
