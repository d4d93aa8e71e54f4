"""The `medvl data` actions end to end on the phantom set: generate, convert, validate, analyse."""

from __future__ import annotations

import json

import pytest

from medvl.cli.main import main
from medvl.data.jsonl import read_records


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    assert main(["data", "phantom", "--out", str(out), "--n", "60", "--seed", "3"]) == 0
    return out


def test_phantom_validate_with_model_report_and_clean_subset(phantom, tmp_path, capsys):
    report, clean = tmp_path / "report.json", tmp_path / "clean.jsonl"
    argv = [
        "data",
        "validate",
        str(phantom / "train.jsonl"),
        "--model",
        "qwen2_vl",
        "--max-length",
        "4096",
        "--report",
        str(report),
        "--out-clean",
        str(clean),
    ]
    assert main(argv) == 0
    data = json.loads(report.read_text())
    assert data["valid"] == data["records"] > 0 and data["problems"] == []
    assert data["settings"]["token_counts_exact"] is False
    assert len(read_records(clean)) == data["valid"]
    assert "approximate text count" in capsys.readouterr().out


def test_max_length_refuses_long_records(phantom, tiny_model_dirs, capsys):
    argv = [
        "data",
        "validate",
        str(phantom / "test.jsonl"),
        "--model",
        str(tiny_model_dirs("qwen2_vl")),
        "--max-length",
        "60",
    ]
    assert main(argv) == 2
    out = capsys.readouterr().out
    assert "too_long" in out and "never cut image tokens" in out


def test_max_length_without_model_is_a_config_error(phantom, capsys):
    assert main(["data", "validate", str(phantom / "test.jsonl"), "--max-length", "9"]) == 2
    assert "--max-length needs --model" in capsys.readouterr().err


def test_split_classify_stats_leakage(phantom, tmp_path, capsys):
    out = tmp_path / "split"
    assert (
        main(
            [
                "data",
                "split",
                str(phantom / "train.jsonl"),
                "--out",
                str(out),
                "--fractions",
                "train=0.5,test=0.5",
            ]
        )
        == 0
    )
    halves = {name: read_records(out / f"{name}.jsonl") for name in ("train", "test")}
    assert sum(len(v) for v in halves.values()) == len(read_records(phantom / "train.jsonl"))
    assert main(["data", "validate", str(out / "test.jsonl")]) == 0  # image paths rebased
    assert (
        main(
            [
                "data",
                "classify",
                str(out / "test.jsonl"),
                "--out",
                str(tmp_path / "c.jsonl"),
                "--mapping",
                str(tmp_path / "map.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "map.json").read_text())["n"] == len(halves["test"])
    assert (
        main(["data", "stats", str(phantom / "test.jsonl"), "--out", str(tmp_path / "s.json")]) == 0
    )
    assert (
        main(
            [
                "data",
                "leakage",
                "--train",
                str(phantom / "train.jsonl"),
                "--test",
                str(phantom / "train.jsonl"),
                "--report",
                str(tmp_path / "leak.json"),
            ]
        )
        == 0
    )
    leak = json.loads((tmp_path / "leak.json").read_text())
    assert leak["counts"]["exact_image"] == len(read_records(phantom / "train.jsonl"))


def test_bad_fractions_and_unknown_format_are_one_line_errors(phantom, tmp_path, capsys):
    assert (
        main(
            [
                "data",
                "split",
                str(phantom / "val.jsonl"),
                "--out",
                str(tmp_path),
                "--fractions",
                "train=lots",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "data",
                "convert",
                "--format",
                "nope",
                "--input",
                str(phantom),
                "--out",
                str(tmp_path / "x.jsonl"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "must look like name=0.8" in err
    assert "unknown format 'nope'; allowed values: llava" in err
