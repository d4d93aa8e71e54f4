"""Means per metric, overall and per group, each with a cluster-bootstrap confidence interval.

The input is the rows of a ``scores.jsonl`` (one dict per data record, see
:mod:`medvl.eval.scoring`): ``correct`` (0/1 or null), ``metrics`` (name -> value), the record's
``kind``, ``answer_type``, ``question_type``, ``lang``, ``dataset``, ``cluster`` and the
requested ``meta`` keys. :func:`metrics_json` assembles a run's ``metrics.json`` from them; the
breakdown keys each benchmark reports are in :data:`medvl.eval.benchmarks.BENCHMARKS`.

Method: a metric's estimate over a group is the plain mean of its per-record values over every
record of the group where the metric applies (missing and empty predictions included, scored 0),
so wrong answers never leave the denominator.

The 95% interval is a percentile **cluster bootstrap**. SLAKE and VQA-RAD ask several questions
per image, so questions are not independent draws; the unit that is resampled is the cluster
(patient when known, else image, else the record itself: :mod:`medvl.eval.clusters`). Each of
``resamples`` resamples draws as many clusters as there are, with replacement (numpy,
``default_rng(seed)``), and its estimate is the **ratio estimator**
``sum(values in the drawn clusters) / count(records in the drawn clusters)``: the same quantity
as the point estimate (a mean over questions, which is what benchmarks publish), with the
variance of the cluster sampling. The mean of cluster means would change the quantity (each image
weighing the same) and is not used. The 2.5th and 97.5th percentiles of the resample estimates
are the interval. With every record its own cluster this is exactly the record bootstrap, draw
for draw. The seed is fixed, so the same scores always give the same intervals. Each estimate
reports ``n`` (records) and ``clusters``. Corpus-level metrics (BLEU over the corpus, CIDEr-D)
have no interval: they are not means of per-record values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medvl.errors import ConfigError
from medvl.eval.clusters import CLUSTER_ORDER, cluster_ids, row_clusters
from medvl.provenance import SCORING_PACKAGES, versions

#: The headline metric: 0/1 correctness per record (MCQ letter, closed answer, open exact match).
ACCURACY = "accuracy"
#: Record fields that can always be grouped by; any other key is looked up in ``meta``.
RECORD_KEYS = ("kind", "answer_type", "question_type", "lang", "dataset")
DEFAULT_KEYS = ("kind", "answer_type", "question_type", "lang")
NO_VALUE = "(none)"
_CELLS_PER_CHUNK = 4_000_000  # bounds memory of the index matrix (32 MB of int64)
#: ``cluster_by`` values: the rows' clusters (patient, else image, else record), or records.
CLUSTER_BY = ("patient/image", "record")


@dataclass(frozen=True)
class BootstrapSettings:
    """How confidence intervals are drawn; stored in ``metrics.json`` so a run can be redone."""

    resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95
    cluster_by: str = CLUSTER_BY[0]

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ConfigError(f"bootstrap resamples must be >= 1, got {self.resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"confidence must be between 0 and 1, got {self.confidence}")
        if self.cluster_by not in CLUSTER_BY:
            raise ConfigError(
                f"cluster_by must be one of {', '.join(CLUSTER_BY)}, got {self.cluster_by!r}"
            )

    @property
    def clustered(self) -> bool:
        return self.cluster_by != "record"

    def to_dict(self) -> dict[str, Any]:
        method = "percentile cluster bootstrap of the mean (ratio estimator)"
        order = CLUSTER_ORDER if self.clustered else "every record its own cluster"
        return {"method": method, **asdict(self), "cluster_order": order}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BootstrapSettings:
        """Back from :meth:`to_dict` (older files without ``cluster_by`` resample records)."""
        return cls(
            data["resamples"], data["seed"], data["confidence"], data.get("cluster_by", "record")
        )


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` records in ``clusters`` clusters with its bootstrap interval; ``None``
    fields when ``n == 0``."""

    n: int
    clusters: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_means(
    values: np.ndarray, settings: BootstrapSettings, clusters: Sequence[Any] | None = None
) -> np.ndarray:
    """The estimates of ``settings.resamples`` cluster resamples of ``values``.

    ``values`` is ``(n,)`` or ``(n, m)`` (m metrics over the same records, resampled together:
    the result is ``(resamples,)`` or ``(resamples, m)``). ``clusters`` labels each record (None:
    every record its own cluster); each resample's estimate is the ratio estimator of the module
    docstring. The draws depend only on the seed and the number of clusters, so a column gets the
    same interval alone or beside others.
    """
    n = len(values)
    columns = values.reshape(n, -1).astype(float)
    ids = cluster_ids(clusters) if clusters is not None else np.arange(n)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} cluster labels for {n} values")
    k = int(ids.max()) + 1 if n else 0
    means = (
        _record_means(columns, settings) if k == n else _cluster_means(columns, ids, k, settings)
    )
    return means.reshape(settings.resamples, *values.shape[1:])


def _record_means(columns: np.ndarray, settings: BootstrapSettings) -> np.ndarray:
    """Every record its own cluster: mean of n records drawn with replacement, in chunks of
    (rows, n) index matrices that keep memory bounded for large n."""
    n = len(columns)
    rng = np.random.default_rng(settings.seed)
    rows_per_chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    means = np.empty((settings.resamples, columns.shape[1]), dtype=float)
    for start in range(0, settings.resamples, rows_per_chunk):
        stop = min(settings.resamples, start + rows_per_chunk)
        index = rng.integers(0, n, size=(stop - start, n))
        for j in range(columns.shape[1]):
            means[start:stop, j] = columns[:, j][index].mean(axis=1)
    return means


def _cluster_means(
    columns: np.ndarray, ids: np.ndarray, k: int, settings: BootstrapSettings
) -> np.ndarray:
    """Draw k of the k clusters with replacement (the same index draws as :func:`_record_means`
    with n = k); how often each cluster was drawn (``np.bincount`` per resample) weighs the
    clusters' value sums and sizes: ``estimate = counts @ sums / counts @ sizes``."""
    sums = np.stack([np.bincount(ids, weights=c, minlength=k) for c in columns.T], axis=1)
    sizes = np.bincount(ids, minlength=k).astype(float)
    rng = np.random.default_rng(settings.seed)
    rows_per_chunk = max(1, _CELLS_PER_CHUNK // k)
    means = np.empty((settings.resamples, columns.shape[1]), dtype=float)
    for start in range(0, settings.resamples, rows_per_chunk):
        stop = min(settings.resamples, start + rows_per_chunk)
        index = rng.integers(0, k, size=(stop - start, k))
        offsets = (index + k * np.arange(stop - start)[:, None]).ravel()
        counts = np.bincount(offsets, minlength=(stop - start) * k).reshape(stop - start, k)
        means[start:stop] = (counts @ sums) / (counts @ sizes)[:, None]
    return means


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of ``samples`` (e.g. 2.5th-97.5th percentiles)."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(low), float(high)


def estimate(
    values: Sequence[float],
    settings: BootstrapSettings | None = None,
    clusters: Sequence[Any] | None = None,
) -> Estimate:
    """Mean of ``values`` with its (cluster) percentile-bootstrap interval."""
    matrix = np.asarray(values, dtype=float).reshape(-1, 1)
    return estimate_columns(matrix, settings, clusters)[0]


def estimate_columns(
    matrix: np.ndarray,
    settings: BootstrapSettings | None = None,
    clusters: Sequence[Any] | None = None,
) -> list[Estimate]:
    """:func:`estimate` of each column of an ``(n, m)`` matrix, with one shared set of draws;
    ``clusters`` labels the rows (None: each row its own cluster)."""
    settings = settings or BootstrapSettings()
    n, m = matrix.shape
    if n == 0:
        return [Estimate(0, 0, None, None, None)] * m
    k = len(set(clusters)) if clusters is not None else n
    means = [matrix[:, j].mean() for j in range(m)]  # per column: same sum as estimate()
    varying = [j for j in range(m) if k > 1 and np.any(matrix[:, j] != matrix[0, j])]
    intervals = {j: (float(means[j]), float(means[j])) for j in range(m)}
    if varying:
        samples = bootstrap_means(matrix[:, varying], settings, clusters)
        for i, j in enumerate(varying):
            intervals[j] = percentile_interval(samples[:, i], settings.confidence)
    return [Estimate(n, k, float(means[j]), *intervals[j]) for j in range(m)]


def row_value(row: Mapping[str, Any], metric: str) -> float | None:
    """The value of ``metric`` for one scores row (``accuracy`` is the row's ``correct``)."""
    if metric == ACCURACY:
        return row.get("correct")
    return (row.get("metrics") or {}).get(metric)


def group_label(row: Mapping[str, Any], key: str) -> str:
    """The group a row falls in for breakdown ``key`` (a record field or a ``meta`` key)."""
    value = row.get(key) if key in RECORD_KEYS else (row.get("meta") or {}).get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return NO_VALUE
    return value if isinstance(value, str) else str(value)


def metric_names(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """``accuracy`` (when any row has a correctness) and every per-record metric, in first-seen
    order."""
    names: dict[str, None] = {}
    for row in rows:
        if row.get("correct") is not None:
            names.setdefault(ACCURACY, None)
        for name in row.get("metrics") or {}:
            names.setdefault(name, None)
    ordered = [ACCURACY] if ACCURACY in names else []
    return ordered + [name for name in names if name != ACCURACY]


def summarize(
    rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], settings: BootstrapSettings
) -> dict[str, dict[str, Any]]:
    """``{metric: estimate}`` over the rows where each metric applies.

    Metrics defined on the same rows (all open metrics, say) are resampled together; the rows'
    ``cluster`` labels are the resampling units unless ``settings.cluster_by`` is ``record``.
    """
    labels = row_clusters(rows) if settings.clustered else list(range(len(rows)))
    columns = {m: [row_value(row, m) for row in rows] for m in metrics}
    by_rows: dict[tuple[int, ...], list[str]] = {}
    for metric, column in columns.items():
        present = tuple(i for i, value in enumerate(column) if value is not None)
        by_rows.setdefault(present, []).append(metric)
    summary = {}
    for present, names in by_rows.items():
        matrix = np.array([[columns[m][i] for m in names] for i in present], dtype=float)
        matrix = matrix.reshape(len(present), len(names))
        found = estimate_columns(matrix, settings, [labels[i] for i in present])
        summary.update({name: est.to_dict() for name, est in zip(names, found, strict=True)})
    return {metric: summary[metric] for metric in metrics}


def breakdown(
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    metrics: Sequence[str],
    settings: BootstrapSettings,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{key: {group: {metric: estimate}}}``; groups sorted, metrics with no value left out."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for key in keys:
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows:
            groups.setdefault(group_label(row, key), []).append(row)
        result[key] = {}
        for label in sorted(groups):
            cells = summarize(groups[label], metrics, settings)
            result[key][label] = {m: e for m, e in cells.items() if e["n"] > 0}
    return result


def aggregate(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str], settings: BootstrapSettings
) -> dict[str, Any]:
    """Summary, breakdowns by ``keys``, and the MCQ unparsed rate and extraction rules.

    The unparsed rate counts MCQ records that have a prediction (possibly empty) from which no
    letter could be extracted; records with no prediction are counted as missing instead.
    """
    names = metric_names(rows)
    mcq = [r for r in rows if r.get("kind") == "mcq" and r.get("status") != "missing"]
    unparsed = sum(r.get("extracted") is None for r in mcq)
    rate = unparsed / len(mcq) if mcq else None
    rules: dict[str, int] = {}
    for row in mcq:
        rules[str(row.get("rule"))] = rules.get(str(row.get("rule")), 0) + 1
    return {
        "summary": summarize(rows, names, settings),
        "breakdowns": breakdown(rows, keys, names, settings),
        "unparsed": {"n": len(mcq), "count": unparsed, "rate": rate},
        "extraction_rules": dict(sorted(rules.items())),
    }


def metrics_json(
    rows: Sequence[Mapping[str, Any]],
    corpus: Mapping[str, Any],
    predictions: Any,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The ``metrics.json`` body: aggregates, counts, problems, settings and versions.

    ``predictions`` is a :class:`medvl.eval.scoring.Predictions` (``texts``, ``n_lines``,
    ``duplicate_ids``); ``settings["breakdown"]`` and ``settings["bootstrap"]`` drive the
    aggregates.
    """
    boot = BootstrapSettings.from_dict(settings["bootstrap"])
    ids = {s: [r["id"] for r in rows if r["status"] == s] for s in ("missing", "empty", "error")}
    known = {r["id"] for r in rows}
    unknown = [i for i in predictions.texts if i not in known]
    kinds = {k: sum(r["kind"] == k for r in rows) for k in ("mcq", "closed", "open", "report")}
    counts = {
        "records": len(rows),
        "prediction_lines": predictions.n_lines,
        "with_prediction": len(rows) - len(ids["missing"]),
        "missing": len(ids["missing"]),
        "empty": len(ids["empty"]) + len(ids["error"]),
        "errors": len(ids["error"]),
        "duplicate": len(predictions.duplicate_ids),
        "unknown": len(unknown),
        "by_kind": {k: v for k, v in kinds.items() if v},
    }
    problems = {
        "missing_ids": ids["missing"],
        "empty_ids": ids["empty"] + ids["error"],
        "error_ids": ids["error"],
        "duplicate_ids": sorted(set(predictions.duplicate_ids)),
        "unknown_ids": unknown,
    }
    return {
        "schema": "medvl.metrics/1",
        "n_records": len(rows),
        **aggregate(rows, settings["breakdown"], boot),
        "corpus": dict(corpus),
        "counts": counts,
        "problems": problems,
        "settings": settings,
        "versions": versions(SCORING_PACKAGES),
    }
