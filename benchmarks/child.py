"""Run one side of a benchmark in a fresh interpreter and read its JSON result.

Each side of a side-by-side measurement runs in its own process, so one side's allocations,
thread pools and imports never colour the other's. The child prints its result as the last line
of stdout, one JSON object. :func:`sft_side_metrics` is the medvl SFT side the SFT benchmarks
share: one epoch, constant lr, no warmup, fp32, logging every step.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

#: Full fine-tuning of the language model, vision tower and merger (``stage=full``).
FULL_TUNING = ("stage=full", "unfreeze=[vision,merger,language,lm_head]")


def run_child(name: str, cmd: list[str]) -> dict:
    """Run ``cmd`` offline (``HF_HUB_OFFLINE=1``) and return the JSON of its last stdout line;
    exit with the child's stderr tail when it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{name} side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sft_side_metrics(
    model: Path,
    data: Path,
    out: Path,
    *,
    batch: int,
    lr: float,
    tuning: tuple[str, ...] | list[str] = FULL_TUNING,
    extra: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """Run medvl's real SFT path (``run_sft``) with the benchmarks' shared settings plus
    ``tuning`` and ``extra`` overrides; returns runtime, loss and record count."""
    from medvl.config import load_config
    from medvl.train.sft import run_sft
    from medvl.train.sft_config import SFTConfig

    overrides = [
        f"model={model}",
        f"data.train={data}",
        f"output_dir={out}",
        *tuning,
        f"batch_size={batch}",
        "epochs=1",
        f"learning_rate={lr}",
        "warmup_ratio=0",
        "scheduler=constant",
        "save_steps=100000",
        "logging_steps=1",
        "precision=fp32",
        "pack_rows=2",
        "data.max_length=4096",
        *extra,
    ]
    result = run_sft(load_config(SFTConfig, None, overrides))
    return {
        "train_runtime": result.metrics["train_runtime"],
        "loss": result.metrics["train_loss"],
        "samples": result.train_records,
    }
