"""A DICOM series folder read as one ordered stack of slices, with its geometry.

:func:`read_series` reads only headers: every DICOM file under the folder (or one multi-frame
file) is grouped by ``SeriesInstanceUID``; a folder holding several series needs ``series_uid``.
The slices are then ordered, and the rule used is kept in :attr:`DicomSeries.order_rule`:

1. ``ImagePositionPatient``: each slice's position projected on the slice normal, the cross
   product of ``ImageOrientationPatient``'s row and column cosines (ascending). This is the only
   rule that is right for any orientation, oblique included, and for any file naming.
2. ``InstanceNumber`` when a position or the orientation is missing.
3. ``frame order`` for one multi-frame file without per-frame positions, else ``file name``
   (with a warning).

The slice spacing is the median gap between consecutive positions (else ``SpacingBetweenSlices``
or ``SliceThickness``). A gap over 1.5 times the median is reported in
:attr:`DicomSeries.warnings` (a missing slice), never raised. :meth:`DicomSeries.grid` gives the
stack as a voxel grid with a RAS+ affine (DICOM's LPS with x and y negated), so the same code
slices NIfTI volumes and DICOM series along a patient axis (:mod:`medvl.data.volumes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.data.medimage import (
    PIXEL_KEYWORDS,
    ImageError,
    dicom_file_window,
    dicom_frame_pixels,
    image_kind,
    read_dicom,
)
from medvl.errors import MedvlError

GAP_FACTOR = 1.5  # a gap above this times the median spacing means a missing slice
_NO_UID = "<no SeriesInstanceUID>"


@dataclass(frozen=True)
class SliceRef:
    """One slice: a file, and its frame when the file holds several."""

    path: Path
    frame: int | None = None
    position: tuple[float, float, float] | None = None  # ImagePositionPatient (LPS, mm)
    instance: int | None = None


@dataclass
class DicomSeries:
    """One series' slices in order, with what is needed to place and window them."""

    uid: str
    slices: list[SliceRef]
    order_rule: str
    row_cosines: np.ndarray
    column_cosines: np.ndarray
    pixel_spacing: tuple[float, float]  # (between rows, between columns) in mm
    spacing_mm: float | None
    shape: tuple[int, int]  # (rows, columns)
    ids: dict[str, str] = field(default_factory=dict)
    file_window: tuple[float, float] | None = None
    invert: bool = False  # MONOCHROME1
    warnings: list[str] = field(default_factory=list)

    @property
    def normal(self) -> np.ndarray:
        """The slice normal: row cosines x column cosines."""
        return np.cross(self.row_cosines, self.column_cosines)

    def grid(self) -> SeriesGrid:
        """The stack as a voxel grid (column, row, slice) with a RAS+ affine."""
        return SeriesGrid(self)


class SeriesGrid:
    """Voxel ``[i, j, k]`` = column ``i``, row ``j`` of slice ``k``; decodes slices lazily."""

    def __init__(self, series: DicomSeries):
        self.series = series
        rows, cols = series.shape
        self.shape = (cols, rows, len(series.slices))
        row_mm, col_mm = series.pixel_spacing
        origin = series.slices[0].position
        lps = np.eye(4)
        lps[:3, 0] = series.row_cosines * col_mm
        lps[:3, 1] = series.column_cosines * row_mm
        lps[:3, 2] = series.normal * (series.spacing_mm or 1.0)
        lps[:3, 3] = origin if origin is not None else 0.0
        self.affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
        self._stack: np.ndarray | None = None
        self._datasets: dict[Path, Any] = {}

    def plane(self, voxel_axis: int, position: int) -> np.ndarray:
        """Rescaled values of one plane; the two remaining voxel axes in order."""
        if voxel_axis == 2:
            return self._slice(position).T
        if self._stack is None:
            self._stack = np.stack([self._slice(k).T for k in range(self.shape[2])], axis=2)
        return np.take(self._stack, position, axis=voxel_axis)

    def planes(self, voxel_axis: int, positions: list[int]) -> list[np.ndarray]:
        """:meth:`plane` at each of ``positions`` (slices are decoded one by one)."""
        return [self.plane(voxel_axis, p) for p in positions]

    def spacing(self, voxel_axis: int) -> float | None:
        """Millimetres between voxels: pixel spacing in-plane, the measured slice spacing
        across slices (None when unknown)."""
        if voxel_axis == 2:
            return self.series.spacing_mm
        return self.series.pixel_spacing[1 - voxel_axis]  # i: between columns, j: rows

    def _slice(self, k: int) -> np.ndarray:
        ref = self.series.slices[k]
        ds = self._datasets.get(ref.path)
        if ds is None:
            ds = read_dicom(ref.path)
            if ref.frame is not None:  # keep multi-frame files: other frames follow
                self._datasets[ref.path] = ds
        pixels = dicom_frame_pixels(ref.path, ds, ref.frame)
        if pixels.ndim != 2:
            raise ImageError(
                ref.path,
                "undecodable",
                "colour DICOM slices cannot form a volume",
                "export the frames as images and use a 'frames' entry",
            )
        if pixels.shape != self.series.shape:
            raise ImageError(
                ref.path,
                "bad_slice",
                f"slice is {pixels.shape[1]}x{pixels.shape[0]}, the series "
                f"{self.series.shape[1]}x{self.series.shape[0]}",
                "keep only slices of one size in the series folder",
            )
        slope, intercept = _rescale(ds, ref.frame)
        return pixels.astype(np.float32) * slope + intercept


# ---------------------------------------------------------------- finding and grouping


def read_series(path: str | Path, series_uid: str | None = None) -> DicomSeries:
    """The series in folder (or multi-frame file) ``path``: headers only, slices ordered.

    Raises :class:`MedvlError` when the folder has no DICOM image, several series and no
    ``series_uid`` (listing each UID with its slice count), or not the UID asked for.
    """
    path = Path(path)
    if not path.exists():
        raise MedvlError(f"{path}: no such DICOM series folder or file")
    groups = group_series(path)
    if not groups:
        raise MedvlError(f"{path}: no DICOM image files found in this series folder")
    uid = _choose_uid(path, groups, series_uid)
    headers = groups[uid]
    refs = [ref for ds, file in headers for ref in _slice_refs(ds, file)]
    first = headers[0][0]
    row_cos, col_cos = _orientation(first)
    ordered, rule, warnings = order_slices(refs, row_cos, col_cos)
    normal = np.cross(row_cos, col_cos) if row_cos is not None else None
    spacing, gap_warnings = slice_spacing(ordered, normal)
    if spacing is None:
        spacing = _header_spacing(first)
    return DicomSeries(
        uid=uid,
        slices=ordered,
        order_rule=rule,
        row_cosines=row_cos if row_cos is not None else np.array([1.0, 0.0, 0.0]),
        column_cosines=col_cos if col_cos is not None else np.array([0.0, 1.0, 0.0]),
        pixel_spacing=_pixel_spacing(first),
        spacing_mm=spacing,
        shape=(int(first.get("Rows", 0) or 0), int(first.get("Columns", 0) or 0)),
        ids=series_ids(first),
        file_window=next((w for ds, _ in headers if (w := dicom_file_window(ds))), None),
        invert=str(first.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1",
        warnings=warnings + gap_warnings,
    )


def group_series(path: Path) -> dict[str, list[tuple[Any, Path]]]:
    """DICOM image headers under ``path`` (a folder, searched recursively, or one file) by
    ``SeriesInstanceUID``, each group in file-name order. Non-image DICOM (DICOMDIR, reports)
    and other files are ignored."""
    groups: dict[str, list[tuple[Any, Path]]] = {}
    for file in _dicom_files(path):
        ds = read_dicom(file, header_only=True)
        if not any(k in ds for k in PIXEL_KEYWORDS):
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or _NO_UID), []).append((ds, file))
    return groups


def _dicom_files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for file in sorted(path.rglob("*")):
        hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
        named_ok = not hidden and file.name.upper() != "DICOMDIR"
        if named_ok and file.is_file() and image_kind(file) == "dicom":
            yield file


def _choose_uid(path: Path, groups: dict[str, list], wanted: str | None) -> str:
    listing = ", ".join(f"{uid} ({_count(g)} slices)" for uid, g in sorted(groups.items()))
    if wanted is not None:
        if wanted not in groups:
            raise MedvlError(f"{path}: no series {wanted!r} here; it holds {listing}")
        return wanted
    if len(groups) > 1:
        raise MedvlError(
            f"{path}: {len(groups)} series in one folder: {listing}; pick one with series_uid"
        )
    return next(iter(groups))


def _count(headers: list[tuple[Any, Path]]) -> int:
    return sum(int(ds.get("NumberOfFrames", 1) or 1) for ds, _ in headers)


def series_ids(ds: Any) -> dict[str, str]:
    """Patient, study and series identifiers of a dataset, as ``meta`` keys (absent: left out).

    ``patient_id``, ``study_uid`` and ``series_uid`` are the keys medvl's patient/study split
    grouping reads; ``modality`` says CT, MR...
    """
    names = {
        "patient_id": "PatientID",
        "study_uid": "StudyInstanceUID",
        "series_uid": "SeriesInstanceUID",
        "modality": "Modality",
    }
    return {key: str(ds.get(tag)).strip() for key, tag in names.items() if ds.get(tag)}


# ---------------------------------------------------------------- geometry


def _slice_refs(ds: Any, file: Path) -> list[SliceRef]:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    instance = _int(ds.get("InstanceNumber"))
    if frames == 1:
        return [SliceRef(file, None, _vector(ds.get("ImagePositionPatient")), instance)]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    refs = []
    for f in range(frames):
        group = per_frame[f] if f < len(per_frame) else None
        plane = _item(group, "PlanePositionSequence")
        position = _vector(plane.get("ImagePositionPatient")) if plane is not None else None
        refs.append(SliceRef(file, f, position, instance))
    return refs


def order_slices(
    refs: list[SliceRef], row_cos: np.ndarray | None, col_cos: np.ndarray | None
) -> tuple[list[SliceRef], str, list[str]]:
    """``refs`` sorted along the slice normal when every slice has a position and the
    orientation is known, else by InstanceNumber, else in frame or file-name order; returns
    (ordered, rule, warnings)."""
    if row_cos is not None and all(r.position is not None for r in refs):
        normal = np.cross(row_cos, col_cos)
        key = {id(r): float(np.dot(r.position, normal)) for r in refs}
        ordered = sorted(refs, key=lambda r: (key[id(r)], r.instance or 0, r.frame or 0))
        return ordered, "ImagePositionPatient", []
    if len({r.path for r in refs}) == 1 and refs[0].frame is not None:
        return list(refs), "frame order", []
    if all(r.instance is not None for r in refs):
        return sorted(refs, key=lambda r: (r.instance, r.frame or 0)), "InstanceNumber", []
    warning = "no ImagePositionPatient or InstanceNumber on every slice: ordered by file name"
    return sorted(refs, key=lambda r: (str(r.path), r.frame or 0)), "file name", [warning]


def slice_spacing(
    ordered: list[SliceRef], normal: np.ndarray | None
) -> tuple[float | None, list[str]]:
    """The median distance between consecutive slices along ``normal`` and a warning per gap
    over :data:`GAP_FACTOR` times it (or per repeated position); None without positions."""
    if normal is None or len(ordered) < 2 or any(r.position is None for r in ordered):
        return None, []
    where = np.array([float(np.dot(r.position, normal)) for r in ordered])
    steps = np.diff(where)
    moving = steps[steps > 1e-3]
    if moving.size == 0:
        return None, ["every slice has the same ImagePositionPatient: spacing unknown"]
    median = float(np.median(moving))
    warnings = []
    for i, step in enumerate(steps):
        a, b = ordered[i].path.name, ordered[i + 1].path.name
        if step > GAP_FACTOR * median:
            missing = max(1, round(step / median) - 1)
            warnings.append(
                f"missing slice: a gap of {step:.2f} mm between {a} and {b} (median spacing "
                f"{median:.2f} mm, about {missing} slice(s) missing)"
            )
        elif step <= 1e-3:
            warnings.append(f"{a} and {b} have the same position (duplicate slice?)")
    return median, warnings


def _orientation(ds: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    value = ds.get("ImageOrientationPatient")
    if value is None:
        shared = _item(_item(ds, "SharedFunctionalGroupsSequence"), "PlaneOrientationSequence")
        value = shared.get("ImageOrientationPatient") if shared is not None else None
    if value is None or len(value) != 6:
        return None, None
    cosines = np.array([float(v) for v in value])
    row, col = cosines[:3], cosines[3:]
    if np.linalg.norm(np.cross(row, col)) < 1e-6:
        return None, None
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _pixel_spacing(ds: Any) -> tuple[float, float]:
    value = ds.get("PixelSpacing")
    if value is None:
        measures = _item(_item(ds, "SharedFunctionalGroupsSequence"), "PixelMeasuresSequence")
        value = measures.get("PixelSpacing") if measures is not None else None
    try:
        row_mm, col_mm = (float(v) for v in value)
    except (TypeError, ValueError):
        return 1.0, 1.0
    return (row_mm, col_mm) if row_mm > 0 and col_mm > 0 else (1.0, 1.0)


def _header_spacing(ds: Any) -> float | None:
    measures = _item(_item(ds, "SharedFunctionalGroupsSequence"), "PixelMeasuresSequence")
    for source in (ds, measures):
        for tag in ("SpacingBetweenSlices", "SliceThickness"):
            value = _float(source.get(tag)) if source is not None else None
            if value is not None and value > 0:
                return value
    return None


def _rescale(ds: Any, frame: int | None) -> tuple[float, float]:
    """RescaleSlope/Intercept: top level, else the frame's or the shared functional group's."""
    sources = [ds]
    if frame is not None:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
        if frame < len(per_frame):
            sources.append(_item(per_frame[frame], "PixelValueTransformationSequence"))
        shared = _item(ds, "SharedFunctionalGroupsSequence")
        sources.append(_item(shared, "PixelValueTransformationSequence"))
    for source in sources:
        if source is not None and source.get("RescaleSlope") not in (None, ""):
            return float(source.RescaleSlope), float(source.get("RescaleIntercept", 0) or 0)
    return 1.0, 0.0


def _item(ds: Any, keyword: str) -> Any:
    """The first item of sequence ``keyword`` in ``ds``, or None."""
    if ds is None:
        return None
    sequence = ds.get(keyword)
    return sequence[0] if sequence else None


def _vector(value: Any) -> tuple[float, float, float] | None:
    try:
        x, y, z = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return x, y, z


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
