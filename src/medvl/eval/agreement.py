"""Agreement between two raters over the same records: Cohen's kappa and the 2x2 table.

Used to report how far an LLM judge agrees with a rule metric (:mod:`medvl.eval.judge`).

Cohen's kappa: with ``p_o`` the share of records where the raters agree and
``p_e = sum_k p_a(k) * p_b(k)`` the agreement expected by chance from each rater's own label
frequencies, ``kappa = (p_o - p_e) / (1 - p_e)``. It is undefined (None here) when
``p_e == 1``: both raters gave every record the same single label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two label sequences of equal length (None when undefined or empty)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[k] * count_b[k] for k in count_a) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def binary_agreement(rule: Sequence[int], judge: Sequence[int]) -> dict[str, Any]:
    """Agreement of two 0/1 raters: n, raw agreement rate, kappa and the 2x2 counts."""
    pairs = list(zip(rule, judge, strict=True))
    n = len(pairs)
    table = {
        "both_correct": sum(r == 1 and j == 1 for r, j in pairs),
        "judge_only": sum(r == 0 and j == 1 for r, j in pairs),
        "rule_only": sum(r == 1 and j == 0 for r, j in pairs),
        "both_incorrect": sum(r == 0 and j == 0 for r, j in pairs),
    }
    agree = table["both_correct"] + table["both_incorrect"]
    return {
        "n": n,
        "agreement": agree / n if n else None,
        "kappa": cohen_kappa(list(rule), list(judge)),
        "table": table,
    }
