"""Per-category deltas against the baseline, each with its paired cluster-bootstrap interval.

The overall test of a report says whether a run beats the baseline on the whole benchmark; a
reader also wants to know where: on CT or on MRI, on open or on closed questions. For every
breakdown key with at least two groups, the records common to the runs are grouped by the
**baseline's** row (the same record falls in the same group for every run), and
:func:`medvl.eval.compare.paired_bootstrap` compares each run with the baseline on the headline
metric within each group, resampling the same clusters as the overall test (images or
patients, :func:`medvl.eval.clusters.row_clusters` of the baseline's rows). The intervals are
per group and not corrected for the number of groups: they locate a difference, they do not
test one; a group with few records has a wide interval (the report flags n < 10).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medvl.eval.breakdown import BootstrapSettings, group_label, row_value
from medvl.eval.clusters import row_clusters
from medvl.eval.compare import paired_bootstrap

Rows = Mapping[str, Mapping[str, Any]]
#: The fields of a group's result kept in the report.
FIELDS = ("n", "clusters", "mean_baseline", "mean_run", "delta", "ci_low", "ci_high", "p_value")


def group_deltas(
    base: Rows,
    runs: Mapping[str, Rows],
    common: Sequence[str],
    metric: str | None,
    keys: Sequence[str],
    settings: BootstrapSettings,
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``{key: {group: {run: result}}}``: ``run - baseline`` on ``metric`` over the ``common``
    ids of each group; ``base`` and each of ``runs`` map id -> scores row (``runs`` without the
    baseline). Keys with fewer than two groups, and groups where no pair has the metric, are
    left out."""
    if metric is None or not runs or not common:
        return {}
    labels = dict(zip(common, row_clusters([base[i] for i in common]), strict=True))
    result: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for key in keys:
        groups: dict[str, list[str]] = {}
        for record_id in common:
            groups.setdefault(group_label(base[record_id], key), []).append(record_id)
        if len(groups) < 2:
            continue
        found = {
            group: _group(base, runs, ids, metric, labels if settings.clustered else None, settings)
            for group, ids in sorted(groups.items())
        }
        found = {g: per_run for g, per_run in found.items() if per_run}
        if found:
            result[key] = found
    return result


def _group(
    base: Rows,
    runs: Mapping[str, Rows],
    ids: Sequence[str],
    metric: str,
    labels: Mapping[str, Any] | None,
    settings: BootstrapSettings,
) -> dict[str, dict[str, Any]]:
    """Each run's paired result over ``ids`` (pairs where both values exist)."""
    out = {}
    for name, rows in runs.items():
        pairs = [(row_value(base[i], metric), row_value(rows[i], metric), i) for i in ids]
        pairs = [p for p in pairs if p[0] is not None and p[1] is not None]
        if not pairs:
            continue
        clusters = [labels[p[2]] for p in pairs] if labels is not None else None
        test = paired_bootstrap([p[0] for p in pairs], [p[1] for p in pairs], settings, clusters)
        found = test.to_dict()
        out[name] = {k: found[k] for k in FIELDS}
    return out
