"""Validation speed: the header fast path against running the processor on every record.

    .venv/bin/python benchmarks/bench_validate.py [--records 20000] [--full-sample 400]

Builds 20,000 phantom-size records, each with its own image path (hard links to 600 phantom
PNGs, so every path is opened and its header read), and validates them with
``medvl.data.validate.validate_jsonl`` (schema, ids, roles, image headers, exact token length
with image tokens from the image size). The baseline computes the same lengths the slow way:
decode each image and run the real processor (``processor(text, images)``), as a training data
pipeline would; it runs on a sample (it is slow) and its rate is compared. Both sides must agree
on every token count of the sample.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def build(work: Path, n: int) -> tuple[Path, Path]:
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.phantom import generate_phantom
    from medvl.models.tiny import build_tiny_model

    source = work / "phantom"
    generate_phantom(source, n=600, seed=0)
    base = [
        r for split in ("train", "val", "test") for r in read_records(source / f"{split}.jsonl")
    ]
    links = work / "links"
    links.mkdir()
    records = []
    for i in range(n):
        record = base[i % len(base)]
        target = links / f"{i:06d}.png"
        os.link(source / record.images[0], target)
        records.append(replace(record, id=f"r{i:06d}", images=[f"links/{target.name}"]))
    data = work / "records.jsonl"
    write_records(data, records)
    model = build_tiny_model("qwen2_vl", work / "model")
    return data, model


def full_path_lengths(data: Path, model: Path, limit: int) -> tuple[dict[str, int], float]:
    from transformers import AutoProcessor

    from medvl.data.jsonl import read_records
    from medvl.data.medimage import load_image
    from medvl.data.tokens import TokenCounter

    processor = AutoProcessor.from_pretrained(model)
    counter = TokenCounter(processor)
    records = read_records(data)[:limit]
    started = time.perf_counter()
    lengths = {}
    for record in records:
        images = [load_image(p) for p in record.image_paths(data.parent)]
        encoded = processor(text=[counter.text(record)], images=images)
        lengths[record.id] = len(encoded["input_ids"][0])
    return lengths, len(records) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--full-sample", type=int, default=400)
    args = parser.parse_args()
    from medvl.data.tokens import TokenCounter
    from medvl.data.validate import validate_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        data, model = build(Path(tmp), args.records)
        counter = TokenCounter.from_pretrained(model)
        started = time.perf_counter()
        result = validate_jsonl(data, counter=counter, max_length=4096)
        fast_seconds = time.perf_counter() - started
        assert len(result.valid) == args.records, result.report()["problems_by_code"]
        full, full_rate = full_path_lengths(data, model, args.full_sample)
        agree = sum(result.token_lengths[i] == n for i, n in full.items())
    fast_rate = args.records / fast_seconds
    print(
        f"fast path (headers + token arithmetic): {args.records} records in {fast_seconds:.1f} s"
        f" = {fast_rate:,.0f} records/s"
    )
    print(
        f"full processor path (decode + processor): {full_rate:,.1f} records/s "
        f"(on {len(full)} records)"
    )
    print(
        f"ratio fast/full: {fast_rate / full_rate:.1f}x; token counts agree on "
        f"{agree}/{len(full)} records"
    )


if __name__ == "__main__":
    main()
