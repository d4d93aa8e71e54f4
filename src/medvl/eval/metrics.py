"""medvl's metrics: one name-to-function table (:data:`METRICS`) over pure functions.

Per-record metrics are ``fn(prediction, reference, *, lang="en") -> float`` in [0, 1] (0.0 for an
empty prediction, never None; ``embedding_similarity`` alone returns None for non-English).
Corpus metrics are ``fn(predictions, references, *, lang="en") -> float`` over aligned lists.
``kind`` says which records a metric is meant for: ``mcq`` (option letter), ``closed``
(yes/no and other closed answers), ``open`` (free-text answers; also applied to reports) and
``report`` (report generation only). Keeping every record in the denominator (a missing
prediction scores 0) is the caller's job.

Where the functions live: answer matching in :mod:`~medvl.eval.metrics_text`, n-gram metrics in
:mod:`~medvl.eval.metrics_ngram`, CheXpert F1 in :mod:`~medvl.eval.metrics_report`, embeddings in
:mod:`~medvl.eval.embedding`, perplexity (torch) in :mod:`~medvl.eval.metrics_lm`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from medvl.eval.embedding import embedding_similarity, embedding_similarity_batch
from medvl.eval.extract import Extraction, extract_tag
from medvl.eval.metrics_ngram import (
    bleu_1,
    bleu_2,
    bleu_3,
    bleu_4,
    cider_d,
    cider_d_scores,
    corpus_bleu,
    meteor,
    rouge_l,
    sentence_bleu,
)
from medvl.eval.metrics_report import (
    ChexpertF1,
    chexpert_f1,
    chexpert_macro_f1,
    chexpert_micro_f1,
    chexpert_micro_f1_5,
    chexpert_record_f1,
)
from medvl.eval.metrics_text import (
    closed_accuracy,
    exact_match,
    open_recall_llava,
    soft_match,
    substring_match,
    token_f1,
    token_precision,
    token_recall,
)

KINDS = ("mcq", "closed", "open", "report")

__all__ = [
    "KINDS",
    "METRICS",
    "ChexpertF1",
    "MetricSpec",
    "bleu_1",
    "bleu_2",
    "bleu_3",
    "bleu_4",
    "chexpert_f1",
    "chexpert_macro_f1",
    "chexpert_micro_f1",
    "chexpert_micro_f1_5",
    "chexpert_record_f1",
    "cider_d",
    "cider_d_scores",
    "closed_accuracy",
    "corpus_bleu",
    "count_unparsed",
    "embedding_similarity",
    "embedding_similarity_batch",
    "exact_match",
    "mcq_accuracy",
    "meteor",
    "open_recall_llava",
    "perplexity_from_logits",
    "rouge_l",
    "rule_counts",
    "sentence_bleu",
    "soft_match",
    "substring_match",
    "token_f1",
    "token_precision",
    "token_recall",
    "unparsed_rate",
]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its function, the records it is for, and how it aggregates."""

    name: str
    fn: Callable[..., Any]
    kind: str
    per_record: bool
    description: str
    #: Languages it is defined for (None: any); the caller skips other records.
    languages: tuple[str, ...] | None = None
    #: In the default metric set; False for metrics needing extra data or model weights.
    default: bool = True

    @property
    def level(self) -> str:
        """``"record"`` or ``"corpus"``."""
        return "record" if self.per_record else "corpus"


def mcq_accuracy(extraction_letter: str | None, gold_letter: str, *, lang: str = "en") -> float:
    """1.0 when the extracted letter equals the gold letter (an unparsed answer is wrong).

    ``gold_letter`` may be wrapped as ``<answer> C </answer>`` (Med-R1's solutions).
    """
    del lang
    gold = (extract_tag(gold_letter) or gold_letter or "").strip().upper()
    return float(bool(extraction_letter) and extraction_letter.strip().upper() == gold)


def count_unparsed(extractions: Iterable[Extraction]) -> int:
    """How many extractions found no letter (rule ``unparsed``)."""
    return sum(1 for e in extractions if e.letter is None)


def unparsed_rate(extractions: Iterable[Extraction]) -> float:
    """Share of extractions with no letter; 0.0 for no extractions."""
    items = list(extractions)
    return count_unparsed(items) / len(items) if items else 0.0


def rule_counts(extractions: Iterable[Extraction]) -> dict[str, int]:
    """How many extractions each rule produced (``unparsed`` included)."""
    return dict(Counter(e.rule for e in extractions))


def perplexity_from_logits(logits: Any, labels: Any, *, ignore_index: int = -100) -> float:
    """Perplexity of the non-ignored labels, logits shifted by one (see ``metrics_lm``).

    Imports torch on first use, so the string metrics stay light.
    """
    from medvl.eval.metrics_lm import perplexity_from_logits as compute

    return compute(logits, labels, ignore_index=ignore_index)


def _spec(name: str, fn: Callable[..., Any], kind: str, description: str, **kw: Any) -> MetricSpec:
    return MetricSpec(name, fn, kind, kw.pop("per_record", True), description, **kw)


_NGRAM = "lower-cased word tokens (CJK: characters), punctuation dropped"
METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        _spec("mcq_accuracy", mcq_accuracy, "mcq", "extracted option letter == gold letter"),
        _spec(
            "closed_accuracy",
            closed_accuracy,
            "closed",
            "yes/no read by words (answer phrase/tag, single or leading word, negation; "
            "这是/是否/对比 are no answer; yes and no together = wrong); other closed answers: "
            "exact match after normalising and a small synonym table (CT = computed tomography)",
        ),
        _spec("exact_match", exact_match, "open", "normalised prediction == reference"),
        _spec(
            "substring_match",
            substring_match,
            "open",
            "normalised reference found in the prediction (word boundaries; CJK substring)",
        ),
        _spec("soft_match", soft_match, "open", "difflib ratio of the normalised strings"),
        _spec("token_precision", token_precision, "open", "multiset token precision"),
        _spec("token_recall", token_recall, "open", "multiset token recall"),
        _spec("token_f1", token_f1, "open", "multiset token F1 (words; CJK characters)"),
        _spec(
            "open_recall_llava",
            open_recall_llava,
            "open",
            "LLaVA-Med run_eval.py open 'recall' with its normalize_word, quirks included",
        ),
        _spec("bleu_1", bleu_1, "open", f"sentence BLEU-1, nltk method1 smoothing; {_NGRAM}"),
        _spec("bleu_2", bleu_2, "open", f"sentence BLEU-2, nltk method1 smoothing; {_NGRAM}"),
        _spec("bleu_3", bleu_3, "open", f"sentence BLEU-3, nltk method1 smoothing; {_NGRAM}"),
        _spec("bleu_4", bleu_4, "open", f"sentence BLEU-4, nltk method1 smoothing; {_NGRAM}"),
        _spec("rouge_l", rouge_l, "open", f"ROUGE-L F (rouge-score, no stemming); {_NGRAM}"),
        _spec(
            "meteor",
            meteor,
            "open",
            f"nltk METEOR with WordNet (run scripts/install_wordnet.sh); {_NGRAM}",
            default=False,
        ),
        _spec(
            "embedding_similarity",
            embedding_similarity,
            "open",
            "cosine of mean-pooled all-MiniLM-L6-v2 embeddings (English only); NOT comparable "
            "to published BERTScore",
            languages=("en",),
            default=False,
        ),
        _spec(
            "corpus_bleu",
            corpus_bleu,
            "open",
            f"corpus BLEU-4 on a 0-1 scale, no smoothing (= sacrebleu/100); {_NGRAM}",
            per_record=False,
        ),
        _spec(
            "cider_d",
            cider_d,
            "open",
            "CIDEr-D as pycocoevalcap (x10 scale, 0-10; IDF from this set's references)",
            per_record=False,
        ),
        _spec(
            "chexpert_f1",
            chexpert_micro_f1,
            "report",
            "micro F1 over 14 CheXpert observations from medvl's rule labeler (uncertain = "
            "present, as f1chexbert rrg); not comparable with CheXbert F1",
            per_record=False,
        ),
        _spec(
            "chexpert_macro_f1",
            chexpert_macro_f1,
            "report",
            "macro F1 over the 14 observations (absent ones count 0, as sklearn), rule labeler",
            per_record=False,
        ),
        _spec(
            "chexpert_f1_5",
            chexpert_micro_f1_5,
            "report",
            "micro F1 over the 5 competition observations, rule labeler",
            per_record=False,
        ),
        _spec(
            "chexpert_record_f1",
            chexpert_record_f1,
            "report",
            "per-report F1 of the present-observation sets (for breakdowns), rule labeler",
        ),
    )
}
