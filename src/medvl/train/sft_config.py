"""The SFT recipe: every knob of a two-stage medical VLM fine-tune, typed and checked.

Stages (what trains, resolved through the model family registry):

- ``align``: stage 1 concept alignment; only the vision-language merger trains (full weights).
- ``instruct``: stage 2 instruction tuning; LoRA on the language model, optionally the merger
  fully (``train_merger``) and LoRA on the vision tower (``vision_lora``).
- ``full``: every part named in ``unfreeze`` trains with full weights.

The knobs SFT shares with GRPO (optimizer, schedule, precision, checkpoints) are declared once
in :class:`~medvl.train.training_config.TrainingSection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from medvl.errors import ConfigError
from medvl.train.training_config import (
    ON_BAD_IMAGE_HELP,
    PARTS,
    VIDEO_MAX_PIXELS_HELP,
    VIDEO_MIN_PIXELS_HELP,
    BadImagePolicy,
    TrainingSection,
    check_data_pixels,
)


@dataclass(kw_only=True)
class DataSection:
    """Canonical JSONL files and how records become token sequences."""

    train: Path = field(metadata={"help": "training JSONL (canonical records)"})
    val: Path | None = field(default=None, metadata={"help": "held-out JSONL for validation"})
    max_length: int = field(
        default=2048, metadata={"help": "records longer than this (with image tokens) are dropped"}
    )
    min_pixels: int | None = field(default=None, metadata={"help": "processor min_pixels"})
    max_pixels: int | None = field(default=None, metadata={"help": "processor max_pixels"})
    video_min_pixels: int | None = field(default=None, metadata={"help": VIDEO_MIN_PIXELS_HELP})
    video_max_pixels: int | None = field(default=None, metadata={"help": VIDEO_MAX_PIXELS_HELP})
    max_train_samples: int | None = field(default=None, metadata={"help": "use the first N"})
    on_bad_image: BadImagePolicy = field(default="refuse", metadata={"help": ON_BAD_IMAGE_HELP})

    def __post_init__(self) -> None:
        if self.max_length < 16:
            raise ConfigError(f"data.max_length {self.max_length} is too small; use e.g. 2048")
        check_data_pixels(self)


@dataclass(kw_only=True)
class ValidationSection:
    """Generation-based validation during training."""

    every_steps: int = field(default=0, metadata={"help": "0 = only at the end"})
    samples: int = field(default=64, metadata={"help": "validation records used (first N)"})
    max_new_tokens: int = field(default=32, metadata={"help": "answer tokens generated"})
    batch_size: int = field(default=8, metadata={"help": "records generated per batch"})
    metric: str = field(default="closed_accuracy", metadata={"help": "metric for the best ckpt"})


@dataclass(kw_only=True)
class SFTConfig(TrainingSection):
    """A complete SFT recipe (YAML keys mirror these fields and those of TrainingSection)."""

    data: DataSection = field(metadata={"help": "training data"})
    stage: Literal["align", "instruct", "full"] = field(
        default="instruct", metadata={"help": "what trains: align, instruct or full"}
    )
    train_merger: bool = field(default=False, metadata={"help": "instruct: merger fully trained"})
    vision_lora: bool = field(default=False, metadata={"help": "instruct: LoRA on vision tower"})
    train_lm_head: bool = field(
        default=False,
        metadata={
            "help": "instruct: output layer fully trained (needed when the base model's "
            "output layer is random, as in tiny demo models)"
        },
    )
    unfreeze: list[str] = field(
        default_factory=lambda: ["merger", "language"], metadata={"help": "full: parts to train"}
    )
    merger_lr: float | None = field(default=None, metadata={"help": "default: learning_rate"})
    vision_lr: float | None = field(default=None, metadata={"help": "default: learning_rate/10"})
    loss_average: Literal["token", "sample", "square"] = field(
        default="token",
        metadata={
            "help": "how answer tokens are averaged: token (long answers dominate), sample "
            "(every sample counts the same), square (1/sqrt(tokens), InternVL 2.5)"
        },
    )
    loss_impl: Literal["chunked", "full"] = field(
        default="chunked",
        metadata={
            "help": "chunked: the output layer runs only where a label is, in chunks (exact, "
            "far less memory with a large vocabulary); full: logits for every token (the old "
            "path, for comparison)"
        },
    )
    packing: bool = field(default=True, metadata={"help": "pack samples into rows (no padding)"})
    pack_rows: int = field(default=2, metadata={"help": "rows a packed batch is balanced into"})
    group_by_length: bool = field(
        default=True, metadata={"help": "batch records of similar length (less padding)"}
    )
    qlora: bool = field(default=False, metadata={"help": "4-bit base (CUDA + bitsandbytes)"})
    fsdp: str | None = field(default=None, metadata={"help": "e.g. 'full_shard auto_wrap'"})
    dummy_image_forward: bool | None = field(
        default=None,
        metadata={
            "help": "run the vision tower on a dummy image for text-only batches; "
            "default: on with deepspeed/fsdp (prevents ZeRO-3 hangs)"
        },
    )
    dataloader_workers: int = field(
        default=0, metadata={"help": "data-loading worker processes (0: in the main process)"}
    )
    validation: ValidationSection = field(
        default_factory=ValidationSection, metadata={"help": "generation-based validation"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_stage()
        for name in ("merger_lr", "vision_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.pack_rows < 1:
            raise ConfigError("pack_rows must be >= 1")
        if self.dataloader_workers < 0:
            raise ConfigError(f"dataloader_workers must be >= 0, got {self.dataloader_workers}")
        if self.dummy_image_forward is None:
            self.dummy_image_forward = bool(self.deepspeed or self.fsdp)

    def _check_stage(self) -> None:
        unknown = sorted(set(self.unfreeze) - set(PARTS))
        if unknown:
            raise ConfigError(f"unfreeze: unknown part {unknown[0]!r}; parts: {', '.join(PARTS)}")
        if self.stage == "align" and (self.train_merger or self.vision_lora or self.train_lm_head):
            raise ConfigError(
                "stage 'align' trains only the merger; drop train_merger/vision_lora/"
                "train_lm_head or use stage 'instruct'"
            )
        if self.stage != "full" and self.unfreeze != ["merger", "language"]:
            raise ConfigError(f"unfreeze applies to stage 'full' only (stage is {self.stage!r})")
        if self.stage == "full" and not self.unfreeze:
            raise ConfigError("stage 'full' with an empty unfreeze list trains nothing")
        if self.qlora and self.stage != "instruct":
            raise ConfigError("qlora needs stage 'instruct' (LoRA on a 4-bit base)")

    def lr_for(self, part: str) -> float:
        """Learning rate of one model part."""
        if part == "merger":
            return self.merger_lr or self.learning_rate
        if part == "vision":
            return self.vision_lr or self.learning_rate / 10
        return self.learning_rate
