"""Cluster bootstrap: checked against an exact enumeration, the record bootstrap and by hand."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction

import numpy as np
import pytest

from medvl.data.jsonl import write_records
from medvl.data.record import Record
from medvl.eval.breakdown import (
    BootstrapSettings,
    _cluster_means,
    _record_means,
    bootstrap_means,
    estimate,
)
from medvl.eval.clusters import cluster_ids, patient_id, record_cluster
from medvl.eval.compare import holm, paired_bootstrap
from medvl.eval.scoring import Metric
from medvl.eval.scoring_run import score_files

# Three images: A has two questions (both right), B one (wrong), C three (one right).
VALUES = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
CLUSTERS = ["A", "A", "B", "C", "C", "C"]


def exact_distribution() -> dict[Fraction, Fraction]:
    """All 27 equally likely ordered draws of 3 of the 3 clusters: sum / count of each draw."""
    sums = {"A": 2, "B": 0, "C": 1}
    sizes = {"A": 2, "B": 1, "C": 3}
    dist: dict[Fraction, Fraction] = {}
    for draw in itertools.product("ABC", repeat=3):
        value = Fraction(sum(sums[c] for c in draw), sum(sizes[c] for c in draw))
        dist[value] = dist.get(value, Fraction(0)) + Fraction(1, 27)
    return dist


def test_worked_example_by_hand():
    dist = exact_distribution()
    # (A,A,B) in 3 orders: (2+2+0)/(2+2+1) = 4/5
    assert dist[Fraction(4, 5)] == Fraction(3, 27)
    # 1/2 from (A,B,B) x3, (A,C,C) x3 and (A,B,C) x6: 2/4, 4/8, 3/6
    assert dist[Fraction(1, 2)] == Fraction(12, 27)
    # the extremes (B,B,B) = 0 and (A,A,A) = 1 each have probability 1/27 > 2.5%
    assert dist[Fraction(0)] == dist[Fraction(1)] == Fraction(1, 27)
    assert sum(dist.values()) == 1
    est = estimate(VALUES, BootstrapSettings(resamples=2000, seed=0), CLUSTERS)
    assert (est.n, est.clusters, est.mean) == (6, 3, 0.5)
    assert (est.ci_low, est.ci_high) == (0.0, 1.0)  # 2.5% / 97.5% quantiles of the exact law


def test_cluster_bootstrap_matches_the_exact_resampling_distribution():
    dist = exact_distribution()
    draws = bootstrap_means(np.array(VALUES), BootstrapSettings(resamples=200_000), CLUSTERS)
    for value, prob in dist.items():
        share = np.mean(np.isclose(draws, float(value)))
        assert share == pytest.approx(float(prob), abs=0.004), value
    mean = sum(v * p for v, p in dist.items())
    variance = float(sum((v - mean) ** 2 * p for v, p in dist.items()))
    assert draws.var() == pytest.approx(variance, rel=0.02)
    # quantiles: walk the exact CDF (no atom sits on a 2.5% / 50% / 97.5% boundary here)
    cdf, acc = [], Fraction(0)
    for value in sorted(dist):
        acc += dist[value]
        cdf.append((value, acc))
    for q in (0.025, 0.5, 0.975):
        exact = next(float(v) for v, c in cdf if c > q)
        assert np.quantile(draws, q) == pytest.approx(exact)


def test_every_record_its_own_cluster_is_the_record_bootstrap_draw_for_draw():
    values = np.random.default_rng(3).random((57, 2))
    settings = BootstrapSettings(resamples=777, seed=11)
    plain = bootstrap_means(values, settings)
    assert np.array_equal(bootstrap_means(values, settings, [f"r{i}" for i in range(57)]), plain)
    # the general cluster code on singletons: the same draws, sums in another order
    general = _cluster_means(values, np.arange(57), 57, settings)
    assert np.allclose(general, _record_means(values, settings), rtol=0, atol=1e-12)
    alone = estimate(values[:, 0], settings, list(range(57)))
    assert alone == estimate(values[:, 0], settings) and alone.clusters == 57


def test_clusters_widen_the_interval_when_questions_share_an_image():
    rng = np.random.default_rng(0)
    per_image = (rng.random(100) < 0.6).astype(float)
    values = np.repeat(per_image, 4)  # 4 questions per image, all answered alike
    labels = np.repeat(np.arange(100), 4).tolist()
    settings = BootstrapSettings(resamples=4000, seed=1)
    clustered = estimate(values, settings, labels)
    records = estimate(values, settings)
    width = clustered.ci_high - clustered.ci_low
    assert clustered.mean == records.mean and clustered.clusters == 100
    assert width / (records.ci_high - records.ci_low) == pytest.approx(2.0, rel=0.15)  # sqrt(4)


def test_cluster_ids_are_first_seen_order():
    assert cluster_ids(["b", "a", "b", "c"]).tolist() == [0, 1, 0, 2]


def make_record(record_id, images=(), meta=None):
    return Record(
        id=record_id,
        dataset="vqa_rad",
        split="test",
        lang="en",
        images=list(images),
        messages=[{"role": "user", "content": "<image>\nq?" if images else "q?"}],
        answer="yes",
        answer_type="closed",
        meta=meta or {},
    )


def test_record_cluster_rules(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "q1.png").write_bytes(b"same bytes")
    (folder / "q2.png").write_bytes(b"same bytes")  # one image saved once per question
    (folder / "q3.png").write_bytes(b"other bytes")
    q1, q2, q3 = (
        record_cluster(make_record(n, [f"images/{n}.png"]), tmp_path) for n in ["q1", "q2", "q3"]
    )
    assert q1 == q2 != q3 and q1.startswith("image:sha256:")
    gone = record_cluster(make_record("x", ["images/../images/gone.png"]), tmp_path)
    assert gone == f"path:{(folder / 'gone.png').as_posix()}"
    assert record_cluster(make_record("t")) == "record:t"
    patient = make_record("p", ["images/q3.png"], {"PatientID": " 17 "})
    assert record_cluster(patient, tmp_path) == "patient:17"
    assert patient_id({"subject_id": "s9", "organ": "lung"}) == "s9"
    assert patient_id({"Study-ID": "", "StudyInstanceUID": "1.2.3"}) == "1.2.3"


def test_score_files_writes_clusters_and_counts_them(tmp_path):
    (tmp_path / "img").mkdir()
    for name, content in (("a1", b"A"), ("a2", b"A"), ("b1", b"B")):
        (tmp_path / "img" / f"{name}.jpg").write_bytes(content)
    records = [make_record(f"r{i}", [f"img/{n}.jpg"]) for i, n in enumerate(["a1", "a2", "b1"])]
    records.append(make_record("r3"))
    write_records(tmp_path / "data.jsonl", records)
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"id": r.id, "prediction": "yes"}) + "\n" for r in records))
    table = {"closed_accuracy": Metric("closed_accuracy", "closed", lambda p, r, *, lang: 1.0)}
    run = score_files(tmp_path / "data.jsonl", pred, tmp_path / "out", table=table, extract=None)
    rows = [json.loads(x) for x in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert rows[0]["cluster"] == rows[1]["cluster"] != rows[2]["cluster"]
    assert rows[3]["cluster"] == "record:r3"
    summary = run.metrics["summary"]["accuracy"]
    assert (summary["n"], summary["clusters"]) == (4, 3)
    assert run.metrics["settings"]["bootstrap"]["cluster_by"] == "patient/image"


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.20 -> 4*0.01, 3*0.03, max(2*0.04, 0.09), max(0.20, 0.09)
    assert holm([0.01, 0.04, 0.03, 0.20]) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([]) == []


def test_holm_agrees_with_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = [0.001, 0.2, 0.013, 0.04, 0.5, 0.011]
    expected = multitest.multipletests(p, method="holm")[1]
    assert holm(p) == pytest.approx(list(expected))


def test_paired_bootstrap_resamples_clusters():
    base = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    run = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    settings = BootstrapSettings(resamples=500, seed=2)
    plain = paired_bootstrap(base, run, settings)
    same = paired_bootstrap(base, run, settings, [f"r{i}" for i in range(6)])
    assert same == plain and plain.clusters == 6
    clustered = paired_bootstrap(base, run, settings, CLUSTERS)
    assert clustered.clusters == 3 and clustered.delta == plain.delta == 0.5
    # diffs per cluster: A (0, 0), B (1), C (0, 1, 1); drawing A three times gives delta 0
    assert clustered.ci_low == 0.0
