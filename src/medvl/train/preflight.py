"""Checks a training run makes before any model loads, so bad input costs seconds, not a run.

- The output folder can be created and written (not a file, not on a read-only disk).
- Every training record and its images are usable. Images are checked from their headers and,
  for PNG/JPEG, their last bytes (:mod:`medvl.data.images`), so a file cut short is found here
  instead of stopping training when its record comes up (and again on every resume).
  ``data.on_bad_image`` decides: ``refuse`` stops, naming the record and the fix; ``skip``
  drops those records and returns their ids with the reason, for the log and the manifest.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from medvl.data.images import CHECK_CODES
from medvl.data.record import Record
from medvl.errors import MedvlError, filesystem_error

logger = logging.getLogger(__name__)


def check_output_dir(output_dir: str | Path) -> Path:
    """Create ``output_dir`` and prove a file can be written there; a one-line error if not."""
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".medvl-write-check-"):
            pass
    except OSError as exc:
        error = filesystem_error(exc)
        if error is None:
            raise MedvlError(
                f"output_dir {out}: cannot be written ({exc.strerror or exc}); pick another "
                "output_dir=..."
            ) from exc
        raise error from exc
    return out


def screen_training_data(path: str | Path, on_bad_image: str) -> dict[str, str]:
    """Records of ``path`` dropped for an unusable image, ``{id: reason}`` (``skip``); raise
    :class:`MedvlError` for any other invalid record, and for a bad image under ``refuse``."""
    return screen_training_records(path, on_bad_image)[1]


def screen_training_records(
    path: str | Path, on_bad_image: str
) -> tuple[list[Record], dict[str, str]]:
    """``(usable records, {id: reason} dropped for an unusable image)`` of ``path``, as
    :func:`screen_training_data` decides; callers that need the records take them from here
    rather than validating the file (every image header) a second time."""
    from medvl.data.validate import validate_jsonl

    path = Path(path)
    result = validate_jsonl(path)
    image_codes = set(CHECK_CODES)
    other = [p for p in result.problems if p.code not in image_codes]
    if other:
        lines = "; ".join(f"line {p.line} ({p.record_id}): {p.code}" for p in other[:5])
        raise MedvlError(
            f"{path}: {len(other)} invalid record(s), e.g. {lines}; run 'medvl data validate' "
            "on it and fix or drop them (--out-clean)"
        )
    bad = [p for p in result.problems if p.code in image_codes]
    if not bad:
        return result.valid, {}
    if on_bad_image == "refuse":
        first = bad[0]
        more = len({p.record_id for p in bad}) - 1
        others = f" (and {more} more record(s) with unusable images)" if more else ""
        raise MedvlError(
            f"{path}:{first.line} (id {first.record_id!r}): {first.field} {first.message}"
            f"{others}; fix the image(s), or set data.on_bad_image=skip to train without "
            "these records ('medvl data validate' lists them all)"
        )
    dropped: dict[str, str] = {}
    for problem in bad:
        dropped.setdefault(problem.record_id or f"line {problem.line}", problem.message)
    logger.warning(
        "data.on_bad_image=skip: dropped %d record(s) with unusable images: %s",
        len(dropped),
        "; ".join(f"{rid}: {why}" for rid, why in list(dropped.items())[:10]),
    )
    return result.valid, dropped
