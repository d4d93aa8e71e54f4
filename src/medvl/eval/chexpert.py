"""A small rule-based CheXpert-style labeler for English and Chinese chest X-ray reports.

:func:`label_report` maps a report to the 14 CheXpert observations, each 1 (positive),
0 (negative), -1 (uncertain) or None (not mentioned). It is a transparent, offline stand-in for the
CheXpert labeler (NegBio, not pip-installable) and CheXbert (needs weights): phrases and cues live
in ``resources/chexpert_rules.txt`` and can be read and extended without touching code.

How a mention is labelled, inside its clause (a sentence cut at scope breakers such as "but",
"however", "which"; in Chinese also at commas):

1. an uncertainty cue right after it ("... cannot be excluded", "... is likely") -> -1;
2. a negation cue before it ("no", "without", "negative for", "free of", "no evidence of",
   "clear of"; 未见/无/没有) -> 0; uncertainty phrases that contain a negation word ("cannot
   exclude", 不排除) are masked first, and pseudo-cues ("no change") are ignored;
3. an uncertainty cue before it ("may", "possible", "likely", "suggest"; 可能/考虑/疑似) -> -1;
4. a negation cue right after it ("... is not seen", "... has resolved"; 消失) -> 0;
5. otherwise 1.

Per observation the mentions are aggregated as CheXpert does: any 1 -> 1, else any -1 -> -1, else
any 0 -> 0, else None. "No Finding" is 1 when the report is non-empty and no pathology (every
observation except No Finding and Support Devices) is 1 or -1, else None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
#: The five observations of the CheXpert competition (CheXbert "F1-5").
CHEXPERT_5 = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
PATHOLOGIES = tuple(o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices"))
POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
RULES_RESOURCE = "chexpert_rules.txt"
CUE_SECTIONS = ("neg_pre", "neg_post", "unc_pre", "unc_post", "pseudo", "breaker")

_SENTENCE_RE = re.compile(r"[。；;！？!?\n]|(?<!\d)\.|\.(?!\d)")
_NEVER = re.compile(r"(?!x)x")


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules of one language: per-observation mention/absent patterns and cues."""

    mentions: tuple[tuple[str, re.Pattern[str]], ...]
    absent: tuple[tuple[str, re.Pattern[str]], ...]
    cues: dict[str, re.Pattern[str]]


def label_report(text: str | None, lang: str = "en") -> dict[str, int | None]:
    """CheXpert labels of one report: ``{observation: 1 | 0 | -1 | None}`` for all 14.

    ``lang`` picks the phrase table: Chinese for ``zh``/``zh-*``, English otherwise.
    """
    rules = load_rules("zh" if (lang or "").lower().startswith("zh") else "en")
    found: dict[str, list[int]] = {o: [] for o in OBSERVATIONS}
    for clause in _clauses(text or "", rules):
        for observation, status in _clause_mentions(clause, rules):
            found[observation].append(status)
    labels = {o: _aggregate(found[o]) for o in OBSERVATIONS}
    no_pathology = all(labels[o] not in (POSITIVE, UNCERTAIN) for o in PATHOLOGIES)
    labels["No Finding"] = POSITIVE if (text or "").strip() and no_pathology else None
    return labels


def _aggregate(statuses: list[int]) -> int | None:
    for status in (POSITIVE, UNCERTAIN, NEGATIVE):
        if status in statuses:
            return status
    return None


def _clauses(text: str, rules: RuleSet) -> list[str]:
    """Lower-cased, whitespace-collapsed clauses: sentences cut at scope breakers."""
    clauses = []
    for sentence in _SENTENCE_RE.split(text.lower()):
        sentence = re.sub(r"\s+", " ", sentence).strip()
        clauses += [c.strip() for c in rules.cues["breaker"].split(sentence) if c.strip()]
    return clauses


def _clause_mentions(clause: str, rules: RuleSet) -> list[tuple[str, int]]:
    """``(observation, status)`` for every mention and "absent" phrase in one clause."""
    masked = _mask(clause, rules.cues["pseudo"])
    out = [(o, NEGATIVE) for o, pattern in rules.absent if pattern.search(masked)]
    for observation, pattern in rules.mentions:
        for m in pattern.finditer(masked):
            out.append((observation, _status(masked, m.start(), m.end(), rules)))
    return out


def _status(clause: str, start: int, end: int, rules: RuleSet) -> int:
    """The label of the mention at ``clause[start:end]`` (the order of the module docs)."""
    cues = rules.cues
    pre, post = clause[:start], clause[end:].lstrip(" ,:")
    if cues["unc_post"].match(post):
        return UNCERTAIN
    if cues["neg_pre"].search(_mask(pre, cues["unc_pre"])):
        return NEGATIVE
    if cues["unc_pre"].search(pre):
        return UNCERTAIN
    if cues["neg_post"].match(post):
        return NEGATIVE
    return POSITIVE


def _mask(text: str, pattern: re.Pattern[str]) -> str:
    """``text`` with every match of ``pattern`` blanked out (offsets are kept)."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


@lru_cache(maxsize=4)
def load_rules(lang: str) -> RuleSet:
    """The compiled rules of ``lang`` ("en" or "zh") from ``resources/chexpert_rules.txt``."""
    table = parse_rules(resources.files("medvl.resources").joinpath(RULES_RESOURCE).read_text())
    wrap = (lambda p: rf"\b(?:{p})\b") if lang == "en" else (lambda p: f"(?:{p})")

    def compile_(patterns: list[str]) -> re.Pattern[str]:
        if not patterns:
            return _NEVER
        return re.compile("|".join(wrap(p) for p in patterns), re.IGNORECASE)

    def per_observation(section: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
        return tuple(
            (o, compile_(table[(lang, section, o)]))
            for o in OBSERVATIONS
            if table.get((lang, section, o))
        )

    cues = {s: compile_(table.get((lang, s, ""), [])) for s in CUE_SECTIONS}
    return RuleSet(per_observation("mention"), per_observation("absent"), cues)


def parse_rules(text: str) -> dict[tuple[str, str, str], list[str]]:
    """``{(lang, section, observation or ""): [patterns]}`` from the rules file's text."""
    table: dict[tuple[str, str, str], list[str]] = {}
    key: tuple[str, str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            parts = line[1:-1].split(maxsplit=2)
            if len(parts) < 2 or (len(parts) == 3 and parts[2] not in OBSERVATIONS):
                raise ValueError(f"{RULES_RESOURCE}:{number}: bad header {line!r}")
            key = (parts[0], parts[1], parts[2] if len(parts) == 3 else "")
            table.setdefault(key, [])
        elif key is None:
            raise ValueError(f"{RULES_RESOURCE}:{number}: pattern before any [header]")
        else:
            table[key].append(line)
    return table
