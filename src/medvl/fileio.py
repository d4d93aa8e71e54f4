"""Atomic file writing: a reader never sees a half-written output, and a crash loses nothing old.

Every output medvl writes (records, predictions, metrics, manifests) goes through these helpers:
the content is written to a temporary file in the same folder, flushed to disk and then renamed
over the target, which POSIX guarantees to be atomic.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_writer(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8", *, durable: bool = True
) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success.

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    ``durable=False`` skips the fsync: readers still never see a partial file, but a power cut
    may lose it (fine for regenerable outputs such as thousands of synthetic images).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    _match_permissions(tmp_name, path)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _match_permissions(tmp_name: str, target: Path) -> None:
    """Give the temporary file the target's mode, or the umask default (mkstemp makes 0600)."""
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp_name, mode)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_writer(path) as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, "wb", durable=durable) as handle:
        handle.write(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted UTF-8 JSON atomically (stable bytes for hashing)."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
