"""The ``TrainingArguments`` keywords SFT and GRPO share, built once from a TrainingSection.

SFT passes them to transformers' ``TrainingArguments``, GRPO to TRL's ``GRPOConfig`` (a
subclass), each adding its own keywords. Every value medvl cares about is set explicitly,
because the defaults differ between the two classes (TRL turns ``bf16`` and
``gradient_checkpointing`` on) and move between releases.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from medvl.models.loading import training_dtype
from medvl.train.training_config import TrainingSection


def ddp_backend() -> str | None:
    """gloo for multi-process CPU runs (torchrun/accelerate set WORLD_SIZE); else the default."""
    multi = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return "gloo" if multi and not torch.cuda.is_available() else None


def training_arguments(config: TrainingSection, **specific: Any) -> dict[str, Any]:
    """The keywords of ``TrainingArguments`` for ``config``, updated with ``specific`` (the
    trainer's own: ``report_to``, ``fsdp``, ...)."""
    dtype = training_dtype(config.precision)
    shared = {
        "output_dir": str(Path(config.output_dir) / "checkpoints"),
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "warmup_steps": config.warmup_ratio,  # < 1 means a fraction of the steps
        "weight_decay": config.weight_decay,
        "lr_scheduler_type": config.scheduler,
        "max_grad_norm": config.max_grad_norm,
        "logging_steps": config.logging_steps,
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": dtype == torch.bfloat16,  # TRL defaults bf16 to True: both set explicitly
        "fp16": dtype == torch.float16,
        "gradient_checkpointing": config.gradient_checkpointing,  # TRL defaults it to True
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "remove_unused_columns": False,
        "use_cpu": not torch.cuda.is_available(),  # also what makes a multi-process CPU run DDP
        "ddp_backend": ddp_backend(),
        "deepspeed": str(config.deepspeed) if config.deepspeed else None,
    }
    return {**shared, **specific}
