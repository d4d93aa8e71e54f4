"""Which records are not independent: the resampling cluster of each scored record.

SLAKE and VQA-RAD ask several questions about one image (and several images come from one
patient), so the answers to them are correlated: a model that misreads an image tends to miss
every question about it. A bootstrap that resamples questions as if they were independent gives
intervals that are too narrow. :mod:`medvl.eval.breakdown` therefore resamples *clusters*, and
this module names the cluster of a record, the first that applies of:

1. ``patient:<value>``: a patient, subject or study id in ``meta`` (:data:`PATIENT_KEYS`,
   matched ignoring case, ``_``, ``-`` and spaces: ``patient_id``, ``PatientID``,
   ``subject_id``, ``study_id``, ``StudyInstanceUID`` ...);
2. ``image:sha256:<hex>``: the SHA-256 of the first image's file bytes (exports that save one file
   per question under different names hold identical bytes, so they fall in one cluster);
3. ``path:<path>``: the first image's normalised path when its file cannot be read;
4. ``record:<id>``: a text-only record is its own cluster.

Image paths are relative to the data file's folder (``image_dir``), as everywhere in medvl. A
record with several images is clustered by its first one.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medvl.data.record import Record
from medvl.provenance import file_sha256

#: Meta keys naming a patient, subject or study (normalised: lower case, letters and digits).
PATIENT_KEYS = ("patientid", "subjectid", "studyid", "studyinstanceuid", "caseid")
#: How clusters are chosen, as stored in ``metrics.json`` settings.
CLUSTER_ORDER = "patient id in meta, else image sha256, else image path, else record id"


def _normal_key(key: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(key).lower())


def patient_id(meta: Mapping[str, Any]) -> str | None:
    """The first non-empty patient/subject/study id of ``meta`` (:data:`PATIENT_KEYS` order)."""
    found = {_normal_key(k): v for k, v in meta.items()}
    for key in PATIENT_KEYS:
        value = found.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


@functools.lru_cache(maxsize=65536)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of a file, cached by (path, mtime, size): a benchmark reuses each image often."""
    return file_sha256(path)


def image_identity(path: str | Path) -> str:
    """``image:sha256:<hex>`` of a readable file, else ``path:<normalised path>``."""
    normal = os.path.normpath(os.path.abspath(path))
    try:
        stat = os.stat(normal)
        return f"image:sha256:{_sha256(normal, stat.st_mtime_ns, stat.st_size)}"
    except OSError:
        return f"path:{Path(normal).as_posix()}"


def record_cluster(record: Record, image_dir: str | Path | None = None) -> str:
    """The cluster of ``record`` (see the module docstring); ``image_dir`` is the data file's
    folder (None: relative image paths are named by their path, not hashed)."""
    found = patient_id(record.meta or {})
    if found is not None:
        return f"patient:{found}"
    if record.images:
        first = record.images[0]
        if image_dir is None and not Path(first).is_absolute():
            return f"path:{Path(os.path.normpath(first)).as_posix()}"
        return image_identity(Path(image_dir or "") / first)
    return f"record:{record.id}"


def cluster_ids(labels: Sequence[Any]) -> np.ndarray:
    """Integer ids ``0..k-1`` for ``labels`` in first-seen order.

    First-seen order matters: when every record is its own cluster, cluster ``j`` is record
    ``j``, so drawing cluster indices draws exactly the records a record bootstrap would.
    """
    ids: dict[Any, int] = {}
    return np.fromiter((ids.setdefault(x, len(ids)) for x in labels), dtype=np.int64, count=-1)


def row_clusters(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The cluster label of each scores row; a row without one (scored by an older medvl) is
    its own cluster."""
    return [row.get("cluster") or ("row", i) for i, row in enumerate(rows)]
