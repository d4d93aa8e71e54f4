"""Train/test leakage: test records whose image (or whole question-answer) already appears in train.

Why: public medical VQA sets reuse images across splits, sometimes byte-identical under another
name (the VQA-RAD export holds 33 distinct contents in 50 files), sometimes resized or re-encoded.
A model that saw the test image in training scores too high, so the test set should be checked and
filtered before a number is reported.

Three kinds of leak, each reported per test record with the closest train record:

* ``exact_image``: a test image has the same SHA-256 of its file bytes as a train image.
* ``near_image``: a test image is a perceptual near-duplicate of a train image
  (:func:`medvl.data.phash.phashes`): their 64-bit DCT pHashes differ in at most
  ``candidate_distance`` bits (default 12; a fast bulk pre-filter) and their 256-bit DCT pHashes
  in at most ``phash_distance`` bits (default 18; the decision). Measured on 80 phantoms (every
  modality and organ, 112-224 px) and the real VQA-RAD and PathVQA samples: copies resized to
  half, 0.8x or double size or re-encoded as JPEG at quality 70 stay within 10 of 256 bits
  (within 4 of 64; harsher JPEG q=50 at half size: 16); different phantoms lie 26 or more of 256
  bits apart, distinct real images 92 or more. ``tests/unit/test_leakage.py`` re-checks this. The
  64-bit hash alone cannot decide: two phantoms of different organs can share it exactly.
* ``qa_duplicate``: the same normalised question and answer on the same image group (every test
  image matches a train image exactly or nearly, or neither record has images).

Videos (``frames``, ``volume`` and ``series`` entries) take part through their files: each frame
file, the volume file and every file of a series folder
(:func:`medvl.data.media_hashes.video_files`) is hashed and compared by exact content only,
reported as ``exact_image``; blank frames (one flat value, the same bytes in every patient's
export) are left out. Slices of one scan look alike by design, so a perceptual match between
slices says nothing about a copy; volumes and series of one patient are kept together by the
patient and study keys of the split instead.

Each image is hashed once (cached by path; :class:`medvl.data.media_hashes.ImageHasher`). Exact
matches are found through a dictionary; near duplicates by :func:`medvl.data.phash.match_hashes`,
a vectorised XOR-and-popcount of each distinct test hash against all distinct train hashes
(20k x 20k in a second or two, after hashing the images).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medvl.data.media_hashes import ImageHash, ImageHasher, record_media
from medvl.data.phash import CANDIDATE_DISTANCE, PHASH_DISTANCE, match_hashes
from medvl.data.record import Record

logger = logging.getLogger(__name__)

# ImageHasher now lives in medvl.data.media_hashes; re-exported for medvl.pipeline.steps.
__all__ = [
    "CANDIDATE_DISTANCE",
    "LEAK_KINDS",
    "PHASH_DISTANCE",
    "ImageHasher",
    "LeakPair",
    "LeakageReport",
    "filter_test",
    "find_leakage",
    "normalize_qa",
]

LEAK_KINDS = ("exact_image", "near_image", "qa_duplicate")


@dataclass(frozen=True)
class LeakPair:
    """One leaked test record and the closest train record; distance 0 for exact matches."""

    test_id: str
    train_id: str
    kind: str
    distance: int
    test_image: str | None = None
    train_image: str | None = None


@dataclass
class LeakageReport:
    """Every leaked test record (one pair per record and kind) and the counts."""

    pairs: list[LeakPair]
    counts: dict[str, int]
    phash_distance: int
    candidate_distance: int

    def leaked_test_ids(self, kinds: Iterable[str] = LEAK_KINDS) -> set[str]:
        """Ids of test records with at least one pair of the given kinds."""
        wanted = set(kinds)
        return {p.test_id for p in self.pairs if p.kind in wanted}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``counts``, the thresholds and ``pairs`` (a list of dicts)."""
        return {
            "counts": dict(self.counts),
            "phash_distance": self.phash_distance,
            "candidate_distance": self.candidate_distance,
            "pairs": [asdict(p) for p in self.pairs],
        }


def normalize_qa(text: str | None) -> str:
    """Lowercase, NFKC, punctuation removed, whitespace collapsed: "Yes." == "yes"."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _qa_key(record: Record) -> str:
    answer = record.answer if record.answer is not None else record.reference
    if record.options and answer in record.options:
        answer = record.options[answer] or answer  # compare option text, not the letter
    return normalize_qa(record.question) + "\x1f" + normalize_qa(answer)


@dataclass
class _Side:
    """One split's records with their images resolved and hashed."""

    records: Sequence[Record]
    images: list[list[tuple[Path, ImageHash | None]]]

    @classmethod
    def build(cls, records: Sequence[Record], base: str | Path, hasher: ImageHasher) -> _Side:
        return cls(records, [record_media(record, base, hasher) for record in records])

    def distinct_images(self) -> set[Path]:
        return {path for paths in self.images for path, _ in paths}


@dataclass
class _TrainIndex:
    """Distinct train images (by content hash) with the first record using each."""

    by_sha: dict[str, int] = field(default_factory=dict)  # sha256 -> position in the lists below
    hashes: list[ImageHash] = field(default_factory=list)
    owners: list[tuple[int, Path]] = field(default_factory=list)  # (record index, image path)

    @classmethod
    def build(cls, side: _Side) -> _TrainIndex:
        index = cls()
        for r, paths in enumerate(side.images):
            for path, h in paths:
                if h is not None and h.sha256 not in index.by_sha:
                    index.by_sha[h.sha256] = len(index.hashes)
                    index.hashes.append(h)
                    index.owners.append((r, path))
        return index


def _image_matches(
    test: _Side, index: _TrainIndex, phash_distance: int, candidate_distance: int
) -> dict[Path, tuple[str, int, int, Path]]:
    """Test image path -> (kind, distance, train record index, train image path) for each leak."""
    matches: dict[Path, tuple[str, int, int, Path]] = {}
    pending: dict[str, tuple[ImageHash, list[Path]]] = {}  # by sha: each content searched once
    for path, h in dict.fromkeys(pair for paths in test.images for pair in paths):
        if h is None:
            continue
        if h.sha256 in index.by_sha:
            r, train_path = index.owners[index.by_sha[h.sha256]]
            matches[path] = ("exact_image", 0, r, train_path)
        elif h.phash64 is not None:
            pending.setdefault(h.sha256, (h, []))[1].append(path)
    queries = list(pending.values())
    usable = [j for j, h in enumerate(index.hashes) if h.phash64 is not None]
    found = match_hashes(
        [(h.phash64, h.phash256) for h, _ in queries],
        [(index.hashes[j].phash64, index.hashes[j].phash256) for j in usable],
        phash_distance=phash_distance,
        candidate_distance=candidate_distance,
    )
    best = {q: (distance, usable[u]) for q, u, distance in found}
    for q, (distance, j) in best.items():
        r, train_path = index.owners[j]
        for path in queries[q][1]:
            matches[path] = ("near_image", distance, r, train_path)
    return matches


def _record_image_pair(
    test_id: str, paths: list[tuple[Path, ImageHash | None]], train: _Side, matches: Mapping
) -> LeakPair | None:
    found = [(matches[p][1], str(p), matches[p]) for p, _ in paths if p in matches]
    if not found:
        return None
    _, path, (kind, distance, r, train_path) = min(found)
    return LeakPair(test_id, train.records[r].id, kind, distance, path, str(train_path))


def _same_image_group(
    test_images: list[tuple[Path, ImageHash | None]],
    train_images: list[tuple[Path, ImageHash | None]],
    phash_distance: int,
) -> bool:
    """True when every test image matches one of the train record's images (or neither has any)."""
    if not test_images or not train_images:
        return not test_images and not train_images

    def same(a: tuple[Path, ImageHash | None], b: tuple[Path, ImageHash | None]) -> bool:
        (path_a, hash_a), (path_b, hash_b) = a, b
        if hash_a is None or hash_b is None:  # unreadable: fall back to the path
            return path_a.resolve() == path_b.resolve()
        return hash_a.sha256 == hash_b.sha256 or hash_a.near(hash_b, phash_distance) is not None

    return all(any(same(t, r) for r in train_images) for t in test_images)


def _qa_pairs(test: _Side, train: _Side, phash_distance: int) -> list[LeakPair]:
    by_key: dict[str, list[int]] = {}
    for r, record in enumerate(train.records):
        by_key.setdefault(_qa_key(record), []).append(r)
    pairs = []
    for t, record in enumerate(test.records):
        for r in by_key.get(_qa_key(record), []):
            if _same_image_group(test.images[t], train.images[r], phash_distance):
                pairs.append(LeakPair(record.id, train.records[r].id, "qa_duplicate", 0))
                break
    return pairs


def find_leakage(
    train_records: Sequence[Record],
    train_base: str | Path,
    test_records: Sequence[Record],
    test_base: str | Path,
    *,
    phash_distance: int = PHASH_DISTANCE,
    candidate_distance: int = CANDIDATE_DISTANCE,
    hasher: ImageHasher | None = None,
) -> LeakageReport:
    """Find test records whose image or question-answer pair already appears in train.

    ``train_base``/``test_base`` are the folders image paths are relative to (each JSONL file's
    folder). Two images are near duplicates when their 64-bit pHashes differ in at most
    ``candidate_distance`` bits (a cheap bulk filter) and their 256-bit pHashes in at most
    ``phash_distance`` bits (the decision; pairs report this distance). Pass a ``hasher`` to share
    its cache between calls. Unreadable images are logged, counted and skipped.
    """
    if not 0 <= phash_distance <= 256 or not 0 <= candidate_distance <= 64:
        raise ValueError(
            f"phash_distance must be in 0..256 bits and candidate_distance in 0..64 bits, "
            f"got {phash_distance} and {candidate_distance}"
        )
    hasher = hasher or ImageHasher()
    train = _Side.build(train_records, train_base, hasher)
    test = _Side.build(test_records, test_base, hasher)
    index = _TrainIndex.build(train)
    matches = _image_matches(test, index, phash_distance, candidate_distance)
    pairs = [
        pair
        for record, paths in zip(test.records, test.images, strict=True)
        if (pair := _record_image_pair(record.id, paths, train, matches)) is not None
    ]
    pairs += _qa_pairs(test, train, phash_distance)
    pairs.sort(key=lambda p: (p.test_id, LEAK_KINDS.index(p.kind)))
    counts = _counts(train, test, pairs, hasher)
    return LeakageReport(pairs, counts, phash_distance, candidate_distance)


def _counts(train: _Side, test: _Side, pairs: list[LeakPair], hasher: ImageHasher) -> dict:
    train_images, test_images = train.distinct_images(), test.distinct_images()
    leaked = {p.test_id for p in pairs}
    counts = {
        "train_records": len(train.records),
        "test_records": len(test.records),
        "train_images": len(train_images),
        "test_images": len(test_images),
        "missing_train_images": len(train_images & hasher.missing),
        "missing_test_images": len(test_images & hasher.missing),
        **{kind: sum(p.kind == kind for p in pairs) for kind in LEAK_KINDS},
        "leaked_test_records": len(leaked),
    }
    logger.info("leakage: %d of %d test records leak", len(leaked), len(test.records))
    return counts


def filter_test(
    test_records: Iterable[Record],
    report: LeakageReport | Mapping[str, Any],
    *,
    kinds: Iterable[str] = LEAK_KINDS,
) -> list[Record]:
    """The test records with no leak of the given ``kinds``; ``report`` may be its JSON dict."""
    wanted = set(kinds)
    unknown = wanted - set(LEAK_KINDS)
    if unknown:
        raise ValueError(f"unknown leak kind(s) {sorted(unknown)}; use {', '.join(LEAK_KINDS)}")
    if isinstance(report, LeakageReport):
        leaked = report.leaked_test_ids(wanted)
    else:
        leaked = {p["test_id"] for p in report["pairs"] if p["kind"] in wanted}
    return [record for record in test_records if record.id not in leaked]
