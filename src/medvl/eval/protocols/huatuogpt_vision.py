"""``huatuogpt-vision``: HuatuoGPT-Vision's multiple-choice scorer (``match_choice3``).

Follows: FreedomIntelligence/HuatuoGPT-Vision ``scorer.py`` (``match_choice3``,
``find_most_similar_index``, ``test_mmlu``, ``test_choice_llava``, ``score_mix_llava``) and
``eval.py`` (``TestDataset.llava_prompt``, the call to ``score_mix_llava``), as stored in the
fork xk-huang/HuatuoGPT-Vision at commit f699d88d (the upstream files before the fork edited
them; the upstream repository's own copy of these two files is not in our stored index).

Covers: ``huatuo`` (``Medical_Multimodal_Evaluation_Data``) and ``medvlm_r1`` (MRI/CT/X-ray
questions drawn from that bundle). Only multiple choice: ``score_mix_llava`` drops records with
``question_type == "open"`` or no options (here: ``correct=None``, rule ``no_options``).

Rules of ``match_choice3`` on the raw reply (the first that answers wins):

1. ``letter_regex``: the FIRST match of
   ``(is |是|\\*|\\W|\\ |\\(|为|^|'|"|#)(?![aA] )([a-nA-N])(\\W|$)`` - one letter a-n or A-N,
   either case, preceded by a non-word character, the start, "is ", 是 or 为, and followed by a
   non-word character or the end; a letter "A"/"a" followed by a space never counts.
2. ``option_text``: the lower-cased option text found in the lower-cased reply (plain substring)
   whose LAST occurrence (``rindex``) starts latest; ties go to the earlier option.
3. ``nearest_option``: ``difflib.SequenceMatcher(None, option, reply).ratio()`` on lower-cased
   texts; ``>=`` keeps the LAST option among equal ratios, so an empty reply reads as the last
   option. There is always an answer.

``test_mmlu`` then compares the letter with the gold letter exactly, case included.
Accuracy is reported per ``dataset`` and per ``dataset_subset``. In medvl these are the
``dataset`` and ``subset`` breakdowns of a ``huatuo`` run; the README numbers in
``published.yaml`` (vqa_rad, slake, ...) are these per-dataset accuracies of the bundle.

Where this differs from medvl's extractor (:func:`medvl.eval.extract.extract_choice`):

- the first letter wins, not the last "answer is" phrase: "I think ..." reads as ``I`` and
  "Option C is wrong; the answer is B" as ``C``;
- any letter A-N counts, even one that is no option ("K" with five options: wrong, not
  unparsed); ``<think>`` blocks are not removed;
- a lower-case letter is extracted but never equals the gold letter ("the answer is b": wrong);
- option text is a plain substring (the "ct" of CT inside "correct") and the last one in the
  reply wins where medvl finds no single answer;
- there is no "unparsed": the difflib step always picks an option, with no threshold.

Upstream bug not reproduced: ``test_mmlu`` passes the whole record, not its options, as
``options``, so rules 2-3 would call ``.lower()`` on the record's ``image`` list and abort the
run (``assert False``) at the first reply without a rule-1 hit. We apply ``match_choice3`` to
the record's options, as the function is written to be called (and as the anchors note reads it).
Gold letters come from medvl's reader (first option equal to the answer text, as upstream's
``options.index``); the reader drops empty options, so letters can shift where upstream's would
not.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from medvl.eval.protocols.base import Answer, Judgment, check_supported, option_letters

LETTER_RE = re.compile(
    r"(is |是|\*|\W|\ |\(|为|^|'|\"|#)(?![aA] )([abcdefghijklmnABCDEFGHIJKLMN])(\W|$)", re.S
)


def nearest_option_index(texts: list[str], reply: str) -> int:
    """``find_most_similar_index``: the last index with the highest ``SequenceMatcher`` ratio."""
    best, highest = 0, 0.0
    for index, text in enumerate(texts):
        ratio = difflib.SequenceMatcher(None, text, reply).ratio()
        if ratio >= highest:
            best, highest = index, ratio
    return best


def match_choice3(text: str, options: Mapping[str, str]) -> tuple[str, str]:
    """HuatuoGPT-Vision's ``match_choice3``: ``(letter, rule)``; ``options`` must not be empty."""
    match = LETTER_RE.search(text)
    if match:
        return match.group(2), "letter_regex"
    lowered = text.lower()
    labels = option_letters(options)
    found = [
        (label, lowered.rindex(options[label].lower()))
        for label in labels
        if options[label].lower() in lowered
    ]
    if found:
        return sorted(found, key=lambda pair: pair[1], reverse=True)[0][0], "option_text"
    index = nearest_option_index([options[label].lower() for label in labels], lowered)
    return labels[index], "nearest_option"


class HuatuoGPTVisionProtocol:
    """HuatuoGPT-Vision's ``match_choice3``: first letter, last option text, nearest option."""

    name = "huatuogpt-vision"
    title = "HuatuoGPT-Vision: scorer.py match_choice3 (first letter a-n, option text, difflib)"
    follows = (
        "FreedomIntelligence/HuatuoGPT-Vision scorer.py, eval.py "
        "(as in xk-huang/HuatuoGPT-Vision f699d88d)"
    )
    benchmarks = ("huatuo", "medvlm_r1")
    notes = (
        "The first standalone letter A-N (either case; 'A ' excluded) wins, so 'I think...' "
        "reads as I; a lower-case letter never equals the gold. Else the option text occurring "
        "last, else the difflib-nearest option: never unparsed. Records without options are "
        "left out. Prompt as upstream: --prompt huatuo."
    )

    def judge(self, answer: Answer) -> Judgment:
        """1.0 when ``match_choice3``'s letter equals the gold letter (case-sensitive)."""
        check_supported(self, answer, ("mcq",))
        if not answer.options:
            return Judgment(None, None, "no_options")
        letter, rule = match_choice3(answer.prediction or "", answer.options)
        return Judgment(float(letter == answer.gold), letter, rule)
