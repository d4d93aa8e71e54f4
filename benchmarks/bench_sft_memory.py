"""SFT peak memory and speed: the full-logits loss against logits only where the loss is, chunked.

    .venv/bin/python benchmarks/bench_sft_memory.py [--samples 32] [--size tiny] [--rounds 1]
        [--no-packing] [--loss-average token]

Both sides run medvl SFT (``loss_impl=full`` then ``loss_impl=chunked``) on the same random-weight
Qwen2-VL built from the real Qwen2-VL-2B config and its 151,936-token vocabulary
(``../shared/fixtures/qwen2-vl-2b-instruct``, depth/width shrunk; without the fixture, the tiny
test tokenizer's model with its vocabulary enlarged to the same size), the same phantom records,
full fine-tuning in fp32, one epoch. Each side runs in a fresh process; it reports its peak
resident memory (``resource.getrusage``: the high-water mark of the whole process) and that peak
above the process's memory just before training (imports done, model not yet loaded), plus
samples/s and the final loss (equal on both sides: the chunked loss is exact).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/child.py: this script runs from its folder
from child import run_child, sft_side_metrics

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/qwen2-vl-2b-instruct"
REAL_VOCAB = 151_936
SIDES = ("full", "chunked")


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_model(work: Path, size: str) -> Path:
    """The real-config shrunk model, or the tiny test model with a 151,936-token output layer."""
    from medvl.models.tiny import build_from_real_config, build_tiny_model

    if FIXTURE.is_dir():
        return build_from_real_config(FIXTURE, work / "model", size=size, seed=0)
    import torch
    from transformers import AutoModelForImageTextToText

    out = build_tiny_model("qwen2_vl", work / "model", seed=0, size=size)
    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    model.resize_token_embeddings(REAL_VOCAB)  # extra rows are never input tokens
    model.save_pretrained(out)
    return out


def prepare(work: Path, samples: int, size: str) -> tuple[Path, Path]:
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.phantom import generate_phantom

    data = work / "phantom"
    generate_phantom(data, n=max(60, int(samples * 1.6)), seed=0)
    write_records(data / "bench.jsonl", read_records(data / "train.jsonl")[:samples])
    return build_model(work, size), data / "bench.jsonl"


def run_side(impl: str, model: Path, data: Path, out: Path, args: argparse.Namespace) -> dict:
    extra = (
        f"packing={str(not args.no_packing).lower()}",
        f"loss_average={args.loss_average}",
        f"loss_impl={impl}",
    )
    before = peak_rss_mb()
    result = sft_side_metrics(model, data, out, batch=args.batch, lr=1e-4, extra=extra)
    peak = peak_rss_mb()
    return {
        **result,
        "peak_rss_mb": peak,
        "peak_above_start_mb": peak - before,
    }


def side(impl: str, model: Path, data: Path, args: argparse.Namespace) -> dict:
    """Run one side in a fresh interpreter and return its JSON result."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, __file__, "--side", impl, "--model", str(model)]
        cmd += ["--data", str(data), "--out", out, "--batch", str(args.batch)]
        cmd += ["--loss-average", args.loss_average] + (["--no-packing"] if args.no_packing else [])
        return run_child(impl, cmd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-packing", action="store_true")
    parser.add_argument("--loss-average", default="token", choices=["token", "sample", "square"])
    parser.add_argument("--side", choices=SIDES)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.model, args.data, args.out, args)))
        return
    with tempfile.TemporaryDirectory() as work:
        model, data = prepare(Path(work), args.samples, args.size)
        results: dict[str, list[dict]] = {name: [] for name in SIDES}
        for _ in range(args.rounds):  # interleave sides: the machine's speed drifts
            for name in SIDES:
                started = time.perf_counter()
                result = side(name, model, data, args)
                result["wall"] = time.perf_counter() - started
                results[name].append(result)
    report(results, args)


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    def stat(name: str, key: str) -> float:
        return median([r[key] for r in results[name]])

    rate = {k: median([r["samples"] / r["train_runtime"] for r in v]) for k, v in results.items()}
    vocab = "real 151,936" if FIXTURE.is_dir() else f"tiny enlarged to {REAL_VOCAB:,}"
    packing = "off" if args.no_packing else "on"
    print(
        f"samples {args.samples}, batch {args.batch}, size {args.size}, vocab {vocab}, "
        f"packing {packing}, loss_average {args.loss_average}, rounds {args.rounds}"
    )
    for name in SIDES:
        peak, above = stat(name, "peak_rss_mb"), stat(name, "peak_above_start_mb")
        print(
            f"  {name:<8} {rate[name]:6.2f} samples/s   peak RSS {peak:7.0f} MiB"
            f"   (+{above:6.0f} MiB in training)   final loss {stat(name, 'loss'):.4f}"
        )
    rss = stat("chunked", "peak_rss_mb") / stat("full", "peak_rss_mb")
    training = stat("chunked", "peak_above_start_mb") / stat("full", "peak_above_start_mb")
    print(
        f"  ratios chunked/full: samples/s {rate['chunked'] / rate['full']:.2f}x, "
        f"peak RSS {rss:.2f}x, training memory {training:.2f}x"
    )


if __name__ == "__main__":
    main()
