"""Question taxonomy: label records closed/open and with a question type, in English and Chinese.

Why: metrics are reported per answer type (closed accuracy vs open recall) and per question type,
and most datasets label only some of that. The seed project's classifier matched plain substrings
("does" inside "what does the arrow..."), never recognised the label "closed-set", and tagged many
open questions yes/no; these rules fix that by matching English on word boundaries, by deciding
yes/no *by the form of the question* (it opens with an auxiliary verb, or ends in 吗), and by
preferring the dataset's own labels.

Where a label comes from, in order (``source`` in :func:`classify_records`' summary):

1. ``record``: ``record.answer_type`` / ``record.question_type`` already set to a medvl value.
2. ``dataset``: a dataset label, mapped through :data:`DATASET_QUESTION_TYPES` /
   :data:`DATASET_ANSWER_TYPES` (SLAKE ``content_type``, VQA-RAD ``question_type`` codes, a
   ``closed-set`` answer type...). The original label is kept in ``meta``.
3. ``rule``: the rules below, on the question text.

Answer type rules: options (multiple choice) -> closed; a yes/no answer (yes/no, 是/否/有/无/没有,
包含/不包含, 不是...) -> closed; a yes/no question by form -> closed; an either-or question
("A or B?", "A还是B") -> closed, since SLAKE and the original VQA-RAD count limited choices as
closed; otherwise open.

Question type rules, first match wins: a yes/no question by form is ``yes_no`` (so "Is there a
nodule in the left lung?" is yes_no, not location); then counting, modality, plane, comparison,
measurement, appearance (colour, shape), location, anatomy, impact, procedure, abnormality,
appearance (appear, density...), description, and ``general`` when nothing matches. Specific,
rarely ambiguous cues come first; location precedes abnormality so that "Where is the lesion?" is
location, and anatomy precedes abnormality so that "Which organ is abnormal?" asks for an organ.
An either-or question first tries the alternatives it names ("CT or MRI?" is modality).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

from medvl.data.record import Record

logger = logging.getLogger(__name__)

QUESTION_TYPES = (
    "yes_no",
    "counting",
    "modality",
    "plane",
    "comparison",
    "measurement",
    "location",
    "anatomy",
    "impact",
    "procedure",
    "abnormality",
    "appearance",
    "description",
    "general",
)

# Dataset labels -> medvl question types (keys compared case-insensitively).
DATASET_QUESTION_TYPES: dict[str, str] = {
    # SLAKE content_type
    "modality": "modality",
    "organ": "anatomy",
    "position": "location",
    "abnormality": "abnormality",
    "quantity": "counting",
    "color": "appearance",
    "shape": "appearance",
    "size": "measurement",
    "plane": "plane",
    "kg": "general",
    # VQA-RAD question_type codes (presence questions are asked as yes/no questions)
    "pres": "yes_no",
    "abn": "abnormality",
    "pos": "location",
    "attrib": "description",
    "count": "counting",
    "other": "general",
    # VQA-RAD / PathVQA Hugging Face exports
    "yesno": "yes_no",
    "attribute": "description",
    # OmniMedVQA question_type
    "disease diagnosis": "abnormality",
    "anatomy identification": "anatomy",
    "modality recognition": "modality",
    "other biological attributes": "description",
    "lesion grading": "abnormality",
    # the seed project's own type names
    "presence": "yes_no",
    "effect": "impact",
}
DATASET_ANSWER_TYPES: dict[str, str] = {
    **dict.fromkeys(
        ("closed", "close", "closed-set", "close-set", "closed-ended", "close-ended", "yes/no"),
        "closed",
    ),
    **dict.fromkeys(("open", "open-set", "open-ended", "free-form", "freeform"), "open"),
}
QUESTION_LABEL_KEYS = ("content_type", "question_type", "original_question_type")
ANSWER_LABEL_KEYS = ("answer_type", "original_answer_type")

YES_NO_ANSWERS = frozenset(
    {"yes", "no", "是", "否", "有", "无", "没有", "不是", "是的", "包含", "不包含", "对", "不对"}
)

_CJK = re.compile(r"[\u3400-\u9fff]")
_EN_AUX = (
    r"is|are|was|were|am|do|does|did|can|could|will|would|should|shall|may|might|must|has|have|had"
)
_EN_YES_NO_FORM = re.compile(rf"^(?:{_EN_AUX})(?:n't)?\b")
_EN_EITHER_OR = re.compile(r"\bor\b")
_ZH_YES_NO_FORM = re.compile(r"[吗嘛][\s?？。!！]*$|是否|是不是|有没有|有无|能否|可否|会不会")
_ZH_EITHER_OR = re.compile(r"还是")
_PUNCT_EDGE = re.compile(r"^[\W_]+|[\W_]+$")


def _rule(name: str, english: str, chinese: str) -> tuple[str, re.Pattern[str], re.Pattern[str]]:
    """One rule: English alternatives matched on word boundaries, Chinese ones as substrings."""
    return name, re.compile(rf"\b(?:{english})\b"), re.compile(chinese, re.IGNORECASE)


# First match wins; English is matched on the lowercased question. The same type may appear twice
# (strong appearance cues such as "colour" come before anatomy, weak ones such as "appear" late).
TOPIC_RULES = (
    _rule(
        "counting", r"how many|number of|count|how much", "多少|几个|几处|几块|几种|数量|数目|个数"
    ),
    _rule(
        "modality",
        r"modality|modalities|(?:type|kind|sort) of (?:image|imaging|scan|study|film|radiograph)"
        r"|imaging (?:technique|method|type)|what imaging|sequence|weighted|weighting"
        r"|contrast (?:agent|medium)|(?:image|scan) (?:was )?(?:taken|acquired) with",
        "成像方式|成像类型|成像技术|模态|扫描方式|检查方式|加权|序列|什么类型的图",
    ),
    _rule(
        "plane",
        r"planes?|(?:which|what) view|axial|coronal|sagittal",
        "平面|切面|层面|扫描面|轴位|冠状|矢状",
    ),
    _rule(
        "comparison",
        r"compare\w*|comparison|difference|differ|than|larger|smaller|bigger|biggest|largest"
        r"|smallest",
        "比较|最大|最小|更大|更小|大于|小于|区别|不同",
    ),
    _rule(
        "measurement",
        r"size|how (?:large|big|long|wide|thick|tall|deep)|diameter|dimensions?|measure\w*"
        r"|volume|length|width",
        "大小|尺寸|直径|多大|多长|多宽|多厚|体积|长度",
    ),
    _rule("appearance", r"colou?rs?|shapes?|shaped|texture", "颜色|形状|外观|什么样"),
    _rule(
        "location",
        r"where|(?:which|what) (?:side|region|area|part|lobe|quadrant|segment|level)|located"
        r"|location|positions?|positioned|lateralit\w*",
        "哪里|哪儿|在哪|位置|位于|哪侧|哪一侧|哪边|部位|哪个部分|哪一部分|哪个区域",
    ),
    _rule(
        "anatomy", r"organs?|structures?|body parts?|anatom\w*|tissues?", "器官|脏器|结构|组织|解剖"
    ),
    _rule(
        "impact",
        r"effects?|impact|affect\w*|caus\w*|compress\w*|why|result(?:s|ing)? (?:in|from)"
        r"|lead to|function",
        "影响|导致|引起|造成|原因|为什么|作用|功能",
    ),
    _rule(
        "procedure",
        r"procedures?|treat\w*|intervention|surgery|surgical|operation|therapy|prevent\w*"
        r"|manage\w*",
        "治疗|手术|预防|处理|疗法|干预",
    ),
    _rule(
        "abnormality",
        r"abnormal\w*|diseases?|diagnos\w*|patholog\w*|disorders?|illness|wrong|lesions?"
        r"|conditions?|findings? (?:is|are)|tumou?rs?|masse?s?|fractures?|healthy|normal",
        "疾病|病变|异常|病灶|诊断|病症|健康|正常|肿瘤|什么病",
    ),
    _rule(
        "appearance",
        r"appear\w*|look like|looks?|density|intensity|signal|enhanc\w*|bright\w*|dark\w*",
        "看起来|密度|信号|强化|亮|暗",
    ),
    _rule(
        "description",
        r"describe|description|findings|explain|features?|characteri[sz]\w*|tell me"
        r"|show|shown|seen|present|visible",
        "描述|表现|发现|显示|说明|特征|可见",
    ),
)
# For either-or questions only, tried first: the alternatives named decide ("CT or MRI?").
EITHER_OR_RULES = (
    _rule(
        "modality", r"ct|mri?|x-?rays?|ultrasound|pet|t1|t2|flair", "CT|MRI|X光|X线|超声|核磁|T1|T2"
    ),
    _rule("location", r"left|right|upper|lower|anterior|posterior", "左|右|上方|下方|前|后"),
)


def is_chinese(text: str) -> bool:
    """True when ``text`` holds CJK characters (Chinese rules apply even to mixed "这张MRI图片")."""
    return bool(_CJK.search(text))


def normalize_text(text: str) -> str:
    """NFKC, lowercase, edge punctuation stripped, whitespace collapsed: for comparing strings."""
    text = unicodedata.normalize("NFKC", text).lower().strip()
    return " ".join(_PUNCT_EDGE.sub("", text).split())


def is_yes_no_answer(answer: str | None) -> bool:
    """True for a yes/no answer in English or Chinese ("Yes.", "no", "是", "不包含"...)."""
    return answer is not None and normalize_text(answer) in YES_NO_ANSWERS


def is_yes_no_question(question: str) -> bool:
    """True when the question asks yes/no by its form ("Does the patient have...?", "有结节吗？").

    English: the question opens with an auxiliary verb ("is", "does", "can"...), so "What does the
    arrow point to?" is not yes/no. Chinese: it ends in 吗/嘛 or asks 是否/有没有/是不是.
    """
    text = normalize_text(question)
    if is_chinese(text):
        return bool(_ZH_YES_NO_FORM.search(text))
    return bool(_EN_YES_NO_FORM.match(text))


def is_either_or_question(question: str, answer: str | None = None) -> bool:
    """True for a choice between named alternatives ("Is it CT or MRI?", "左侧还是右侧?").

    A yes/no answer overrides the form: "Is there a mass or cyst?" answered "yes" is a yes/no
    question, not a choice.
    """
    if is_yes_no_answer(answer):
        return False
    text = normalize_text(question)
    return bool((_ZH_EITHER_OR if is_chinese(text) else _EN_EITHER_OR).search(text))


def rule_answer_type(
    question: str, answer: str | None = None, options: dict[str, str] | None = None
) -> str:
    """``"closed"`` or ``"open"`` from the question text, answer and options alone (no labels)."""
    if options:
        return "closed"
    if is_yes_no_answer(answer) or is_either_or_question(question, answer):
        return "closed"
    return "closed" if is_yes_no_question(question) else "open"


def rule_question_type(question: str, answer: str | None = None) -> str:
    """The question type from the text alone; see the module docstring for the rule order."""
    either_or = is_either_or_question(question, answer)
    if is_yes_no_question(question) and not either_or:
        return "yes_no"
    text = normalize_text(question)
    chinese = is_chinese(text)
    rules = EITHER_OR_RULES + TOPIC_RULES if either_or else TOPIC_RULES
    for name, en_pattern, zh_pattern in rules:
        if (zh_pattern if chinese else en_pattern).search(text):
            return name
    return "general"


def map_question_label(label: Any) -> str | None:
    """The medvl question type for a dataset label ("Organ" -> anatomy, "PRES, POS" -> yes_no)."""
    if not isinstance(label, str) or not label.strip():
        return None
    key = label.strip().lower()
    if key in QUESTION_TYPES:
        return key
    first = re.split(r"[,/;|]", key)[0].strip()
    return DATASET_QUESTION_TYPES.get(key) or DATASET_QUESTION_TYPES.get(first)


def map_answer_label(label: Any) -> str | None:
    """``"closed"``/``"open"`` for a dataset answer-type label (CLOSED, closed-set, open-ended)."""
    if not isinstance(label, str):
        return None
    return DATASET_ANSWER_TYPES.get(label.strip().lower().replace("_", "-"))


def _answer_text(record: Record) -> str | None:
    return record.answer if record.answer is not None else record.reference


def _answer_type_source(record: Record, use_labels: bool) -> tuple[str, str, str | None]:
    """(answer type, source, original label) for one record."""
    if use_labels:
        if record.answer_type is not None:
            return record.answer_type, "record", None
        for key in ANSWER_LABEL_KEYS:
            mapped = map_answer_label(record.meta.get(key))
            if mapped:
                return mapped, "dataset", record.meta[key]
    answer = _answer_text(record)
    return rule_answer_type(record.question, answer, record.options), "rule", None


def _question_type_source(record: Record, use_labels: bool) -> tuple[str, str, str | None]:
    """(question type, source, original dataset label) for one record."""
    if use_labels:
        current = record.question_type
        if current is not None and current in QUESTION_TYPES:
            return current, "record", None
        for label in (current, *(record.meta.get(k) for k in QUESTION_LABEL_KEYS)):
            mapped = map_question_label(label)
            if mapped:
                return mapped, "dataset", label
        if current is not None:
            logger.debug("record %s: unknown question_type label %r", record.id, current)
    kind = rule_question_type(record.question, _answer_text(record))
    original = record.question_type if use_labels else None
    return kind, "rule", original


def classify_answer_type(record: Record, *, use_labels: bool = True) -> str:
    """``"closed"`` or ``"open"``: the record's value, else its dataset label, else the rules."""
    return _answer_type_source(record, use_labels)[0]


def classify_question_type(record: Record, *, use_labels: bool = True) -> str:
    """One of :data:`QUESTION_TYPES`: the record's value, else its mapped dataset label or rules."""
    return _question_type_source(record, use_labels)[0]


def classify_records(
    records: Iterable[Record], *, use_labels: bool = True
) -> tuple[list[Record], dict[str, Any]]:
    """Copies of ``records`` with ``answer_type``/``question_type`` filled, and a mapping summary.

    The summary (JSON-serialisable) holds ``n``, ``counts`` (question type -> answer type ->
    count), ``answer_type_counts``, ``sources`` (how many labels came from the record, a dataset
    label or the rules), ``unmapped_labels`` and ``mapping`` (record id -> the labels, their
    sources and the original dataset labels). With ``use_labels=False`` only the rules are used.
    """
    out: list[Record] = []
    counts: dict[str, Counter[str]] = {}
    sources = {"question_type": Counter(), "answer_type": Counter()}
    unmapped: Counter[str] = Counter()
    mapping: dict[str, dict[str, Any]] = {}
    for record in records:
        a_type, a_src, a_orig = _answer_type_source(record, use_labels)
        q_type, q_src, q_orig = _question_type_source(record, use_labels)
        if q_src == "rule" and q_orig is not None:
            unmapped[q_orig] += 1
        meta = copy.deepcopy(record.meta)
        if q_orig is not None and q_orig == record.question_type:  # would be lost otherwise
            meta.setdefault("original_question_type", q_orig)
        out.append(dataclasses.replace(record, answer_type=a_type, question_type=q_type, meta=meta))
        counts.setdefault(q_type, Counter())[a_type] += 1
        sources["question_type"][q_src] += 1
        sources["answer_type"][a_src] += 1
        mapping[record.id] = {
            "question_type": q_type,
            "answer_type": a_type,
            "question_type_source": q_src,
            "answer_type_source": a_src,
            "original_question_type": q_orig,
            "original_answer_type": a_orig,
        }
    summary = {
        "n": len(out),
        "counts": {k: dict(sorted(v.items())) for k, v in sorted(counts.items())},
        "answer_type_counts": dict(sorted(sum(counts.values(), Counter()).items())),
        "sources": {k: dict(sorted(v.items())) for k, v in sources.items()},
        "unmapped_labels": dict(unmapped.most_common()),
        "mapping": mapping,
    }
    return out, summary


def answer_type_agreement(records: Iterable[Record], labels: Iterable[str]) -> dict[str, Any]:
    """How often the rule-based answer type matches reference ``labels`` (mapped to closed/open).

    Records are classified with ``use_labels=False``; returns ``n``, ``agree``, ``agreement`` and
    the ids that disagree, so a reader can report the classifier's accuracy on a dataset.
    """
    n = agree = 0
    disagree: list[str] = []
    for record, label in zip(records, labels, strict=True):
        expected = map_answer_label(label)
        if expected is None:
            continue
        n += 1
        if classify_answer_type(record, use_labels=False) == expected:
            agree += 1
        else:
            disagree.append(record.id)
    return {"n": n, "agree": agree, "agreement": agree / n if n else None, "disagree": disagree}
