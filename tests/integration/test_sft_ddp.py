"""Slow: 2-process data parallel (torchrun) equals 1 process with 2x gradient accumulation, both
running the real `medvl train sft` command in subprocesses on a tiny Qwen2-VL."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_double_accumulation(
    tiny_model_dirs, phantom_dir, sft_command, subprocess_env, tmp_path
):
    model_dir = tiny_model_dirs("qwen2_vl")
    common = ["max_steps=6", "save_steps=100", "group_by_length=false", "lora.dropout=0.0"]
    single = tmp_path / "single"
    subprocess.run(
        sft_command(model_dir, phantom_dir, single, *common, "grad_accum=2"),
        check=True,
        env=subprocess_env,
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
        [*torchrun, *sft_command(model_dir, phantom_dir, double, *common, "grad_accum=1")[1:]],
        check=True,
        env=subprocess_env,
        capture_output=True,
    )
    a = load_file(single / "adapter_model.safetensors")
    b = load_file(double / "adapter_model.safetensors")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=1e-4), key
