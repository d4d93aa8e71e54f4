"""Videos given at inference time: a volume, a DICOM series or a folder of slices by its path.

``medvl chat`` (``/volume PATH n=16 axis=axial window=lung``) and ``medvl serve`` (a
``video_url`` part naming a local path) get a path, not a record entry; :func:`video_spec`
turns it into the :class:`~medvl.data.video.VideoSpec` a record would hold, so the frames come
from the one reader every other command uses (:func:`medvl.data.volumes.load_frames`):

* a file: a NIfTI volume (``.nii``, ``.nii.gz``) or any other file the volume reader takes;
* a folder of DICOM files: a series (``uid=`` picks one when the folder holds several);
* a folder of slice images (PNG, JPEG, TIFF...): the slices in natural name order
  (``slice_2`` before ``slice_10``), ``n`` of them picked evenly when there are more (the rule
  of a volume's ``sample.n``: :func:`medvl.data.volumes.sample_indices`).

``n`` (default :data:`DEFAULT_FRAMES`) bounds the frames: a CT of 300 slices would otherwise
cost 150 temporal patches of tokens and the memory to decode every slice.

:func:`video_inputs` gives a request's videos to the processor (the per-family rules), and
:func:`parse_video_part` / :func:`request_frames` read and bound a server request's video parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from medvl.data.video import AXES, VideoFieldError, VideoSpec, video_call_kwargs
from medvl.data.volumes import sample_indices
from medvl.errors import MedvlError

#: Frames taken from a volume, series or slice folder when no ``n`` is given.
DEFAULT_FRAMES = 16
#: Slice image suffixes read from a folder as frames.
SLICE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_OPTION_KEYS = ("n", "axis", "window", "uid")


class VideoInputError(MedvlError):
    """A path or option for a video cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class VideoOptions:
    """How to sample a volume given by path: frame count, patient axis, window, series."""

    n: int = DEFAULT_FRAMES
    axis: str = "axial"
    window: str | tuple[float, float] | None = None
    uid: str | None = None


def parse_options(words: list[str]) -> VideoOptions:
    """Options typed as ``key=value`` words: ``n=16 axis=coronal window=lung uid=1.2.3``
    (``window=40,400`` gives center and width)."""
    values: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in _OPTION_KEYS or not value:
            raise VideoInputError(
                f"unknown option {word!r}; use n=16, axis=axial|coronal|sagittal, "
                "window=lung (or window=40,400) and uid=SERIES_UID"
            )
        values[key] = value
    return options_from(values)


def options_from(values: dict[str, Any]) -> VideoOptions:
    """Check option values (strings from a chat line, or JSON values from a request)."""
    n = values.get("n", DEFAULT_FRAMES)
    try:
        n = int(n) if not isinstance(n, bool) else -1
    except (TypeError, ValueError):
        n = -1
    if n < 1:
        raise VideoInputError(f"n must be a positive whole number of frames, got {values['n']!r}")
    axis = values.get("axis", "axial")
    if axis not in AXES:
        raise VideoInputError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    window = values.get("window")
    if isinstance(window, str) and "," in window:
        window = window.split(",")
    if isinstance(window, list | tuple):
        try:
            window = (float(window[0]), float(window[1])) if len(window) == 2 else None
        except (TypeError, ValueError):
            window = None
        if window is None or window[1] <= 0:
            raise VideoInputError(f"window must be a preset name or CENTER,WIDTH>0: {values!r}")
    uid = values.get("uid")
    return VideoOptions(n, axis, window, str(uid) if uid else None)


def video_spec(path: str | Path, options: VideoOptions | None = None) -> VideoSpec:
    """The record entry for a volume file, a DICOM series folder or a folder of slices."""
    options = options or VideoOptions()
    path = Path(path).expanduser()
    if not path.exists():
        raise VideoInputError(f"{path}: no such file or folder; give a volume or series path")
    window = list(options.window) if isinstance(options.window, tuple) else options.window
    sample = {"n": options.n}
    try:
        if path.is_file():
            return VideoSpec.from_dict(
                {"volume": str(path), "axis": options.axis, "sample": sample, "window": window}
            )
        slices = slice_files(path)
        if slices:
            indices = sample_indices(len(slices), None, {"n": options.n})
            picked = [str(slices[i]) for i in indices]
            return VideoSpec.from_dict({"frames": picked, "window": window})
        if not any(_is_dicom(f) for f in sorted(path.iterdir())[:64] if f.is_file()):
            raise VideoInputError(
                f"{path}: the folder holds no slice images ({', '.join(SLICE_SUFFIXES)}) and "
                "no DICOM files; give a NIfTI file, a DICOM series folder or a folder of slices"
            )
        entry = {"series": str(path), "axis": options.axis, "sample": sample, "window": window}
        if options.uid:
            entry["series_uid"] = options.uid
        return VideoSpec.from_dict(entry)
    except VideoFieldError as exc:
        raise VideoInputError(f"{path}: {exc}") from None


def slice_files(folder: Path) -> list[Path]:
    """The slice images of a folder in natural name order (``2`` before ``10``)."""
    files = [f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in SLICE_SUFFIXES]
    return sorted(files, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", path.name)]


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def video_inputs(processor: Any, videos: list[Any]) -> dict[str, Any]:
    """``videos=`` and the per-family keyword arguments for the processor (none without videos):
    :func:`medvl.data.video.video_call_kwargs`, as training and the token counter call it.

    Every family gets the frames as given (``do_sample_frames=False``: a volume is sampled by
    its entry, never again by the processor), one slice padded to a temporal patch, and
    metadata at :data:`~medvl.data.video.VIDEO_FPS`, from which Qwen2.5-VL derives
    ``second_per_grid_ts`` and Qwen3-VL its timestamp text."""
    if not videos:
        return {}
    from medvl.infer.engine import load_video

    return video_call_kwargs(processor, [load_video(video) for video in videos])


# ---------------------------------------------------------------- server requests

#: Frames one server request may hold, over all its videos (``medvl serve --max-video-frames``).
MAX_REQUEST_FRAMES = 64
_VIDEO_OPTION_KEYS = ("n", "axis", "window", "uid")


@dataclass(frozen=True)
class VideoSource:
    """One video of a request before decoding: ordered frame URLs, or a local volume path."""

    where: str
    frames: tuple[str, ...] = ()
    path: str | None = None
    options: VideoOptions = VideoOptions()
    n_given: bool = True  # False: a path without ``n``, which the server's limit may lower


def parse_video_part(part: dict[str, Any], where: str) -> VideoSource:
    """A ``video_url`` part (vLLM's form: a ``data:video/jpeg;base64,F1,F2,...`` frame list, or
    a local volume/series/slice-folder path with optional ``n``, ``axis``, ``window``, ``uid``)
    or a ``video`` part (``{"type": "video", "video": [image URL, ...]}``, frames in order).
    Raises :class:`VideoInputError` naming ``where``."""
    if part.get("type") == "video":
        frames = part.get("video")
        if not isinstance(frames, list) or not frames:
            raise VideoInputError(f"{where}.video must be a non-empty list of image URLs")
        urls = [f.get("url") if isinstance(f, dict) else f for f in frames]  # image_url-like
        if not all(isinstance(u, str) and u for u in urls):
            raise VideoInputError(f"{where}.video must hold image URLs (strings)")
        return VideoSource(where, frames=tuple(urls))
    body = part.get("video_url")
    url = body.get("url") if isinstance(body, dict) else body
    if not isinstance(url, str) or not url:
        raise VideoInputError(f"{where}.video_url.url must be a non-empty string")
    extra = {k: body[k] for k in _VIDEO_OPTION_KEYS if isinstance(body, dict) and k in body}
    if url.startswith("data:"):
        return VideoSource(where, frames=tuple(_jpeg_sequence(url, where)))
    if urlparse(url).scheme.lower() in ("http", "https", "ftp"):
        raise VideoInputError(
            f"{where}: remote video URLs are not fetched (the server has no network access); "
            "send the frames as data:video/jpeg;base64,<frame>,<frame>,... or a 'video' part"
        )
    try:
        options = options_from(extra)
    except VideoInputError as exc:
        raise VideoInputError(f"{where}.video_url: {exc}") from None
    return VideoSource(where, path=url, options=options, n_given="n" in extra)


def _jpeg_sequence(url: str, where: str) -> list[str]:
    """vLLM's frame list: ``data:video/jpeg;base64,`` then base64 JPEG frames separated by
    commas; each becomes an image data URL (decoded later, within the pixel budget)."""
    head, _, data = url.partition(",")
    if head.lower() != "data:video/jpeg;base64" or not data:
        raise VideoInputError(
            f"{where}: a video data URL must be data:video/jpeg;base64,<frame>,<frame>,... "
            "(video files such as MP4 are not decoded; send the frames)"
        )
    return [f"data:image/jpeg;base64,{frame}" for frame in data.split(",")]


def request_frames(sources: list[VideoSource], limit: int) -> list[VideoSource]:
    """The sources with each path's default ``n`` lowered to ``limit`` when above it; refuses a
    request over ``limit`` frames in all (a path counts its ``n``) before anything is decoded."""
    sources = [
        s
        if s.path is None or s.n_given or s.options.n <= limit
        else replace(s, options=replace(s.options, n=limit))
        for s in sources
    ]
    counts = [len(s.frames) if s.path is None else s.options.n for s in sources]
    if sum(counts) > limit:
        raise VideoInputError(
            f"the request's videos hold {sum(counts)} frames, above this server's limit of "
            f"{limit} frames per request (medvl serve --max-video-frames); send fewer frames "
            "or a smaller n"
        )
    return sources
