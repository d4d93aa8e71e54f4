"""``llava-med``: LLaVA-Med's ``run_eval.py`` closed accuracy and open recall.

Follows: microsoft/LLaVA-Med commit ad758b68: ``llava/eval/run_eval.py`` (``evaluate``),
``llava/eval/eval_metrics/evaluate_metrics.py`` (``calculate_f1score``,
``calculate_exactmatch``) and ``glossary.py`` (``normalize_word``, reproduced by
:func:`medvl.eval.normalize.normalize_llava`).

Covers: ``vqa_rad``, ``slake``, ``pathvqa`` (LLaVA-Med's three VQA sets).

Rules (both sides lower-cased and passed through ``normalize_word`` first):

- Closed: when the prediction contains the substring "yes" or "no", it is right when the gold is
  a substring of it; **otherwise nothing is recorded**: upstream appends a hit only for right
  answers in that branch, so a wrong yes/no answer leaves the denominator
  (``correct=None``, rule ``dropped_wrong_yes_no``) and the reported "yes/no accuracy" is
  inflated. A prediction with neither substring counts 0. "normal" holds "no": it is right
  against "no" and dropped against "yes".
- Open: no right/wrong (``correct=None``, rule ``open_recall``); LLaVA-Med reports the mean of
  ``recall`` (``calculate_f1score``, a second ``normalize_word``, word counts: the shared words'
  counts in the prediction over those plus the gold's missing words), also ``precision``,
  ``f1`` and its "exact match score" ``exact_match`` (distinct gold words found in the
  prediction over the prediction's word count - not a 0/1 match).

Not reproduced: the "open accuracy" that needs LLaVA-Med's ``candidate.json`` answer list, and
BLEU.
"""

from __future__ import annotations

from collections import Counter

from medvl.eval.normalize import normalize_llava
from medvl.eval.protocols.base import Answer, Judgment, check_supported


def _words(text: str) -> Counter[str]:
    """``split_sentence(text, 1)`` after ``calculate_*``'s own ``normalize_word``."""
    return Counter(normalize_llava(text).lower().split())


def f1score(prediction: str, gold: str) -> tuple[float, float, float]:
    """``calculate_f1score``: ``(f1, precision, recall)`` on word counts; 0s when empty."""
    pred, ref = _words(prediction), _words(gold)
    if not pred or not ref:
        return 0.0, 0.0, 0.0
    tp = sum(n for w, n in pred.items() if w in ref)
    fp = sum(n for w, n in pred.items() if w not in ref)
    fn = sum(n for w, n in ref.items() if w not in pred)
    if tp == 0:
        return 0.0, 0.0, 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall), precision, recall


def exact_match_score(prediction: str, gold: str) -> float:
    """``calculate_exactmatch``: distinct gold words present / prediction word count."""
    pred, ref = _words(prediction), _words(gold)
    total = sum(pred.values())
    return sum(1 for w in ref if w in pred) / total if total else 0.0


class LlavaMedProtocol:
    """LLaVA-Med's run_eval.py: closed substring accuracy, open recall."""

    name = "llava-med"
    title = "LLaVA-Med run_eval.py: yes/no substring accuracy (wrong ones dropped), open recall"
    follows = (
        "microsoft/LLaVA-Med ad758b68: llava/eval/run_eval.py, "
        "llava/eval/eval_metrics/evaluate_metrics.py, glossary.py"
    )
    benchmarks = ("vqa_rad", "slake", "pathvqa")
    notes = (
        "Closed: wrong answers that contain 'yes' or 'no' are dropped from the denominator, as "
        "the indexed run_eval.py does (its hit is appended only when right). Open: recall only, "
        "no accuracy. 'open accuracy' (needs candidate.json) and BLEU are not computed."
    )

    def judge(self, answer: Answer) -> Judgment:
        """Closed: substring rule; open: recall, precision, f1, exact-match score."""
        check_supported(self, answer, ("closed", "open"))
        pred = normalize_llava((answer.prediction or "").lower())
        ref = normalize_llava(answer.gold.lower())
        if answer.kind == "closed":
            if "yes" in pred or "no" in pred:
                if ref in pred:
                    return Judgment(1.0, pred, "yes_no_substring")
                return Judgment(None, pred, "dropped_wrong_yes_no")
            return Judgment(0.0, pred, "no_yes_no_word")
        f1, precision, recall = f1score(pred, ref)
        metrics = {
            "recall": recall,
            "precision": precision,
            "f1": f1,
            "exact_match": exact_match_score(pred, ref),
        }
        return Judgment(None, pred, "open_recall", metrics)
