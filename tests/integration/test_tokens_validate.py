"""Token counting matches the real processor exactly; validation refuses bad records by code."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from medvl.data.jsonl import read_records
from medvl.data.record import Record
from medvl.data.tokens import TokenCounter
from medvl.data.validate import validate_jsonl

SIZES = [(56, 56), (100, 60), (333, 222), (640, 480), (30, 900)]


def record_with(n_images: int, answer: str = "yes") -> Record:
    placeholders = "<image>\n" * n_images
    return Record(
        id="r",
        dataset="t",
        split="test",
        lang="en",
        images=[f"{i}.png" for i in range(n_images)],
        messages=[
            {"role": "system", "content": "You are a radiologist."},
            {"role": "user", "content": f"{placeholders}Is there a nodule? 有结节吗？"},
            {"role": "assistant", "content": answer},
        ],
    )


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_count_equals_processor_output(family, tiny_model_dirs):
    counter = TokenCounter.from_pretrained(tiny_model_dirs(family))
    for n_images in (1, 2):
        record = record_with(n_images, answer="Two small nodules in the left lung.")
        for size in SIZES:
            images = [Image.new("RGB", size, "gray") for _ in range(n_images)]
            text = counter.text(record)
            expected = len(counter.processor(text=[text], images=images)["input_ids"][0])
            assert counter.count(record, [size] * n_images) == expected, (family, size)


def test_count_with_real_qwen2_vl_processor(qwen2_vl_fixture_dir):
    counter = TokenCounter.from_pretrained(qwen2_vl_fixture_dir, max_pixels=256 * 28 * 28)
    record = record_with(1)
    for size in SIZES:
        text = counter.text(record)
        image = Image.new("RGB", size)
        size_kwargs = {"shortest_edge": 3136, "longest_edge": 256 * 28 * 28}
        encoded = counter.processor(text=[text], images=[image], size=size_kwargs)
        expected = len(encoded["input_ids"][0])
        assert counter.count(record, [size]) == expected
    # 224x224 -> grid 16x16 -> 64 image tokens (the fixture's documented fact).
    assert counter.budget.image_tokens(224, 224) == 64


def write_dataset(tmp_path, rows: list[dict]) -> None:
    (tmp_path / "data.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )


def row(id_: str, image: str = "ok.png", **changes) -> dict:
    data = {
        "id": id_,
        "dataset": "t",
        "split": "train",
        "lang": "en",
        "images": [image],
        "messages": [
            {"role": "user", "content": "<image>\nIs there a nodule?"},
            {"role": "assistant", "content": "yes"},
        ],
        "answer": "yes",
    }
    data.update(changes)
    return data


def test_validation_codes_and_clean_subset(tmp_path, tiny_model_dirs):
    Image.new("RGB", (112, 112)).save(tmp_path / "ok.png")
    Image.new("RGB", (1000, 1000)).save(tmp_path / "big.png")
    Image.new("RGB", (10, 10)).save(tmp_path / "tiny.png")
    (tmp_path / "corrupt.png").write_bytes(b"garbage, not an image")
    rows = [
        row("good"),
        row("good2"),
        row("missing", image="gone.png"),
        row("escape", image="../outside.png"),
        row("small", image="tiny.png"),
        row("corrupt", image="corrupt.png"),
        row("long", image="big.png"),
        row(
            "empty",
            messages=[
                {"role": "user", "content": "<image>q"},
                {"role": "assistant", "content": "  "},
            ],
        ),
        row(
            "order",
            messages=[
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "<image>q"},
            ],
        ),
        row("good"),
    ]
    write_dataset(tmp_path, rows)
    (tmp_path / "data.jsonl").open("a").write("{truncated\n")
    counter = TokenCounter.from_pretrained(tiny_model_dirs("qwen2_vl"))
    result = validate_jsonl(
        tmp_path / "data.jsonl", counter=counter, max_length=200, root=tmp_path
    )  # with --root, ../ escapes are refused (without it they are paths converters write)
    codes = {(p.record_id, p.code) for p in result.problems}
    assert codes == {
        ("missing", "missing"),
        ("escape", "outside_root"),
        ("small", "too_small"),
        ("corrupt", "undecodable"),
        ("long", "too_long"),
        ("empty", "empty_answer"),
        ("order", "role_order"),
        ("good", "duplicate_id"),
        (None, "invalid_json"),
    }
    assert [r.id for r in result.valid] == ["good", "good2"]
    assert all(p.line is not None for p in result.problems)
    report = result.report()
    assert report["records"] == 11 and report["valid"] == 2
    assert report["problems_by_code"]["too_long"] == 1
    # 112x112 -> 4x4 merged tokens = 16 image tokens, plus the text.
    assert result.token_lengths["good"] == counter.count(read_records_one(rows[0]), [(112, 112)])


def read_records_one(data: dict) -> Record:
    return Record.from_dict(data)


def test_validation_without_model_still_checks_images(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    write_dataset(tmp_path, [row("a"), row("b", image="nope.png")])
    result = validate_jsonl(tmp_path / "data.jsonl")
    assert [r.id for r in result.valid] == ["a"]
    assert [p.code for p in result.problems] == ["missing"]
    assert result.token_lengths == {}
    assert read_records  # the clean subset is written by the CLI with write_records
