"""Which records must land in one split: same image (by content or near-duplicate), patient, study.

Why: a split is only honest when nothing of a test record was seen in training. Exports that save
one image file per question (the Hugging Face re-exports of VQA-RAD and PathVQA) hold the same
image under many names, so grouping by path leaks; and two studies of one patient share anatomy
and findings, so a patient belongs to one split too.

Grouping keys (``group_by``); records sharing any value of any chosen key form one group (the
connected components of a union-find, so links are transitive):

* ``content``: SHA-256 of each image file's bytes.
* ``phash``: perceptual near-duplicates by the rule and thresholds of the leakage check
  (:mod:`medvl.data.phash`): every near pair is joined, so whatever ``medvl data leakage`` would
  call the same image is in one group. Byte copies are near (distance 0); images PIL cannot decode
  (DICOM) join by exact content only, as in the leakage check.
* ``patient``: a patient id in ``meta`` (``patient_id``, ``PatientID``, ``subject_id``,
  ``participant_id``; key case and ``_`` ignored) or the DICOM ``PatientID`` of a record's images.
* ``study``: ``study_id``, ``StudyInstanceUID``, ``study_uid`` or ``accession_number`` in ``meta``,
  or the DICOM ``StudyInstanceUID``.
* ``path``: the normalised image path (the old behaviour: misses copies under other names).
* ``meta.KEY``: any meta value, compared as text across the whole file.

Videos count like images (:func:`medvl.data.media_hashes.video_files`): every frame file, volume
file and file of a series folder joins ``content`` and ``path`` by exact bytes or path (``phash``
compares images only; for video files it falls back to exact content, since slices of different
scans look alike by design), and the DICOM ``PatientID``/``StudyInstanceUID`` of a series' files
join ``patient``/``study``. So a volume's records, and all volumes of one patient, stay in one
split.

Patient and study ids are compared within one ``dataset`` ("12" in two datasets are two people).
Placeholder ids (empty, "anonymous", "unknown", "none", "n/a"...) are ignored: anonymised DICOM
often writes one for every patient, which would join everything. An image that cannot be read
keeps its path as its content key, and is listed in :attr:`Grouping.unreadable`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.data.media_hashes import ImageHasher, video_files
from medvl.data.phash import CANDIDATE_DISTANCE, PHASH_DISTANCE, near_pairs
from medvl.data.record import Record
from medvl.errors import ConfigError

logger = logging.getLogger(__name__)

GROUP_KEYS = ("content", "phash", "patient", "study", "path")
DEFAULT_GROUP_BY = ("content", "phash", "patient", "study")
PATIENT_META_KEYS = ("patient_id", "PatientID", "subject_id", "participant_id")
STUDY_META_KEYS = ("study_id", "StudyInstanceUID", "study_uid", "accession_number")
PLACEHOLDER_IDS = frozenset(
    {"", "none", "null", "nan", "unknown", "anonymous", "anonymized", "anon", "n/a", "na", "-"}
)
_RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


_PATIENT = frozenset(map(_norm_key, PATIENT_META_KEYS))
_STUDY = frozenset(map(_norm_key, STUDY_META_KEYS))


def parse_group_by(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"content,phash"`` or a list -> validated key names; None or ``"default"`` -> default.

    ``"none"`` (or an empty list) means no grouping: every record is its own group.
    """
    if spec is None:
        return DEFAULT_GROUP_BY
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    keys: list[str] = []
    for item in (str(i).strip() for i in items):
        expanded = DEFAULT_GROUP_BY if item == "default" else (item,)
        for key in expanded:
            if key in ("", "none"):
                continue
            if key not in GROUP_KEYS and not (key.startswith("meta.") and len(key) > 5):
                raise ConfigError(
                    f"group_by: unknown key {key!r}; use a comma-separated list of "
                    f"{', '.join(GROUP_KEYS)}, meta.KEY, 'default' "
                    f"({','.join(DEFAULT_GROUP_BY)}) or 'none'"
                )
            if key not in keys:
                keys.append(key)
    return tuple(keys)


@dataclass(frozen=True)
class KeyCount:
    """How one grouping key acted on its own: records carrying it, and the groups they form."""

    records: int
    groups: int


@dataclass
class Grouping:
    """Record indices per group, and how each key contributed."""

    groups: list[list[int]]
    group_by: tuple[str, ...]
    keys: dict[str, KeyCount] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def largest(self) -> int:
        """Records in the biggest group (0 when there are no records)."""
        return max(map(len, self.groups), default=0)

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts: keys used, groups per key alone and all together, largest group."""
        return {
            "group_by": list(self.group_by),
            "groups": len(self.groups),
            "largest_group": self.largest(),
            "keys": {k: {"records": c.records, "groups": c.groups} for k, c in self.keys.items()},
            "unreadable_images": len(self.unreadable),
        }


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def components(self, members: Sequence[int]) -> list[list[int]]:
        found: dict[int, list[int]] = {}
        for i in members:
            found.setdefault(self.find(i), []).append(i)
        return list(found.values())


def _join(n: int, tokens: Sequence[Sequence[str]], uf: _UnionFind | None = None) -> _UnionFind:
    """Union records that share a token."""
    uf = uf or _UnionFind(n)
    owner: dict[str, int] = {}
    for i, keys in enumerate(tokens):
        for token in keys:
            uf.union(i, owner.setdefault(token, i))
    return uf


def _ids(values: Sequence[Any]) -> list[str]:
    """The usable id strings among values (lists flattened, placeholders dropped)."""
    out = []
    for value in values:
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            text = "" if item is None else str(item).strip()
            if text.lower() not in PLACEHOLDER_IDS:
                out.append(text)
    return out


def dicom_ids(path: Path) -> tuple[str | None, str | None]:
    """(PatientID, StudyInstanceUID) from a DICOM file's header; (None, None) for other files.

    Reads the header only (``stop_before_pixels``, two tags). Files with a raster suffix are not
    opened; others are recognised by their ``.dcm``-like suffix or the ``DICM`` magic bytes.
    """
    from medvl.data.medimage import image_kind

    if path.suffix.lower() in _RASTER_SUFFIXES or image_kind(path) != "dicom":
        return None, None
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=["PatientID", "StudyInstanceUID"],
            force=True,
        )
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, AttributeError) as exc:
        logger.debug("no DICOM ids from %s (%s)", path, exc)
        return None, None
    patient, study = ds.get("PatientID"), ds.get("StudyInstanceUID")
    return (str(patient) if patient else None), (str(study) if study else None)


class _Tokens:
    """Per record and key, the values that tie it to other records (each image hashed once)."""

    def __init__(
        self,
        records: Sequence[Record],
        base_dir: str | Path | None,
        hasher: ImageHasher,
        phash_distance: int,
        candidate_distance: int,
    ):
        self.records, self.hasher = records, hasher
        self.distances = (phash_distance, candidate_distance)
        base = base_dir if base_dir is not None else "."
        self.images = [r.image_paths(base) for r in records]
        self.videos = [video_files(r, base) for r in records]
        self.unreadable: dict[str, None] = {}
        self._dicom: dict[Path, tuple[str | None, str | None]] = {}

    def __call__(self, key: str) -> list[list[str]]:
        if key.startswith("meta."):
            name = key[len("meta.") :]
            return [[f"{key}:{v}" for v in _ids([r.meta.get(name)])] for r in self.records]
        make: dict[str, Callable[[], list[list[str]]]] = {
            "path": lambda: [
                [self._path(p) for p in [*ps, *vs]]
                for ps, vs in zip(self.images, self.videos, strict=True)
            ],
            "content": self._content,
            "phash": self._phash,
            "patient": lambda: self._person(_PATIENT, 0, "patient"),
            "study": lambda: self._person(_STUDY, 1, "study"),
        }
        return make[key]()

    @staticmethod
    def _path(path: Path) -> str:
        return "path:" + os.path.normpath(str(path).replace("\\", "/"))

    def _sha_or_path(self, path: Path) -> str:
        hashed = self.hasher(path)
        if hashed is None:
            self.unreadable[str(path)] = None
            return self._path(path)
        return "sha256:" + hashed.sha256

    def _exact_or_path(self, path: Path) -> str:
        hashed = self.hasher.exact(path)
        if hashed is None:
            self.unreadable[str(path)] = None
            return self._path(path)
        return "sha256:" + hashed.sha256

    def _video_content(self) -> list[list[str]]:
        """Exact-content tokens of the video files; blank frames join nothing."""
        return [[self._exact_or_path(p) for p in vs if not self._blank(p)] for vs in self.videos]

    def _blank(self, path: Path) -> bool:
        hashed = self.hasher.exact(path)
        return hashed is not None and hashed.blank

    def _content(self) -> list[list[str]]:
        images = [[self._sha_or_path(p) for p in ps] for ps in self.images]
        return [a + b for a, b in zip(images, self._video_content(), strict=True)]

    def _phash(self) -> list[list[str]]:
        # hashes every image once; the hasher caches the pHashes too
        content = [[self._sha_or_path(p) for p in ps] for ps in self.images]
        hashes = {h.sha256: h for ps in self.images for p in ps if (h := self.hasher(p))}
        shas = sorted(hashes)
        decodable = [s for s in shas if hashes[s].phash64 is not None]
        pairs = near_pairs(
            [(hashes[s].phash64, hashes[s].phash256) for s in decodable],
            phash_distance=self.distances[0],
            candidate_distance=self.distances[1],
        )
        position = {s: i for i, s in enumerate(shas)}
        uf = _UnionFind(len(shas))
        for i, j, _ in pairs:
            uf.union(position[decodable[i]], position[decodable[j]])

        def token(value: str) -> str:
            if not value.startswith("sha256:"):
                return value  # unreadable: its path
            return f"phash:{uf.find(position[value[len('sha256:') :]])}"

        images = [[token(v) for v in values] for values in content]
        return [a + b for a, b in zip(images, self._video_content(), strict=True)]

    def _person(self, names: frozenset[str], slot: int, kind: str) -> list[list[str]]:
        out = []
        for record, paths, files in zip(self.records, self.images, self.videos, strict=True):
            values = [v for k, v in record.meta.items() if _norm_key(k) in names]
            values += [self._dicom_id(p, slot) for p in [*paths, *files]]
            out.append([f"{kind}:{record.dataset}:{v}" for v in dict.fromkeys(_ids(values))])
        return out

    def _dicom_id(self, path: Path, slot: int) -> str | None:
        if path not in self._dicom:
            self._dicom[path] = dicom_ids(path)
        return self._dicom[path][slot]


def group_records(
    records: Sequence[Record],
    group_by: str | Sequence[str] | None = DEFAULT_GROUP_BY,
    *,
    base_dir: str | Path | None = None,
    hasher: ImageHasher | None = None,
    phash_distance: int = PHASH_DISTANCE,
    candidate_distance: int = CANDIDATE_DISTANCE,
) -> Grouping:
    """Group record indices: records sharing a value of any ``group_by`` key are in one group.

    Image paths resolve against ``base_dir`` (the JSONL file's folder; the working directory when
    None). Pass the ``hasher`` the leakage check will use, so each image is read once. Groups
    list indices in input order and are ordered by their first index.
    """
    keys = parse_group_by(group_by)
    hasher = hasher if hasher is not None else ImageHasher()
    tokens = _Tokens(records, base_dir, hasher, phash_distance, candidate_distance)
    n = len(records)
    combined = _UnionFind(n)
    counts: dict[str, KeyCount] = {}
    for key in keys:
        per_record = tokens(key)
        carrying = [i for i, values in enumerate(per_record) if values]
        alone = _join(n, per_record)
        counts[key] = KeyCount(len(carrying), len(alone.components(carrying)))
        _join(n, per_record, combined)
    groups = combined.components(range(n))
    logger.info("grouped %d records by %s into %d groups", n, ",".join(keys), len(groups))
    return Grouping(groups, keys, counts, list(tokens.unreadable))
