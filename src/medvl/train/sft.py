"""Supervised fine-tuning on the transformers ``Trainer``: stage setup, data, run outputs.

The training loop, optimizer steps, schedulers, checkpoints, gradient accumulation and
multi-process data parallelism are the Trainer's (and accelerate's). medvl adds what medical
VLM fine-tuning needs on top: the stage plan (``freeze.py``), assistant-only labels
(:mod:`medvl.data.features`), packing (``collate.py``), per-part learning rates and weighted
loss averages (``sft_trainer.py``), dropping over-long records instead of cutting image tokens
(``sft_data.py``), generation-based validation, exact and safe resume.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments, set_seed

from medvl.data.features import FeatureBuilder
from medvl.data.jsonl import read_records
from medvl.errors import ConfigError
from medvl.fileio import atomic_write_json
from medvl.models.loading import dtype_name, training_dtype
from medvl.models.processing import set_pixel_budgets
from medvl.models.registry import FamilySpec, detect_family
from medvl.progress import Progress
from medvl.train.arguments import explicit_warmup, training_arguments
from medvl.train.callbacks import (
    EtaCallback,
    HistoryCallback,
    ThroughputCallback,
    draws_bar,
)
from medvl.train.checkpoints import CompleteCheckpointCallback, resume_checkpoint
from medvl.train.collate import PackingCollator, PaddingCollator
from medvl.train.freeze import TrainablePlan, apply_plan
from medvl.train.outputs import save_outputs
from medvl.train.preflight import check_output_dir, screen_training_data
from medvl.train.sft_config import SFTConfig
from medvl.train.sft_data import RecordDataset, prepare_records
from medvl.train.sft_trainer import MedvlSFTTrainer, SampleIdCollator, SFTRunState
from medvl.train.validation import GenerationValidationCallback

logger = logging.getLogger(__name__)


@dataclass
class SFTResult:
    """What a finished run produced."""

    output_dir: Path
    plan: TrainablePlan
    dropped: list[str]
    train_records: int
    metrics: dict[str, Any]
    seconds: float
    validation: dict[str, float]
    dropped_bad_image: dict[str, str] = field(default_factory=dict)


@dataclass
class StartModel:
    """The model a stage starts from, its processor, and the adapter merged into it (if any)."""

    model: Any
    processor: Any
    merged_from: str | None = None


def _load_model(config: SFTConfig) -> StartModel:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(config.model)
    if config.qlora and not torch.cuda.is_available():
        raise ConfigError(
            "qlora needs a CUDA GPU with bitsandbytes; on CPU use plain LoRA (qlora=false)"
        )
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        start = _merged_adapter(path, config)  # e.g. a previous instruct stage
    elif (path / "config.json").is_file():
        model = AutoModelForImageTextToText.from_pretrained(
            path,
            dtype=training_dtype(config.precision),
            attn_implementation=config.attn_implementation,
            use_safetensors=True,
        )
        start = StartModel(model, AutoProcessor.from_pretrained(path))
    else:
        raise ConfigError(
            f"model {config.model!r}: no config.json there; pass a local model folder (e.g. from "
            "'medvl tiny' or a previous stage's output)"
        )
    data = config.data
    set_pixel_budgets(
        start.processor,
        data.min_pixels,
        data.max_pixels,
        data.video_min_pixels,
        data.video_max_pixels,
    )
    model = start.model
    model.config.use_cache = False
    getattr(model.config, "text_config", model.config).use_cache = False  # packing needs it off
    return start


def _merged_adapter(path: Path, config: SFTConfig) -> StartModel:
    """A previous stage's adapter merged into its base, so a new stage can train on top."""
    from medvl.models.loading import LoadOptions, load_model

    loaded = load_model(
        path,
        options=LoadOptions(
            dtype=dtype_name(training_dtype(config.precision)),
            device="cpu" if not torch.cuda.is_available() else "auto",
            merge_adapters=True,
            attn_implementation=config.attn_implementation,
        ),
    )
    model = loaded.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.train()
    loaded.processor.tokenizer.padding_side = "right"
    return StartModel(model, loaded.processor, merged_from=str(path))


def _save_merged_base(start: StartModel, folder: Path) -> None:
    """Keep the merged starting weights beside the new adapter, which records them as its base.

    The previous adapter's own base would be wrong: the new LoRA was trained on top of the
    merged weights.
    """
    start.model.save_pretrained(folder, safe_serialization=True)
    start.processor.save_pretrained(folder)
    start.model.name_or_path = str(folder)
    logger.info("starting weights (%s merged) saved to %s", start.merged_from, folder)


def run_sft(
    config: SFTConfig, *, callbacks: list | None = None, progress: Progress | None = None
) -> SFTResult:
    """Run one SFT stage end to end and write the run folder.

    ``progress`` (the CLI's) decides how steps are shown: the Trainer's tqdm bar on a
    terminal, plain lines otherwise, nothing when quiet; without one the bar is drawn."""
    started = time.perf_counter()
    out = check_output_dir(config.output_dir)  # before the model loads: fail in seconds
    bad_images = screen_training_data(config.data.train, config.data.on_bad_image)
    set_seed(config.seed)  # LoRA weights are initialised before the Trainer seeds anything
    start = _load_model(config)
    processor = start.processor
    spec = detect_family(start.model)
    records, lengths, dropped = prepare_records(config, processor, skip=bad_images)
    if start.merged_from:
        _save_merged_base(start, Path(config.output_dir) / "base")
    model, plan = apply_plan(start.model, config, spec)
    logger.info("%s", plan.describe())
    atomic_write_json(out / "trainable.json", plan.to_dict())
    resume_dir = resume_checkpoint(out, config.resume)
    history = HistoryCallback(out)
    validator = _validator(config, processor, history)
    eta = EtaCallback(progress)
    extra = [eta, history, *([validator] if validator else []), *(callbacks or [])]
    trainer = _build_trainer(
        config, model, processor, spec, records, lengths, extra, tqdm=draws_bar(progress)
    )
    explicit_warmup(trainer, config.warmup_ratio)
    trainer.sft_state.last_checkpoint = str(resume_dir) if resume_dir else None
    output = trainer.train(resume_from_checkpoint=str(resume_dir) if resume_dir else None)
    history.finish(output.metrics, trainer.state.global_step)
    _save_outputs(config, trainer, processor, plan, (dropped, bad_images), len(records))
    seconds = time.perf_counter() - started
    validation = validator.last if validator else {}
    return SFTResult(
        out, plan, dropped, len(records), dict(output.metrics), seconds, validation, bad_images
    )


def _validator(config: SFTConfig, processor, history) -> GenerationValidationCallback | None:
    """The generation-based validation callback, when a validation file is given."""
    if config.data.val is None or config.validation.samples == 0:
        return None
    records = read_records(config.data.val)[: config.validation.samples]
    return GenerationValidationCallback(
        records,
        Path(config.data.val).parent,
        processor,
        config.validation,
        config.output_dir,
        history,
    )


def _build_trainer(
    config: SFTConfig,
    model,
    processor,
    spec: FamilySpec,
    records,
    lengths,
    callbacks,
    *,
    tqdm: bool = True,
) -> MedvlSFTTrainer:
    _warn_if_packing_is_slower(config)
    pad_id = processor.tokenizer.pad_token_id or 0
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    collator = (
        PackingCollator(base.model.get_rope_index, pad_id, rows=config.pack_rows)
        if config.packing
        else PaddingCollator(pad_id)
    )
    dataset = RecordDataset(records, Path(config.data.train).parent, FeatureBuilder(processor))
    if config.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    throughput = ThroughputCallback()
    args = training_arguments(
        config,
        report_to=["tensorboard"],
        dataloader_num_workers=config.dataloader_workers,
        fsdp=config.fsdp or "",
        disable_tqdm=not tqdm,
    )
    return MedvlSFTTrainer(
        model=model,
        args=TrainingArguments(**args),
        train_dataset=dataset,
        data_collator=SampleIdCollator(collator),
        callbacks=[throughput, CompleteCheckpointCallback(), *(callbacks or [])],
        state=SFTRunState(config, spec, throughput, lengths=lengths),
    )


def _warn_if_packing_is_slower(config: SFTConfig) -> None:
    """Packing on CUDA without flash-attention runs attention with an explicit block-diagonal
    mask: measured 0.8x padding's samples/s on an H200 for near-equal-length samples
    (benchmarks/README.md, "GPU"). Say so; the run goes on as configured."""
    slow = config.attn_implementation != "flash_attention_2"
    if config.packing and slow and torch.cuda.is_available():
        logger.warning(
            "packing=true with attn_implementation=%s on CUDA: packed rows need a "
            "block-diagonal attention mask, measured slower than padding for samples of "
            "similar length; use attn_implementation=flash_attention_2 (flash-attn "
            "installed) or packing=false",
            config.attn_implementation,
        )


def _save_outputs(
    config: SFTConfig,
    trainer: MedvlSFTTrainer,
    processor,
    plan: TrainablePlan,
    dropped: tuple[list[str], dict[str, str]],
    n_records: int,
) -> None:
    save_outputs(
        config,
        trainer,
        processor,
        data_files={"train": Path(config.data.train), "val": config.data.val},
        extra={
            "kind": "sft",
            "stage": config.stage,
            "trainable": plan.to_dict(),
            "train_records": n_records,
            "dropped_too_long": dropped[0],
            "dropped_bad_image": dropped[1],
            "global_step": trainer.state.global_step,
        },
        save_model=lambda out: trainer.model.save_pretrained(out, safe_serialization=True),
    )
