"""What every scoring protocol takes, returns and promises: :class:`Answer`, :class:`Judgment`
and :class:`ScoringProtocol`.

A protocol reproduces one tool's rules for judging one answer. It never calls an LLM: where the
tool would, the judgment says so in ``rule`` (``needs_llm_judge``) and scores the record as the
tool does without its judge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from medvl.errors import MedvlError

#: Record kinds as medvl's scorer names them (``medvl.eval.scoring.KINDS``).
KINDS = ("mcq", "closed", "open", "report")


@dataclass(frozen=True, kw_only=True)
class Answer:
    """One model answer to judge, with everything a protocol may read about its record.

    ``kind`` is the record kind (one of :data:`KINDS`); ``prediction`` is the model's raw reply
    ("" when it said nothing); ``gold`` is the gold answer (the gold letter for ``mcq``);
    ``question`` is the question text (only an LLM judge's prompt would read it); ``options``
    maps option letters to option texts (None for non-MCQ records); ``lang`` is the record's
    language code (``en``, ``zh``); ``benchmark`` is the benchmark the record comes from, or
    None for data of no named benchmark (rules then chosen by kind).
    """

    kind: str
    prediction: str
    gold: str
    question: str = ""
    options: Mapping[str, str] | None = None
    lang: str = "en"
    benchmark: str | None = None


@dataclass(frozen=True)
class Judgment:
    """One record judged under one protocol.

    ``correct`` is 1.0 or 0.0, or None where the tool leaves the record out of its accuracy
    denominator (``rule`` says why); ``extracted`` is what the tool read from the prediction;
    ``metrics`` holds the tool's other per-record numbers under the tool's own names.
    """

    correct: float | None
    extracted: str | None
    rule: str
    metrics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class ScoringProtocol(Protocol):
    """A tool's scoring rules: metadata for people and one pure ``judge`` function."""

    name: str
    title: str
    follows: str
    benchmarks: tuple[str, ...]
    notes: str

    def judge(self, answer: Answer) -> Judgment:
        """Judge one prediction against its gold answer."""
        ...


class ProtocolError(MedvlError):
    """A protocol was asked to judge something its tool has no rules for."""


def check_benchmark(protocol: ScoringProtocol, benchmark: str | None) -> None:
    """Refuse a benchmark the protocol defines no rules for (None: rules chosen by kind)."""
    if benchmark is not None and benchmark not in protocol.benchmarks:
        raise ProtocolError(
            f"protocol {protocol.name!r} has no rules for benchmark {benchmark!r}; it covers "
            f"{', '.join(protocol.benchmarks)}. Use --protocol medvl, or a protocol that "
            "covers this benchmark"
        )


def check_supported(protocol: ScoringProtocol, answer: Answer, kinds: tuple[str, ...]) -> None:
    """Refuse an answer whose benchmark, or record kind outside ``kinds``, the tool has no rules
    for (the check most protocols make before judging)."""
    check_benchmark(protocol, answer.benchmark)
    if answer.kind not in kinds:
        raise refuse_kind(protocol, answer.kind, answer.benchmark)


def refuse_kind(protocol: ScoringProtocol, kind: str, benchmark: str | None) -> ProtocolError:
    """The error for a record kind the tool does not score (e.g. reports under a VQA tool)."""
    where = f" on benchmark {benchmark!r}" if benchmark else ""
    return ProtocolError(
        f"protocol {protocol.name!r} has no rule for {kind!r} records{where}; "
        "score these with --protocol medvl"
    )


def option_letters(options: Mapping[str, str] | None) -> list[str]:
    """Option keys in A..Z order (how VLMEvalKit and MedEvalKit list choices)."""
    return sorted((options or {}).keys())
