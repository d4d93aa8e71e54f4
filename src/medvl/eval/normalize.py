"""Answer normalisation and tokenisation shared by answer extraction and the text metrics.

Two normalisers live here:

- :func:`normalize_answer` is medvl's own: lowercase, ``n't`` -> `` not``, ``x-ray``/``x ray`` ->
  ``xray``, punctuation (ASCII and CJK) -> space (a period or comma between digits is kept/dropped
  so ``2.5`` stays and ``1,000`` becomes ``1000``), the articles a/an/the dropped, number words
  zero..twenty -> digits, whitespace collapsed, and no spaces left between two CJK characters.
- :func:`normalize_llava` reproduces LLaVA-Med's ``normalize_word`` (quirks included) so that
  :func:`medvl.eval.metrics_text.open_recall_llava` is comparable with LLaVA-Med's numbers.

Rules are chosen per character, not per ``lang``: Latin words are words, each CJK character is a
token. That keeps mixed answers ("CT平扫") sensible whatever the record's ``lang`` says.

Yes/no reading of closed answers lives in :mod:`medvl.eval.closed` (by words, not substrings).
"""

from __future__ import annotations

import re

_CJK_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RE = re.compile(f"[{_CJK_RANGES}]")
#: Tokens: a decimal number, one CJK character, or a run of other letters/digits.
_TOKEN_RE = re.compile(rf"\d+(?:\.\d+)+|[{_CJK_RANGES}]|[^\W_{_CJK_RANGES}]+")
_CJK_GAP_RE = re.compile(rf"(?<=[{_CJK_RANGES}]) +(?=[{_CJK_RANGES}])")
_XRAY_RE = re.compile(r"\bx[\s\-]?rays?\b")
_DIGIT_COMMA_RE = re.compile(r"(?<=\d),(?=\d{3}\b)")
_PUNCT_RE = re.compile(r"(?!(?<=\d)\.(?=\d))[^\w\s]|_")

ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_NAMES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip
NUMBER_WORDS = {word: str(i) for i, word in enumerate(_NUMBER_NAMES)}


def has_cjk(text: str) -> bool:
    """True when ``text`` holds at least one CJK ideograph."""
    return bool(CJK_RE.search(text or ""))


def tokenize(text: str) -> list[str]:
    """Lower-cased tokens: Latin words/numbers (``2.5`` is one token) and single CJK characters.

    Punctuation is dropped. Used by every n-gram metric so BLEU, ROUGE-L, METEOR and CIDEr-D see
    the same tokens; Chinese is scored per character (like sacrebleu's ``zh`` tokenizer).
    """
    return _TOKEN_RE.findall((text or "").lower())


def normalize_answer(text: str | None, lang: str = "en") -> str:
    """Normalise a short answer for matching (see the module docstring for the exact steps).

    ``lang`` is accepted for a uniform signature; the rules are picked per character so mixed
    English/Chinese answers work whatever the record's language.
    """
    del lang  # rules are per character; kept so callers can pass the record's language
    text = (text or "").lower()
    text = re.sub(r"n['’]t\b", " not", text)
    text = _XRAY_RE.sub("xray", text)
    text = _DIGIT_COMMA_RE.sub("", text)
    text = _PUNCT_RE.sub(" ", text)
    words = [NUMBER_WORDS.get(w, w) for w in text.split() if w not in ARTICLES]
    return _CJK_GAP_RE.sub("", " ".join(words))


def answer_tokens(text: str | None, lang: str = "en") -> list[str]:
    """Tokens of the normalised answer: words for Latin text, characters for CJK."""
    return tokenize(normalize_answer(text, lang))


# --- LLaVA-Med's normalize_word, reproduced for open_recall_llava -------------------------------

_LLAVA_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<")
_LLAVA_PUNCT += ("@", "`", ",", "?", "!")
_LLAVA_NUMBERS = {"none": "0", **{w: d for w, d in NUMBER_WORDS.items() if int(d) <= 10}}
_LLAVA_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
_LLAVA_PERIOD = re.compile(r"\.(?!\d)")


def normalize_llava(text: str) -> str:
    """LLaVA-Med's ``normalize_word`` (``llava/eval/eval_metrics/glossary.py``), quirks included.

    Each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted when it touches a space
    anywhere in the text (or the text has a digit,digit comma) and becomes a space otherwise; a
    period not followed by a digit is deleted (at most 32 of them: upstream passes ``re.UNICODE``
    as the ``count`` argument); lowercase; none/zero..ten -> digits; a/an/the dropped; commas
    removed. Not reproduced: its VQA contractions table ("dont" -> "don't"), which only re-adds
    apostrophes and does not change medical answers.
    """
    out = text
    spaced_digits = _LLAVA_DIGIT_COMMA.search(text) is not None
    for p in _LLAVA_PUNCT:
        touches_space = p + " " in text or " " + p in text
        out = out.replace(p, "" if touches_space or spaced_digits else " ")
    out = _LLAVA_PERIOD.sub("", out, count=32)
    words = [_LLAVA_NUMBERS.get(w, w) for w in out.lower().split()]
    return " ".join(w for w in words if w not in ARTICLES).replace(",", "")
