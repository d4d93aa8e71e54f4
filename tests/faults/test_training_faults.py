"""Training inputs and runs that survive real-world input (issue 15, items 3, 4, 5, 8a, 8d).

- A PNG or JPEG cut short is found before the model loads (tail check, no decoding): the run
  refuses naming the record and the fix, or drops it under ``data.on_bad_image=skip``.
- ``warmup_ratio`` outside [0, 1] is refused; warmup steps are ceil(ratio x real optimizer
  steps), checked against a hand computation on the learning rates the Trainer logged.
- An ``output_dir`` that is a file is refused before the model loads.
- After a resume, ``history.json`` has each step once and the final train loss is the run's.
- The trl pin in pyproject matches the range GRPO accepts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medvl.data.images import check_image
from medvl.train.callbacks import whole_run_loss

ROOT = Path(__file__).resolve().parents[2]


def cut_image(path: Path, fmt: str) -> Path:
    """A noise image of ``fmt`` written to ``path`` and cut to 60% of its bytes."""
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(path, fmt)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    return path


@pytest.fixture
def data_with_cut_images(phantom_dir, tmp_path) -> tuple[Path, list[str]]:
    """8 phantom training records; the 2nd points at a cut PNG, the 5th at a cut JPEG."""
    records = [json.loads(line) for line in (phantom_dir / "train.jsonl").open()][:8]
    shutil.copytree(phantom_dir / "images", tmp_path / "images")
    cut_image(tmp_path / "images" / "cut.png", "PNG")
    cut_image(tmp_path / "images" / "cut.jpg", "JPEG")
    records[1]["images"] = ["images/cut.png"]
    records[4]["images"] = ["images/cut.jpg"]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path, [records[1]["id"], records[4]["id"]]


def train(command: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def sft(sft_command, model, data: Path, out: Path, *overrides: str) -> list[str]:
    argv = sft_command(model, data.parent, out, *overrides)
    return [a.replace(str(data.parent / "train.jsonl"), str(data)) for a in argv]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("medvl: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize(("fmt", "marker"), [("PNG", "IEND"), ("JPEG", "FF D9")])
def test_cut_png_and_jpeg_found_from_the_tail_without_decoding(tmp_path, fmt, marker):
    cut = cut_image(tmp_path / f"cut.{fmt.lower()}", fmt)
    check = check_image(cut, decode=False)
    assert check is not None and check.code == "truncated" and marker in check.message
    whole = tmp_path / f"whole.{fmt.lower()}"
    Image.new("RGB", (64, 64)).save(whole, fmt)
    whole.write_bytes(whole.read_bytes() + b"\0" * 512)  # padding after the end marker is fine
    assert check_image(whole, decode=False) is None


def test_sft_refuses_a_cut_image_before_the_model_loads(
    data_with_cut_images, sft_command, subprocess_env, tmp_path
):
    data, bad = data_with_cut_images
    missing_model = tmp_path / "no-model-here"  # the image error must come first
    line = one_error_line(
        train(sft(sft_command, missing_model, data, tmp_path / "run"), subprocess_env)
    )
    assert f"(id {bad[0]!r})" in line and "cut.png" in line and "cut short" in line
    assert "1 more record(s)" in line and "data.on_bad_image=skip" in line


def test_skip_trains_without_them_and_warmup_is_ceil_ratio_of_real_steps(
    data_with_cut_images, tiny_model_dirs, sft_command, subprocess_env, tmp_path
):
    data, bad = data_with_cut_images
    out = tmp_path / "run"
    # 6 usable records / batch 2 = 3 optimizer steps per epoch; warmup_ratio 1.0 -> 3 steps
    # (passed as warmup_steps it used to be 1 step)
    result = train(
        sft(
            sft_command,
            tiny_model_dirs("qwen2_vl"),
            data,
            out,
            "data.on_bad_image=skip",
            "epochs=1",
            "warmup_ratio=1.0",
            "scheduler=linear",
            "save_steps=100",
        ),
        subprocess_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    dropped = manifest["dropped_bad_image"]
    assert sorted(dropped) == sorted(bad) and "cut short" in dropped[bad[0]]
    assert manifest["train_records"] == 6
    history = json.loads((out / "history.json").read_text())
    lrs = {e["step"]: e["learning_rate"] for e in history if "loss" in e}
    assert sorted(lrs) == [1, 2, 3]
    # the Trainer logs the rate step s used: peak * (s - 1) / 3 during a 3-step linear warmup
    # (with 1 warmup step, step 2 would already run at the peak)
    peak = 2.0e-3  # recipes/tiny/sft_instruct.yaml
    assert [lrs[s] for s in (1, 2, 3)] == pytest.approx([0.0, peak / 3, 2 * peak / 3])


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_warmup_ratio_outside_0_1_is_one_line(
    phantom_dir, sft_command, subprocess_env, tmp_path, value
):
    command = sft_command(tmp_path / "m", phantom_dir, tmp_path / "run", f"warmup_ratio={value}")
    line = one_error_line(train(command, subprocess_env))
    assert f"warmup_ratio must be a fraction of the run's steps in [0, 1], got {value}" in line


def test_output_dir_that_is_a_file_is_refused_before_the_model_loads(
    phantom_dir, sft_command, subprocess_env, tmp_path
):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    command = sft_command(tmp_path / "no-model-here", phantom_dir, blocker)
    line = one_error_line(train(command, subprocess_env))
    assert str(blocker) in line and "not a folder" in line


def test_resume_keeps_each_step_once_and_reports_the_whole_run_loss(
    tiny_model_dirs, phantom_dir, sft_command, subprocess_env, tmp_path
):
    model = tiny_model_dirs("qwen2_vl")
    steps = ["max_steps=6", "save_steps=3"]
    full = tmp_path / "full"
    result = train(sft_command(model, phantom_dir, full, *steps), subprocess_env)
    assert result.returncode == 0, result.stderr[-3000:]
    # A run killed after step 6 but before it finished: its history logged steps 4-6, which
    # the resume from checkpoint-3 trains (and logs) again.
    killed = tmp_path / "killed"
    shutil.copytree(full, killed, ignore=shutil.ignore_patterns("checkpoint-6"))
    resumed = train(sft_command(model, phantom_dir, killed, *steps, "resume=true"), subprocess_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = json.loads((killed / "history.json").read_text())
    loss_steps = [e["step"] for e in history if "loss" in e]
    assert loss_steps == [1, 2, 3, 4, 5, 6]
    final = [e for e in history if "train_loss" in e]
    expected = next(e for e in json.loads((full / "history.json").read_text()) if "train_loss" in e)
    assert len(final) == 1
    assert final[0]["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
    printed = re.search(r"final train loss ([0-9.]+)", resumed.stdout + resumed.stderr)
    assert printed and float(printed.group(1)) == pytest.approx(expected["train_loss"], abs=1e-4)


def test_whole_run_loss_by_hand():
    # logged every 2 steps; checkpoint at 4; the resumed call trained steps 5-7 at mean 0.5
    entries = [{"step": 2, "loss": 2.0}, {"step": 4, "loss": 1.0}, {"step": 6, "loss": 9.0}]
    assert whole_run_loss(entries, 4, 0.5, 7) == pytest.approx((2 * 2 + 2 * 1 + 3 * 0.5) / 7)
    # checkpoint at 5, between logs: step 5's loss was never logged and is left out
    assert whole_run_loss(entries, 5, 0.5, 7) == pytest.approx((2 * 2 + 2 * 1 + 2 * 0.5) / 6)


def test_trl_pin_matches_what_grpo_accepts():
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    from medvl.train.grpo import TRL_TESTED

    pyproject = (ROOT / "pyproject.toml").read_text()
    pin = re.search(r'"trl([^"]*)"', pyproject).group(1)
    assert SpecifierSet(pin) == SpecifierSet(TRL_TESTED)
    assert version("trl") in SpecifierSet(pin)
