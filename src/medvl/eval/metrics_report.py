"""Report-generation metrics from the rule-based CheXpert labeler (:mod:`medvl.eval.chexpert`).

CheXpert F1 compares the observations a generated report asserts with those of the reference
report. As in f1chexbert's "rrg" mode (the number RRG papers report), an observation counts as
present when it is positive **or uncertain** (``uncertain="positive"``; pass ``"negative"`` to
count only definite mentions); negative and unmentioned count as absent. Micro F1 pools the
true/false positives of all observations; macro F1 averages per-observation F1 over all of them,
an observation with no true and no predicted positive scoring 0 (sklearn's ``zero_division=0``,
as f1chexbert's ``classification_report``). The ``_5`` variants use the five competition
observations. Numbers from this rule labeler are not comparable with CheXbert-based F1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medvl.eval.chexpert import CHEXPERT_5, OBSERVATIONS, POSITIVE, UNCERTAIN, label_report

UNCERTAIN_POLICIES = ("positive", "negative")


@dataclass(frozen=True)
class ObservationScore:
    """Precision/recall/F1 of one observation; ``support`` = reference positives."""

    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


@dataclass(frozen=True)
class ChexpertF1:
    """CheXpert F1 over a set of report pairs (see the module docs for the definitions)."""

    micro_f1: float
    macro_f1: float
    micro_f1_5: float
    macro_f1_5: float
    per_observation: dict[str, ObservationScore]
    n: int


def positive_set(labels: Mapping[str, int | None], uncertain: str = "positive") -> frozenset[str]:
    """Observations counted as present: positive, and uncertain if ``uncertain="positive"``."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    present = (POSITIVE, UNCERTAIN) if uncertain == "positive" else (POSITIVE,)
    return frozenset(o for o, v in labels.items() if v in present)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def chexpert_f1(
    pred_reports: Sequence[str],
    ref_reports: Sequence[str],
    *,
    lang: str = "en",
    uncertain: str = "positive",
) -> ChexpertF1:
    """Micro/macro CheXpert F1 (all 14 and the 5) of generated vs reference reports."""
    if len(pred_reports) != len(ref_reports):
        raise ValueError(f"{len(pred_reports)} predictions but {len(ref_reports)} references")
    counts = {o: [0, 0, 0] for o in OBSERVATIONS}  # tp, fp, fn
    for pred, ref in zip(pred_reports, ref_reports, strict=True):
        p = positive_set(label_report(pred, lang), uncertain)
        r = positive_set(label_report(ref, lang), uncertain)
        for o in p & r:
            counts[o][0] += 1
        for o in p - r:
            counts[o][1] += 1
        for o in r - p:
            counts[o][2] += 1
    per = {o: _observation_score(*counts[o]) for o in OBSERVATIONS}

    def micro(names: Sequence[str]) -> float:
        return _f1(*(sum(counts[o][i] for o in names) for i in range(3)))

    def macro(names: Sequence[str]) -> float:
        return sum(per[o].f1 for o in names) / len(names)

    return ChexpertF1(
        micro(OBSERVATIONS),
        macro(OBSERVATIONS),
        micro(CHEXPERT_5),
        macro(CHEXPERT_5),
        per,
        len(pred_reports),
    )


def _observation_score(tp: int, fp: int, fn: int) -> ObservationScore:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return ObservationScore(precision, recall, _f1(tp, fp, fn), tp + fn, tp + fp)


def chexpert_micro_f1(
    predictions: Sequence[str], references: Sequence[str], *, lang: str = "en"
) -> float:
    """Micro F1 over the 14 observations (uncertain counted as present)."""
    return chexpert_f1(predictions, references, lang=lang).micro_f1


def chexpert_macro_f1(
    predictions: Sequence[str], references: Sequence[str], *, lang: str = "en"
) -> float:
    """Macro F1 over the 14 observations (absent ones score 0, as sklearn)."""
    return chexpert_f1(predictions, references, lang=lang).macro_f1


def chexpert_micro_f1_5(
    predictions: Sequence[str], references: Sequence[str], *, lang: str = "en"
) -> float:
    """Micro F1 over the five competition observations."""
    return chexpert_f1(predictions, references, lang=lang).micro_f1_5


def chexpert_record_f1(prediction: str, reference: str, *, lang: str = "en") -> float:
    """Per-record F1 between the two reports' present-observation sets (for breakdowns).

    1.0 when both sets are empty (both reports empty/unlabelled); "No Finding" takes part, so two
    normal reports agree.
    """
    p = positive_set(label_report(prediction, lang))
    r = positive_set(label_report(reference, lang))
    if not p and not r:
        return 1.0
    return 2 * len(p & r) / (len(p) + len(r))
