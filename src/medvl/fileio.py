"""Atomic file writing: a reader never sees a half-written output, and a crash loses nothing old.

Every output medvl writes (records, predictions, metrics, manifests) goes through these helpers:
the content is written to a temporary file in the same folder, flushed to disk and then renamed
over the target, which POSIX guarantees to be atomic. A failed write names its file (see
:func:`name_target`), and :func:`check_writable_file` / :func:`check_writable_dir` refuse an
output that could not be written before a command spends time on the work.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from medvl.errors import filesystem_error


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
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        name_target(exc, path)
        raise


def name_target(exc: BaseException, path: str | Path) -> None:
    """Name ``path`` on an OSError that names no file (a write on a full disk says only "No
    space left on device"), so the one-line error the CLI prints says which file it was."""
    if isinstance(exc, OSError) and exc.filename is None:
        exc.filename = str(path)


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


def check_writable_file(path: str | Path) -> None:
    """Refuse, before any work starts, an output file that could not be written: a folder at
    ``path``, a file where one of its folders should be, or a read-only or unwritable folder.

    Raises :class:`~medvl.errors.FileSystemError` with the same one line the CLI prints when a
    write fails later (so a model is not loaded for nothing).
    """
    path = Path(path)
    if path.is_dir():
        _refuse(errno.EISDIR, path)
    _check_folder(path.parent)


def check_writable_dir(path: str | Path) -> None:
    """Refuse an output folder that could not be written (see :func:`check_writable_file`)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        _refuse(errno.EEXIST, path)
    _check_folder(path)


def _check_folder(folder: Path) -> None:
    """The nearest existing folder at or above ``folder`` must be a writable folder."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        _refuse(errno.ENOTDIR, existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        _refuse(errno.EROFS if read_only else errno.EACCES, existing)


def _refuse(code: int, path: Path) -> None:
    error = filesystem_error(OSError(code, os.strerror(code), str(path)))
    assert error is not None  # every code used here is one filesystem_error maps
    raise error
