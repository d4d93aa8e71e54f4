"""The report of one conversion: what was read, written, skipped as broken, filtered out.

:class:`ConvertReport` counts each outcome (``read = written + skipped + filtered +
sampled_out``), keeps one reason per skipped record, and remembers per filter the values of the
records it removed, so that a conversion that keeps nothing can say which filter removed what
(:meth:`ConvertReport.failure`) instead of leaving an empty file.
:func:`medvl.data.formats.convert` fills it; the CLI and the benchmark runner print it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medvl.data.select import removal_line

logger = logging.getLogger(__name__)

FILTERS = ("lang", "split", "where")


@dataclass
class ConvertReport:
    """Counts and per-record reasons of one conversion;
    ``read = written + skipped + filtered + sampled_out`` (``sampled_out``: left out by
    ``sample``, see :mod:`medvl.data.select`).

    ``removed`` holds, per filter, the values of the records it removed (``removed["split"] ==
    {"train": 451}``), so that an empty result can say which filter removed what. ``wanted``
    holds the filters in force; ``truncated`` the reasons the input was cut short.
    """

    format: str
    input: Path
    out: Path
    read: int = 0
    written: int = 0
    renamed: int = 0
    sampled_out: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    wanted: dict[str, str] = field(default_factory=dict)
    removed: dict[str, Counter] = field(default_factory=lambda: {f: Counter() for f in FILTERS})
    truncated: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Records left out because they are broken (each one is listed in ``problems``)."""
        return len(self.problems)

    @property
    def filtered_by(self) -> dict[str, int]:
        """How many records each filter removed: ``{"lang": 40, "split": 0}`` (``where`` only
        when that filter was given)."""
        return {
            name: sum(values.values())
            for name, values in self.removed.items()
            if name != "where" or "where" in self.wanted
        }

    @property
    def filtered(self) -> int:
        """Records left out by the ``lang``/``split``/``where`` filters, all together."""
        return sum(self.filtered_by.values())

    def skip(self, key: str, reason: str, *, truncated: bool = False) -> None:
        """Record that the source record ``key`` was skipped, and why (one line)."""
        reason = " ".join(str(reason).split())
        logger.debug("skipped %s: %s", key, reason)
        self.problems.append((key, reason))
        if truncated:
            self.truncated.append(f"{key}: {reason}")

    def remove(self, name: str, value: str | None) -> None:
        """Count one record that the filter ``name`` removed, whose own value was ``value``."""
        self.removed[name][value or "unknown"] += 1

    def summary(self) -> str:
        """One line for people: what was read, written, skipped and filtered out."""
        text = (
            f"{self.format}: read {self.read}, wrote {self.written} to {self.out}, "
            f"skipped {self.skipped}"
        )
        if self.filtered:  # worded for flags and for a benchmark's own filters alike
            by = ", ".join(
                f"{n} not matching {self.flag(f)}" if f == "where" else f"{n} not {f}={v}"
                for f, n in self.filtered_by.items()
                if n and (v := self.wanted.get(f, "?"))
            )
            text += f", filtered out {self.filtered} ({by})"
        if self.sampled_out:
            text += (
                f", sampled {self.written} of {self.written + self.sampled_out} "
                f"(--sample {self.wanted.get('sample')} --seed {self.wanted.get('seed')})"
            )
        if self.renamed:
            text += f", renamed {self.renamed} duplicate id(s)"
        return text

    def flag(self, name: str, style: str = "--{name} {value}") -> str:
        """How the filter ``name`` is named to people: ``--split test`` by default."""
        return style.format(name=name, value=self.wanted.get(name, "?"))

    def filter_lines(self, style: str = "--{name} {value}") -> list[str]:
        """For each filter that removed records, what it removed: ``all 451 records are
        split=train; --split test removed them``. Filters that removed nothing are not named."""
        lines = []
        for name in FILTERS:
            if not self.filtered_by.get(name):
                continue
            label = str if name == "where" else f"{name}={{}}".format  # where: "meta.subset=CT"
            lines.append(removal_line(self.flag(name, style), self.removed[name], self.read, label))
        return lines

    def failure(self, style: str = "--{name} {value}") -> str | None:
        """Why this conversion counts as failed (nothing written, or the input was cut short),
        as one line naming the cause and the fix; None when it succeeded."""
        if self.truncated:
            kept = f"wrote the {self.written} kept to {self.out}" if self.written else "kept none"
            return (
                f"{self.input}: the file is cut short ({self.truncated[0]}); read the records "
                f"before the cut and {kept}, the rest is lost; download or copy the file again"
            )
        if self.written:
            return None
        if self.read == 0:
            return f"{self.input}: no records found in it"
        causes = self.filter_lines(style)
        if self.skipped:
            first = self.problem_lines(1)[0]
            causes.append(f"{self.skipped} records were skipped as broken (first: {first})")
        return f"{self.input}: no records kept: " + "; ".join(causes)

    def problem_lines(self, limit: int | None = None) -> list[str]:
        """``"<id>: <reason>"`` for each skipped record (the first ``limit`` of them)."""
        shown = self.problems if limit is None else self.problems[:limit]
        return [f"{key}: {reason}" for key, reason in shown]
