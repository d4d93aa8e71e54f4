"""Selecting records: a ``--where`` filter expression and a seeded ``--sample``.

Why: recipes say "keep the MRI subset" or "evaluate on 100 records"; one small language for that
works the same in ``data convert``, ``data split``, ``predict``, ``eval run`` and pipelines.

**Expressions** are parsed with :mod:`ast` and only a whitelisted subset is evaluated (never
``eval``): comparisons (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``),
``and``/``or``/``not``, literals (strings, numbers, ``True``/``False``/``None``, lists of them)
and field names: a record field (``answer_type``, ``lang``, ``dataset``, ``split``, ``id``,
``answer``, ``question``...), ``meta.KEY`` (dotted, nested) or ``meta["key with spaces"]``.
A field a record lacks is ``None``; an order comparison (``<``) between values of different
kinds is false. Examples::

    meta.subset == "MRI"
    answer_type == "closed" and lang != "zh"
    meta.modality in ["CT", "MRI"]
    not meta.patient

**Sampling** keeps ``n`` records drawn by ``random.Random(seed)`` from the records sorted by id,
and returns them in their input order: the same records and seed give the same sample whatever
order the file lists them in.
"""

from __future__ import annotations

import ast
import dataclasses
import operator
import random
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from medvl.data.record import Record
from medvl.errors import ConfigError

#: Top-level names an expression may read: the record's fields and its ``question`` text.
FIELDS = (*(f.name for f in dataclasses.fields(Record)), "question", "reference")
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: _contains(b, a),
    ast.NotIn: lambda a, b: not _contains(b, a),
}
_ALLOWED = (
    'comparisons (== != < <= > >= in, not in), and/or/not, literals ("text", 3, True, None, '
    '[lists]) and field names (answer_type, lang, meta.subset, meta["key"])'
)
SHOWN_VALUES = 6  # values of removed records named in an "all N records are ..." message


def _contains(container: Any, item: Any) -> bool:
    try:
        return item in container
    except TypeError:  # None, a number...: contains nothing
        return False


@dataclass(frozen=True)
class Where:
    """A parsed, checked filter expression; call it on a record to get True/False."""

    text: str
    fields: tuple[tuple[str, ...], ...]
    tree: ast.expr = field(repr=False, compare=False)

    def __call__(self, record: Record) -> bool:
        return bool(_evaluate(self.tree, record))

    def values(self, record: Record) -> str:
        """The record's values of the fields the expression reads: ``meta.subset=CT``."""
        return ", ".join(f"{'.'.join(p)}={_show(_field(record, p))}" for p in self.fields)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def parse_where(text: str, *, label: str = "--where") -> Where:
    """Parse and check ``text``; :class:`ConfigError` naming the part that is not allowed."""
    source = text.strip()
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ConfigError(
            f"{label} {text!r}: not a valid expression ({exc.msg}{where}); write e.g. "
            f'meta.subset == "MRI" (quote text values)'
        ) from None
    names: list[tuple[str, ...]] = []
    _check(tree, source, label, names)
    return Where(text=source, fields=tuple(dict.fromkeys(names)), tree=tree)


def _refuse(node: ast.AST, source: str, label: str, why: str) -> ConfigError:
    part = ast.get_source_segment(source, node) or type(node).__name__
    return ConfigError(f"{label} {source!r}: {part!r} {why}; allowed: {_ALLOWED}")


def _check(node: ast.AST, source: str, label: str, names: list[tuple[str, ...]]) -> None:
    """Walk the tree, refusing any node outside the whitelist; collect the field names."""
    if isinstance(node, ast.BoolOp | ast.UnaryOp):
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not):
            if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
                return  # a negative number literal
            raise _refuse(node, source, label, "is not allowed (only 'not' applies to a value)")
        for child in node.values if isinstance(node, ast.BoolOp) else [node.operand]:
            _check(child, source, label, names)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise _refuse(node, source, label, f"uses {type(op).__name__}, not allowed")
        for child in (node.left, *node.comparators):
            _check(child, source, label, names)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise _refuse(node, source, label, "is not a text, number, True/False or None")
    elif isinstance(node, ast.List | ast.Tuple | ast.Set):
        for child in node.elts:
            if not isinstance(child, ast.Constant | ast.UnaryOp):
                raise _refuse(child, source, label, "is not a literal (lists hold literals)")
            _check(child, source, label, names)
    elif isinstance(node, ast.Name | ast.Attribute | ast.Subscript):
        names.append(tuple(_path(node, source, label)))
    else:
        raise _refuse(node, source, label, "is not allowed")


def _path(node: ast.AST, source: str, label: str) -> list[str]:
    """``meta.a["b c"]`` -> ``["meta", "a", "b c"]``; the first name must be a record field."""
    if isinstance(node, ast.Name):
        if node.id not in FIELDS:
            raise _refuse(
                node,
                source,
                label,
                f"is not a record field (fields: {', '.join(FIELDS)}; meta keys as meta.KEY)",
            )
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [*_path(node.value, source, label), node.attr]
    slice_ = getattr(node, "slice", None)
    if isinstance(slice_, ast.Constant) and isinstance(slice_.value, str):
        return [*_path(node.value, source, label), slice_.value]
    raise _refuse(node, source, label, 'is not a field name (use meta.KEY or meta["KEY"])')


def _field(record: Record, path: Sequence[str]) -> Any:
    """The value at ``path``; None wherever a key is missing or a value is not a mapping."""
    value: Any = getattr(record, path[0])
    for key in path[1:]:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _evaluate(node: ast.expr, record: Record) -> Any:
    if isinstance(node, ast.BoolOp):
        values = (_evaluate(v, record) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, record)
        return not value if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, record)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, record)
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError:  # "CT" < 3, None < 3: different kinds never compare true
                return False
            left = right
        return True
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [_evaluate(e, record) for e in node.elts]
    return _field(record, _path(node, "", ""))


def sample_records(records: Sequence[Record], n: int, seed: int) -> list[Record]:
    """``n`` records drawn with ``random.Random(seed)``, in input order; all when ``n`` >= len.

    The draw is made over the records sorted by id, so it does not depend on the file's order.
    """
    if n >= len(records):
        return list(records)
    by_id = sorted(range(len(records)), key=lambda i: (records[i].id, i))
    chosen = set(random.Random(seed).sample(by_id, n))
    return [record for i, record in enumerate(records) if i in chosen]


def removal_line(flag: str, removed: Counter, read: int, label: Callable[[str], str] = str) -> str:
    """What a filter removed, for people: ``all 451 records are split=train; --split test
    removed them``, or ``--split test removed 40 records (40 split=train)``."""
    total = sum(removed.values())
    items = sorted(removed.items())
    shown = [f"{n} {label(v)}" for v, n in items[:SHOWN_VALUES]]
    more = f", ... {len(items) - SHOWN_VALUES} more" if len(items) > SHOWN_VALUES else ""
    held = ", ".join(shown) + more
    if total != read:
        return f"{flag} removed {total} records ({held})"
    if len(items) == 1:
        held = label(items[0][0])
    every = f"all {total} records are" if total > 1 else "its one record is"
    return f"{every} {held}; {flag} removed {'them' if total > 1 else 'it'}"


@dataclass(frozen=True)
class Selection:
    """A ``where`` filter and/or a ``sample`` size with its ``seed``; both optional."""

    where: str | None = None
    sample: int | None = None
    seed: int = 0
    label: str = "--where"

    def __post_init__(self) -> None:
        if self.where is not None:
            parse_where(self.where, label=self.label)  # refuse a bad expression up front
        if self.sample is not None and (isinstance(self.sample, bool) or self.sample < 1):
            raise ConfigError(f"--sample must be a positive number of records, got {self.sample}")

    @property
    def active(self) -> bool:
        """Whether this selection leaves anything out at all."""
        return self.where is not None or self.sample is not None

    def where_flag(self, style: str = "--{name} {value}") -> str:
        """The filter as people wrote it: ``--where 'meta.subset == "MRI"'``."""
        return style.format(name="where", value=shlex.quote(self.where or ""))

    def sample_flag(self, style: str = "--{name} {value}") -> str:
        """``--sample 100 --seed 0``."""
        return " ".join(style.format(name=k, value=v) for k, v in self._sample_items())

    def _sample_items(self) -> list[tuple[str, Any]]:
        return [("sample", self.sample), ("seed", self.seed)]

    def apply(self, records: Sequence[Record]) -> Selected:
        """The selected records (input order kept) and what each step left out."""
        matched, removed = list(records), Counter()
        if self.where is not None:
            where = parse_where(self.where, label=self.label)
            matched = []
            for record in records:
                if where(record):
                    matched.append(record)
                else:
                    removed[where.values(record)] += 1
        kept = matched if self.sample is None else sample_records(matched, self.sample, self.seed)
        return Selected(kept, len(records), len(matched), removed, self)


@dataclass(frozen=True)
class Selected:
    """The outcome of :meth:`Selection.apply`: the records and the counts people are shown."""

    records: list[Record]
    read: int
    matched: int
    removed: Counter
    selection: Selection

    def summary(self, source: Any, style: str = "--{name} {value}") -> str:
        """``selected 30 of 600 records of FILE (--where ...: 300 match; --sample 30 --seed 0)``."""
        parts = []
        if self.selection.where is not None:
            parts.append(f"{self.selection.where_flag(style)}: {self.matched} match")
        if self.selection.sample is not None:
            parts.append(self.selection.sample_flag(style))
        return (
            f"selected {len(self.records)} of {self.read} records of {source} ({'; '.join(parts)})"
        )

    def failure(self, source: Any, style: str = "--{name} {value}") -> str | None:
        """Why nothing is left (one line naming the filter), or None when records are left."""
        if self.records:
            return None
        if self.read == 0:
            return f"{source}: no records found in it"
        line = removal_line(self.selection.where_flag(style), self.removed, self.read)
        return f"{source}: no records kept: {line}"

    def check(self, source: Any, style: str = "--{name} {value}") -> list[Record]:
        """The records; :class:`~medvl.errors.MedvlError` (exit 2) when none is left."""
        failure = self.failure(source, style)
        if failure:
            raise ConfigError(failure)
        return self.records
