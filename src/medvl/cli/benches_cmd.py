"""``medvl eval benches`` (benchmarks, and published scores with ``--published``) and
``medvl eval protocols`` (the scoring protocols ``--protocol`` picks from)."""

from __future__ import annotations

import argparse


def add_protocol_arg(parser) -> None:
    parser.add_argument(
        "--protocol",
        default="medvl",
        help="whose rules judge the answers: medvl (default, strict), lmms-eval, vlmevalkit, "
        "medevalkit, llava-med, medvlm-r1, huatuogpt-vision (see 'medvl eval protocols')",
    )


def run_protocols(args: argparse.Namespace) -> int:
    from medvl.eval.protocols import list_protocols

    del args
    for protocol in list_protocols():
        print(f"{protocol.name}: {protocol.title}")
        print(f"  follows: {protocol.follows}")
        print(f"  covers:  {', '.join(protocol.benchmarks)}")
        print(f"  notes:   {protocol.notes}")
    print("use one: medvl eval score|run ... --protocol NAME (metrics.json records it)")
    return 0


def run_benches(args: argparse.Namespace) -> int:
    from medvl.eval.benchmarks import BENCHMARKS

    if args.published or args.bench or args.protocol:
        return _print_published(args.bench, args.protocol)
    print(f"{'benchmark':<14} {'reads':<32} {'kinds':<19} {'prompt':<13} max tokens")
    for bench in BENCHMARKS.values():
        print(
            f"{bench.name:<14} {bench.reader.label():<32} {bench.kinds:<19} {bench.prompt:<13} "
            f"{bench.max_new_tokens}"
        )
        metrics = ", ".join(bench.metrics) if bench.metrics else "the scorer's default set"
        print(f"{'':<14} metrics:   {metrics}")
        print(f"{'':<14} breakdown: {', '.join(bench.breakdown) or '-'}")
        print(f"{'':<14} reports:   {bench.official}")
    print("run one: medvl eval run --bench NAME --data PATH --model MODEL [--out DIR]")
    print("or score predictions you have: medvl eval score --bench NAME --data D --pred P --out O")
    return 0


def _print_published(bench: str | None, protocol: str | None) -> int:
    """Published scores grouped by benchmark, then each source once with how it scored."""
    import textwrap

    from medvl.eval.published import published_for, read_published

    table = read_published()
    scores = published_for(bench, protocol, table=table)
    if not scores:
        where = " ".join(f"{k} {v}" for k, v in (("on", bench), ("under", protocol)) if v)
        print(f"no published scores {where} (all: medvl eval benches --published)")
        return 0
    sources = list(dict.fromkeys(s.source for s in scores))
    print("published scores, in percent as published; a result compares only with numbers")
    print("under its own protocol (medvl eval run prints them next to its result)")
    for name, info in table.benchmarks.items():
        rows = [s for s in scores if s.benchmark == name]
        if not rows:
            continue
        medvl = f"medvl benchmark {name}" if info.medvl_benchmark else "no medvl reader"
        print(f"{name}: {info.title} ({medvl})")
        print(f"  {'model':<22} {'protocol':<17} {'metric':<9} {'split':<6} {'value':>6}  source")
        for s in rows:
            print(
                f"  {s.model:<22} {s.protocol:<17} {s.metric:<9} {s.split or '-':<6} "
                f"{s.percent:>6}  [{sources.index(s.source) + 1}]"
            )
            if s.notes:
                print(f"  {'':<22} note: {s.notes}")
    print("sources:")
    for number, source in enumerate(sources, 1):
        print(f"  [{number}] {source}")
        notes = next(s.source_notes for s in scores if s.source == source)
        for line in textwrap.wrap(notes, width=94):
            print(f"      {line}")
    return 0
