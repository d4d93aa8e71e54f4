"""Deterministic, stratified, image-grouped train/val/test splits.

Why: VQA datasets ask many questions about one image, so a random split by record puts the same
image in train and test and inflates test scores. Records sharing an image (the same path, or with
``image_key="content"`` the same file bytes) therefore form one group, and groups are assigned
whole. Stratifying by a field (answer type by default) keeps the closed/open mix of every split
close to the whole set's.

How: groups are ordered by a SHA-256 of (seed, smallest record id in the group), so the outcome
depends on the seed and the records, never on input order or on the run. Each group then goes to
the split that is furthest behind its target share, counting both the group's stratum and all
records so far (a low-discrepancy assignment): fractions are met within about one group.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medvl.data.leakage import file_sha256
from medvl.data.record import RECORD_FIELDS, Record
from medvl.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
IMAGE_KEYS = ("path", "content")
_GLOBAL_WEIGHT = 0.5  # weight of the all-records balance next to the per-stratum balance


def _check_fractions(fractions: Mapping[str, float] | None) -> dict[str, float]:
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    if not fractions:
        raise ConfigError("fractions: give at least one split, e.g. {'train': 0.9, 'test': 0.1}")
    for name, value in fractions.items():
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ConfigError(f"fractions.{name}: must be a number in [0, 1], got {value!r}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ConfigError(f"fractions: must sum to 1, got {total:g} ({fractions})")
    return fractions


def stratum_value(record: Record, key: str | None) -> str:
    """The value a record is stratified by: a record field, ``meta.<key>`` or a plain meta key."""
    if key is None:
        return ""
    if key.startswith("meta."):
        value = record.meta.get(key[len("meta.") :])
    elif key in RECORD_FIELDS and key != "meta":
        value = getattr(record, key)
    else:
        value = record.meta.get(key)
    return "unknown" if value is None else str(value)


class _ImageKeys:
    """The identity of an image for grouping: its normalised path or its content hash."""

    def __init__(self, base_dir: str | Path | None, image_key: str):
        if image_key not in IMAGE_KEYS:
            raise ConfigError(
                f"image_key: must be one of {', '.join(IMAGE_KEYS)}, got {image_key!r}"
            )
        if image_key == "content" and base_dir is None:
            raise ConfigError("image_key='content' needs base_dir, the folder images are under")
        self.base_dir, self.image_key = base_dir, image_key
        self.cache: dict[str, str] = {}

    def __call__(self, image: str) -> str:
        if image not in self.cache:
            self.cache[image] = self._key(image)
        return self.cache[image]

    def _key(self, image: str) -> str:
        path = Path(image.replace("\\", "/"))
        if self.base_dir is not None and not path.is_absolute():
            path = Path(self.base_dir) / path
        key = "path:" + os.path.normpath(path)
        if self.image_key == "content":
            try:
                return "sha256:" + file_sha256(path)
            except OSError as exc:
                logger.warning("cannot read %s (%s); grouping it by path instead", path, exc)
        return key


def image_groups(
    records: Sequence[Record],
    *,
    base_dir: str | Path | None = None,
    image_key: str = "path",
) -> list[list[int]]:
    """Indices of records that share an image, directly or through other records (union-find)."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    keys = _ImageKeys(base_dir, image_key)
    owner: dict[str, int] = {}
    for i, record in enumerate(records):
        for image in record.images:
            first = owner.setdefault(keys(image), i)
            parent[find(i)] = find(first)
    groups: dict[int, list[int]] = {}
    for i in range(len(records)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _majority(values: list[str]) -> str:
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))


def _assign(
    groups: list[list[int]], strata: list[str], fractions: dict[str, float]
) -> dict[int, str]:
    """Group position -> split name, balancing each stratum and the whole set as groups arrive."""
    names = list(fractions)
    seen_stratum: Counter[str] = Counter()
    count_stratum: dict[str, Counter[str]] = {}
    count_all: Counter[str] = Counter()
    seen_all = 0
    chosen: dict[int, str] = {}
    for g, members in enumerate(groups):
        stratum, size = strata[g], len(members)
        seen_stratum[stratum] += size
        seen_all += size
        counts = count_stratum.setdefault(stratum, Counter())

        behind = {
            name: fractions[name] * seen_stratum[stratum]
            - counts[name]
            + _GLOBAL_WEIGHT * (fractions[name] * seen_all - count_all[name])
            for name in names
        }
        name = max(names, key=behind.__getitem__)  # ties: the first split listed
        chosen[g] = name
        counts[name] += size
        count_all[name] += size
    return chosen


def split_records(
    records: Sequence[Record],
    *,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    stratify_by: str | None = "answer_type",
    group_by_image: bool = True,
    base_dir: str | Path | None = None,
    image_key: str = "path",
) -> dict[str, list[Record]]:
    """Split ``records`` into named parts (default train 0.8 / val 0.1 / test 0.1).

    ``stratify_by`` names a record field (answer_type, question_type, dataset, lang...), a meta
    key (``meta.modality`` or just ``modality``) or None. With ``group_by_image`` every record
    sharing an image lands in the same split; images are compared by path (resolved against
    ``base_dir`` when given) or, with ``image_key="content"``, by SHA-256 of the file. Returns
    copies with ``split`` set, in input order within each split; every name in ``fractions`` is a
    key, possibly with an empty list. The same records and seed always give the same split.
    """
    fractions = _check_fractions(fractions)
    records = list(records)
    duplicates = [i for i, n in Counter(r.id for r in records).items() if n > 1]
    if duplicates:
        raise ValueError(f"record ids must be unique to split deterministically: {duplicates[:5]}")
    if group_by_image:
        groups = image_groups(records, base_dir=base_dir, image_key=image_key)
    else:
        groups = [[i] for i in range(len(records))]

    def order(members: list[int]) -> str:
        smallest = min(records[i].id for i in members)
        return hashlib.sha256(f"{seed}\x1f{smallest}".encode()).hexdigest()

    groups.sort(key=order)
    strata = [_majority([stratum_value(records[i], stratify_by) for i in g]) for g in groups]
    chosen = _assign(groups, strata, fractions)
    split_of = {i: chosen[g] for g, members in enumerate(groups) for i in members}
    out: dict[str, list[Record]] = {name: [] for name in fractions}
    for i, record in enumerate(records):
        out[split_of[i]].append(dataclasses.replace(record, split=split_of[i]))
    logger.info("split %d records: %s", len(records), {k: len(v) for k, v in out.items()})
    return out


def split_summary(
    splits: Mapping[str, Sequence[Record]], stratify_by: str | None = "answer_type"
) -> dict[str, Any]:
    """JSON-ready counts: records per split, their share, and per split the stratum counts."""
    total = sum(len(v) for v in splits.values())
    return {
        "n_records": total,
        "counts": {name: len(part) for name, part in splits.items()},
        "fractions": {name: (len(part) / total if total else 0.0) for name, part in splits.items()},
        "stratify_by": stratify_by,
        "strata": {
            name: dict(sorted(Counter(stratum_value(r, stratify_by) for r in part).items()))
            for name, part in splits.items()
        },
    }
