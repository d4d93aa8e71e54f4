"""Exact resume after SIGKILL, and 2-process data parallel equal to 1 process with 2x accumulation.

Both run the real `medvl train sft` command in subprocesses on a tiny Qwen2-VL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medvl.train.checkpoints import COMPLETE_MARKER, latest_complete_checkpoint

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft_instruct.yaml"


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    from medvl.data.phantom import generate_phantom

    out = tmp_path_factory.mktemp("phantom")
    generate_phantom(out, n=60, seed=2)
    return out


def command(model_dir, phantom_dir, out, *extra) -> list[str]:
    return [
        sys.executable,
        "-m",
        "medvl.cli.main",
        "train",
        "sft",
        str(RECIPE),
        f"model={model_dir}",
        f"data.train={phantom_dir / 'train.jsonl'}",
        "data.val=null",
        f"output_dir={out}",
        "batch_size=2",
        "logging_steps=1",
        "save_total_limit=null",
        "dataloader_workers=0",
        *extra,
    ]


def env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def test_resume_after_sigkill_equals_uninterrupted(tiny_model_dirs, phantom_dir, tmp_path):
    model_dir = tiny_model_dirs("qwen2_vl")
    steps = ["max_steps=24", "save_steps=4"]
    full = tmp_path / "full"
    subprocess.run(
        command(model_dir, phantom_dir, full, *steps), check=True, env=env(), capture_output=True
    )
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        command(model_dir, phantom_dir, killed, *steps),
        env=env(),
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
        command(model_dir, phantom_dir, killed, *steps, "resume=true"),
        check=True,
        env=env(),
        capture_output=True,
    )
    a, b = weights(full), weights(killed)
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


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_double_accumulation(
    tiny_model_dirs, phantom_dir, tmp_path
):
    model_dir = tiny_model_dirs("qwen2_vl")
    common = ["max_steps=6", "save_steps=100", "group_by_length=false", "lora.dropout=0.0"]
    single = tmp_path / "single"
    subprocess.run(
        command(model_dir, phantom_dir, single, *common, "grad_accum=2"),
        check=True,
        env=env(),
        capture_output=True,
    )
    double = tmp_path / "ddp"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29617",
    ]
    subprocess.run(
        [*torchrun, *command(model_dir, phantom_dir, double, *common, "grad_accum=1")[1:]],
        check=True,
        env=env(),
        capture_output=True,
    )
    a, b = weights(single), weights(double)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=1e-4), key
