"""Batched ``medvl predict`` against the per-record loop the seed repositories use.

Same model, same 200 phantom records, greedy decoding: the baseline calls ``generate`` once per
record (batch size 1, as LLaVA-Med's and Qwen2-VL-Finetune's eval scripts do); medvl's
predict batches length-sorted, left-padded records with images prepared in parallel threads.
Prints records/s for both, the ratio, and checks the outputs are identical.

    .venv/bin/python benchmarks/bench_predict.py [--n 200] [--batch-size 16] [--max-new-tokens 32]

Builds everything offline (a "small" random Qwen2-VL and the phantom data) in a temp folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build(workdir: Path, family: str, n: int) -> tuple[Path, Path]:
    """A small random model and one JSONL file holding all ``n`` phantom records."""
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.phantom import generate_phantom
    from medvl.models.tiny import build_tiny_model

    model = build_tiny_model(family, workdir / "model", seed=0, size="small")
    summary = generate_phantom(workdir / "phantom", n=n, seed=0)
    records = [
        r for split in ("train", "val", "test") for r in read_records(summary.split_paths[split])
    ]
    data = workdir / "phantom" / "all.jsonl"
    write_records(data, records)
    return model, data


def seed_loop(loaded, data: Path, max_new_tokens: int) -> tuple[list[str], float]:
    """One ``generate`` call per record, batch size 1: the seed repositories' eval loop."""
    import torch

    from medvl.data.jsonl import read_records
    from medvl.data.medimage import load_image
    from medvl.data.tokens import chat_messages

    model, processor = loaded.model, loaded.processor
    outputs = []
    start = time.perf_counter()
    for record in read_records(data):
        images = [load_image(p) for p in record.image_paths(data.parent)]
        prompt = processor.apply_chat_template(
            chat_messages(record, with_answer=False), tokenize=False, add_generation_prompt=True
        )
        inputs = processor(text=[prompt], images=images or None, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1] :]
        outputs.append(processor.tokenizer.decode(new, skip_special_tokens=True))
    return outputs, time.perf_counter() - start


def medvl_predict(loaded, data: Path, out: Path, args) -> tuple[dict[str, str], float]:
    from medvl.infer.engine import GenerationSettings
    from medvl.infer.hf_engine import HFEngine
    from medvl.infer.predict import predict_file, read_prediction_rows

    engine = HFEngine(loaded, batch_size=args.batch_size, num_workers=args.workers)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    start = time.perf_counter()
    predict_file(engine, data, out, settings, overwrite=True)
    seconds = time.perf_counter() - start
    return {row["id"]: row["prediction"] for row in read_prediction_rows(out)}, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="phantom records")
    parser.add_argument("--family", default="qwen2_vl")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="image threads")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args(argv)

    from medvl.data.jsonl import read_records
    from medvl.models.loading import load_model

    with tempfile.TemporaryDirectory(prefix="medvl-bench-") as tmp:
        model_dir, data = build(Path(tmp), args.family, args.n)
        loaded = load_model(model_dir)
        ids = [r.id for r in read_records(data)]
        seed_loop(loaded, data.with_name("test.jsonl"), 2)  # warm-up (kernels, allocator)
        baseline, base_s = seed_loop(loaded, data, args.max_new_tokens)
        predicted, medvl_s = medvl_predict(loaded, data, Path(tmp) / "pred.jsonl", args)
    same = sum(predicted.get(i) == text for i, text in zip(ids, baseline, strict=True))
    base_rate, medvl_rate = len(ids) / base_s, len(ids) / medvl_s
    params = sum(p.numel() for p in loaded.model.parameters())
    print(
        f"model: {args.family} 'small' random, {params:,} parameters; {len(ids)} records, "
        f"max_new_tokens={args.max_new_tokens}, torch threads={_threads()}"
    )
    label = f"medvl predict (batch {args.batch_size})"
    print(f"{'seed loop (batch 1)':<26} {base_rate:7.2f} records/s  ({base_s:.1f} s)")
    print(f"{label:<26} {medvl_rate:7.2f} records/s  ({medvl_s:.1f} s)")
    print(f"ratio: {medvl_rate / base_rate:.2f}x; identical greedy outputs: {same}/{len(ids)}")
    return 0 if same == len(ids) else 1


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
