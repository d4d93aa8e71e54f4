"""Progress lines of the real commands when stderr is not a terminal (pytest captures it into
a buffer, as a batch job sends it to a file), and ``--quiet`` removing them.

``MEDVL_PROGRESS_SECONDS=0`` makes every update write a line, so the lines can be counted
without waiting; nothing here depends on how long anything takes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from PIL import Image

from medvl.cli.main import main
from medvl.data.jsonl import read_records
from medvl.progress import INTERVAL_ENV

#: ``label: done/total unit (pct%), ...`` -- the running lines, not the last one.
RUNNING = re.compile(
    r"^(?P<label>[\w. ()]+): (?P<done>\d+)(?:/(?P<total>\d+))? (?P<unit>[a-z ]+?)"
    r"(?: \((?P<pct>[\d.]+)%\))?, "
)


@pytest.fixture(autouse=True)
def every_update_logs(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")


def running_lines(err: str, label: str) -> list[tuple[int, int | None]]:
    """``(done, total)`` of each running progress line of ``label`` in ``err``."""
    found = []
    for line in err.splitlines():
        match = RUNNING.match(line)
        if match and match["label"] == label:
            total = int(match["total"]) if match["total"] else None
            found.append((int(match["done"]), total))
    return found


def test_validate_logs_each_image_then_a_last_line_and_quiet_removes_them(phantom_dir, capsys):
    data = phantom_dir / "test.jsonl"
    images = {p for r in read_records(data) for p in r.image_paths(phantom_dir)}
    assert main(["data", "validate", str(data)]) == 0
    out, err = capsys.readouterr()
    n = len(images)
    assert running_lines(err, "validate test.jsonl") == [(k, n) for k in range(1, n + 1)]
    assert f"validate test.jsonl: {n}/{n} images (100.0%), " in err
    assert re.search(rf"^validate test\.jsonl: finished {n}/{n} images in \d+:\d\d", err, re.M)
    assert "ETA" in err and "img/s" in err
    assert "valid, ok" in out and "images" not in out  # progress never goes to stdout

    for argv in (["--quiet", "data", "validate", str(data)], ["data", "validate", str(data), "-q"]):
        assert main(argv) == 0
        quiet_out, quiet_err = capsys.readouterr()
        assert quiet_err == "" and quiet_out == out  # the result is still printed


def test_convert_logs_records_read_without_a_total(tmp_path, capsys):
    # LLaVA-Med conversation JSON, as published: a list of id/image/conversations
    rows = []
    for i in range(4):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(tmp_path / f"img{i}.png")
        rows.append(
            {
                "id": f"q{i}",
                "image": f"img{i}.png",
                "conversations": [
                    {"from": "human", "value": "<image>\nIs there an effusion?"},
                    {"from": "gpt", "value": "no" if i % 2 else "yes"},
                ],
            }
        )
    source = tmp_path / "llava_med_eval.json"
    source.write_text(json.dumps(rows), encoding="utf-8")
    argv = ["data", "convert", "--format", "llava", "--input", str(source)]
    assert main([*argv, "--out", str(tmp_path / "a.jsonl")]) == 0
    err = capsys.readouterr().err
    assert running_lines(err, "convert") == [(k, None) for k in range(2, 5)]  # 1 starts the clock
    assert "convert: 4 records read, " in err and "ETA" not in err and "%" not in err
    assert re.search(r"^convert: finished 4 records read in \d+:\d\d", err, re.M)
    assert main(["--quiet", *argv, "--out", str(tmp_path / "b.jsonl")]) == 0
    assert capsys.readouterr().err == ""


def test_predict_logs_done_of_total(tiny_model_dirs, phantom_dir, tmp_path, capsys):
    argv = ["predict", "--model", str(tiny_model_dirs("qwen2_vl"))]
    argv += ["--data", str(phantom_dir / "test.jsonl"), "--batch-size", "1"]
    argv += ["--max-new-tokens", "2", "--limit", "3"]
    assert main([*argv, "--out", str(tmp_path / "a.jsonl")]) == 0
    out, err = capsys.readouterr()
    assert running_lines(err, "predict") == [(1, 3), (2, 3), (3, 3)]
    assert "predict: 1/3 records (33.3%), " in err and ", ETA " in err and " rec/s" in err
    assert re.search(r"^predict: finished 3/3 records in \d+:\d\d, [\d.]+ rec/s$", err, re.M)
    assert "3 predicted" in out
    assert main(["--quiet", *argv, "--out", str(tmp_path / "b.jsonl")]) == 0
    out, err = capsys.readouterr()
    assert "predict:" not in err and "3 predicted" in out


def test_eval_run_logs_progress_and_none_when_all_is_cached(
    tiny_model_dirs, phantom_dir, tmp_path, capsys
):
    argv = ["eval", "run", "--bench", "phantom", "--data", str(phantom_dir / "test.jsonl")]
    argv += ["--model", str(tiny_model_dirs("qwen2_vl")), "--out", str(tmp_path / "run")]
    argv += ["--limit", "2", "--batch-size", "1", "--max-new-tokens", "2", "--resamples", "20"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert running_lines(err, "eval") == [(1, 2), (2, 2)]
    assert re.search(r"^eval: finished 2/2 records in ", err, re.M)
    assert main(argv) == 0  # every prediction cached: nothing to show
    assert "eval:" not in capsys.readouterr().err


def test_the_line_reaches_a_file_from_a_subprocess(phantom_dir, tmp_path, subprocess_env):
    """The case of the issue: stderr sent to a file by a batch job."""
    log = tmp_path / "job.log"
    argv = ["data", "validate", str(phantom_dir / "train.jsonl")]
    with log.open("w", encoding="utf-8") as stderr:
        subprocess.run(
            [sys.executable, "-m", "medvl.cli.main", *argv],
            env={**subprocess_env, INTERVAL_ENV: "0"},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            check=True,
        )
    text = log.read_text(encoding="utf-8")
    assert "\r" not in text and running_lines(text, "validate train.jsonl")
    assert "validate train.jsonl: finished " in text


def test_a_pipeline_shows_each_long_step_and_quiet_removes_it(tmp_path, capsys):
    """``medvl run`` (what ``make demo`` runs) passes the CLI's progress to its steps: the eval
    step's lines are labelled with the step name; ``--quiet`` keeps only the step lines."""
    file = tmp_path / "p.yaml"
    file.write_text(
        f"workdir: {tmp_path / 'work'}\nsteps:\n"
        "  - {name: data, kind: phantom, with: {n: 12, seed: 2}}\n"
        "  - {name: base, kind: tiny, with: {family: qwen2_vl}}\n"
        '  - {name: ev, kind: eval, with: {model: "${base}", data: "${data}/test.jsonl",\n'
        "      max_new_tokens: 2}}\n"
    )
    assert main(["run", str(file)]) == 0
    out, err = capsys.readouterr()
    n = len(read_records(tmp_path / "work" / "data" / "test.jsonl"))
    lines = running_lines(err, "ev (eval)")  # one per predicted batch
    assert lines and lines[-1] == (n, n) and {total for _, total in lines} == {n}
    assert f"ev (eval): finished {n}/{n} records" in err
    assert "[3/3] ev (eval): running" in out

    assert main(["--quiet", "run", str(file), "ev.max_new_tokens=3"]) == 0
    out, err = capsys.readouterr()
    assert "ev (eval)" not in err and "[3/3] ev (eval): running" in out
