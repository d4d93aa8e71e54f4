"""Evaluation records/s through ``run_benchmark``, processed-image cache off against on.

An evaluation usually runs the same images more than once: several prompts, or a base model and
its fine-tuned versions (one family, one image processor). Both sides run the same three passes
over the same 200 phantom records (``phantom`` benchmark, greedy), each pass a fresh run folder
so no prediction is reused:

1. model A, prompt ``as_is``;   2. model A, prompt ``short_answer``;   3. model B, ``as_is``

(A and B: two "small" random Qwen2-VL of different seeds). The baseline prepares every image
from its file on every pass (``ProcessedImageCache(0)``); medvl's default keeps the processed
pixels per file (:mod:`medvl.infer.image_cache`), so passes 2 and 3 skip decoding and resizing.
Sides alternate in ``--rounds`` rounds (each with a cold cache); prints the median records/s
per pass and overall, the ratio, and checks the predictions are identical.

    .venv/bin/python benchmarks/bench_eval.py [--n 200] [--image-size 0] [--rounds 2]

Builds everything offline in a temp folder; model loading is outside the timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PASSES = (("A", "as_is"), ("A", "short_answer"), ("B", "as_is"))


def build(work: Path, n: int, image_size: int) -> tuple[dict[str, Path], Path]:
    """Two small random models of one family and one JSONL of ``n`` phantom test records."""
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.phantom import generate_phantom
    from medvl.models.tiny import build_tiny_model

    models = {
        name: build_tiny_model("qwen2_vl", work / f"model-{name}", seed=seed, size="small")
        for name, seed in (("A", 0), ("B", 1))
    }
    summary = generate_phantom(work / "phantom", n=n, seed=0)
    if image_size:
        _upscale(work / "phantom" / "images", image_size)
    records = [
        dataclasses.replace(r, split="test")
        for split in ("train", "val", "test")
        for r in read_records(summary.split_paths[split])
    ]
    data = work / "phantom" / "bench.jsonl"
    write_records(data, records)
    return models, data


def _upscale(folder: Path, side: int) -> None:
    """Rewrite every phantom PNG with its longer side ``side`` px (closer to real file sizes:
    the phantom generator writes 80-224 px images)."""
    from PIL import Image

    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            scale = side / max(image.size)
            size = (round(image.width * scale), round(image.height * scale))
            resized = image.resize(size, Image.Resampling.BICUBIC)
        resized.save(path)


def run_side(engines: dict, data: Path, out: Path, args, label: str) -> tuple[list, dict]:
    """The three passes; returns per-pass seconds and every pass's predictions."""
    from medvl.eval.breakdown import BootstrapSettings
    from medvl.eval.runner import RunConfig, run_benchmark
    from medvl.infer.engine import GenerationSettings
    from medvl.infer.predict import read_prediction_rows

    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    seconds, predictions = [], {}
    for number, (model, prompt) in enumerate(PASSES, 1):
        folder = out / f"{label}-{number}"
        config = RunConfig(
            bench="phantom",
            data=data,
            out=folder,
            prompt=prompt,
            settings=settings,
            bootstrap=BootstrapSettings(resamples=1),
        )
        start = time.perf_counter()
        run_benchmark(config, engines[model])
        seconds.append(time.perf_counter() - start)
        rows = read_prediction_rows(folder / "predictions.jsonl")
        predictions[number] = {row["id"]: row["prediction"] for row in rows}
    return seconds, predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="phantom records")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="image threads")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (medians)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=0,
        help="rewrite the images this many px on their long side",
    )
    args = parser.parse_args(argv)
    logging.getLogger("medvl").setLevel(logging.WARNING)

    from medvl.infer.hf_engine import HFEngine
    from medvl.infer.image_cache import DEFAULT_CACHE_MB, ProcessedImageCache
    from medvl.models.loading import load_model

    with tempfile.TemporaryDirectory(prefix="medvl-bench-eval-") as tmp:
        work = Path(tmp)
        model_dirs, data = build(work, args.n, args.image_size)
        loaded = {name: load_model(path) for name, path in model_dirs.items()}

        def engines(side_cache):
            return {
                name: HFEngine(
                    model,
                    batch_size=args.batch_size,
                    num_workers=args.workers,
                    image_cache=side_cache,
                )
                for name, model in loaded.items()
            }

        warm = data.with_name("warm.jsonl")
        warm.write_text("".join(data.read_text().splitlines(True)[:8]))
        run_side(engines(ProcessedImageCache(0)), warm, work / "warm", args, "warm")
        runs: dict[str, list] = {"cache off": [], "cache on": []}
        for round_ in range(args.rounds):  # alternate which side goes first
            order = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
            for label in order:
                size = 0 if label == "cache off" else DEFAULT_CACHE_MB * 1024 * 1024
                cache = ProcessedImageCache(size)
                side = f"{label.replace(' ', '-')}-{round_}"
                seconds, predicted = run_side(engines(cache), data, work / side, args, side)
                runs[label].append((seconds, predicted, cache.stats()))

    n = args.n
    params = sum(p.numel() for p in loaded["A"].model.parameters())
    print(
        f"model: qwen2_vl 'small' random x2 (seeds 0, 1), {params:,} parameters each; {n} records, "
        f"images {args.image_size or 'as generated, 80-224'} px, batch {args.batch_size}, "
        f"max_new_tokens={args.max_new_tokens}, torch threads={_threads()}"
    )
    header = "  ".join(f"pass {i} ({m}, {p})" for i, (m, p) in enumerate(PASSES, 1))
    print(f"{'side':<10} {header}  all passes")
    medians = {
        label: [statistics.median(r[0][i] for r in rounds) for i in range(len(PASSES))]
        for label, rounds in runs.items()
    }
    for label, seconds in medians.items():
        rates = "  ".join(
            f"{n / s:>{len(h)}.2f}" for s, h in zip(seconds, header.split("  "), strict=True)
        )
        print(f"{label:<10} {rates}  {3 * n / sum(seconds):10.2f} records/s")
    off, on = medians["cache off"], medians["cache on"]
    reference = runs["cache off"][0][1]
    same = sum(r[1] == reference for rounds in runs.values() for r in rounds)
    total = sum(len(rounds) for rounds in runs.values())
    print(
        f"ratio on/off (medians of {args.rounds} rounds): all passes {sum(off) / sum(on):.2f}x, "
        f"passes 2-3 {sum(off[1:]) / sum(on[1:]):.2f}x; cache per round "
        f"{runs['cache on'][0][2]}; identical predictions: {same}/{total} runs"
    )
    return 0 if same == total else 1


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
