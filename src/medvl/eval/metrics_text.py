"""Answer-matching metrics for closed and open questions: strings in, a float in [0, 1] out.

Every function has the per-record signature ``fn(prediction, reference, *, lang="en") -> float``
and returns 0.0 (never None) for an empty prediction, so the caller keeps every record in the
denominator. Answers are compared after :func:`medvl.eval.normalize.normalize_answer`; tokens are
words for Latin text and single characters for CJK text (:func:`~medvl.eval.normalize.tokenize`).
"""

from __future__ import annotations

import difflib
from collections import Counter

from medvl.eval.closed import closed_reference, extract_closed
from medvl.eval.normalize import answer_tokens, has_cjk, normalize_answer, normalize_llava


def closed_accuracy(prediction: str, reference: str, *, lang: str = "en") -> float:
    """1.0 when the answer :func:`~medvl.eval.closed.extract_closed` reads equals the reference's.

    For a yes/no reference (the whole answer is a yes/no word: "Yes", "no.", "是", "没有") the
    prediction's yes/no is read by words, not substrings: answer phrases ("答案是：否") and tags
    first, then a single or leading word, negation scopes; a question word is no answer (这是 is
    not 是, 对比 is not 对), "normal"/"nodule" are not "no" (LLaVA-Med issue #12), and a yes and a
    no together are wrong. Other closed references ("CT", "left") need a normalised exact match
    after :data:`~medvl.eval.closed.CLOSED_SYNONYMS` ("X-Ray" = "x ray", "MRI" = "核磁共振").
    ``scores.jsonl`` shows the answer read and the rule for every closed record.
    """
    del lang  # the rules are picked per character (English and Chinese alike)
    gold = closed_reference(reference)
    return float(gold is not None and extract_closed(prediction, reference).answer == gold)


def exact_match(prediction: str, reference: str, *, lang: str = "en") -> float:
    """1.0 when the normalised prediction equals the normalised reference (both non-empty)."""
    pred, ref = normalize_answer(prediction, lang), normalize_answer(reference, lang)
    return float(bool(pred) and pred == ref)


def substring_match(prediction: str, reference: str, *, lang: str = "en") -> float:
    """1.0 when the normalised reference occurs in the normalised prediction.

    Latin text matches on word boundaries ("lung" is not found in "lungs", "no" not in "normal");
    CJK text matches as a plain substring.
    """
    pred, ref = normalize_answer(prediction, lang), normalize_answer(reference, lang)
    if not pred or not ref:
        return 0.0
    return float(ref in pred if has_cjk(ref) else f" {ref} " in f" {pred} ")


def soft_match(prediction: str, reference: str, *, lang: str = "en") -> float:
    """``difflib.SequenceMatcher(None, ref, pred).ratio()`` on the normalised strings."""
    pred, ref = normalize_answer(prediction, lang), normalize_answer(reference, lang)
    if not pred or not ref:
        return 0.0
    return difflib.SequenceMatcher(None, ref, pred, autojunk=False).ratio()


def _overlap(prediction: str, reference: str, lang: str) -> tuple[int, int, int]:
    """``(common, n_pred, n_ref)`` token counts; ``common`` is the multiset intersection."""
    pred, ref = Counter(answer_tokens(prediction, lang)), Counter(answer_tokens(reference, lang))
    return sum((pred & ref).values()), sum(pred.values()), sum(ref.values())


def token_precision(prediction: str, reference: str, *, lang: str = "en") -> float:
    """Share of the prediction's tokens found in the reference (multisets: each counted once)."""
    common, n_pred, _ = _overlap(prediction, reference, lang)
    return common / n_pred if n_pred else 0.0


def token_recall(prediction: str, reference: str, *, lang: str = "en") -> float:
    """Share of the reference's tokens found in the prediction (multisets)."""
    common, _, n_ref = _overlap(prediction, reference, lang)
    return common / n_ref if n_ref else 0.0


def token_f1(prediction: str, reference: str, *, lang: str = "en") -> float:
    """Harmonic mean of :func:`token_precision` and :func:`token_recall` (SQuAD-style F1)."""
    common, n_pred, n_ref = _overlap(prediction, reference, lang)
    if not common:
        return 0.0
    return 2 * common / (n_pred + n_ref)


def open_recall_llava(prediction: str, reference: str, *, lang: str = "en") -> float:
    """LLaVA-Med's open-question "recall", as its ``run_eval.py`` computes it.

    Both strings are lowercased and passed twice through :func:`normalize_llava` (run_eval.py and
    ``calculate_f1score`` each normalise), split on whitespace, and
    ``recall = tp / (tp + fn)`` where ``tp`` sums the *prediction's* counts of shared words and
    ``fn`` the reference's counts of missing words - so a repeated shared word raises the value
    ("lung lung" vs "left lung" gives 2/3, not 1/2). 0.0 when either side is empty or nothing is
    shared. Whitespace split: Chinese is not tokenised, as upstream (``lang`` is ignored).
    """
    del lang  # upstream is English-only and whitespace-split
    pred = Counter(normalize_llava(normalize_llava(prediction.lower())).split())
    ref = Counter(normalize_llava(normalize_llava(reference.lower())).split())
    if not pred or not ref:
        return 0.0
    tp = sum(count for word, count in pred.items() if word in ref)
    fn = sum(count for word, count in ref.items() if word not in pred)
    return tp / (tp + fn) if tp else 0.0
