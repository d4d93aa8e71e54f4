"""What the LLM judge step reports: the ``judge`` section of ``metrics.json`` and the CSV sample
for human review (:mod:`medvl.eval.judge` runs the judge).

- **Judge accuracy** is the mean verdict (correct = 1, incorrect = 0) over the records with a
  verdict; ``unparsed`` replies and refused requests (``errors``) are counted, never guessed,
  and left out of the mean. Records without a prediction count as incorrect (as in the rule
  metrics). The interval is :func:`medvl.eval.breakdown.estimate`'s bootstrap.
- **Agreement** with the rule metric (the scores row's ``correct``: ``exact_match`` for open
  records) over the records with a verdict: raw agreement, Cohen's kappa
  (:mod:`medvl.eval.agreement`) and the 2x2 table. ``rule_accuracy`` is the rule's mean over the
  same records, so the two accuracies compare like with like.
- **Review sample**: up to ``sample`` rows, disagreements first, then unparsed/refused, then
  agreements, each group shuffled with ``random.Random(seed)``.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medvl.eval.agreement import binary_agreement
from medvl.eval.breakdown import BootstrapSettings, estimate
from medvl.fileio import atomic_write_bytes

REVIEW_COLUMNS = (
    "id",
    "kind",
    "question",
    "reference",
    "prediction",
    "rule_verdict",
    "judge_verdict",
    "judge_reply",
)
_VALUE = {"correct": 1, "incorrect": 0}


def judge_section(
    rows: Sequence[Mapping[str, Any]],
    about: Mapping[str, Any],
    settings: BootstrapSettings,
) -> dict[str, Any]:
    """The ``judge`` section of ``metrics.json`` from the verdict rows of
    :func:`medvl.eval.judge.judge_items`; ``about`` (prompt version, model, URL, ...) is copied
    in."""
    judged = [r for r in rows if r["verdict"] in _VALUE]
    values = [_VALUE[r["verdict"]] for r in judged]
    paired = [r for r in judged if r.get("rule") in (0.0, 1.0)]
    rule = [int(r["rule"]) for r in paired]
    verdicts = [_VALUE[r["verdict"]] for r in paired]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return {
        **about,
        "records": len(rows),
        "n": len(judged),
        "unparsed": counts.get("unparsed", 0),
        "errors": counts.get("error", 0),
        "verdicts": dict(sorted(counts.items())),
        "without_prediction": sum(r.get("source") == "no prediction" for r in rows),
        "accuracy": estimate(values, settings, _clusters(judged)).to_dict(),
        "rule_accuracy": estimate(rule, settings, _clusters(paired)).to_dict(),
        "agreement": {"rule": "correct", **binary_agreement(rule, verdicts)},
    }


def _clusters(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Each row's resampling cluster (the image or patient of its scores row; else its id)."""
    return [row.get("cluster") or row["id"] for row in rows]


def review_rows(
    rows: Sequence[Mapping[str, Any]],
    texts: Mapping[str, Mapping[str, Any]],
    sample: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Up to ``sample`` CSV rows (see the module docstring for the order); ``texts`` maps each
    id to its question, reference and prediction."""
    disagree, unsure, agree = [], [], []
    for row in rows:
        if row["verdict"] not in _VALUE:
            unsure.append(row)
        elif row.get("rule") in (0.0, 1.0) and _VALUE[row["verdict"]] != int(row["rule"]):
            disagree.append(row)
        else:
            agree.append(row)
    rng = random.Random(seed)
    ordered = []
    for group in (disagree, unsure, agree):
        group = list(group)
        rng.shuffle(group)
        ordered.extend(group)
    return [_review_row(row, texts[row["id"]]) for row in ordered[:sample]]


def _review_row(row: Mapping[str, Any], text: Mapping[str, Any]) -> dict[str, Any]:
    rule = row.get("rule")
    return {
        "id": row["id"],
        "kind": row["kind"],
        "question": text.get("question", ""),
        "reference": text.get("reference", ""),
        "prediction": text.get("prediction") or "",
        "rule_verdict": "" if rule is None else ("correct" if rule == 1.0 else "incorrect"),
        "judge_verdict": row["verdict"],
        "judge_reply": row.get("reply") or "",
    }


def write_review(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """The review sample as UTF-8 CSV with a header row, written atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=REVIEW_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
