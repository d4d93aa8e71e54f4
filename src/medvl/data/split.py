"""Deterministic, stratified train/val/test splits in which no image or patient crosses splits.

Why: VQA datasets ask many questions about one image, and exports often save that image once per
question under another name, so a split by record or by path puts the same image in train and
test and inflates test scores. Records are therefore grouped (:mod:`medvl.data.grouping`: by
image content, perceptual near-duplicate, patient and study by default) and groups are assigned
whole. Stratifying by a field (answer type by default) keeps the closed/open mix of every split
close to the whole set's. :func:`check_split_leakage` then runs the leakage check on the result,
every pair of splits, so the claim "no image in two splits" is verified, not assumed.

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
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medvl.data.grouping import DEFAULT_GROUP_BY, Grouping, group_records
from medvl.data.leakage import CANDIDATE_DISTANCE, PHASH_DISTANCE, LeakageReport, find_leakage
from medvl.data.media_hashes import ImageHasher
from medvl.data.record import RECORD_FIELDS, Record
from medvl.errors import ConfigError, MedvlError, RecordError

logger = logging.getLogger(__name__)

DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
IMAGE_LEAK_KINDS = ("exact_image", "near_image")
_GLOBAL_WEIGHT = 0.5  # weight of the all-records balance next to the per-stratum balance


class SplitLeakError(MedvlError):
    """The leakage check found an image shared by two splits of a split just made."""

    exit_code = 1


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


@dataclasses.dataclass
class SplitResult:
    """The splits (name -> records, ``split`` set) and the grouping they were made from."""

    splits: dict[str, list[Record]]
    grouping: Grouping


def split_dataset(
    records: Sequence[Record],
    *,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    stratify_by: str | None = "answer_type",
    group_by: str | Sequence[str] | None = DEFAULT_GROUP_BY,
    base_dir: str | Path | None = None,
    hasher: ImageHasher | None = None,
    phash_distance: int = PHASH_DISTANCE,
    candidate_distance: int = CANDIDATE_DISTANCE,
) -> SplitResult:
    """Split ``records`` into named parts (default train 0.8 / val 0.1 / test 0.1), grouped.

    ``group_by`` lists the grouping keys (:func:`medvl.data.grouping.group_records`; default
    content, phash, patient, study; ``()`` or ``"none"``: every record alone). Image paths resolve
    against ``base_dir``. ``stratify_by`` names a record field (answer_type, question_type,
    dataset, lang...), a meta key (``meta.modality`` or just ``modality``) or None. Returns copies
    with ``split`` set, in input order within each split; every name in ``fractions`` is a key,
    possibly with an empty list. The same records and seed always give the same split.
    """
    fractions = _check_fractions(fractions)
    records = list(records)
    duplicates = [i for i, n in Counter(r.id for r in records).items() if n > 1]
    if duplicates:
        raise RecordError(
            f"record ids must be unique to split deterministically; repeated: {duplicates[:5]}"
        )
    grouping = group_records(
        records,
        group_by,
        base_dir=base_dir,
        hasher=hasher,
        phash_distance=phash_distance,
        candidate_distance=candidate_distance,
    )

    def order(members: list[int]) -> str:
        smallest = min(records[i].id for i in members)
        return hashlib.sha256(f"{seed}\x1f{smallest}".encode()).hexdigest()

    groups = sorted(grouping.groups, key=order)
    strata = [_majority([stratum_value(records[i], stratify_by) for i in g]) for g in groups]
    chosen = _assign(groups, strata, fractions)
    split_of = {i: chosen[g] for g, members in enumerate(groups) for i in members}
    out: dict[str, list[Record]] = {name: [] for name in fractions}
    for i, record in enumerate(records):
        out[split_of[i]].append(dataclasses.replace(record, split=split_of[i]))
    logger.info("split %d records: %s", len(records), {k: len(v) for k, v in out.items()})
    return SplitResult(out, grouping)


def split_records(records: Sequence[Record], **options: Any) -> dict[str, list[Record]]:
    """The splits of :func:`split_dataset` (same keyword options), without the grouping."""
    return split_dataset(records, **options).splits


@dataclasses.dataclass
class SplitCheck:
    """The leakage check of one pair of splits: ``test`` records whose image is in ``train``."""

    train: str
    test: str
    report: LeakageReport

    @property
    def image_leaks(self) -> list[tuple[str, str]]:
        """(test record id, train record id) of every exact or near image leak."""
        return [(p.test_id, p.train_id) for p in self.report.pairs if p.kind in IMAGE_LEAK_KINDS]


def check_split_leakage(
    splits: Mapping[str, Sequence[Record]],
    base_dir: str | Path,
    *,
    hasher: ImageHasher | None = None,
    phash_distance: int = PHASH_DISTANCE,
    candidate_distance: int = CANDIDATE_DISTANCE,
) -> list[SplitCheck]:
    """Run :func:`medvl.data.leakage.find_leakage` on every pair of non-empty splits.

    Pairs follow the order of ``splits``: (train, val), (train, test), (val, test). Pass the
    hasher used for grouping so no image is read twice.
    """
    hasher = hasher if hasher is not None else ImageHasher()
    names = [name for name, part in splits.items() if part]
    return [
        SplitCheck(
            first,
            second,
            find_leakage(
                splits[first],
                base_dir,
                splits[second],
                base_dir,
                phash_distance=phash_distance,
                candidate_distance=candidate_distance,
                hasher=hasher,
            ),
        )
        for i, first in enumerate(names)
        for second in names[i + 1 :]
    ]


def raise_on_leaks(checks: Sequence[SplitCheck], limit: int = 10) -> None:
    """Raise :class:`SplitLeakError` naming the leaked records if any check found an image leak."""
    leaks = [(c, test, train) for c in checks for test, train in c.image_leaks]
    if not leaks:
        return
    named = "; ".join(f"{c.test} {t} ~ {c.train} {r}" for c, t, r in leaks[:limit])
    more = f" and {len(leaks) - limit} more" if len(leaks) > limit else ""
    raise SplitLeakError(
        f"{len(leaks)} image leaks between splits (split record ~ split record): {named}{more}. "
        "Group by image content (--group-by content,phash, the default) or pass --allow-leaks "
        "to write them anyway"
    )


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
