"""Videos in a canonical record: a CT/MRI series or volume, or any ordered frame sequence, given
to Qwen-VL as video input (frames with temporal patches and 3-D rotary positions).

A record's ``videos`` list holds one entry per ``<video>`` placeholder, in order. Each entry is
a JSON object of one of three kinds (paths relative to the JSONL file's folder, or absolute)::

    {"frames": ["ct/001.png", "ct/002.png", ...]}            # slice files, in this order
    {"volume": "ct/scan.nii.gz", "axis": "axial",             # a NIfTI volume ...
     "sample": {"n": 16}, "window": "lung"}
    {"series": "dicom/study1/", "series_uid": "1.2.3...",     # ... or a DICOM series folder
     "sample": {"every_mm": 5.0}, "window": [40, 400]}

``axis`` (volumes and series): ``axial`` (default), ``coronal`` or ``sagittal``, a patient axis
whatever the voxel order on disk. ``sample`` chooses slices along it: ``{"n": N}`` (N slices
evenly spaced over the whole extent, the first and last included), ``{"every_mm": K}`` (one
slice every K millimetres, from the slice spacing), ``{"slab": [FIRST, LAST]}`` (slice indices,
inclusive) optionally with ``n`` or ``every_mm`` inside the slab; without ``sample`` every slice
is used. ``window``: a preset name (``medvl.data.medimage.WINDOW_PRESETS``), ``[center,
width]``, ``"minmax"``, or absent (the file's own window, else min..max). ``series_uid`` picks one
series when the folder holds several (required then).

:class:`VideoSpec` is the parsed entry; :func:`load_frames` (``medvl.data.volumes``) turns it
into RGB frames in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

VIDEO_PLACEHOLDER = "<video>"
AXES = ("axial", "coronal", "sagittal")
KINDS = ("frames", "volume", "series")
_KEYS = frozenset({"frames", "volume", "series", "series_uid", "axis", "sample", "window"})
_SAMPLE_KEYS = frozenset({"n", "every_mm", "slab"})


class VideoFieldError(ValueError):
    """One key of one video entry is invalid; ``field`` is relative to the entry."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class VideoSpec:
    """One video entry of a record (see the module docstring for the JSON form)."""

    frames: tuple[str, ...] | None = None
    volume: str | None = None
    series: str | None = None
    series_uid: str | None = None
    axis: str = "axial"
    sample: dict[str, Any] = field(default_factory=dict)
    window: str | tuple[float, float] | None = None

    @property
    def kind(self) -> str:
        """``frames``, ``volume`` or ``series``."""
        return "frames" if self.frames is not None else "volume" if self.volume else "series"

    @classmethod
    def from_dict(cls, data: Any) -> VideoSpec:
        """Parse and check one entry; raises :class:`VideoFieldError` naming the key."""
        if not isinstance(data, dict):
            raise VideoFieldError(
                "<entry>", "must be an object with 'frames', 'volume' or 'series'"
            )
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise VideoFieldError(unknown[0], f"unknown key; a video entry has {sorted(_KEYS)}")
        given = [k for k in KINDS if data.get(k) is not None]
        if len(given) != 1:
            raise VideoFieldError(
                "<entry>",
                f"needs exactly one of 'frames', 'volume', 'series' (got {given or 'none'})",
            )
        frames = data.get("frames")
        if frames is not None:
            if not isinstance(frames, list) or not frames:
                raise VideoFieldError("frames", "must be a non-empty list of slice image paths")
            for i, path in enumerate(frames):
                if not isinstance(path, str) or not path.strip():
                    raise VideoFieldError(f"frames[{i}]", f"must be a path, got {path!r}")
            extra = sorted(k for k in ("axis", "sample", "series_uid") if k in data)
            if extra:
                raise VideoFieldError(extra[0], "applies to 'volume' and 'series' entries only")
        for name in ("volume", "series", "series_uid"):
            value = data.get(name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise VideoFieldError(name, f"must be a non-empty string, got {value!r}")
        axis = data.get("axis", "axial")
        if axis not in AXES:
            raise VideoFieldError("axis", f"must be one of {', '.join(AXES)}, got {axis!r}")
        return cls(
            frames=tuple(frames) if frames is not None else None,
            volume=data.get("volume"),
            series=data.get("series"),
            series_uid=data.get("series_uid"),
            axis=axis,
            sample=_sample(data.get("sample")),
            window=_window(data.get("window")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with only the keys that are set (and ``axis`` for volumes/series)."""
        out: dict[str, Any] = {}
        if self.frames is not None:
            out["frames"] = list(self.frames)
        else:
            out["volume" if self.volume else "series"] = self.volume or self.series
            if self.series_uid:
                out["series_uid"] = self.series_uid
            out["axis"] = self.axis
            if self.sample:
                out["sample"] = dict(self.sample)
        if self.window is not None:
            out["window"] = list(self.window) if isinstance(self.window, tuple) else self.window
        return out

    def paths(self, base_dir: str | Path) -> list[Path]:
        """The files (frames) or the one file/folder (volume, series) resolved against
        ``base_dir``."""
        names = list(self.frames) if self.frames is not None else [self.volume or self.series]
        return [Path(p) if Path(p).is_absolute() else Path(base_dir) / p for p in names if p]

    def rebased(self, mapping: Any) -> VideoSpec:
        """The same entry with each path passed through ``mapping(str) -> str``."""
        if self.frames is not None:
            return _replace(self, frames=tuple(mapping(p) for p in self.frames))
        if self.volume:
            return _replace(self, volume=mapping(self.volume))
        return _replace(self, series=mapping(self.series))


def _replace(spec: VideoSpec, **changes: Any) -> VideoSpec:
    from dataclasses import replace

    return replace(spec, **changes)


def _sample(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise VideoFieldError("sample", "must be an object such as {'n': 16} or {'every_mm': 5}")
    unknown = sorted(set(value) - _SAMPLE_KEYS)
    if unknown:
        raise VideoFieldError(f"sample.{unknown[0]}", f"unknown; use {sorted(_SAMPLE_KEYS)}")
    if "n" in value and "every_mm" in value:
        raise VideoFieldError("sample", "give 'n' or 'every_mm', not both")
    n = value.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise VideoFieldError("sample.n", f"must be a positive integer, got {n!r}")
    step = value.get("every_mm")
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, int | float) or step <= 0
    ):
        raise VideoFieldError("sample.every_mm", f"must be a positive number, got {step!r}")
    slab = value.get("slab")
    if slab is not None and not (
        isinstance(slab, list)
        and len(slab) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in slab)
        and slab[0] <= slab[1]
    ):
        raise VideoFieldError("sample.slab", f"must be [first, last] slice indices, got {slab!r}")
    return dict(value)


def _window(value: Any) -> str | tuple[float, float] | None:
    if value is None or isinstance(value, str):
        return value
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and value[1] > 0
    ):
        return (float(value[0]), float(value[1]))
    raise VideoFieldError("window", f"must be a preset name or [center, width > 0], got {value!r}")


#: Frames per second told to the video processor. Slices have no time; Qwen-VL needs a rate for
#: Qwen2.5-VL's ``second_per_grid_ts`` and Qwen3-VL's timestamp text. 2.0 is the rate
#: qwen-vl-utils and vLLM assume for a list of frames, so a volume costs the same tokens and
#: reads the same prompt in training, inference and a vLLM server.
VIDEO_FPS = 2.0


def processor_video_kwargs(frame_counts: list[int]) -> dict[str, Any]:
    """Keyword arguments for ``processor(..., videos=...)``: every frame kept as given
    (``do_sample_frames=False``) and metadata at :data:`VIDEO_FPS`, one entry per video."""
    metadata = [
        {"fps": VIDEO_FPS, "total_num_frames": n, "frames_indices": list(range(n))}
        for n in frame_counts
    ]
    return {"do_sample_frames": False, "video_metadata": metadata}


def temporal_patch_size(processor: Any) -> int:
    """Frames per temporal patch of the processor's video processor (2 for every Qwen-VL)."""
    return int(getattr(processor.video_processor, "temporal_patch_size", 2) or 2)


def pad_video_frames(frames: Sequence[Image.Image], min_frames: int = 2) -> list[Image.Image]:
    """``frames`` with the last one repeated up to ``min_frames`` (one slice -> two)."""
    frames = list(frames)
    if not frames:
        raise ValueError("a video needs at least one frame")
    return frames + [frames[-1]] * max(0, min_frames - len(frames))


def video_call_kwargs(processor: Any, videos: Sequence[Sequence[Image.Image]]) -> dict[str, Any]:
    """The keyword arguments that give ``videos`` (frame lists, in placeholder order) to a
    Qwen-VL processor call: ``processor(text=..., images=..., **video_call_kwargs(p, videos))``.

    Returns ``{}`` without videos, so it can be splatted into every call.
    """
    if not videos:
        return {}
    min_frames = temporal_patch_size(processor)
    padded = [pad_video_frames(frames, min_frames) for frames in videos]
    cap = getattr(processor.video_processor, "cap_pixels_per_frame", None)
    return {
        "videos": padded,
        **processor_video_kwargs([len(frames) for frames in padded]),
        "cap_pixels_per_frame": bool(cap),
    }
