"""``medvl``: medvl's own strict scoring, the default (:mod:`medvl.eval.scoring` is the authority).

This adapter lets the protocol table list medvl first and lets callers judge one record the
same way: MCQ through :func:`medvl.eval.extract.extract_choice`, closed questions through
:func:`medvl.eval.metrics_text.closed_accuracy`, open ones through
:func:`medvl.eval.metrics_text.exact_match`. It covers every medvl benchmark.
"""

from __future__ import annotations

from medvl.eval.protocols.base import Answer, Judgment, refuse_kind


class MedvlProtocol:
    """medvl's default scoring, for listing and single-record use."""

    name = "medvl"
    title = "medvl: strict extraction (MCQ rules), yes/no by words, normalised exact match"
    follows = "medvl itself: medvl.eval.scoring, extract, metrics_text"
    notes = "The default. Never calls an LLM; every record stays in the denominator."

    @property
    def benchmarks(self) -> tuple[str, ...]:
        """Every benchmark medvl defines (looked up now, so this module stays light)."""
        from medvl.eval.benchmarks import BENCHMARKS

        return tuple(BENCHMARKS)

    def judge(self, answer: Answer) -> Judgment:
        """medvl's per-record accuracy for this kind."""
        from medvl.eval.closed import extract_closed
        from medvl.eval.extract import extract_choice
        from medvl.eval.metrics_text import closed_accuracy, exact_match
        from medvl.eval.normalize import normalize_answer

        prediction, gold, lang = answer.prediction or "", answer.gold, answer.lang
        if answer.kind == "mcq" and answer.options:
            found = extract_choice(prediction, answer.options)
            return Judgment(float(found.letter == gold), found.letter, found.rule)
        if answer.kind == "closed":
            found = extract_closed(prediction, gold)
            return Judgment(closed_accuracy(prediction, gold, lang=lang), found.answer, found.rule)
        if answer.kind == "open":
            correct = exact_match(prediction, gold, lang=lang)
            return Judgment(correct, normalize_answer(prediction), "exact_match")
        raise refuse_kind(self, answer.kind, None)
