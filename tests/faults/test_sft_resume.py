"""Exact resume after SIGKILL of the real `medvl train sft` command (a subprocess on a tiny
Qwen2-VL), and a checkpoint killed half way through saving is set aside, never resumed from."""

from __future__ import annotations

import signal
import subprocess
import time

import torch
from safetensors.torch import load_file

from medvl.train.checkpoints import COMPLETE_MARKER, latest_complete_checkpoint


def test_resume_after_sigkill_equals_uninterrupted(
    tiny_model_dirs, phantom_dir, sft_command, subprocess_env, tmp_path
):
    model_dir = tiny_model_dirs("qwen2_vl")
    steps = ["max_steps=24", "save_steps=4"]
    full = tmp_path / "full"
    done = subprocess.run(
        sft_command(model_dir, phantom_dir, full, *steps),
        check=True,
        env={**subprocess_env, "MEDVL_PROGRESS_SECONDS": "0"},
        capture_output=True,
        text=True,
    )
    # stderr is a pipe, not a terminal: a plain progress line per step instead of tqdm's bar;
    # the Trainer's log lines (stdout) carry the ETA
    assert "train: 12/24 steps (50.0%), " in done.stderr and ", ETA " in done.stderr
    assert "train: finished 24/24 steps in " in done.stderr
    assert "'eta': " in done.stdout and "'progress': '24/24'" in done.stdout
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        sft_command(model_dir, phantom_dir, killed, *steps),
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = killed / "checkpoints" / "checkpoint-8" / COMPLETE_MARKER
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert marker.exists() and not (killed / "adapter_model.safetensors").exists()
    resumed = latest_complete_checkpoint(killed / "checkpoints")
    assert resumed is not None and int(resumed.name.split("-")[1]) < 24
    subprocess.run(
        sft_command(model_dir, phantom_dir, killed, *steps, "resume=true"),
        check=True,
        env=subprocess_env,
        capture_output=True,
    )
    a = load_file(full / "adapter_model.safetensors")
    b = load_file(killed / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_incomplete_checkpoint_is_set_aside(tmp_path):
    good = tmp_path / "checkpoint-4"
    good.mkdir()
    (good / COMPLETE_MARKER).write_text("{}")
    (tmp_path / "checkpoint-8").mkdir()  # a save killed half way
    assert latest_complete_checkpoint(tmp_path) == good
    assert (tmp_path / "checkpoint-8.incomplete").is_dir()
