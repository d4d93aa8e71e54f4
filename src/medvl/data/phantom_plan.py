"""Planning the phantom dataset: which question each sample asks, its split and its language.

Before any facts or image are drawn, :func:`schedule` fixes for every sample its question type
(in the shares of :data:`KIND_WEIGHTS`), whether it is multiple choice, its split (per question
type, so the test split holds every type) and its language, and balances within each split the
targets a model could otherwise guess from frequencies: presence yes/no, laterality left/right and
the correct option letter. :func:`medvl.data.phantom.generate_phantom` then draws each sample's
facts to suit its :class:`SampleSpec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medvl.data import phantom_text as text

QUESTION_TYPES = text.QUESTION_TYPES
SPLITS = ("train", "val", "test")
# (question type, multiple choice?, share of records). Closed questions are ~61% of the data.
KIND_WEIGHTS: tuple[tuple[str, bool, float], ...] = (
    ("presence", False, 0.21),
    ("laterality", False, 0.10),
    ("laterality", True, 0.04),
    ("modality", False, 0.10),
    ("modality", True, 0.05),
    ("organ", False, 0.08),
    ("organ", True, 0.04),
    ("counting", False, 0.08),
    ("counting", True, 0.04),
    ("size", False, 0.07),
    ("findings", False, 0.10),
    ("findings", True, 0.03),
    ("report", False, 0.06),
)


@dataclass(frozen=True)
class SampleSpec:
    """The question planned for one sample, fixed before its facts are drawn."""

    index: int
    split: str
    qtype: str
    mcq: bool
    lang: str
    target: str | None  # presence "yes"/"no" or laterality "left"/"right", balanced up front
    letter: str | None  # the correct option letter of a multiple-choice question


def _round(x: float) -> int:
    return int(np.floor(x + 0.5))


def pick(rng: np.random.Generator, values: Sequence[Any], p: Sequence[float] | None = None) -> Any:
    """One of ``values`` drawn with ``rng`` (weights ``p``; uniform when None)."""
    return values[int(rng.choice(len(values), p=p))]


def _quotas(n: int) -> list[int]:
    """Records per entry of KIND_WEIGHTS (largest remainder), every question type >= 1 if n >= 8."""
    raw = [weight * n for *_, weight in KIND_WEIGHTS]
    counts = [int(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    for qtype in QUESTION_TYPES:
        kinds = [i for i, kind in enumerate(KIND_WEIGHTS) if kind[0] == qtype]
        donor = max(range(len(counts)), key=lambda i: counts[i])
        if sum(counts[i] for i in kinds) == 0 and counts[donor] > 1:
            counts[donor] -= 1
            counts[kinds[0]] += 1
    return counts


def _balanced(rng: np.random.Generator, values: Sequence[str], n: int) -> list[str]:
    """``n`` values in shuffled blocks that each hold every value once: balanced yet random."""
    blocks = (n + len(values) - 1) // len(values)
    return [values[j] for _ in range(blocks) for j in rng.permutation(len(values))][:n]


def schedule(
    n: int,
    val_fraction: float,
    test_fraction: float,
    zh_fraction: float,
    rng: np.random.Generator,
) -> list[SampleSpec]:
    """Plan every sample's question type, split, language and balanced targets.

    Language, presence yes/no, laterality side and the correct option letter are balanced within
    each split, so even the small test split is balanced.
    """
    kinds = [
        kind for kind, count in zip(KIND_WEIGHTS, _quotas(n), strict=True) for _ in range(count)
    ]
    kinds = [kinds[i] for i in rng.permutation(n)]
    splits = _assign_splits([qtype for qtype, *_ in kinds], val_fraction, test_fraction)
    cycles = {
        (split, name): iter(_balanced(rng, values, n))
        for split in SPLITS
        for name, values in (
            ("presence", ("yes", "no")),
            ("laterality", ("left", "right")),
            ("letter", "ABCD"),
        )
    }
    zh: set[int] = set()
    for split in SPLITS:
        members = [i for i in range(n) if splits[i] == split]
        chosen = rng.permutation(len(members))[: _round(len(members) * zh_fraction)]
        zh.update(members[int(j)] for j in chosen)
    specs = []
    for i, (qtype, mcq, _) in enumerate(kinds):
        target = cycles.get((splits[i], qtype))
        letter = next(cycles[splits[i], "letter"]) if mcq else None
        lang = "zh" if i in zh else "en"
        specs.append(
            SampleSpec(i, splits[i], qtype, mcq, lang, next(target) if target else None, letter)
        )
    return specs


def _assign_splits(qtypes: Sequence[str], val_fraction: float, test_fraction: float) -> list[str]:
    """Split per question type (in the shuffled order) so that test holds every type.

    Each type with at least two samples puts at least one in test; a lone sample stays in train.
    """
    splits = ["train"] * len(qtypes)
    for qtype in QUESTION_TYPES:
        members = [i for i, q in enumerate(qtypes) if q == qtype]
        n_test = _round(len(members) * test_fraction)
        n_test = max(n_test, 1) if len(members) > 1 and test_fraction > 0 else n_test
        n_val = min(_round(len(members) * val_fraction), len(members) - n_test)
        for j, index in enumerate(members):
            splits[index] = "test" if j < n_test else "val" if j < n_test + n_val else "train"
    return splits
