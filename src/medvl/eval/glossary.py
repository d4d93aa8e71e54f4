"""What every metric id means, in one sentence each: the one glossary the report, CLI and UI share.

A metric id in ``metrics.json`` (``open_recall_llava``, ``chexpert_f1``, ``recall``) is short;
a reader of a report needs to know what it measures, how it is computed, which tool or paper it
follows, and which records it applies to. :data:`GLOSSARY` holds medvl's own metrics
(:data:`medvl.eval.metrics.METRICS`) and ``accuracy``; :data:`PROTOCOL_GLOSSARY` holds the ids
another tool's protocol reports under its own names (``recall`` under LLaVA-Med is not
``recall`` under MedEvalKit, whose precision/recall/F1 come out swapped) and what ``accuracy``
means under each protocol.

Use :func:`describe` (the sentence) or :func:`lookup` (the whole entry, None when unknown).
A test fails when a metric id a report shows has no entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Which records a metric is computed on, as the report labels it.
SCOPES = {
    "all": "every scored question",
    "mcq": "multiple-choice only",
    "closed": "closed-only",
    "open": "open-only (also reports)",
    "open_strict": "open-only",
    "report": "reports only",
}
UNKNOWN = "no description (not in medvl.eval.glossary)"


@dataclass(frozen=True)
class GlossaryEntry:
    """One metric id: the records it applies to (a :data:`SCOPES` key), one sentence on what it
    measures and how, and the protocol whose meaning this is (None: medvl's own)."""

    metric: str
    scope: str
    text: str
    protocol: str | None = None

    @property
    def label(self) -> str:
        """``open-only``, ``closed-only``, ... for a table column."""
        return SCOPES[self.scope]


_WORDS = "lower-cased word tokens (CJK: characters), punctuation dropped"
_RULE_LABELER = "medvl's rule labeler (not CheXbert, so not comparable with CheXbert F1)"

_MEDVL: tuple[tuple[str, str, str], ...] = (
    (
        "accuracy",
        "all",
        "Share of questions answered right (0/1 per record): the MCQ letter match, the closed "
        "answer match or the open exact match, whichever applies; a missing answer counts wrong.",
    ),
    (
        "mcq_accuracy",
        "mcq",
        "1 when the option letter read from the reply by medvl's strict extraction rules "
        "(answer tag, 'answer is X', a lone letter...) equals the gold letter; unparsed = wrong.",
    ),
    (
        "closed_accuracy",
        "closed",
        "1 when the yes/no (read by words, with negation; yes and no together = wrong) or the "
        "closed term (normalised, with a small synonym table: CT = computed tomography) equals "
        "the gold answer.",
    ),
    (
        "exact_match",
        "open",
        "1 when the normalised reply (lower-cased, punctuation and articles dropped) equals the "
        "normalised gold answer, as SQuAD-style exact match.",
    ),
    (
        "substring_match",
        "open",
        "1 when the normalised gold answer occurs in the normalised reply on word boundaries "
        "('lung' is not found in 'lungs'; CJK as a plain substring).",
    ),
    (
        "soft_match",
        "open",
        "Character similarity 0-1 of the normalised reply and gold answer (Python difflib "
        "SequenceMatcher ratio).",
    ),
    (
        "token_precision",
        "open",
        "Share of the reply's word tokens that are in the gold answer (multiset counts; CJK "
        "characters as tokens).",
    ),
    (
        "token_recall",
        "open",
        "Share of the gold answer's word tokens found in the reply (multiset counts; CJK "
        "characters as tokens).",
    ),
    (
        "token_f1",
        "open",
        "Harmonic mean of token precision and recall (multiset word overlap), the SQuAD / "
        "MedGemma model-card F1.",
    ),
    (
        "open_recall_llava",
        "open_strict",
        "LLaVA-Med's open-question 'recall' (run_eval.py): the reply's counts of words shared "
        "with the gold answer over those plus the gold's missing words, after its "
        "normalize_word, quirks included (repeated words raise it).",
    ),
    ("bleu_1", "open", f"Sentence BLEU on unigrams with nltk smoothing method1; {_WORDS}."),
    ("bleu_2", "open", f"Sentence BLEU up to bigrams with nltk smoothing method1; {_WORDS}."),
    ("bleu_3", "open", f"Sentence BLEU up to trigrams with nltk smoothing method1; {_WORDS}."),
    ("bleu_4", "open", f"Sentence BLEU up to 4-grams with nltk smoothing method1; {_WORDS}."),
    (
        "rouge_l",
        "open",
        f"ROUGE-L F-measure (longest common subsequence, rouge-score, no stemming); {_WORDS}.",
    ),
    (
        "meteor",
        "open",
        f"nltk METEOR (unigram matches with WordNet stems and synonyms, fragmentation "
        f"penalty); {_WORDS}.",
    ),
    (
        "embedding_similarity",
        "open",
        "Cosine similarity of mean-pooled all-MiniLM-L6-v2 sentence embeddings of reply and gold "
        "(English only); not comparable with published BERTScore.",
    ),
    (
        "corpus_bleu",
        "open",
        f"Corpus BLEU-4 over all open replies on a 0-1 scale without smoothing (= sacrebleu / "
        f"100); one number per run, no interval; {_WORDS}.",
    ),
    (
        "cider_d",
        "open",
        "CIDEr-D as pycocoevalcap computes it (TF-IDF n-gram similarity, x10 scale, IDF from this "
        "set's references); one number per run, no interval.",
    ),
    (
        "chexpert_f1",
        "report",
        f"Micro F1 over the 14 CheXpert findings labelled in reply and gold report (uncertain "
        f"counts as present, as f1chexbert's rrg mode) by {_RULE_LABELER}.",
    ),
    (
        "chexpert_macro_f1",
        "report",
        f"Macro F1 over the 14 CheXpert findings (absent ones count 0, as sklearn) by "
        f"{_RULE_LABELER}.",
    ),
    (
        "chexpert_f1_5",
        "report",
        f"Micro F1 over the 5 CheXpert competition findings (atelectasis, cardiomegaly, "
        f"consolidation, edema, pleural effusion) by {_RULE_LABELER}.",
    ),
    (
        "chexpert_record_f1",
        "report",
        f"Per-report F1 of the sets of findings present in reply and gold, by {_RULE_LABELER}; a "
        "per-record number for breakdowns.",
    ),
)

_PROTOCOLS: tuple[tuple[str, str, str, str], ...] = (
    (
        "llava-med",
        "accuracy",
        "closed",
        "LLaVA-Med run_eval.py closed accuracy: right when the reply holds 'yes' or 'no' and the "
        "gold as substrings; wrong yes/no replies are DROPPED from the denominator as upstream "
        "does (so it runs high); open questions have no accuracy.",
    ),
    (
        "llava-med",
        "recall",
        "open_strict",
        "LLaVA-Med's open 'recall' (calculate_f1score): the reply's counts of shared words over "
        "those plus the gold's missing words, after normalize_word.",
    ),
    (
        "llava-med",
        "precision",
        "open_strict",
        "LLaVA-Med's open precision (calculate_f1score): shared words over shared plus the "
        "reply's extra words, after normalize_word.",
    ),
    (
        "llava-med",
        "f1",
        "open_strict",
        "LLaVA-Med's open F1 (calculate_f1score): harmonic mean of its precision and recall.",
    ),
    (
        "llava-med",
        "exact_match",
        "open_strict",
        "LLaVA-Med's 'exact match score' (calculate_exactmatch): distinct gold words found in the "
        "reply over the reply's word count; a ratio, not a 0/1 match.",
    ),
    (
        "medevalkit",
        "accuracy",
        "all",
        "MedEvalKit (Lingshu) rules without its LLM judge: yes/no by substring (exactly one of "
        "yes/no present), other closed and open answers by exact equality of the parsed reply, "
        "MCQ by its letter/similarity rule.",
    ),
    (
        "medevalkit",
        "em",
        "open_strict",
        "MedEvalKit's open exact match: 1 when the parsed reply equals the lower-cased gold.",
    ),
    (
        "medevalkit",
        "precision",
        "open_strict",
        "What MedEvalKit reports as precision: its token-set F1, because its caller unpacks "
        "calculate_f1's (precision, recall, f1) in the wrong order; reproduced as published.",
    ),
    (
        "medevalkit",
        "recall",
        "open_strict",
        "What MedEvalKit reports as recall: its token-set precision (the swapped unpacking of "
        "calculate_f1), reproduced as published.",
    ),
    (
        "medevalkit",
        "f1",
        "open_strict",
        "What MedEvalKit reports as F1: its token-set recall (the swapped unpacking of "
        "calculate_f1), reproduced as published.",
    ),
    (
        "lmms-eval",
        "accuracy",
        "all",
        "lmms-eval 0.7.3 SLAKE: exact match after its normalisation (lower-case, brackets and "
        "punctuation dropped, 'x ray' = 'xray') and its yes/no word map (正常 = yes, 异常 = no).",
    ),
    (
        "vlmevalkit",
        "accuracy",
        "mcq",
        "VLMEvalKit's rule matching of the option letter (can_infer: a lone letter near the end, "
        "'answer is X', or a unique option text) without its LLM extractor; unmatched = wrong.",
    ),
    (
        "medvlm-r1",
        "accuracy",
        "mcq",
        "MedVLM-R1: the letter inside <answer></answer> tags equals the gold letter; no tag = "
        "wrong.",
    ),
    (
        "huatuogpt-vision",
        "accuracy",
        "mcq",
        "HuatuoGPT-Vision scorer.py match_choice3: first option letter, else the option text, "
        "else the closest option by difflib; it always picks an option.",
    ),
)

#: medvl's own metric ids (and ``accuracy`` under the ``medvl`` protocol).
GLOSSARY: dict[str, GlossaryEntry] = {m: GlossaryEntry(m, s, t) for m, s, t in _MEDVL}
#: ``(protocol, metric id)`` -> what that protocol means by the id.
PROTOCOL_GLOSSARY: dict[tuple[str, str], GlossaryEntry] = {
    (p, m): GlossaryEntry(m, s, t, p) for p, m, s, t in _PROTOCOLS
}


def lookup(metric_id: str, protocol: str | None = None) -> GlossaryEntry | None:
    """The entry of ``metric_id`` under ``protocol`` (its own meaning there, else medvl's), or
    None when the glossary does not know it."""
    if protocol and (protocol, metric_id) in PROTOCOL_GLOSSARY:
        return PROTOCOL_GLOSSARY[(protocol, metric_id)]
    return GLOSSARY.get(metric_id)


def describe(metric_id: str, protocol: str | None = None) -> str:
    """One sentence on ``metric_id`` (under ``protocol`` when it has its own meaning there);
    :data:`UNKNOWN` for an id the glossary lacks."""
    entry = lookup(metric_id, protocol)
    return entry.text if entry else UNKNOWN


def scope_label(metric_id: str, protocol: str | None = None) -> str:
    """Which records ``metric_id`` applies to (``open-only``, ``closed-only``...), or ``?``."""
    entry = lookup(metric_id, protocol)
    return entry.label if entry else "?"
