"""Multiple-choice answer extraction: from a model's free text to one option letter, or None.

:func:`extract_choice` tries these rules in order and reports which one matched:

1. ``answer_tag`` - the last ``<answer>...</answer>`` (case-insensitive, DOTALL; an unclosed final
   ``<answer>`` runs to the end). Its content goes through rules 2-5; option-text similarity is
   *not* used inside the tag (rule 6 may still use the tag content, but then says ``similarity``).
2. ``boxed`` - the last ``\\boxed{...}``; its content must be a lone letter or one option's text.
3. ``phrase`` - "the answer is B", "Answer: (B)", "the answer is most likely B", "correct option
   is B", "option B is correct", "So B is the correct answer", "I choose B", "答案是B", "答案：B",
   "选B", "正确选项为B", "B选项正确", "It is C"; the last valid hit wins; "B or C" and
   "B-mode" are no hit.
4. ``lone_letter`` - the text (or its first/last non-empty line, when they agree) is a letter
   alone or a letter with a delimiter and text: "B", "(B)", "B.", "**B**", "b", "Option B",
   "B) Breast tissue", "A. Hemorrhage", "B: ...", or a letter followed by exactly its option text.
   The article in "A large mass..." is never a letter; a line listing several labels
   ("A: x. B: y.") is no answer.
5. ``option_text`` - the normalised text of exactly one option appears in the answer (word
   boundaries for Latin text); when one option's text contains another's ("chronic infarct" vs
   "infarct"), the longest wins. Two different options appearing -> no match.
6. ``similarity`` - the option whose normalised text is nearest to the answer by
   ``difflib.SequenceMatcher.ratio`` when it is >= ``similarity_threshold`` and strictly best,
   unless the answer is a part of two or more options ("Infarct" vs acute/chronic infarct) or
   names two or more options.
7. ``unparsed`` - letter None. There is never a random guess.

Rules 2-6 run on the text with ``<think>...</think>`` blocks removed (the whole text when nothing
is left), so letters discussed while thinking do not count. Only letters that are option keys
(or in ``letters`` when no options are given) are accepted; lowercase letters only where they
are clearly delimited ("b", "(b)", "b) ..."), never "a" followed by a word.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from medvl.eval.normalize import has_cjk, normalize_answer

RULES = (
    "answer_tag",
    "boxed",
    "phrase",
    "lone_letter",
    "option_text",
    "similarity",
    "unparsed",
)


@dataclass(frozen=True)
class Extraction:
    """The extracted option letter (None when unparsed) and the rule that produced it."""

    letter: str | None
    rule: str


_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_MARKDOWN_RE = re.compile(r"\*\*|__|`|\*")
_BOXED_RE = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_OPTION_PREFIX_RE = re.compile(r"^\s*\(?[A-Za-z][\):.：]\s*")
_CONNECTORS = frozenset({"is", "was", "as", "because", "since", "and", "or", "which", "for"})
_CONNECTORS |= frozenset({"with", "option", "choice", "would", "should", "seems", "appears"})

# Letter slot shared by the phrase patterns: optional bracket/bold, one letter, closing bracket.
_SLOT = r"[\(\[（【]?\s*([A-Za-z])\s*[\)\]）】]?"
_AFTER = r"(?![A-Za-z0-9\-])(?!\s*(?:or|and|/|,|、|或|和|与)\s*[\(\[]?[A-Ja-j]\b)"
_EN = re.IGNORECASE
_HEDGE = r"(?:(?:most\s+)?(?:likely|probably|clearly|definitely)\s+)?"
_PHRASES = (
    re.compile(
        r"\banswer\s*(?:is|would\s+be|should\s+be|will\s+be|[:：=])?\s*[:：]?\s*"
        rf"{_HEDGE}(?:option|choice)?\s*{_SLOT}{_AFTER}",
        _EN,
    ),
    re.compile(
        r"\b(?:correct|right|best|final)\s+(?:option|choice)\s*"
        rf"(?:is|would\s+be|should\s+be|[:：])?\s*[:：]?\s*{_HEDGE}{_SLOT}{_AFTER}",
        _EN,
    ),
    re.compile(
        rf"\b(?:option|choice)\s+{_SLOT}\s+is\s+(?:the\s+)?(?:correct|right|best)\b",
        _EN,
    ),
    re.compile(
        rf"(?:^|[.,;:]\s*|\b(?:so|thus|therefore|hence)\s+){_SLOT}\s+is\s+(?:the\s+)?"
        r"(?:correct|right|best|answer|most\s+likely)\b",
        _EN | re.MULTILINE,
    ),
    re.compile(rf"\b(?:it\s+is|it's|this\s+is|that\s+is)\s+(?:option\s+)?{_SLOT}{_AFTER}", _EN),
    re.compile(
        r"\bI\s+(?:would\s+|will\s+)?(?:choose|select|pick|go\s+with)\s+(?:option\s+)?"
        rf"{_SLOT}{_AFTER}",
        _EN,
    ),
    re.compile(rf"答案\s*(?:应该是|应为|应是|是|为|选)?\s*[:：]?\s*(?:选项)?\s*{_SLOT}{_AFTER}"),
    re.compile(rf"正确(?:的)?(?:答案|选项)\s*(?:应该是|应为|是|为)?\s*[:：]?\s*{_SLOT}{_AFTER}"),
    re.compile(rf"(?:应选|选择|选)\s*[:：]?\s*(?:选项)?\s*{_SLOT}{_AFTER}"),
    re.compile(rf"(?<![A-Za-z]){_SLOT}\s*(?:选项|项)\s*(?:是)?(?:正确|对)"),
)

_LONE_RE = re.compile(
    r"^(?:(?:option|choice|answer)\s*[:：]?\s*|选项\s*)?[\(\[（]?\s*([A-Za-z])\s*[\)\]）]?\s*[.:：。]?$",
    _EN,
)
_LEADING_RE = re.compile(r"^[\(\[（]?([A-Za-z])(?:\s*[\)\]）]|[.:：](?=\s)|\s+[-–—])\s*(\S.*)$")
_LETTER_SPACE_RE = re.compile(r"^([A-J])\s+(\S.*)$")
_LABEL_RE = re.compile(r"(?:^|[\s(（])\(?([A-Z])[\)）:.：](?=\s|$)")


def extract_tag(text: str | None, tag: str = "answer") -> str | None:
    """Content of the last ``<tag>...</tag>`` (stripped), or of an unclosed final ``<tag>``."""
    if not text:
        return None
    name = re.escape(tag)
    closed = re.findall(rf"<{name}>(.*?)</{name}>", text, re.DOTALL | re.IGNORECASE)
    if closed:
        return closed[-1].strip()
    opened = re.search(rf"<{name}>(?!.*<{name}>)(.*)$", text, re.DOTALL | re.IGNORECASE)
    return opened.group(1).strip() if opened else None


def extract_choice(
    text: str | None,
    options: Mapping[str, str] | None = None,
    *,
    letters: str = "ABCDEFGHIJ",
    similarity_threshold: float = 0.6,
) -> Extraction:
    """The option letter a model's output chooses, and the rule that found it (module docs)."""
    text = text or ""
    opts = {str(k).upper(): str(v or "") for k, v in (options or {}).items()}
    valid = frozenset(opts) if opts else frozenset(letters.upper())
    tag = extract_tag(text)
    if tag is not None:
        found = _chain(tag, valid, opts)
        if found is not None:
            return Extraction(found[0], "answer_tag")
    body = _THINK_RE.sub(" ", text)
    body = body if body.strip() else text
    found = _chain(body, valid, opts)
    if found is not None:
        return Extraction(*found)
    letter = _similar_option(tag if tag is not None else body, opts, similarity_threshold)
    return Extraction(letter, "similarity") if letter else Extraction(None, "unparsed")


def _chain(span: str, valid: frozenset[str], opts: dict[str, str]) -> tuple[str, str] | None:
    """Rules 2-5 on ``span``: ``(letter, rule)`` of the first that matches, or None."""
    span = _MARKDOWN_RE.sub("", span).strip()
    if not span:
        return None
    rules: tuple[tuple[str, Callable[..., str | None]], ...] = (
        ("boxed", _boxed),
        ("phrase", _phrase),
        ("lone_letter", _lone_letter),
        ("option_text", _option_text),
    )
    for rule, fn in rules:
        letter = fn(span, valid, opts)
        if letter is not None:
            return letter, rule
    return None


def _boxed(span: str, valid: frozenset[str], opts: dict[str, str]) -> str | None:
    boxes = _BOXED_RE.findall(span)
    if not boxes:
        return None
    content = _TEXT_CMD_RE.sub(r"\1", boxes[-1]).strip()
    return _lone_letter(content, valid, opts) or _option_text(content, valid, opts)


def _phrase(span: str, valid: frozenset[str], opts: dict[str, str]) -> str | None:
    hits = []
    for pattern in _PHRASES:
        for m in pattern.finditer(span):
            letter = _accept(m.group(1), span[m.end(1) :], valid, opts)
            if letter is not None:
                hits.append((m.start(1), letter))
    return max(hits)[1] if hits else None


def _accept(raw: str, after: str, valid: frozenset[str], opts: dict[str, str]) -> str | None:
    """``raw`` as an option letter, unless invalid, an article/pronoun, or a loose lowercase."""
    letter = raw.upper()
    if letter not in valid:
        return None
    followed_by_word = bool(re.match(r"\s+[A-Za-z]", after))
    if raw.islower() and followed_by_word:
        return None
    if letter in "AI" and followed_by_word:  # "A large mass", "I think": article or pronoun
        rest = after.strip()
        next_word = rest.split()[0].lower()
        if next_word not in _CONNECTORS and not _starts_with_option(rest, opts.get(letter)):
            return None
    return letter


def _starts_with_option(rest: str, option: str | None) -> bool:
    needle = normalize_answer(_clean_option(option or ""))
    return bool(needle) and f"{normalize_answer(rest)} ".startswith(f"{needle} ")


def _lone_letter(span: str, valid: frozenset[str], opts: dict[str, str]) -> str | None:
    lines = [line.strip() for line in span.splitlines() if line.strip()]
    candidates = lines if len(lines) == 1 else lines[:1] + lines[-1:]
    found = {letter for line in candidates if (letter := _line_letter(line, valid, opts))}
    return found.pop() if len(found) == 1 else None


def _line_letter(line: str, valid: frozenset[str], opts: dict[str, str]) -> str | None:
    m = _LONE_RE.match(line)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    m = _LEADING_RE.match(line)
    if m and m.group(1).upper() in valid:
        others = {x for x in _LABEL_RE.findall(m.group(2)) if x in valid} - {m.group(1).upper()}
        return None if others else m.group(1).upper()  # "A: x. B: y." lists the options
    m = _LETTER_SPACE_RE.match(line)
    if m and m.group(1) in valid and opts:
        same = normalize_answer(m.group(2)) == normalize_answer(_clean_option(opts[m.group(1)]))
        return m.group(1) if same else None
    return None


def _clean_option(option: str) -> str:
    """Option text without a leading "A:"-style label (PMC-VQA choices carry one)."""
    return _OPTION_PREFIX_RE.sub("", option, count=1)


def _option_text(span: str, valid: frozenset[str], opts: dict[str, str]) -> str | None:
    hay = f" {normalize_answer(span)} "
    hits: dict[str, str] = {}
    for key, text in opts.items():
        needle = normalize_answer(_clean_option(text))
        if key in valid and needle and _contains(hay, needle):
            hits[key] = needle
    longest = [k for k in hits if not any(_proper_part(hits[k], hits[o]) for o in hits)]
    return longest[0] if len(longest) == 1 else None


def _proper_part(short: str, long: str) -> bool:
    """``short`` is a strict part of ``long`` (on word boundaries for Latin text)."""
    return short != long and _contains(f" {long} ", short)


def _contains(hay: str, needle: str) -> bool:
    return needle in hay if has_cjk(needle) else f" {needle} " in hay


def _similar_option(span: str, opts: dict[str, str], threshold: float) -> str | None:
    answer = normalize_answer(_MARKDOWN_RE.sub("", span))
    if not opts or not answer:
        return None
    texts = {k: normalize_answer(_clean_option(t)) for k, t in opts.items()}
    containing_answer = sum(_contains(f" {t} ", answer) for t in texts.values() if t)
    named_in_answer = sum(_contains(f" {answer} ", t) for t in texts.values() if t)
    if containing_answer > 1 or named_in_answer > 1:
        return None  # "infarct" is part of two options, or two options are named: a guess
    scored = sorted(
        (difflib.SequenceMatcher(None, answer, text).ratio(), k) for k, text in texts.items()
    )
    best, letter = scored[-1]
    runner_up = scored[-2][0] if len(scored) > 1 else -1.0
    return letter if best >= threshold and best > runner_up else None
