"""Published scores on medical VLM benchmarks, per model and scoring protocol.

The same model on the same benchmark gets very different numbers depending on who scored its
answers (MedGemma-4B on VQA-RAD: 49.9 token F1 on its model card, 72.5 in the Lingshu/MedEvalKit
table, 78.55 under MedVLThinker's multiple-choice protocol). So every published number here
carries its *protocol*, and a medvl result is set only beside numbers scored the same way.

The table ships as ``published.yaml`` next to this module: one block per published table (a
source, protocol and metric; one row per model, one value per benchmark), expanded here into
one :class:`PublishedScore` per value and validated on load (unknown protocol, metric or
benchmark, a duplicated key, a value outside 0-100: one :class:`~medvl.errors.ConfigError`
naming the file, table and row).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from medvl.errors import ConfigError, MedvlError, UnknownNameError

SCHEMA = "medvl.published/1"
RESOURCE = "published.yaml"
#: The protocol a run is scored under when its metrics.json names none.
DEFAULT_PROTOCOL = "medvl"

#: Scoring protocols a published number can be under (name -> what it means).
PROTOCOLS: Mapping[str, str] = MappingProxyType(
    {
        "medvl": "medvl's own strict scoring (the default of 'medvl eval')",
        "medevalkit": "Lingshu's MedEvalKit: closed answers by rule, open answers by an LLM judge",
        "vlmevalkit": "VLMEvalKit: rule-based option matching, an LLM extractor when rules fail",
        "lmms-eval": "lmms-eval's task rules (e.g. SLAKE: exact match after normalisation)",
        "llava-med": "LLaVA-Med run_eval.py: closed accuracy and open token recall",
        "medvlm-r1": "MedVLM-R1: the letter inside <answer> tags, else wrong",
        "huatuogpt-vision": "HuatuoGPT-Vision's scorer.py (match_choice3) on multiple choice",
        "medvlthinker": "MedVLThinker: every question converted to multiple choice",
        "model-card": "the number a model card reports (e.g. MedGemma's token F1)",
    }
)

#: What a published value measures (name -> meaning); values are in percent.
METRICS: Mapping[str, str] = MappingProxyType(
    {
        "accuracy": "share of questions judged correct, as the protocol judges them",
        "token_f1": "token-level F1 between reply and reference",
    }
)


@dataclass(frozen=True)
class PublishedBenchmark:
    """A benchmark the table names: its key, title and medvl benchmark (None: no reader)."""

    name: str
    title: str
    medvl_benchmark: str | None


@dataclass(frozen=True)
class PublishedScore:
    """One published number: ``value`` percent of ``metric`` for ``model`` on ``benchmark``.

    ``source`` is a citation without URL ("arXiv 2506.07044 (Lingshu), Table 6"),
    ``source_notes`` says how that source scored, ``notes`` is about this row only.
    """

    benchmark: str
    medvl_benchmark: str | None
    model: str
    protocol: str
    metric: str
    value: float
    source: str
    split: str | None = None
    notes: str = ""
    source_notes: str = ""
    shown: str = ""  # the value as the source prints it ("49.30"); empty: formatted from value

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise UnknownNameError("protocol", self.protocol, list(PROTOCOLS))
        if self.metric not in METRICS:
            raise UnknownNameError("metric", self.metric, list(METRICS))
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise ConfigError(f"value {self.value!r} must be a number (percent, as published)")
        if not 0 <= self.value <= 100:
            raise ConfigError(f"value {self.value} is not a percentage between 0 and 100")
        if not self.model.strip() or not self.source.strip():
            raise ConfigError("model and source must not be empty")

    @property
    def percent(self) -> str:
        """The value as published: ``49.30``, not ``49.3``."""
        return self.shown or f"{self.value:g}"

    def short(self, metric: bool = False) -> str:
        """``Lingshu-7B 67.9%`` (with ``metric``: ``... 67.9% accuracy``), then ``[split]``."""
        what = f" {self.metric}" if metric else ""
        split = f" [{self.split}]" if self.split else ""
        return f"{self.model} {self.percent}%{what}{split}"


@dataclass(frozen=True)
class PublishedTable:
    """The whole table: benchmarks by key (in file order) and every score (in file order)."""

    benchmarks: Mapping[str, PublishedBenchmark]
    scores: tuple[PublishedScore, ...]
    path: str


class _Number(float):
    """A YAML float that remembers how it was written, so "49.30" is shown as published."""

    text: str


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key twice in one mapping (PyYAML keeps the last silently)
    and keeps each float's text (:class:`_Number`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_number(self, node: yaml.ScalarNode) -> float:
        number = _Number(self.construct_yaml_float(node))
        number.text = str(node.value)
        return number


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _UniqueKeyLoader.construct_number)


def read_published(path: Path | str | None = None) -> PublishedTable:
    """Read and validate a published-scores YAML (default: the one shipped with medvl)."""
    if path is None:
        return _shipped()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; pass a published-scores YAML")
    return _parse(path.read_text(encoding="utf-8"), str(path))


@lru_cache(maxsize=1)
def _shipped() -> PublishedTable:
    text = resources.files("medvl.eval").joinpath(RESOURCE).read_text(encoding="utf-8")
    return _parse(text, f"medvl/eval/{RESOURCE}")


def load_published(path: Path | str | None = None) -> tuple[PublishedScore, ...]:
    """Every published score, in file order (default: the table shipped with medvl)."""
    return read_published(path).scores


def _parse(text: str, where: str) -> PublishedTable:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ConfigError(f"{where}: expected a mapping with 'schema: {SCHEMA}' at the top")
    benchmarks = _benchmarks(data.get("benchmarks"), where)
    tables = data.get("tables")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{where}: 'tables' must be a non-empty list of published tables")
    scores: list[PublishedScore] = []
    for index, block in enumerate(tables):
        scores += _table_scores(block, benchmarks, f"{where}: tables[{index}]")
    _check_unique(scores, where)
    return PublishedTable(MappingProxyType(benchmarks), tuple(scores), where)


def _benchmarks(raw: Any, where: str) -> dict[str, PublishedBenchmark]:
    """The ``benchmarks:`` section; a medvl name must be a real medvl benchmark and the key."""
    from medvl.eval.benchmarks import BENCHMARKS

    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: 'benchmarks' must map names to {{title, medvl_benchmark}}")
    out: dict[str, PublishedBenchmark] = {}
    for name, spec in raw.items():
        at = f"{where}: benchmarks.{name}"
        if not isinstance(spec, dict) or "medvl_benchmark" not in spec or not spec.get("title"):
            raise ConfigError(f"{at}: give 'title' and 'medvl_benchmark' (null if medvl has none)")
        medvl = spec["medvl_benchmark"]
        if medvl is not None and medvl not in BENCHMARKS:
            raise ConfigError(
                f"{at}: medvl_benchmark {medvl!r} is not a medvl benchmark; use one of "
                f"{', '.join(BENCHMARKS)} or null"
            )
        if medvl is not None and medvl != name:
            raise ConfigError(f"{at}: name the entry after its medvl benchmark {medvl!r}")
        if medvl is None and name in BENCHMARKS:
            raise ConfigError(f"{at}: {name!r} is a medvl benchmark; set medvl_benchmark: {name}")
        out[str(name)] = PublishedBenchmark(str(name), str(spec["title"]), medvl)
    return out


def _table_scores(
    block: Any, benchmarks: Mapping[str, PublishedBenchmark], at: str
) -> list[PublishedScore]:
    """One table block expanded into one score per (row, benchmark)."""
    if not isinstance(block, dict):
        raise ConfigError(f"{at}: must be a mapping with source, protocol, metric and rows")
    missing = [k for k in ("source", "protocol", "metric", "rows") if not block.get(k)]
    if missing:
        raise ConfigError(f"{at}: missing {', '.join(missing)}")
    at = f"{at} ({block['source']})"
    splits = block.get("splits") or {}
    unknown = [b for b in splits if b not in benchmarks]
    if unknown:
        raise ConfigError(f"{at}: splits name unknown benchmark(s) {', '.join(map(str, unknown))}")
    scores: list[PublishedScore] = []
    for row in block["rows"]:
        if not isinstance(row, dict) or not row.get("model") or not row.get("scores"):
            raise ConfigError(f"{at}: each row needs 'model' and 'scores' (benchmark: value)")
        for bench, value in row["scores"].items():
            where = f"{at}, row {row['model']!r}, {bench}"
            if bench not in benchmarks:
                raise ConfigError(
                    f"{where}: unknown benchmark {bench!r}; add it under 'benchmarks:' or use "
                    f"one of {', '.join(benchmarks)}"
                )
            try:
                scores.append(
                    PublishedScore(
                        benchmark=bench,
                        medvl_benchmark=benchmarks[bench].medvl_benchmark,
                        model=str(row["model"]),
                        protocol=str(block["protocol"]),
                        metric=str(block["metric"]),
                        value=float(value) if isinstance(value, _Number) else value,
                        source=str(block["source"]),
                        split=splits.get(bench),
                        notes=str(row.get("notes") or ""),
                        source_notes=str(block.get("notes") or ""),
                        shown=getattr(value, "text", ""),
                    )
                )
            except MedvlError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    return scores


def _check_unique(scores: list[PublishedScore], where: str) -> None:
    seen: set[tuple] = set()
    for s in scores:
        key = (s.benchmark, s.split, s.model, s.protocol, s.metric, s.source)
        if key in seen:
            raise ConfigError(f"{where}: {s.model} on {s.benchmark} is listed twice in {s.source}")
        seen.add(key)


def check_benchmark(benchmark: str, table: PublishedTable | None = None) -> None:
    """Raise :class:`UnknownNameError` unless ``benchmark`` is in the table or is medvl's."""
    from medvl.eval.benchmarks import BENCHMARKS

    table = table or read_published()
    if benchmark not in table.benchmarks and benchmark not in BENCHMARKS:
        raise UnknownNameError("benchmark", benchmark, sorted({*table.benchmarks, *BENCHMARKS}))


def published_for(
    benchmark: str | None = None,
    protocol: str | None = None,
    *,
    table: PublishedTable | None = None,
) -> list[PublishedScore]:
    """Published scores on ``benchmark`` (None: all) under ``protocol`` (None: any).

    An unknown benchmark or protocol raises :class:`UnknownNameError`; a medvl benchmark with
    no published numbers gives ``[]``.
    """
    table = table or read_published()
    if benchmark is not None:
        check_benchmark(benchmark, table)
    if protocol is not None and protocol not in PROTOCOLS:
        raise UnknownNameError("protocol", protocol, list(PROTOCOLS))
    return [
        s
        for s in table.scores
        if (benchmark is None or s.benchmark == benchmark)
        and (protocol is None or s.protocol == protocol)
    ]


def run_protocol(settings: Mapping[str, Any] | None) -> str:
    """The protocol a run was scored under: ``settings["protocol"]["name"]`` of its
    metrics.json (a plain string is accepted too), else :data:`DEFAULT_PROTOCOL`."""
    spec = (settings or {}).get("protocol")
    if isinstance(spec, Mapping):
        spec = spec.get("name")
    return str(spec) if spec else DEFAULT_PROTOCOL


def published_lines(
    benchmark: str, protocol: str = DEFAULT_PROTOCOL, *, table: PublishedTable | None = None
) -> list[str]:
    """Lines to print beside a result on ``benchmark`` scored under ``protocol``.

    The same-protocol numbers come first, one per line with their source (comparable); the
    rest follow under a separate "not comparable" heading, one line per protocol and metric.
    ``[]`` when nothing is published for the benchmark. A protocol the table does not know
    just has no comparable numbers (the run was still scored).
    """
    table = table or read_published()
    scores = published_for(benchmark, table=table)
    if not scores:
        return []
    same = [s for s in scores if s.protocol == protocol]
    lines = [f"published on {benchmark} under {protocol} (same protocol, comparable):"]
    lines += [f"  {s.short(metric=True)}, {s.source}" for s in same] or ["  none"]
    groups: dict[tuple[str, str], list[PublishedScore]] = {}
    for s in scores:
        if s.protocol != protocol:
            groups.setdefault((s.protocol, s.metric), []).append(s)
    if groups:
        lines.append(f"published on {benchmark} under other protocols (not comparable):")
        for (name, metric), group in groups.items():
            lines.append(f"  {name} {metric}: {', '.join(s.short() for s in group)}")
        lines.append(f"  sources: medvl eval benches --published --bench {benchmark}")
    return lines
