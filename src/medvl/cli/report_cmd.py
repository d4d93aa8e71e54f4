"""``medvl report``: compare scored runs (paired tests), or build the model x benchmark table."""

from __future__ import annotations

import argparse
from typing import Any

from medvl.cli.arglists import comma_list


def run_report(args: argparse.Namespace) -> int:
    from medvl.eval.breakdown import BootstrapSettings
    from medvl.eval.report import build_report, write_report

    report = build_report(
        args.runs,
        names=comma_list(args.names) or None,
        baseline=args.baseline,
        settings=BootstrapSettings(
            resamples=args.resamples, seed=args.seed, cluster_by=args.cluster_by
        ),
    )
    paths = write_report(report, args.out)
    if report["mode"] == "benchmarks":
        _print_benchmark_table(report)
    for comparison in report["comparisons"] or [report]:
        _print_comparison(comparison, report["mode"] == "benchmarks")
    for warning in report["warnings"]:
        print(f"  warning: {warning}")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


def _print_benchmark_table(report: dict[str, Any]) -> None:
    """The model x benchmark table: headline mean [CI] · protocol per cell, and the average."""
    from medvl.eval.report import fmt_estimate

    table = report["table"]
    print(
        f"{len(table['models'])} model(s) x {len(table['benchmarks'])} benchmarks "
        "(headline mean [95% CI] · protocol):"
    )
    for model in table["models"]:
        print(f"  {model}")
        for bench in table["benchmarks"]:
            cell = table["cells"][model].get(bench)
            if cell:
                n = f"n={cell.get('n')} ({cell.get('clusters')} clusters)"
                print(
                    f"    {bench:<16} {cell['metric']} {fmt_estimate(cell)} · "
                    f"{cell['protocol']}  {n}"
                )
        avg = table["average"][model]
        if avg:
            print(f"    {'average':<16} {avg['metric']} {avg['mean']:.3f} · {avg['protocol']}")
    for note in table["notes"]:
        print(f"  note: {note}")
    for lines in table["published"]["lines"].values():
        for line in lines:
            print(f"  {line}")


def _print_comparison(comparison: dict[str, Any], named: bool) -> None:
    """Per run the headline estimate; per test of the headline its delta, raw and Holm p."""
    from medvl.eval.report import fmt_estimate, fmt_p

    runs = comparison["run_names"]
    where = f"{comparison['benchmark']}: " if named else ""
    if len(runs) > 1:
        print(
            f"{where}compared {len(runs)} runs on {comparison['pairing']['common_ids']} common "
            f"ids (baseline {comparison['baseline']})"
        )
    headline = comparison["headline"]
    if headline and (len(runs) > 1 or not named):
        for name in runs:
            est = comparison["overall"][headline].get(name)
            protocol = comparison["protocols"][name]
            print(f"  {name:<20} {headline} {fmt_estimate(est)} · {protocol}")
    for test in comparison["tests"]:
        if test["metric"] == headline:
            mc = test["mcnemar"]
            extra = f", McNemar p={fmt_p(mc['p_value'])}" if mc else ""
            interval = f"[{test['ci_low']:+.3f}, {test['ci_high']:+.3f}]"
            mark = " (significant)" if test["significant"] else ""
            print(
                f"  {test['run']} - {test['baseline']}: {test['delta']:+.3f} {interval}, "
                f"p={fmt_p(test['p_value'])}, Holm p={fmt_p(test['p_holm'])}{mark}{extra}, "
                f"{test['clusters']} clusters"
            )
