"""Closed-answer extraction: what a model's text answers to a closed question, and the rule.

Yes/no references ("Yes", "no.", "是", "没有", ...; :func:`yes_no_reference`) are judged by
:func:`extract_yes_no`; any other closed reference ("CT", "left", "肝脏") by :func:`extract_term`.
Both return a :class:`ClosedAnswer` (the answer read, or None, and the rule), and
:func:`medvl.eval.metrics_text.closed_accuracy` counts a record right when that answer equals the
reference's (:func:`closed_reference`), so ``scores.jsonl`` and the metric share one code path.

Yes/no rules, first that decides wins (all on the ``<answer>`` tag content when there is one, then
on the text outside ``<think>`` blocks; the rule of a tag hit is ``answer_tag``):

1. ``answer_phrase`` - the last "the answer is X" / "Answer: X" / "答案是：X" / "答案：X" /
   "结论：X"; X (to the end of its sentence) must start with the answer (rules 2-4: a single or
   leading yes/no word). This settles "Yes. ... The answer is no." and the 是 of "答案是：否" is
   part of the phrase, not a "yes". A phrase that gives another answer ("The answer is the
   liver, which has no lesion", "答案是肝脏") leaves the record unanswered: answer None, rule
   ``answer_phrase``.
2. ``single_word`` - the whole answer is one yes/no word ("Yes.", "not present", "是的", "没有").
3. ``ambiguous`` - both a yes and a no signal (rules 4-6) are present: wrong, whatever leads.
   So "Yes, there is no fracture" is ambiguous (a contradiction is never counted right).
4. ``leading_word`` - the first word of the first non-question sentence is a yes/no word
   ("Yes, there is a mass", "No.", "是的，...", "不是", "没有...", "有结节").
5. ``negation`` - a negation scope in the answer sentence (the first sentence that is not a
   question, at most 160 characters; later sentences explain, and a run-on text has no answer
   sentence): no, not, none, absent, "negative for", "no evidence of", "there is no"; 没有, 没,
   不是, 不存在, 无, 未见, 未, 否, 不对, 不包含. A negated finding answers "no" to a presence
   question.
6. ``affirmation`` - a yes signal in the answer sentence: yes/yeah/yep/present/"positive for",
   是的/对的/没错, and 是/有/对/存在/正确/肯定/包含 only where a comma-separated part of a sentence
   starts with them (in mid-sentence they are a copula or a verb: "显示的是肝脏").
7. ``none`` - nothing read (wrong).

Chinese has no spaces, so words are found by forward maximum matching against a small explicit
lexicon (:data:`ZH_LEXICON`) of yes words, no words and *non-answer compounds*: question words and
particles (这是, 是否, 是什么, 是不是, 有无, 有没有, 能否), words that merely contain a yes/no
character (对比, 对称, 对侧, 有关, 无法, 否则, 无回声) and hedges (不确定, 未知). The longest entry
at each position wins, so 对比 is never 对 and 是否 is never 是 or 否. Sentences ending in "?" (or
吗/呢) are questions echoed back and are skipped. English hedges ("not sure", "cannot be
determined", "whether or not") are masked before the signals are read.

Other closed answers (:func:`extract_term`): the tag content or answer-phrase capture, else the
whole text, normalised (:func:`~medvl.eval.normalize.normalize_answer`: "X-Ray"/"x ray" ->
``xray``) and mapped through :data:`CLOSED_SYNONYMS`; rule ``answer_tag``, ``answer_phrase``,
``synonym`` (the table changed it) or ``exact``. The match is exact after that: "left lung" is not
"left", "the left side" is not "left".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from medvl.eval.extract import extract_tag
from medvl.eval.normalize import normalize_answer

RULES = (
    "answer_tag",
    "answer_phrase",
    "single_word",
    "leading_word",
    "negation",
    "affirmation",
    "ambiguous",
    "exact",
    "synonym",
    "none",
)


@dataclass(frozen=True)
class ClosedAnswer:
    """The answer read from a prediction ("yes"/"no", a canonical term, or None) and the rule."""

    answer: str | None
    rule: str


# --- lexicons -------------------------------------------------------------------------------

#: Whole answers (after normalize_answer) that are one yes or no word. "positive"/"negative" are
#: not here: as references they answer either-or questions ("gram-positive or negative?").
YES_ANSWERS = frozenset(
    {"yes", "yeah", "yep", "yup", "true", "correct", "present"}
    | {"是", "是的", "对", "对的", "有", "存在", "正确", "肯定", "包含", "没错"}
)
NO_ANSWERS = frozenset(
    {"no", "nope", "not", "false", "incorrect", "absent", "none"}
    | {"not present", "not true", "not seen", "not correct"}
    | {"否", "不是", "没有", "没", "无", "不对", "不存在", "未见", "不正确", "否定", "不包含"}
)

_YES, _NO, _SKIP = "yes", "no", "skip"
#: Chinese words that say yes only where a part of a sentence starts with them.
_ZH_WEAK_YES = ("是", "有", "对", "存在", "正确", "肯定", "包含")
#: Chinese words that say yes anywhere.
_ZH_STRONG_YES = ("是的", "对的", "没错")
_ZH_NO = ("否", "不是", "没有", "没", "无", "未", "未见", "未发现", "未显示", "不存在", "不对")
_ZH_NO += ("不正确", "否定", "不包含", "并非")
#: Non-answer compounds: question words, words holding a yes/no character, hedges.
_ZH_SKIP = (
    "这是", "那是", "这是不是", "那是不是", "是否", "是不是", "是什么", "什么", "是哪", "哪",
    "有无", "有没有", "能否", "可否", "与否", "否则", "否认",
    "对比", "对称", "对应", "对于", "对侧", "对照", "对象", "相对", "针对",
    "有关", "有些", "有时", "有助", "有效", "有可能", "有点", "有待", "所有",
    "无法", "无论", "无关", "无需", "无创", "无菌", "无回声", "无从",
    "未知", "未来", "未定", "未明", "没法", "没办法", "不错",
    "不确定", "不清楚", "不知道", "不一定",
)  # fmt: skip
#: word -> "yes" / "no" / "skip"; weak yes words are told apart by :data:`_ZH_WEAK_YES`.
ZH_LEXICON: dict[str, str] = {
    **{w: _YES for w in (*_ZH_WEAK_YES, *_ZH_STRONG_YES)},
    **{w: _NO for w in _ZH_NO},
    **{w: _SKIP for w in _ZH_SKIP},
}
_ZH_MAX = max(map(len, ZH_LEXICON))

_EN_HEDGE = re.compile(
    r"(?<![a-z])(?:not\s+(?:sure|certain|clear|possible|able)|unable\s+to|unclear"
    r"|can\s*not\s+(?:be\s+)?(?:determined?|tell|say|assess(?:ed)?|confirm(?:ed)?|excluded?"
    r"|ruled?\s+out|sure)|(?:do|does|did)\s+not\s+know|no\s+idea|whether\s+or\s+not|or\s+not"
    r"|yes\s+or\s+no|not\s+only|no\s+matter)(?![a-z])"
)
_EN_NEGATED_YES = re.compile(r"(?<![a-z])(?:not|no)\s+(?:present|true|correct|seen)(?![a-z])")
#: The longest answer sentence (characters) in which a negation or affirmation that does not
#: lead is read; see :func:`_decide`.
ANSWER_SENTENCE_CHARS = 160

_EN_NO = re.compile(
    r"(?<![a-z0-9])(?:no|not|none|nope|absent|negative\s+for|without\s+(?:any\s+)?evidence)"
    r"(?![a-z0-9])"
)
_EN_YES = re.compile(r"(?<![a-z0-9])(?:yes|yeah|yep|yup|present|positive\s+for)(?![a-z0-9])")
#: English words that answer yes/no when they open the answer.
_EN_LEADING = {w: _YES for w in ("yes", "yeah", "yep", "yup", "true", "correct", "present")}
_EN_LEADING |= {w: _NO for w in ("no", "nope", "not", "false", "incorrect", "absent", "none")}
_EN_LEADING |= {"affirmative": _YES, "negative": _NO}

_PHRASES = (
    re.compile(
        r"(?<![a-z])(?:final\s+)?answer\s*(?:is|would\s+be|should\s+be|will\s+be|[:=])\s*:?\s*"
    ),
    re.compile(r"(?:最终)?(?:答案|回答|结论)(?!是否(?!定))\s*(?:应该是|应是|应为|是|为)?\s*:?\s*"),
)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_MARKUP_RE = re.compile(r"\*\*|__|`|\*|</?answer>", re.IGNORECASE)
_CLAUSE_RE = re.compile(r"((?:(?<!\d)\.|\.(?!\d)|[!?;。；\n])+)")
_PART_RE = re.compile(r"[,:、]")
_WORD_RE = re.compile(r"[a-z0-9]+")

# --- other closed answers ---------------------------------------------------------------------

#: Normalised answer -> canonical closed answer. Only unambiguous synonyms: "MR" is left out (it
#: is also mitral regurgitation), as are "US" (a pronoun) and laterality ("left" stays exact).
CLOSED_SYNONYMS: dict[str, str] = {
    # modality (English and Chinese spell the same exam)
    "computed tomography": "ct",
    "computed tomography scan": "ct",
    "ct scan": "ct",
    "ct扫描": "ct",
    "计算机断层扫描": "ct",
    "magnetic resonance imaging": "mri",
    "magnetic resonance": "mri",
    "mri scan": "mri",
    "核磁共振": "mri",
    "核磁共振成像": "mri",
    "磁共振": "mri",
    "磁共振成像": "mri",
    "radiograph": "xray",
    "plain radiograph": "xray",
    "x光": "xray",
    "x线": "xray",
    "x射线": "xray",
    "ultrasonography": "ultrasound",
    "sonography": "ultrasound",
    "超声": "ultrasound",
    "超声波": "ultrasound",
    "b超": "ultrasound",
    # organs: number and the Chinese 脏/部 forms of one organ
    "lungs": "lung",
    "kidneys": "kidney",
    "thorax": "chest",
    "肺部": "肺",
    "肺脏": "肺",
    "肝脏": "肝",
    "肾脏": "肾",
    "心脏": "心",
    "脾脏": "脾",
}


def yes_no_reference(text: str | None) -> str | None:
    """The yes/no class of a *reference*: only when the whole normalised answer is one yes/no
    word ("Yes.", "no", "是", "没有", "absent", "not present"); else None."""
    norm = normalize_answer(text)
    if norm in YES_ANSWERS:
        return _YES
    return _NO if norm in NO_ANSWERS else None


def canonical_term(text: str | None) -> str:
    """A closed answer normalised and mapped through :data:`CLOSED_SYNONYMS` ("X-Ray" -> xray,
    "Computed tomography" -> ct, "核磁共振" -> mri, "肝脏" -> 肝)."""
    norm = normalize_answer(text)
    return CLOSED_SYNONYMS.get(norm, norm)


def closed_reference(reference: str | None) -> str | None:
    """What a reference answer says: "yes"/"no", else its canonical term (None when empty)."""
    return yes_no_reference(reference) or canonical_term(reference) or None


def extract_closed(text: str | None, reference: str | None) -> ClosedAnswer:
    """The prediction's answer to a closed question, read the way its reference asks for:
    :func:`extract_yes_no` for a yes/no reference, else :func:`extract_term`."""
    if yes_no_reference(reference) is not None:
        return extract_yes_no(text)
    return extract_term(text)


def yes_no(text: str | None) -> str | None:
    """``"yes"``, ``"no"`` or None (nothing read, or ambiguous): :func:`extract_yes_no`'s answer."""
    return extract_yes_no(text).answer


def extract_yes_no(text: str | None) -> ClosedAnswer:
    """The yes/no a model's text answers, and the rule that decided (module docstring)."""
    if not (text or "").strip():
        return ClosedAnswer(None, "none")
    tag = extract_tag(text)
    if tag is not None:
        found = _read_yes_no(tag)
        if found.answer is not None:
            return ClosedAnswer(found.answer, "answer_tag")
        if found.rule == "ambiguous":
            return found
    return _read_yes_no(_body(text or ""))


def extract_term(text: str | None) -> ClosedAnswer:
    """A non-yes/no closed answer: tag content or answer phrase, else the whole text, as its
    canonical term (:func:`canonical_term`)."""
    if not (text or "").strip():
        return ClosedAnswer(None, "none")
    tag = extract_tag(text)
    span, rule = (tag, "answer_tag") if tag else (_body(text or ""), "")
    if not rule and (captured := _phrase_capture(span)) is not None:
        span, rule = captured, "answer_phrase"
    span = _MARKUP_RE.sub(" ", span)
    term = canonical_term(span)
    if not term:
        return ClosedAnswer(None, "none")
    return ClosedAnswer(term, rule or ("exact" if term == normalize_answer(span) else "synonym"))


# --- yes/no reading ---------------------------------------------------------------------------


def _body(text: str) -> str:
    """The text outside ``<think>`` blocks (the whole text when nothing else is left)."""
    body = _THINK_RE.sub(" ", text)
    return body if body.strip() else text


def _prepare(text: str) -> str:
    """NFKC (full-width "：？，" -> ASCII), lower case, markup dropped, n't -> not, English
    hedges ("not sure", "no idea", "yes or no") masked so they are neither yes nor no."""
    text = _MARKUP_RE.sub(" ", unicodedata.normalize("NFKC", text).lower())
    text = re.sub(r"n['’]t(?![a-z])", " not", text).replace("cannot", "can not")
    return _EN_HEDGE.sub(" ~ ", text)


def _clauses(text: str) -> list[tuple[str, bool]]:
    """``(clause, is_question)`` pairs; a clause ending in "?" or 吗/呢 is a question."""
    parts = _CLAUSE_RE.split(text)
    pairs = zip(parts[0::2], [*parts[1::2], ""], strict=True)
    result = []
    for clause, end in pairs:
        if clause.strip():
            question = "?" in end or clause.rstrip().endswith(("吗", "呢"))
            result.append((clause, question))
    return result


def _phrase_capture(text: str) -> str | None:
    """What the last answer phrase says, to the end of its sentence; None without one."""
    last = None
    for clause, _ in _clauses(_prepare(text)):
        for pattern in _PHRASES:
            for m in pattern.finditer(clause):
                rest = clause[m.end() :].strip(" ,:")
                if rest:
                    last = rest
    return last


def _read_yes_no(span: str) -> ClosedAnswer:
    """Rules 1-7 on one span. An answer phrase decides only when what follows it starts with the
    answer ("答案是：否", "the answer is no, ..."); a phrase followed by anything else gave
    another answer (answer None, rule ``answer_phrase``), and no yes/no word elsewhere in the
    text is taken instead."""
    captured = _phrase_capture(span)
    if captured is not None:
        found = _decide(captured, lead_only=True)
        if found.rule == "ambiguous":
            return found
        return ClosedAnswer(found.answer, "answer_phrase")  # None: it answered something else
    return _decide(span)


def _decide(span: str, *, lead_only: bool = False) -> ClosedAnswer:
    """Rules 2-7: single word, then the leading word, then the signals of the answer sentence.

    Contradicting signals anywhere (outside questions) make the answer ambiguous. A negation or
    affirmation that does not lead counts only in the first non-question sentence (the answer
    sentence; later ones explain), and only when that sentence is at most
    :data:`ANSWER_SENTENCE_CHARS` long: a run-on text has no answer sentence, and a yes/no
    signal somewhere inside it is no answer (a random model's babble quotes training answers).
    ``lead_only`` (inside an answer phrase): only a single or leading word decides.
    """
    if (single := yes_no_reference(span)) is not None:
        return ClosedAnswer(single, "single_word")
    clauses = [c for c, question in _clauses(_prepare(span)) if not question]
    signals: set[str] = set()
    for clause in clauses:
        signals |= _english_signals(clause) | _chinese_signals(clause)
    leading = _leading(clauses[0]) if clauses else None
    if len(signals) > 1:
        return ClosedAnswer(None, "ambiguous")
    if leading is not None:
        return ClosedAnswer(leading, "leading_word")
    if lead_only or not clauses or len(clauses[0].strip()) > ANSWER_SENTENCE_CHARS:
        return ClosedAnswer(None, "none")
    first = _english_signals(clauses[0]) | _chinese_signals(clauses[0])
    if first:
        answer = first.pop()
        return ClosedAnswer(answer, "negation" if answer == _NO else "affirmation")
    return ClosedAnswer(None, "none")


def _english_signals(clause: str) -> set[str]:
    found = {_NO} if _EN_NEGATED_YES.search(clause) else set()
    text = _EN_NEGATED_YES.sub(" ~ ", clause)
    if _EN_NO.search(text):
        found.add(_NO)
    if _EN_YES.search(text):
        found.add(_YES)
    return found


def _chinese_signals(clause: str) -> set[str]:
    found: set[str] = set()
    for part in _PART_RE.split(clause):
        for start, word, kind in _segment(part):
            if kind == _NO:
                found.add(_NO)
            elif kind == _YES and (word not in _ZH_WEAK_YES or start == _first(part)):
                found.add(_YES)
    return found


def _leading(clause: str) -> str | None:
    """The yes/no of the clause's first word, English or Chinese; None when it is neither."""
    first = _first(clause)
    word = _WORD_RE.match(clause, first)
    if word is not None:
        return _EN_LEADING.get(word.group())
    tokens = _segment(clause)
    if tokens and tokens[0][0] == first and tokens[0][2] in (_YES, _NO):
        return tokens[0][2]
    return None


def _first(text: str) -> int:
    """Index of the first character that is a letter, digit or CJK ideograph (else len)."""
    m = re.search(r"[^\W_]", text)
    return m.start() if m else len(text)


def _segment(text: str) -> list[tuple[int, str, str]]:
    """Forward maximum matching against :data:`ZH_LEXICON`: ``(start, word, kind)`` for each
    lexicon word; other characters are stepped over one at a time."""
    tokens, i = [], 0
    while i < len(text):
        for size in range(min(_ZH_MAX, len(text) - i), 0, -1):
            kind = ZH_LEXICON.get(text[i : i + size])
            if kind is not None:
                tokens.append((i, text[i : i + size], kind))
                i += size
                break
        else:
            i += 1
    return tokens
