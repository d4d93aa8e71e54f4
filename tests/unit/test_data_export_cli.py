"""`medvl data export`, the selection flags on `data split` and pipeline steps, `data stats`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from medvl.cli.main import main
from medvl.data.formats import convert
from medvl.data.jsonl import read_records, write_records
from medvl.data.record import Message, Record
from medvl.data.stats import dataset_stats
from medvl.errors import ConfigError
from medvl.eval.runner import RunConfig
from medvl.pipeline.spec import Step
from medvl.pipeline.steps import run_split


def canonical(tmp_path: Path) -> Path:
    """Three hand-written canonical records (one MCQ with a system turn, one two-image)."""
    folder = tmp_path / "canon"
    (folder / "imgs").mkdir(parents=True)
    for name, shade in (("a", 40), ("b", 200), ("c", 120)):
        Image.new("L", (32 + shade // 8, 32), shade).save(folder / "imgs" / f"{name}.png")
    records = [
        Record(
            id="r1",
            dataset="slake",
            split="test",
            lang="en",
            images=["imgs/a.png"],
            messages=[
                Message("system", "You are a radiologist."),
                Message("user", "<image>\nWhich organ?\nA. Lung\nB. Liver"),
                Message("assistant", "A"),
            ],
            answer="A",
            options={"A": "Lung", "B": "Liver"},
            answer_type="closed",
            question_type="organ",
            meta={"subset": "CT(Computed Tomography)"},
        ),
        Record(
            id="r2",
            dataset="slake",
            split="test",
            lang="zh",
            images=["imgs/a.png", "imgs/b.png"],
            messages=[
                Message("user", "<image>\n<image>\n比较两张图像。"),
                Message("assistant", "相同"),
            ],
            answer="相同",
            answer_type="open",
            meta={"subset": "MR (Mag-netic Resonance Imaging)"},
        ),
        Record(
            id="r3",
            dataset="vqa_rad",
            split="test",
            lang="en",
            images=["imgs/c.png"],
            messages=[Message("user", "<image>\nIs there a mass?"), Message("assistant", "no")],
            answer="no",
            answer_type="closed",
            meta={"image_organ": "CHEST"},
        ),
    ]
    write_records(folder / "data.jsonl", records)
    return folder / "data.jsonl"


def same_records(back: list[Record], before: list[Record], back_dir: Path, base: Path) -> None:
    for after, original in zip(back, before, strict=True):
        assert after.messages == original.messages and after.id == original.id
        assert [p.resolve() for p in after.image_paths(back_dir)] == [
            p.resolve() for p in original.image_paths(base)
        ]


def test_export_llava_reads_back(tmp_path, capsys):
    data = canonical(tmp_path)
    out = tmp_path / "llava" / "train.json"
    assert main(["data", "export", str(data), "--to", "llava", "--out", str(out)]) == 0
    assert "llava: wrote 3 records" in capsys.readouterr().out
    convert("llava", out, tmp_path / "back.jsonl")
    back, before = read_records(tmp_path / "back.jsonl"), read_records(data)
    same_records(back, before, tmp_path, data.parent)
    assert [(r.answer, r.options, r.lang) for r in back] == [
        (r.answer, r.options, r.lang) for r in before
    ]


def test_export_sharegpt_merges_dataset_info_and_reads_back(tmp_path):
    data = canonical(tmp_path)
    folder = tmp_path / "lf"
    folder.mkdir()
    other = {"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}
    (folder / "dataset_info.json").write_text(json.dumps(other), encoding="utf-8")
    out = folder / "med.json"
    argv = ["data", "export", str(data), "--to", "sharegpt", "--out", str(out), "--name", "med_vqa"]
    assert main(argv) == 0
    info = json.loads((folder / "dataset_info.json").read_text())
    assert info["alpaca_en_demo"] == other["alpaca_en_demo"]  # the other datasets are kept
    assert info["med_vqa"] == {
        "file_name": "med.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        },
    }
    back = tmp_path / "back.jsonl"
    convert(
        "sharegpt",
        out,
        back,
        dataset_info=folder / "dataset_info.json",
        dataset_name="med_vqa",
    )
    same_records(read_records(back), read_records(data), tmp_path, data.parent)


def test_export_trl_is_what_trl_reads(tmp_path):
    datasets = pytest.importorskip("datasets")
    data_utils = pytest.importorskip("trl.data_utils")
    data = canonical(tmp_path)
    out = tmp_path / "trl" / "train.jsonl"
    argv = ["data", "export", str(data), "--to", "trl", "--out", str(out)]
    assert main([*argv, "--where", "answer_type == 'closed'"]) == 0
    rows = datasets.load_dataset("json", data_files=str(out), split="train")
    assert rows["id"] == ["r1", "r3"]
    first = rows[0]
    assert first["images"] == [str((data.parent / "imgs" / "a.png").absolute())]
    messages = data_utils.prepare_multimodal_messages(first["messages"], images=first["images"])
    user = messages[1]["content"]
    assert user[0]["type"] == "image" and user[0]["image"] == first["images"][0]
    assert user[1] == {"type": "text", "text": "Which organ?\nA. Lung\nB. Liver"}
    assert messages[2]["content"][0]["text"] == "A"


def test_export_refuses_its_input_and_an_empty_selection(tmp_path, capsys):
    data = canonical(tmp_path)
    assert main(["data", "export", str(data), "--to", "llava", "--out", str(data)]) == 2
    argv = ["data", "export", str(data), "--to", "llava", "--out", str(tmp_path / "x.json")]
    assert main([*argv, "--where", "lang == 'fr'"]) == 2
    err = capsys.readouterr().err
    assert (
        "all 3 records are 2 lang=en, 1 lang=zh; --where 'lang == '\"'\"'fr'\"'\"'' removed" in err
    )


def test_split_step_and_command_select_first(tmp_path, capsys):
    data = canonical(tmp_path)
    step = Step(
        name="split",
        kind="split",
        params={
            "file": str(data),
            "fractions": {"train": 0.5, "test": 0.5},
            "where": "answer_type == 'closed'",
        },
        out=tmp_path / "steps",
    )
    counts = run_split(step)
    assert sum(counts.values()) == 2
    step.params["where"] = "lang == 'fr'"
    with pytest.raises(ConfigError, match=r"lang=zh; where: 'lang == '.*removed them"):
        run_split(step)
    argv = ["data", "split", str(data), "--out", str(tmp_path / "cli")]
    assert main([*argv, "--fractions", "train=0.5,test=0.5", "--sample", "2", "--seed", "1"]) == 0
    assert "selected 2 of 3 records" in capsys.readouterr().out
    written = [*read_records(tmp_path / "cli" / "train.jsonl")]
    written += read_records(tmp_path / "cli" / "test.jsonl")
    assert len(written) == 2


def test_run_config_refuses_a_bad_where_before_any_model(tmp_path):
    with pytest.raises(ConfigError, match=r"'open\(1\)' is not allowed"):
        RunConfig(bench="custom", data=tmp_path / "d.jsonl", out=tmp_path / "o", where="open(1)")


def test_stats_modality_organ_and_token_split(tmp_path, capsys):
    data = canonical(tmp_path)
    stats = dataset_stats(
        read_records(data), token_counts=[100, 300, 80], image_token_counts=[64, 128, 16]
    )
    assert stats["counts"]["modality"] == {"CT": 1, "MRI": 1, "unknown": 1}
    assert stats["counts"]["organ"] == {"unknown": 2, "CHEST": 1}
    assert stats["text_tokens"]["summary"] == {
        "min": 36,
        "max": 172,
        "mean": 90.667,
        "median": 64,
    }  # (36+172+64)/3
    assert (
        main(["data", "stats", str(data), "--model", "qwen2_vl", "--out", str(tmp_path / "s")]) == 0
    )
    printed = capsys.readouterr().out
    assert "image tokens per record" in printed and "text tokens per record" in printed
    saved = json.loads((tmp_path / "s").read_text())
    # cross-check with the counter itself: text tokens = template ids minus one pad per image
    from medvl.models.processing import load_token_counter

    counter, _ = load_token_counter("qwen2_vl")
    records = read_records(data)
    ids = counter.tokenizer([counter.text(r) for r in records])["input_ids"]
    text = [len(i) - len(r.images) for i, r in zip(ids, records, strict=True)]
    assert saved["text_tokens"]["summary"]["max"] == max(text)
    assert saved["text_tokens"]["summary"]["min"] == min(text)
    assert saved["tokens"]["summary"]["max"] > saved["text_tokens"]["summary"]["max"]
