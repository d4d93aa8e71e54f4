"""Where a record's image and video paths point when its JSONL file is written somewhere new.

Image paths in a record, and its videos' frame, volume and series paths, are relative to its
JSONL file's folder (or absolute). Whoever writes records into another folder (a converter, a
split, a benchmark run, a pipeline step) re-bases them here, so every output follows one rule:
:func:`output_path`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from medvl.data.record import Record


def output_path(image: str | Path, out_dir: str | Path) -> str:
    """``image`` relative to ``out_dir`` (``../Slake1.0/imgs/x.jpg`` included), else absolute.

    Relative paths let a converted set move together with its images (a project folder copied
    to another machine). They are absolute only when the two share nothing but the filesystem
    root or a drive (``/data`` vs ``/home``, ``C:`` vs ``D:``), where ``../../..`` would be
    as tied to this machine as an absolute path. ``medvl data validate`` reads both kinds as the
    converter wrote them and confines images to a dataset root only when ``--root`` is given,
    which is the check to run on a set that must be self-contained.
    """
    image_abs = os.path.abspath(image)
    out_abs = os.path.abspath(out_dir)
    try:
        common = os.path.commonpath([image_abs, out_abs])
    except ValueError:  # different drives on Windows
        return Path(image_abs).as_posix()
    if Path(common).parent == Path(common):  # only the root (or drive) in common
        return Path(image_abs).as_posix()
    return Path(os.path.relpath(image_abs, out_abs)).as_posix()


def rebased_image_paths(
    record: Record, old_dir: str | Path, new_dir: str | Path | None
) -> list[str]:
    """``record``'s image paths, read relative to ``old_dir``, as written in ``new_dir``.

    With ``new_dir`` they follow :func:`output_path`; with None they are absolute (resolved),
    for records read from a folder other than the one they were written in.
    """
    paths = record.image_paths(old_dir)
    if new_dir is None:
        return [str(path.resolve()) for path in paths]
    return [output_path(path, new_dir) for path in paths]


def rebased_path(path: str, old_dir: str | Path, new_dir: str | Path | None) -> str:
    """One path of a record, read relative to ``old_dir``, as written in ``new_dir`` (absolute
    when ``new_dir`` is None); the rule of :func:`rebased_image_paths` for one path."""
    resolved = Path(path) if Path(path).is_absolute() else Path(old_dir) / path
    if new_dir is None:
        return str(resolved.resolve())
    return output_path(resolved, new_dir)


def rebase_images(
    records: Iterable[Record], old_dir: str | Path, new_dir: str | Path | None
) -> list[Record]:
    """Copies of ``records`` whose image and video paths stay right when written in ``new_dir``.

    The paths are read relative to ``old_dir`` (the folder of the file they came from) and
    rewritten by :func:`rebased_image_paths`: relative to ``new_dir`` where possible, absolute
    when ``new_dir`` is None.
    """
    return [
        dataclasses.replace(
            record,
            images=rebased_image_paths(record, old_dir, new_dir),
            videos=[video.rebased(_rebaser(old_dir, new_dir)) for video in record.videos],
        )
        for record in records
    ]


def _rebaser(old_dir: str | Path, new_dir: str | Path | None):
    """``path -> path`` for a video's frame, volume or series paths, by the rule of images."""
    return lambda path: rebased_path(path, old_dir, new_dir)
