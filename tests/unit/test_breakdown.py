"""Grouped means, bootstrap intervals, McNemar and the paired bootstrap, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medvl.errors import ConfigError
from medvl.eval.breakdown import (
    NO_VALUE,
    BootstrapSettings,
    aggregate,
    breakdown,
    estimate,
    estimate_columns,
    group_label,
    metric_names,
)
from medvl.eval.compare import (
    discordant_counts,
    exact_binomial_p,
    is_binary,
    mcnemar,
    paired_bootstrap,
)


def row(correct, kind="closed", lang="en", **meta):
    return {"id": "x", "kind": kind, "lang": lang, "correct": correct, "metrics": {}, "meta": meta}


def test_estimate_mean_is_hand_computed_and_ci_contains_it():
    values = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0]  # 6 of 10
    est = estimate(values, BootstrapSettings(resamples=1000, seed=0))
    assert est.n == 10 and est.mean == pytest.approx(0.6)
    assert est.ci_low <= est.mean <= est.ci_high
    assert 0.2 <= est.ci_low < 0.6 < est.ci_high <= 1.0


def test_bootstrap_is_deterministic_for_a_seed_and_changes_with_it():
    values = np.random.default_rng(1).random(50)
    a = estimate(values, BootstrapSettings(seed=3))
    b = estimate(values, BootstrapSettings(seed=3))
    c = estimate(values, BootstrapSettings(seed=4))
    assert a == b
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_bootstrap_interval_matches_the_normal_approximation():
    values = np.array([1.0] * 200 + [0.0] * 200)  # p = 0.5, n = 400: SE 0.025, 95% about 0.049
    est = estimate(values, BootstrapSettings(resamples=2000, seed=0))
    assert est.ci_high - est.ci_low == pytest.approx(2 * 1.96 * 0.025, rel=0.12)


def test_columns_resampled_together_match_one_at_a_time():
    matrix = np.random.default_rng(2).random((30, 3))
    matrix[:, 2] = 0.25  # a constant column gets a zero-width interval
    together = estimate_columns(matrix, BootstrapSettings(resamples=300, seed=7))
    alone = [estimate(matrix[:, j], BootstrapSettings(resamples=300, seed=7)) for j in range(3)]
    for a, b in zip(together, alone, strict=True):
        assert a.mean == pytest.approx(b.mean) and a.ci_low == pytest.approx(b.ci_low)
        assert a.ci_high == pytest.approx(b.ci_high)
    assert together[2].ci_low == together[2].ci_high == 0.25


def test_degenerate_inputs():
    assert estimate([]).mean is None and estimate([]).n == 0
    assert estimate([0.4]).to_dict() == {
        "n": 1,
        "clusters": 1,
        "mean": 0.4,
        "ci_low": 0.4,
        "ci_high": 0.4,
    }
    assert estimate([1, 1, 1]).ci_low == 1.0
    with pytest.raises(ConfigError):
        BootstrapSettings(resamples=0)


def test_breakdown_groups_by_field_and_meta_with_none_group():
    rows = [row(1, modality="CT"), row(0, modality="CT"), row(1, modality="MRI"), row(0)]
    rows[3]["lang"] = "zh"
    result = breakdown(rows, ["lang", "modality"], ["accuracy"], BootstrapSettings())
    assert result["lang"]["en"]["accuracy"]["mean"] == pytest.approx(2 / 3)
    assert result["lang"]["zh"]["accuracy"]["n"] == 1
    assert result["modality"]["CT"]["accuracy"]["mean"] == 0.5
    assert result["modality"][NO_VALUE]["accuracy"]["mean"] == 0.0
    assert group_label({"meta": {"organ": 3}}, "organ") == "3"


def test_metric_names_and_aggregate_unparsed_rate():
    rows = [
        {**row(1.0, kind="mcq"), "status": "ok", "extracted": "A", "rule": "phrase"},
        {**row(0.0, kind="mcq"), "status": "empty", "extracted": None, "rule": "unparsed"},
        {**row(0.0, kind="mcq"), "status": "missing", "extracted": None, "rule": None},
        {**row(None, kind="report"), "status": "ok", "metrics": {"bleu_4": 0.5}},
    ]
    assert metric_names(rows) == ["accuracy", "bleu_4"]
    result = aggregate(rows, ["kind"], BootstrapSettings())
    assert result["summary"]["accuracy"]["n"] == 3  # the missing prediction stays, scored 0
    assert result["summary"]["accuracy"]["mean"] == pytest.approx(1 / 3)
    assert result["unparsed"] == {"n": 2, "count": 1, "rate": 0.5}
    assert result["extraction_rules"] == {"phrase": 1, "unparsed": 1}


# McNemar: baseline right / run wrong = b, baseline wrong / run right = c.
def test_mcnemar_exact_on_a_hand_computed_table():
    # b=1, c=9, n=10: P(X<=1) = (1 + 10) / 1024; two-sided p = 22/1024
    result = mcnemar(1, 9)
    assert result.method == "exact"
    assert result.p_value == pytest.approx(22 / 1024)
    assert mcnemar(0, 0).p_value == 1.0
    assert mcnemar(5, 5).p_value == 1.0
    assert exact_binomial_p(0, 3) == pytest.approx(0.25)


def test_mcnemar_chi2_with_continuity_correction_on_a_hand_computed_table():
    # b=10, c=30: (|10-30| - 1)^2 / 40 = 9.025; p = erfc(sqrt(9.025 / 2))
    result = mcnemar(10, 30)
    assert result.method == "chi2_cc"
    assert result.statistic == pytest.approx(9.025)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)))
    assert result.p_value == pytest.approx(0.002663, abs=1e-5)


def test_mcnemar_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(1, 9), (3, 4), (7, 15), (2, 20)]:
        expected = stats.binomtest(min(b, c), b + c, 0.5).pvalue
        assert mcnemar(b, c, exact=True).p_value == pytest.approx(expected, rel=1e-9)
    for b, c in [(10, 30), (40, 25), (100, 130)]:
        statistic = (abs(b - c) - 1) ** 2 / (b + c)
        expected = stats.chi2.sf(statistic, df=1)
        assert mcnemar(b, c, exact=False).p_value == pytest.approx(expected, rel=1e-9)


def test_discordant_counts_and_binary_check():
    base = [1, 1, 0, 0, 1, 0]
    run = [1, 0, 1, 1, 1, 0]
    assert discordant_counts(base, run) == (1, 2)
    assert is_binary(base) and not is_binary([0.5, 1.0]) and not is_binary([])


def test_paired_bootstrap_identical_runs_give_p_one():
    values = np.random.default_rng(0).integers(0, 2, 200).astype(float)
    result = paired_bootstrap(values, values, BootstrapSettings(resamples=500))
    assert result.delta == 0.0 and result.p_value == 1.0
    assert result.ci_low == result.ci_high == 0.0


def test_paired_bootstrap_clearly_better_run_gives_small_p():
    rng = np.random.default_rng(0)
    base = (rng.random(300) < 0.5).astype(float)
    run = np.maximum(base, (rng.random(300) < 0.6).astype(float))  # never worse, often better
    result = paired_bootstrap(base, run, BootstrapSettings(resamples=1000, seed=1))
    assert result.delta > 0.2
    assert result.p_value == pytest.approx(1 / 1001)
    assert result.ci_low > 0
    again = paired_bootstrap(base, run, BootstrapSettings(resamples=1000, seed=1))
    assert again == result


def test_paired_bootstrap_noise_gives_large_p():
    rng = np.random.default_rng(5)
    base, run = rng.random(200), rng.random(200)
    result = paired_bootstrap(base, run, BootstrapSettings(resamples=1000))
    assert result.p_value > 0.05
    assert result.ci_low < 0 < result.ci_high or abs(result.delta) < 0.05
