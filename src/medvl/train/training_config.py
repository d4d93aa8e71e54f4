"""The training knobs SFT and GRPO share, declared once: typed, documented and range-checked.

:class:`TrainingSection` is the base of :class:`~medvl.train.sft_config.SFTConfig` and
:class:`~medvl.train.grpo_config.GRPOConfig`, so a recipe keeps its flat keys
(``learning_rate: 1e-4``, not ``training.learning_rate``) while each shared field, its help
text and its check live here. A config whose default differs (GRPO learns 100x slower, logs
every step) restates only the default, through :func:`shared_field`, and keeps the help text.
All config dataclasses are keyword-only, so a base field with a default may precede a required
field of the subclass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medvl.errors import ConfigError
from medvl.models.processing import check_pixel_range

#: Model parts a recipe can train (resolved per family by :mod:`medvl.models.registry`).
PARTS = ("vision", "merger", "language", "lm_head")
Scheduler = Literal["cosine", "linear", "constant", "constant_with_warmup"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
BadImagePolicy = Literal["refuse", "skip"]


#: Help text of ``data.on_bad_image`` (SFT and GRPO): what training does with a record whose
#: image is unusable, found before the model loads.
ON_BAD_IMAGE_HELP = (
    "a record with an unusable image (truncated, missing, undecodable): refuse (stop before "
    "the model loads, naming it) or skip (train without it; the dropped ids and reasons go to "
    "the log and manifest.json)"
)

#: Help texts of ``data.video_min_pixels``/``data.video_max_pixels`` (SFT and GRPO): the video
#: processor's pixel range, apart from the image one (``data.min_pixels``/``max_pixels``).
VIDEO_MIN_PIXELS_HELP = "video processor min_pixels (per frame; Qwen3-VL: of all frames)"
VIDEO_MAX_PIXELS_HELP = (
    "video processor max_pixels: per frame (Qwen2-VL, Qwen2.5-VL) or for all frames of a video "
    "together (Qwen3-VL); default: the checkpoint's"
)


def check_data_pixels(data: object) -> None:
    """Refuse a bad image or video pixel range of a ``data`` section, naming the keys."""
    for prefix in ("", "video_"):
        low, high = getattr(data, f"{prefix}min_pixels"), getattr(data, f"{prefix}max_pixels")
        check_pixel_range(low, high, (f"data.{prefix}min_pixels", f"data.{prefix}max_pixels"))


@dataclass(kw_only=True)
class LoraSection:
    """LoRA on the language model (and, for SFT ``vision_lora``, the vision tower)."""

    r: int = field(default=16, metadata={"help": "LoRA rank (the adapter's inner width)"})
    alpha: float = field(
        default=32.0, metadata={"help": "LoRA scaling numerator; the update is scaled by alpha/r"}
    )
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input, 0 to <1"})
    targets: list[str] | None = field(
        default=None,
        metadata={"help": "language-model module names; default: the family's attention+MLP"},
    )

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r must be >= 1, got {self.r}; use e.g. lora.r=16")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}; e.g. 0.05")


@dataclass(kw_only=True)
class TrainingSection:
    """What every medvl training run needs: the start model, the run folder, the optimizer and
    schedule, precision, checkpoints and resume."""

    model: str = field(metadata={"help": "base model folder, or a previous medvl stage's output"})
    output_dir: Path = field(
        metadata={"help": "run folder: checkpoints/, the model or adapter, manifest.json"}
    )
    lora: LoraSection = field(
        default_factory=LoraSection, metadata={"help": "LoRA settings (where LoRA is trained)"}
    )
    learning_rate: float = field(
        default=1e-4, metadata={"help": "peak learning rate (of the language model and LoRA)"}
    )
    epochs: float = field(
        default=1.0, metadata={"help": "passes over the training data (max_steps wins if set)"}
    )
    max_steps: int = field(
        default=-1, metadata={"help": "optimizer steps to run; -1: as many as epochs give"}
    )
    batch_size: int = field(default=8, metadata={"help": "samples per device per step"})
    grad_accum: int = field(
        default=1, metadata={"help": "micro-batches accumulated into one optimizer step"}
    )
    warmup_ratio: float = field(
        default=0.05,
        metadata={
            "help": "fraction (0 to 1) of the optimizer steps spent in linear warmup; the step "
            "count is ceil(ratio x the run's optimizer steps)"
        },
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    scheduler: Scheduler = field(
        default="cosine", metadata={"help": "learning-rate schedule after the warmup"}
    )
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "gradient clipping norm (0: no clipping)"}
    )
    seed: int = field(default=42, metadata={"help": "seed of weights init, data order, dropout"})
    precision: Precision = field(
        default="auto",
        metadata={"help": "mixed precision; auto: bf16 on a GPU that has it, else fp32"},
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in backward (less memory)"}
    )
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "attention kernel: sdpa, eager or flash_attention_2"}
    )
    logging_steps: int = field(default=5, metadata={"help": "steps between log lines"})
    save_steps: int = field(default=50, metadata={"help": "steps between checkpoints"})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "checkpoints kept (oldest deleted); null: all"}
    )
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint"})
    deepspeed: Path | None = field(
        default=None, metadata={"help": "DeepSpeed JSON (e.g. recipes/deepspeed/zero3.json)"}
    )

    def __post_init__(self) -> None:
        _check_optimizer(self)
        _check_schedule(self)
        _check_checkpoints(self)


def shared_field(name: str, default: Any, help_text: str | None = None) -> Any:
    """The :class:`TrainingSection` field ``name`` with another default (and the same help text,
    unless ``help_text`` says what differs)."""
    base = TrainingSection.__dataclass_fields__[name]
    return field(default=default, metadata={"help": help_text or base.metadata["help"]})


def _check_optimizer(config: TrainingSection) -> None:
    if config.learning_rate <= 0:
        raise ConfigError(
            f"learning_rate must be positive, got {config.learning_rate}; e.g. learning_rate=1e-4"
        )
    if config.batch_size < 1 or config.grad_accum < 1:
        raise ConfigError(
            f"batch_size and grad_accum must be >= 1, got {config.batch_size} and "
            f"{config.grad_accum}"
        )
    if config.weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {config.weight_decay}; e.g. 0.0")
    if config.max_grad_norm < 0:
        raise ConfigError(
            f"max_grad_norm must be >= 0 (0: no clipping), got {config.max_grad_norm}"
        )


def _check_schedule(config: TrainingSection) -> None:
    if config.max_steps < -1 or config.max_steps == 0:
        raise ConfigError(
            f"max_steps is {config.max_steps}; use -1 (train for `epochs`) or a positive count"
        )
    if config.max_steps == -1 and config.epochs <= 0:
        raise ConfigError(f"epochs is {config.epochs}: nothing to train; set epochs > 0")
    if not 0 <= config.warmup_ratio <= 1:
        raise ConfigError(
            f"warmup_ratio must be a fraction of the run's steps in [0, 1], got "
            f"{config.warmup_ratio}; e.g. warmup_ratio=0.05 (5% of the steps warm up)"
        )
    if config.seed < 0:
        raise ConfigError(f"seed must be >= 0, got {config.seed}")


def _check_checkpoints(config: TrainingSection) -> None:
    if config.logging_steps < 1 or config.save_steps < 1:
        raise ConfigError(
            f"logging_steps and save_steps must be >= 1, got {config.logging_steps} and "
            f"{config.save_steps}"
        )
    if config.save_total_limit is not None and config.save_total_limit < 1:
        raise ConfigError(
            f"save_total_limit is {config.save_total_limit}; keep >= 1 checkpoint, or null "
            "to keep all"
        )


def fields_without_help(cls: type) -> list[str]:
    """Dotted names of the fields of config ``cls`` (nested sections included) with no help."""
    import typing

    hints = typing.get_type_hints(cls)
    missing = []
    for item in dataclasses.fields(cls):
        if not item.metadata.get("help"):
            missing.append(item.name)
        nested = hints[item.name]
        if dataclasses.is_dataclass(nested):
            missing += [f"{item.name}.{name}" for name in fields_without_help(nested)]
    return missing
