"""Hashing a record's media files once: content (SHA-256) and perceptual hashes of each image,
content hashes of each video file.

The leakage check (:mod:`medvl.data.leakage`) and the content-grouped split
(:mod:`medvl.data.grouping`) both compare records by the files they show, and share one
:class:`ImageHasher` so each file is read once. Images get their SHA-256 and the 64- and 256-bit
DCT pHashes (:func:`medvl.data.phash.phashes`); video files (``frames``, ``volume``, ``series``
entries, listed by :func:`video_files`) get their SHA-256 only, because slices of one scan look
alike by design; blank frames (one flat value, byte-identical across patients) are marked so
they never count as a match. Unreadable files are logged (the first few as warnings) and listed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from medvl.data.phash import hamming, phashes
from medvl.data.record import Record
from medvl.provenance import file_sha256

logger = logging.getLogger(__name__)

_WARN_FILES = 5  # unreadable files logged as warnings; the rest at debug level


@dataclass(frozen=True)
class ImageHash:
    """The identity of one image file: content hash and perceptual hashes (None if undecodable)."""

    sha256: str
    phash64: int | None = None
    phash256: int | None = None
    blank: bool = False  # a video frame of one flat value: carries nothing, never a leak

    def near(self, other: ImageHash, max_distance: int) -> int | None:
        """The 256-bit pHash distance to ``other`` if at most ``max_distance``, else None."""
        if self.phash256 is None or other.phash256 is None:
            return None
        distance = hamming(self.phash256, other.phash256)
        return distance if distance <= max_distance else None


@dataclass
class ImageHasher:
    """Hashes each image path once; ``missing`` lists paths that could not be read.

    The first few unreadable or undecodable files are logged as warnings, the rest at debug
    level: a folder of missing images should not bury the report under one line per file.
    """

    cache: dict[Path, ImageHash | None] = field(default_factory=dict)
    missing: set[Path] = field(default_factory=set)
    undecodable: set[Path] = field(default_factory=set)
    exact_cache: dict[Path, ImageHash | None] = field(default_factory=dict)

    def __call__(self, path: Path) -> ImageHash | None:
        if path not in self.cache:
            self.cache[path] = self._hash(path)
        return self.cache[path]

    def exact(self, path: Path) -> ImageHash | None:
        """The content hash alone (no perceptual hash): for video files (slices, volumes)."""
        if path in self.cache:
            return self.cache[path]
        if path not in self.exact_cache:
            try:
                self.exact_cache[path] = ImageHash(file_sha256(path), blank=_is_blank(path))
            except OSError as exc:
                self.missing.add(path)
                self._log("cannot read video file %s (%s); it is skipped", path, exc)
                self.exact_cache[path] = None
        return self.exact_cache[path]

    def _log(self, message: str, *args: object) -> None:
        shown = len(self.missing) + len(self.undecodable)
        logger.log(logging.WARNING if shown <= _WARN_FILES else logging.DEBUG, message, *args)

    def _hash(self, path: Path) -> ImageHash | None:
        try:
            sha = file_sha256(path)
        except OSError as exc:
            self.missing.add(path)
            self._log("cannot read image %s (%s); it is skipped in the leakage check", path, exc)
            return None
        try:
            return ImageHash(sha, *phashes(path))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            self.undecodable.add(path)
            self._log("cannot decode %s (%s); only its exact hash is compared", path, exc)
            return ImageHash(sha)


def _is_blank(path: Path) -> bool:
    """True for a raster slice of one flat value (the empty end slices of an exported series,
    byte-identical across patients); other files are never called blank."""
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
        return False
    try:
        with Image.open(path) as image:
            extrema = image.getextrema()
    except (UnidentifiedImageError, OSError, ValueError):
        return False
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    return all(low == high for low, high in bands)


def video_files(record: Record, base_dir: str | Path) -> list[Path]:
    """Every file a record's videos read, resolved: the frame files in order, the volume file,
    and the files of a series folder (sorted; hidden files and DICOMDIR skipped; a folder that
    is not there counts as one missing file)."""
    files: list[Path] = []
    for video in record.videos:
        paths = video.paths(base_dir)
        if video.series is not None and paths and paths[0].is_dir():
            folder = paths[0]
            files += sorted(
                p
                for p in folder.rglob("*")
                if p.is_file()
                and p.name.upper() != "DICOMDIR"
                and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            )
        else:
            files += paths
    return files


def record_media(
    record: Record, base_dir: str | Path, hasher: ImageHasher
) -> list[tuple[Path, ImageHash | None]]:
    """A record's images (content and perceptual hashes) then its video files (content only;
    blank frames left out)."""
    images = [(path, hasher(path)) for path in record.image_paths(base_dir)]
    videos = [(path, hasher.exact(path)) for path in video_files(record, base_dir)]
    return images + [(path, h) for path, h in videos if h is None or not h.blank]
