"""The command line: help lists every group; bad input is one line on stderr and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from medvl.cli.main import main

GROUPS = ("data", "train", "predict", "chat", "serve", "eval", "report", "export", "tiny", "run")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "medvl.cli.main", *args], capture_output=True, text=True, env=env
    )


def test_help_lists_every_command_group(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for group in GROUPS:
        assert f"    {group} " in out or f"    {group}\n" in out, group


def test_version_is_the_released_one(capsys):
    import re
    from pathlib import Path

    import medvl
    from medvl.provenance import versions

    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    released = re.search(r'^version = "([^"]+)"$', pyproject, re.MULTILINE).group(1)
    assert medvl.__version__ == released == versions(("medvl",))["medvl"]
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"medvl {released}"


def test_validate_reports_bad_line_with_exit_2_and_no_traceback(tmp_path):
    good = {
        "id": "a",
        "dataset": "d",
        "split": "test",
        "lang": "en",
        "images": [],
        "messages": [{"role": "user", "content": "hi"}],
    }
    bad = dict(good, id="b", images=["x.png"])
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    result = run_cli("data", "validate", str(path))
    assert result.returncode == 2
    assert "2 records, 1 valid, 1 refused" in result.stdout
    assert f"{path}:2 (id 'b'): field 'images'" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_validate_missing_file_is_one_clear_line(tmp_path):
    result = run_cli("data", "validate", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"medvl: error: {tmp_path / 'missing.jsonl'}: no such file; pass the path of a "
        "canonical .jsonl file"
    ]


def test_validate_flags_missing_and_tiny_images(tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 60)).save(tmp_path / "small.png")
    record = {
        "id": "a",
        "dataset": "d",
        "split": "test",
        "lang": "en",
        "images": ["small.png", "gone.png"],
        "messages": [{"role": "user", "content": "<image><image> compare"}],
    }
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    result = run_cli("data", "validate", str(path))
    assert result.returncode == 2
    assert "field 'images[0]'" in result.stdout and "20x60 px" in result.stdout
    assert "field 'images[1]'" in result.stdout and "not found" in result.stdout
    assert run_cli("data", "validate", "--no-images", str(path)).returncode == 0
