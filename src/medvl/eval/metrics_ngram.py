"""N-gram text metrics: BLEU, ROUGE-L, METEOR and CIDEr-D, on one shared tokenisation.

All of them score :func:`medvl.eval.normalize.tokenize` tokens: lower-cased, punctuation dropped,
Latin words and single CJK characters. So they are case- and punctuation-insensitive by design
(sacrebleu's default is case-sensitive and keeps punctuation as tokens: "Yes." vs "yes" is 100
here and 0 there), and Chinese is scored per character (like sacrebleu's ``zh`` tokenizer).

- ``bleu_1``..``bleu_4``: sentence BLEU with cumulative uniform weights up to n, brevity penalty,
  and nltk's ``SmoothingFunction().method1`` (a zero n-gram count becomes 0.1); equal to
  ``nltk.translate.bleu_score.sentence_bleu`` on the same tokens, including nltk's rule that no
  unigram match gives 0 and that a hypothesis shorter than n counts one (empty) n-gram.
- ``corpus_bleu``: corpus BLEU-4 (Papineni; clipped counts and lengths summed over the corpus, no
  smoothing); equal to sacrebleu ``corpus_bleu(..., tokenize="none", smooth_method="none")/100``.
- ``rouge_l``: rouge-score's ROUGE-L F-measure with our tokenizer, no stemming (rouge-score's own
  tokenizer drops every non-[a-z0-9] character, so Chinese would score 0).
- ``meteor``: nltk's ``meteor_score`` (exact, Porter-stem and WordNet-synonym matching); needs
  the WordNet data from ``scripts/install_wordnet.sh``.
- ``cider_d``: CIDEr-D as pycocoevalcap's ``Cider`` computes it (tf-idf over 1-4-grams, clipped,
  Gaussian length penalty sigma=6, x10, IDF from the references of the evaluated set; its length
  counts bigrams, which only differs from token counts for empty strings). So a record's value
  depends on the other records scored with it, and it is on CIDEr's 0-10 scale, not 0-1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from medvl.errors import MedvlError
from medvl.eval.normalize import tokenize

WORDNET_SCRIPT = "scripts/install_wordnet.sh"
_EPSILON = 0.1  # nltk SmoothingFunction(epsilon=0.1).method1


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _clipped(hyp: Sequence[str], ref: Sequence[str], n: int) -> tuple[int, int]:
    """``(clipped matches, hypothesis n-gram count)`` for order ``n``."""
    hyp_ngrams = _ngrams(hyp, n)
    return sum((hyp_ngrams & _ngrams(ref, n)).values()), sum(hyp_ngrams.values())


def _brevity_penalty(hyp_len: int, ref_len: int) -> float:
    return 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)


def sentence_bleu(prediction: str, reference: str, *, max_n: int = 4, lang: str = "en") -> float:
    """Smoothed sentence BLEU up to ``max_n`` (see module docs); 0.0 for an empty side."""
    del lang  # tokenisation is per character type
    hyp, ref = tokenize(prediction), tokenize(reference)
    if not hyp or not ref:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        matches, total = _clipped(hyp, ref, n)
        if n == 1 and matches == 0:
            return 0.0
        precision = matches / max(total, 1) if matches else _EPSILON / max(total, 1)
        log_sum += math.log(precision) / max_n
    return _brevity_penalty(len(hyp), len(ref)) * math.exp(log_sum)


def bleu_1(prediction: str, reference: str, *, lang: str = "en") -> float:
    """Sentence BLEU-1 (unigram precision with brevity penalty)."""
    return sentence_bleu(prediction, reference, max_n=1, lang=lang)


def bleu_2(prediction: str, reference: str, *, lang: str = "en") -> float:
    """Sentence BLEU-2 (weights 1/2, 1/2), nltk method1 smoothing."""
    return sentence_bleu(prediction, reference, max_n=2, lang=lang)


def bleu_3(prediction: str, reference: str, *, lang: str = "en") -> float:
    """Sentence BLEU-3 (weights 1/3 each), nltk method1 smoothing."""
    return sentence_bleu(prediction, reference, max_n=3, lang=lang)


def bleu_4(prediction: str, reference: str, *, lang: str = "en") -> float:
    """Sentence BLEU-4 (weights 1/4 each), nltk method1 smoothing."""
    return sentence_bleu(prediction, reference, max_n=4, lang=lang)


def corpus_bleu(
    predictions: Sequence[str], references: Sequence[str], *, lang: str = "en", max_n: int = 4
) -> float:
    """Corpus BLEU-``max_n`` on a 0-1 scale (see module docs); 0.0 if some order has no match."""
    del lang
    _check_lengths(predictions, references)
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for prediction, reference in zip(predictions, references, strict=True):
        hyp, ref = tokenize(prediction), tokenize(reference)
        hyp_len, ref_len = hyp_len + len(hyp), ref_len + len(ref)
        for n in range(1, max_n + 1):
            m, t = _clipped(hyp, ref, n)
            matches[n - 1] += m
            totals[n - 1] += t
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_sum = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / max_n
    return _brevity_penalty(hyp_len, ref_len) * math.exp(log_sum)


class _Tokenizer:
    """rouge-score tokenizer adapter (it calls ``tokenize(text)``)."""

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())


def rouge_l(prediction: str, reference: str, *, lang: str = "en") -> float:
    """ROUGE-L F-measure (longest common subsequence) via rouge-score, our tokenizer."""
    del lang
    if not tokenize(prediction) or not tokenize(reference):
        return 0.0
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


@lru_cache(maxsize=1)
def _wordnet() -> Any:
    """nltk's WordNet reader, loaded once; a clear error naming the install script if absent."""
    import nltk
    from nltk.corpus import wordnet

    try:
        nltk.data.find("corpora/wordnet")
        wordnet.ensure_loaded()
    except (LookupError, OSError) as exc:
        raise MedvlError(
            "METEOR needs nltk's WordNet data, which is not installed "
            f"({type(exc).__name__}). Install it offline with "
            f"`bash {WORDNET_SCRIPT} <venv>` (e.g. `bash {WORDNET_SCRIPT} .venv`), or point "
            "NLTK_DATA at a folder holding corpora/wordnet."
        ) from None
    return wordnet


def meteor(prediction: str, reference: str, *, lang: str = "en") -> float:
    """nltk METEOR (alpha 0.9, beta 3, gamma 0.5) with WordNet synonyms, on our tokens.

    Raises :class:`~medvl.errors.MedvlError` naming ``scripts/install_wordnet.sh`` when WordNet
    is missing. Chinese is scored on characters (exact matches only; WordNet has no Chinese).
    """
    del lang
    wordnet = _wordnet()
    hyp, ref = tokenize(prediction), tokenize(reference)
    if not hyp or not ref:
        return 0.0
    from nltk.translate.meteor_score import meteor_score

    return float(meteor_score([ref], hyp, wordnet=wordnet))


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; "
            "they must be aligned one to one"
        )


def _all_ngrams(text: str, max_n: int) -> Counter[tuple[str, ...]]:
    tokens = tokenize(text)
    counts: Counter[tuple[str, ...]] = Counter()
    for n in range(1, max_n + 1):
        counts.update(_ngrams(tokens, n))
    return counts


def _tfidf(
    counts: Counter[tuple[str, ...]], df: Counter[tuple[str, ...]], log_n: float, max_n: int
) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
    """Per-order tf-idf vectors, their norms, and the length (bigram count, as pycocoevalcap)."""
    vecs: list[dict[tuple[str, ...], float]] = [{} for _ in range(max_n)]
    for ngram, tf in counts.items():
        vecs[len(ngram) - 1][ngram] = tf * (log_n - math.log(max(1.0, df[ngram])))
    norms = [math.sqrt(sum(v * v for v in vec.values())) for vec in vecs]
    length = sum(tf for ngram, tf in counts.items() if len(ngram) == 2)
    return vecs, norms, length


def _cider_pair(hyp: tuple, ref: tuple, sigma: float) -> float:
    (h_vecs, h_norms, h_len), (r_vecs, r_norms, r_len) = hyp, ref
    penalty = math.exp(-((h_len - r_len) ** 2) / (2 * sigma**2))
    total = 0.0
    for h_vec, r_vec, h_norm, r_norm in zip(h_vecs, r_vecs, h_norms, r_norms, strict=True):
        dot = sum(min(v, r_vec.get(g, 0.0)) * r_vec.get(g, 0.0) for g, v in h_vec.items())
        total += (dot / (h_norm * r_norm) if h_norm and r_norm else dot) * penalty
    return total / len(h_vecs) * 10.0


def cider_d_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    lang: str = "en",
    max_n: int = 4,
    sigma: float = 6.0,
) -> list[float]:
    """Per-record CIDEr-D within this set (IDF from these references; see module docs)."""
    del lang
    _check_lengths(predictions, references)
    if not predictions:
        return []
    hyps = [_all_ngrams(p, max_n) for p in predictions]
    refs = [_all_ngrams(r, max_n) for r in references]
    df: Counter[tuple[str, ...]] = Counter(g for ref in refs for g in ref)
    log_n = math.log(len(refs))
    return [
        _cider_pair(_tfidf(h, df, log_n, max_n), _tfidf(r, df, log_n, max_n), sigma)
        for h, r in zip(hyps, refs, strict=True)
    ]


def cider_d(predictions: Sequence[str], references: Sequence[str], *, lang: str = "en") -> float:
    """Corpus CIDEr-D: the mean of :func:`cider_d_scores` (0-10 scale; 0.0 for an empty set)."""
    scores = cider_d_scores(predictions, references, lang=lang)
    return sum(scores) / len(scores) if scores else 0.0
