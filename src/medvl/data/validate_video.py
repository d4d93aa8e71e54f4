"""Video checks of ``medvl data validate``: every frame, volume and series a record's videos read.

``frames`` entries are checked frame by frame exactly like images (the caller inspects their
files together with the images: present, decodable, big enough, inside the root), and the frames
of one video must share one size, since the processor stacks them. ``volume`` and ``series``
entries must exist (a file, a folder); when decoding is asked their slices are read with
:func:`medvl.data.volumes.load_frames`, and a read failure becomes the record's
``video_unreadable`` problem with the reader's own message. Counting tokens alone needs only the
frame count and frame size, which :func:`medvl.data.volumes.video_shape` takes from headers (a
header that cannot be read is ``video_unreadable`` too).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medvl.data.images import ImageCheck, ImageHeader, size_problem
from medvl.data.record import Record
from medvl.data.tokens import VideoShape
from medvl.data.video import VideoSpec
from medvl.errors import MedvlError

#: Problem codes of videos, beside the image codes their frames share.
VIDEO_CODES = ("frame_size", "video_unreadable")


@dataclass(frozen=True)
class VideoIssue:
    """One problem of one video: the record field, the stable code and the one-line message."""

    field: str
    code: str
    message: str


#: ``(path) -> (header, check)`` of a frame file already inspected by the caller.
HeaderLookup = Callable[[Path], tuple[ImageHeader | None, ImageCheck | None]]


class VideoShapes:
    """Frame count and frame size of each video, reading each volume or series once per run:
    its slices with ``decode``, else its headers only."""

    def __init__(self, base_dir: Path, *, decode: bool = True):
        self.base_dir = base_dir
        self.decode = decode
        self._loaded: dict[str, tuple[VideoShape | None, str | None]] = {}

    def frames_shape(
        self,
        entries: list[tuple[str, Path, ImageCheck | None]],
        lookup: HeaderLookup,
    ) -> tuple[VideoShape | None, list[VideoIssue]]:
        """Shape of a ``frames`` video from its files' headers, or the problems found."""
        issues: list[VideoIssue] = []
        sizes: list[tuple[str, tuple[int, int]]] = []
        for field, path, outside in entries:
            header, check = (None, outside) if outside else lookup(path)
            if check is not None:
                issues.append(VideoIssue(field, check.code, f"{path}: {check.message}"))
            elif header is not None:
                sizes.append((field, (header.width, header.height)))
        if issues or len(sizes) != len(entries):
            return None, issues
        first = sizes[0][1]
        other = next(((f, s) for f, s in sizes if s != first), None)
        if other is not None:
            return None, [
                VideoIssue(
                    other[0],
                    "frame_size",
                    f"frame is {other[1][0]}x{other[1][1]} px but the video's first frame is "
                    f"{first[0]}x{first[1]}; the frames of one video are stacked, so give "
                    "slices of one size (resize them, or split the video)",
                )
            ]
        return (len(entries), *first), []

    def volume_shape(
        self, index: int, spec: VideoSpec, path: Path, *, read: bool
    ) -> tuple[VideoShape | None, list[VideoIssue]]:
        """Shape of a ``volume``/``series`` video; its slices are read only with ``read``."""
        field = f"videos[{index}].{spec.kind}"
        exists = path.is_file() if spec.kind == "volume" else path.is_dir()
        if not exists:
            what = "volume file" if spec.kind == "volume" else "series folder"
            return None, [
                VideoIssue(
                    field,
                    "missing",
                    f"{path}: {what} not found; fix the path (relative to the JSONL file's "
                    "folder) or drop the record",
                )
            ]
        if not read:
            return None, []
        shape, error = self._load(spec, path)
        if error is not None:
            return None, [VideoIssue(field, "video_unreadable", error)]
        assert shape is not None
        check = size_problem(shape[1], shape[2])
        if check is not None:
            return None, [VideoIssue(field, check.code, f"{path}: slices: {check.message}")]
        return shape, []

    def _load(self, spec: VideoSpec, path: Path) -> tuple[VideoShape | None, str | None]:
        """(frames, width, height) of the entry's frames, or the reader's message; cached."""
        from medvl.data.volumes import load_frames, video_shape

        key = json.dumps([str(path.absolute()), spec.to_dict()], sort_keys=True)
        if key not in self._loaded:
            try:
                if self.decode:
                    frames = load_frames(spec, self.base_dir)
                    shape = (len(frames), *frames[0].size) if frames else (0, 0, 0)
                else:
                    shape = video_shape(spec, self.base_dir)
            except MedvlError as exc:
                self._loaded[key] = None, " ".join(str(exc).split())
            else:
                if shape[0]:
                    self._loaded[key] = shape, None
                else:
                    self._loaded[key] = None, f"{path}: the sampling selects no slice"
        return self._loaded[key]


def record_video_issues(
    record: Record,
    entries: list[tuple[int, str, Path, ImageCheck | None]],
    shapes: VideoShapes,
    lookup: HeaderLookup,
    *,
    check: bool,
    read: bool,
) -> tuple[list[VideoShape] | None, list[VideoIssue]]:
    """All videos' shapes of ``record`` (None when any is unknown) and every problem found.

    ``entries`` are :func:`medvl.data.images.record_video_paths`' rows. Without ``check`` only
    the paths' ``outside_root`` checks are reported and no file is touched.
    """
    issues: list[VideoIssue] = []
    found: list[VideoShape | None] = []
    for index, spec in enumerate(record.videos):
        rows = [(field, path, c) for i, field, path, c in entries if i == index]
        outside = [VideoIssue(f, c.code, f"{p}: {c.message}") for f, p, c in rows if c]
        if outside or not check:
            issues += outside
            found.append(None)
            continue
        if spec.frames is not None:
            shape, problems = shapes.frames_shape(rows, lookup)
        else:
            shape, problems = shapes.volume_shape(index, spec, rows[0][1], read=read)
        issues += problems
        found.append(shape)
    known = all(shape is not None for shape in found)
    return ([s for s in found if s is not None] if known else None), issues
