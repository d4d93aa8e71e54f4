"""Errors that carry a message a person can act on.

Every failure caused by the user's input (a bad record, config or path) raises a subclass of
``MedvlError``. The CLI prints its message and exits with status 2 instead of a traceback.
Failures of the disk or folder being written (full, read-only, no permission, a file in the way)
become :class:`FileSystemError` through :func:`filesystem_error`, the CLI's one path for them.
"""

from __future__ import annotations

import errno
import os
import re
import shutil


class MedvlError(Exception):
    """A user-facing error: the message names what is wrong, where, and how to fix it."""

    exit_code = 2


class ConfigError(MedvlError):
    """A config file or ``key=value`` override is invalid."""


class RecordError(MedvlError):
    """A data record is invalid; the message names the file, line and field."""


class UnknownNameError(MedvlError):
    """A name (model family, format, benchmark...) is not one medvl knows."""

    def __init__(self, kind: str, name: str, allowed: list[str] | tuple[str, ...]):
        self.kind, self.name, self.allowed = kind, name, list(allowed)
        super().__init__(f"unknown {kind} {name!r}; allowed values: {', '.join(self.allowed)}")


class FileSystemError(MedvlError):
    """Writing failed because of the disk or folder, not the input: full disk, read-only
    filesystem, no permission, or a file where a folder should be. The message names the path."""


#: errno -> (what is wrong, how to fix it). The only filesystem errors turned into one line:
#: any other OSError is a bug or an input problem with its own message.
_FS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: (
        "no space left on the disk (ENOSPC)",
        "free space or write to another disk, then rerun: finished work is kept and the rerun "
        "resumes",
    ),
    errno.EDQUOT: (
        "disk quota exceeded (EDQUOT)",
        "free space or write to another disk, then rerun: finished work is kept",
    ),
    errno.EROFS: (
        "the filesystem is read-only (EROFS)",
        "write the output to a folder on a writable disk",
    ),
    errno.EACCES: (
        "permission denied (EACCES)",
        "write the output to a folder you may write to, or fix its permissions",
    ),
    errno.EPERM: (
        "operation not permitted (EPERM)",
        "write the output to a folder you may write to, or fix its permissions",
    ),
    errno.ENOTDIR: (
        "a file is where a folder should be (ENOTDIR)",
        "remove or rename that file, or pick another output folder",
    ),
    errno.EISDIR: (
        "this is a folder, not a file (EISDIR)",
        "pass a file path, or remove the folder",
    ),
    errno.EEXIST: (
        "a file is in the way: the path exists and is not a folder (EEXIST)",
        "remove or rename that file, or pick another output folder",
    ),
}
#: Local names that hold the file being written, in the frames of open/save calls (innermost
#: first): torch.save's ``f``, safetensors' ``filename``, medvl's ``path``/``tmp_name``.
_PATH_NAMES = ("filename", "f", "file", "path", "tmp_name", "save_directory", "output_dir")
_OS_ERROR_TEXT = re.compile(r"os error (\d+)")


def filesystem_error(exc: BaseException) -> FileSystemError | None:
    """One readable line for a filesystem failure, or None when ``exc`` is something else.

    Handles an ``OSError`` with one of the errnos above, and the wrappers that hide it: torch's
    ``RuntimeError`` from ``torch.save`` ("PytorchStreamWriter failed writing file", "unexpected
    pos": it never names the errno, so a full disk is read from the target's free space) and
    safetensors' ``SafetensorError`` ("I/O error: No space left on device (os error 28)").
    An error raised while handling one of these (``raise ... from``) is traced back to it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _one_filesystem_error(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _one_filesystem_error(exc: BaseException) -> FileSystemError | None:
    if isinstance(exc, OSError):
        code = exc.errno
        path = exc.filename or _path_in_traceback(exc)
    else:
        text = str(exc)
        torch_write = "inline_container" in text or "PytorchStreamWriter" in text
        if not (torch_write or type(exc).__name__ == "SafetensorError"):
            return None
        path = _path_in_traceback(exc)
        code = _errno_in_text(text)
        if code is None and torch_write and path is not None and _disk_full(path):
            code = errno.ENOSPC
        if code is None:
            if not torch_write:
                return None
            return FileSystemError(
                f"{path or 'a checkpoint file'}: torch could not write it ({text.strip()[:120]}); "
                "check free space and permissions on that disk, then rerun"
            )
    if code not in _FS_ERRORS:
        return None
    what, fix = _FS_ERRORS[code]
    return FileSystemError(f"{path or 'the output folder'}: cannot write: {what}; {fix}")


def _errno_in_text(text: str) -> int | None:
    """The errno a wrapped error names: ``(os error 28)`` or the ``strerror`` text itself."""
    found = _OS_ERROR_TEXT.search(text)
    if found:
        return int(found.group(1))
    return next((code for code in _FS_ERRORS if os.strerror(code) in text), None)


def _path_in_traceback(exc: BaseException) -> str | None:
    """The file being written when ``exc`` was raised: a path-like local of the innermost frame
    that has one (``self.path`` too), else None."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        local = frame.f_locals
        for name in _PATH_NAMES:
            value = local.get(name)
            if isinstance(value, str | os.PathLike):
                return os.fspath(value)
        value = getattr(local.get("self"), "path", None)
        if isinstance(value, str | os.PathLike):
            return os.fspath(value)
    return None


def _disk_full(path: str) -> bool:
    """True when the disk holding ``path`` (or its nearest existing parent) has under 64 MiB."""
    folder = os.path.abspath(path)
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent
    try:
        return shutil.disk_usage(folder).free < 64 * 2**20
    except OSError:
        return False
