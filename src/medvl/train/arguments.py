"""The ``TrainingArguments`` keywords SFT and GRPO share, built once from a TrainingSection.

SFT passes them to transformers' ``TrainingArguments``, GRPO to TRL's ``GRPOConfig`` (a
subclass), each adding its own keywords. Every value medvl cares about is set explicitly,
because the defaults differ between the two classes (TRL turns ``bf16`` and
``gradient_checkpointing`` on) and move between releases.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch

from medvl.models.loading import training_dtype
from medvl.train.training_config import TrainingSection

logger = logging.getLogger(__name__)


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
        "warmup_steps": 0,  # set from warmup_ratio and the real step count: explicit_warmup
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


def warmup_steps(ratio: float, optimizer_steps: int) -> int:
    """Linear-warmup steps for ``ratio`` (in [0, 1]) of a run of ``optimizer_steps``."""
    return math.ceil(ratio * optimizer_steps)


def explicit_warmup(trainer: Any, ratio: float) -> Any:
    """Make ``trainer`` warm up for ``ratio`` of its optimizer steps, computed when it builds the
    scheduler from the step count it derived itself (data, epochs, ``max_steps``, accumulation,
    processes), and set as a whole number of steps.

    transformers reads ``warmup_steps`` < 1 as a fraction and >= 1 as a count, so passing the
    ratio made 1.0 (or 1.5) one warmup step; medvl never passes a fraction.
    """
    create = trainer.create_scheduler

    def create_scheduler(num_training_steps: int, optimizer: Any = None) -> Any:
        steps = warmup_steps(ratio, num_training_steps)
        trainer.args.warmup_steps = steps
        logger.info(
            "warmup: %d of %d optimizer steps (warmup_ratio %g)", steps, num_training_steps, ratio
        )
        return create(num_training_steps=num_training_steps, optimizer=optimizer)

    trainer.create_scheduler = create_scheduler
    return trainer
