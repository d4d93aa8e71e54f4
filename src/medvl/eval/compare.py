"""Paired significance tests between two runs scored on the same records.

Both tests pair records by id, so each record is compared with itself:

- **Paired bootstrap** (any per-record metric): resample the clusters of the common records
  (images or patients, :mod:`medvl.eval.clusters`; a pair is one record, scored by both runs)
  with replacement (``default_rng(seed)``) and recompute
  ``delta = sum(run - baseline) / count`` over the records of the drawn clusters on each
  resample (the ratio estimator of :mod:`medvl.eval.breakdown`).
  The interval is the percentile interval of those deltas; the two-sided p-value is the share of
  resampled deltas at least as far from the observed delta as the observed delta is from 0
  (the deltas re-centred on the null of no difference), ``(1 + count) / (1 + resamples)``.
  Identical runs give p = 1; a run that is better on many records gives p near ``1/resamples``.
- **McNemar** (0/1 metrics such as accuracy): only the discordant pairs count, ``b`` = right in
  the baseline and wrong in the run, ``c`` = the reverse. With ``b + c < 25`` the exact two-sided
  binomial test, ``p = min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``;
  otherwise the chi-square statistic with continuity correction,
  ``(max(|b - c| - 1, 0))^2 / (b + c)``, 1 degree of freedom. ``b + c == 0`` gives p = 1.
  McNemar treats records as independent, so with several questions per image it is optimistic;
  the report marks significance on the cluster bootstrap.
- **Holm** (:func:`holm`): the step-down correction of several p-values for the family-wise
  error rate. With p sorted ascending, ``p_holm(i) = max over j <= i of min(1, (m - j + 1) p(j))``
  (1-based ``i``, ``m`` tests); valid under any dependence between the tests, which metrics
  scored on the same answers have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medvl.eval.breakdown import BootstrapSettings, bootstrap_means, percentile_interval

#: Below this many discordant pairs McNemar uses the exact binomial test.
EXACT_BELOW = 25


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on the discordant pairs ``b`` (baseline right only) and ``c`` (run right
    only); ``method`` is ``exact`` or ``chi2_cc`` (chi-square with continuity correction)."""

    b: int
    c: int
    statistic: float
    p_value: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedBootstrapResult:
    """Mean difference ``run - baseline`` over ``n`` paired records, its interval and p-value."""

    n: int
    clusters: int
    mean_baseline: float | None
    mean_run: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    resamples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def exact_binomial_p(k: int, n: int) -> float:
    """Two-sided exact p-value of ``k`` successes in ``n`` fair coin flips (``k <= n/2``)."""
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def mcnemar(b: int, c: int, *, exact: bool | None = None) -> McNemarResult:
    """McNemar's test on discordant counts; ``exact=None`` picks exact when ``b + c < 25``."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0, "exact")
    if exact is None:
        exact = n < EXACT_BELOW
    if exact:
        return McNemarResult(b, c, float(min(b, c)), exact_binomial_p(min(b, c), n), "exact")
    statistic = max(abs(b - c) - 1, 0) ** 2 / n
    return McNemarResult(b, c, statistic, math.erfc(math.sqrt(statistic / 2.0)), "chi2_cc")


def discordant_counts(baseline: Sequence[float], run: Sequence[float]) -> tuple[int, int]:
    """``(b, c)``: records right (1) in the baseline only, and right in the run only."""
    base, other = _paired_arrays(baseline, run)
    return int(np.sum((base == 1) & (other == 0))), int(np.sum((base == 0) & (other == 1)))


def is_binary(values: Sequence[float]) -> bool:
    """True when every value is 0 or 1 (an accuracy-type metric, fit for McNemar)."""
    array = np.asarray(values, dtype=float)
    return bool(array.size) and bool(np.all((array == 0) | (array == 1)))


def paired_bootstrap(
    baseline: Sequence[float],
    run: Sequence[float],
    settings: BootstrapSettings | None = None,
    clusters: Sequence[Any] | None = None,
) -> PairedBootstrapResult:
    """Paired (cluster) bootstrap of the mean difference ``run - baseline`` (see the module
    docstring); ``clusters`` labels each pair (None: every pair its own cluster)."""
    settings = settings or BootstrapSettings()
    base, other = _paired_arrays(baseline, run)
    n = len(base)
    if n == 0:
        return PairedBootstrapResult(
            0, 0, None, None, None, None, None, None, settings.resamples, settings.seed
        )
    if clusters is not None and len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster labels for {n} pairs")
    diffs = other - base
    delta = float(diffs.mean())
    k = len(set(clusters)) if clusters is not None else n
    deltas = bootstrap_means(diffs, settings, clusters)
    low, high = percentile_interval(deltas, settings.confidence)
    extreme = int(np.sum(np.abs(deltas - delta) >= abs(delta) - 1e-12))
    p_value = (1 + extreme) / (1 + settings.resamples)
    return PairedBootstrapResult(
        n,
        k,
        float(base.mean()),
        float(other.mean()),
        delta,
        low,
        high,
        p_value,
        settings.resamples,
        settings.seed,
    )


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the input order (None stays None and is not counted)."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def _paired_arrays(
    baseline: Sequence[float], run: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    base = np.asarray(baseline, dtype=float)
    other = np.asarray(run, dtype=float)
    if base.shape != other.shape:
        raise ValueError(f"paired values differ in length: {base.shape} vs {other.shape}")
    return base, other
