"""A bounded cache of DICOM series indexes (headers read, slices ordered), so training, which
asks for the same series every epoch, reads a folder's headers once per process; and warnings
about a series (a missing slice...) logged once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medvl.data.series import DicomSeries

logger = logging.getLogger(__name__)

#: Series indexes kept (headers read, slices ordered); one entry per (folder, series_uid).
SERIES_CACHE_SIZE = 256
_WARNED_LIMIT = 4096  # warnings remembered as already logged
_series_cache: OrderedDict[tuple[str, str | None], tuple[str, DicomSeries]] = OrderedDict()
_warned: OrderedDict[str, None] = OrderedDict()
_cache_lock = threading.Lock()


def series_index(path: Path, series_uid: str | None = None) -> DicomSeries:
    """:func:`medvl.data.series.read_series`, cached: reading every header of a folder is the
    slow part of a series, and training asks for the same series every epoch.

    The key is the folder (or file) and ``series_uid``; an entry is used only while every
    file under the folder keeps its name, size and modification time (:func:`_fingerprint`),
    so a changed, added or removed file means a fresh read. At most
    :data:`SERIES_CACHE_SIZE` series are kept (least recently used dropped); pixels are never
    cached. A copy is returned: callers may change its lists."""
    from medvl.data.series import read_series

    key = (os.path.abspath(path), series_uid)
    stamp = _fingerprint(path)
    with _cache_lock:
        hit = _series_cache.get(key)
        if hit is not None and hit[0] == stamp:
            _series_cache.move_to_end(key)
            return _copy_series(hit[1])
    series = read_series(path, series_uid)
    with _cache_lock:
        _series_cache[key] = (stamp, series)
        _series_cache.move_to_end(key)
        while len(_series_cache) > SERIES_CACHE_SIZE:
            _series_cache.popitem(last=False)
    return _copy_series(series)


def clear_series_cache() -> None:
    """Forget every cached series index and every warning already logged."""
    with _cache_lock:
        _series_cache.clear()
        _warned.clear()


def _fingerprint(path: Path) -> str:
    """A digest of (relative name, size, mtime) of every file under ``path`` (or of ``path``
    itself when it is a file): stat calls only, no file is opened."""
    digest = hashlib.blake2b(digest_size=16)
    if path.is_file():
        info = path.stat()
        digest.update(f"{info.st_size}:{info.st_mtime_ns}".encode())
        return digest.hexdigest()
    entries = []
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            try:
                info = os.stat(full)
            except OSError:
                continue
            entries.append(f"{os.path.relpath(full, path)}\0{info.st_size}\0{info.st_mtime_ns}")
    digest.update("\n".join(sorted(entries)).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _copy_series(series: DicomSeries) -> DicomSeries:
    return replace(series, slices=list(series.slices), warnings=list(series.warnings))


def warn_once(path: Path, series_uid: str | None, warnings: list[str]) -> None:
    """Log each of a video's warnings the first time this process sees it."""
    for warning in warnings:
        key = f"{os.path.abspath(path)}\0{series_uid}\0{warning}"
        with _cache_lock:
            if key in _warned:
                continue
            _warned[key] = None
            while len(_warned) > _WARNED_LIMIT:
                _warned.popitem(last=False)
        logger.warning("%s: %s", path, warning)
