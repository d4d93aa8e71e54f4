"""medvl SFT versus TRL SFTTrainer's standard VLM path: samples/s and final loss, side by side.

    .venv/bin/python benchmarks/bench_sft.py [--samples 96] [--size small] [--rounds 1]

Both sides train the same random-weight Qwen2-VL (the real Qwen2-VL-2B config and 151,936-token
vocabulary from ../shared/fixtures, shrunk in depth/width) on the same phantom records (a mix of
one-word answers and report-length findings), full fine-tuning, fp32, the same batch size, seed,
learning rate and sample count, and the same objective (loss on assistant tokens only: TRL runs
with ``assistant_only_loss=True``). Each side runs in a fresh process (TRL patches the model it is
given). medvl packs each batch into balanced rows; TRL pads.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/child.py: this script runs from its folder
from child import run_child, sft_side_metrics

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/qwen2-vl-2b-instruct"


def prepare(work: Path, samples: int, size: str) -> tuple[Path, Path]:
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.phantom import generate_phantom
    from medvl.models.tiny import build_from_real_config

    data = work / "phantom"
    generate_phantom(data, n=max(60, int(samples * 1.6)), seed=0)
    records = read_records(data / "train.jsonl")[:samples]
    write_records(data / "bench.jsonl", records)
    model = build_from_real_config(FIXTURE, work / "model", size=size, seed=0)
    return model, data / "bench.jsonl"


def run_medvl(model: Path, data: Path, out: Path, batch: int, lr: float) -> dict:
    extra = ("packing=true", "group_by_length=true")
    return sft_side_metrics(model, data, out, batch=batch, lr=lr, extra=extra)


def run_trl(model: Path, data: Path, out: Path, batch: int, lr: float) -> dict:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    from medvl.data.formats.writers import to_trl
    from medvl.data.jsonl import read_records

    records = read_records(data)
    dataset = to_trl(records, data.parent).select_columns(["messages", "images"])
    processor = AutoProcessor.from_pretrained(model)
    net = AutoModelForImageTextToText.from_pretrained(model, dtype=torch.float32)
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        num_train_epochs=1,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=42,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        max_length=None,
        assistant_only_loss=True,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=net, args=args, train_dataset=dataset, processing_class=processor)
    output = trainer.train()
    return {
        "train_runtime": output.metrics["train_runtime"],
        "loss": output.metrics["train_loss"],
        "samples": len(records),
    }


def side(name: str, model: Path, data: Path, batch: int, lr: float) -> dict:
    """Run one side in a fresh interpreter and return its JSON result."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            __file__,
            "--side",
            name,
            "--model",
            str(model),
            "--data",
            str(data),
            "--out",
            out,
            "--batch",
            str(batch),
            "--lr",
            str(lr),
        ]
        return run_child(name, cmd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--side", choices=["medvl", "trl"])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.side:
        run = run_medvl if args.side == "medvl" else run_trl
        print(json.dumps(run(args.model, args.data, args.out, args.batch, args.lr)))
        return
    if not FIXTURE.is_dir():
        raise SystemExit(f"needs the real Qwen2-VL tokenizer/config at {FIXTURE}")
    with tempfile.TemporaryDirectory() as work:
        model, data = prepare(Path(work), args.samples, args.size)
        results: dict[str, list[dict]] = {"medvl": [], "trl": []}
        for _ in range(args.rounds):  # interleave sides: the machine's speed drifts
            for name in ("trl", "medvl"):
                started = time.perf_counter()
                result = side(name, model, data, args.batch, args.lr)
                result["wall"] = time.perf_counter() - started
                results[name].append(result)
    report(results, args)


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    def median(values: list[float]) -> float:
        values = sorted(values)
        return values[len(values) // 2]

    rate = {k: median([r["samples"] / r["train_runtime"] for r in v]) for k, v in results.items()}
    loss = {k: median([r["loss"] for r in v]) for k, v in results.items()}
    print(f"samples {args.samples}, batch {args.batch}, size {args.size}, rounds {args.rounds}")
    for name in ("trl", "medvl"):
        print(f"  {name:<6} {rate[name]:7.2f} samples/s   final train loss {loss[name]:.4f}")
    print(f"  ratio medvl/trl: {rate['medvl'] / rate['trl']:.2f}x")


if __name__ == "__main__":
    main()
