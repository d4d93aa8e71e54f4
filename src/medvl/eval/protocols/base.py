"""What every scoring protocol returns and promises: :class:`Judgment` and :class:`ScoringProtocol`.

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

    def judge(
        self,
        *,
        kind: str,
        question: str,
        prediction: str,
        gold: str,
        options: Mapping[str, str] | None,
        lang: str,
        benchmark: str | None,
    ) -> Judgment:
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
