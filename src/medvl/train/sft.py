"""Supervised fine-tuning on the transformers ``Trainer``: stage setup, data, run outputs.

The training loop, optimizer steps, schedulers, checkpoints, gradient accumulation and
multi-process data parallelism are the Trainer's (and accelerate's). medvl adds what medical
VLM fine-tuning needs on top: the stage plan (``freeze.py``), assistant-only labels
(``features.py``), packing (``collate.py``), per-part learning rates, dropping over-long records
instead of cutting image tokens, generation-based validation, exact and safe resume.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler

from medvl.config import config_to_dict
from medvl.data.jsonl import read_records
from medvl.data.record import Record
from medvl.errors import ConfigError, MedvlError
from medvl.fileio import atomic_write_json, atomic_write_text
from medvl.models.processing import set_pixel_budget
from medvl.models.registry import FamilySpec, detect_family
from medvl.train.callbacks import HistoryCallback, ThroughputCallback, check_finite
from medvl.train.checkpoints import CompleteCheckpointCallback, latest_complete_checkpoint
from medvl.train.collate import PackingCollator, PaddingCollator
from medvl.train.features import FeatureBuilder, RecordDataset
from medvl.train.freeze import TrainablePlan, apply_plan, param_groups
from medvl.train.loss import weighted_lm_loss
from medvl.train.manifest import build_manifest
from medvl.train.mixed_batches import dummy_vision_loss
from medvl.train.sft_config import SFTConfig
from medvl.train.validation import GenerationValidationCallback

logger = logging.getLogger(__name__)


class _IdCollator:
    """Wraps a collator to carry the batch's record ids (for error messages) and token counts."""

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, samples):
        batch = self.collator(samples)
        batch["sample_ids"] = [s.id for s in samples]
        return batch


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order that depends only on (seed, epoch), so a resumed run replays it."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        self.seed = seed
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


class MedvlSFTTrainer(Trainer):
    """``Trainer`` with per-part learning rates, length grouping and a finite-loss guard."""

    def __init__(self, *args, medvl: dict[str, Any], **kwargs):
        self.medvl = medvl
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            groups = param_groups(self.model, self.medvl["config"], self.medvl["spec"])
            optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)
            kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        lengths = self.medvl.get("lengths")
        if self.medvl["config"].group_by_length and lengths:
            return EpochLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=lengths,
                seed=self.args.seed,
            )
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids = inputs.pop("sample_ids", [])
        throughput = self.medvl["throughput"]
        throughput.count(len(ids), int(inputs["input_ids"].numel()))
        text_only = "pixel_values" not in inputs
        average = self.medvl["config"].loss_average
        if average == "token":
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        else:
            result = self._weighted_loss(model, inputs, return_outputs, num_items_in_batch, average)
        if text_only and self.medvl["config"].dummy_image_forward:
            extra = dummy_vision_loss(model)
            result = (result[0] + extra, *result[1:]) if return_outputs else result + extra
        loss = result[0] if return_outputs else result
        check_finite(
            float(loss.detach()), self.state.global_step + 1, ids, self.medvl.get("last_checkpoint")
        )
        return result

    def _weighted_loss(self, model, inputs, return_outputs, num_items_in_batch, average):
        """Per-sample (or square-root) averaged loss, see :mod:`medvl.train.loss`."""
        labels = inputs.pop("labels")
        positions = inputs.get("position_ids")
        text_positions = positions[0] if positions is not None and positions.dim() == 3 else None
        outputs = model(**inputs)
        loss = weighted_lm_loss(outputs.logits, labels, text_positions, average)
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            # the Trainer then skips its division by the accumulation steps; do it here
            loss = loss / self.current_gradient_accumulation_steps
        return (loss, outputs) if return_outputs else loss


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


def _load_model(config: SFTConfig):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(config.model)
    if config.qlora and not torch.cuda.is_available():
        raise ConfigError(
            "qlora needs a CUDA GPU with bitsandbytes; on CPU use plain LoRA (qlora=false)"
        )
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        model, processor = _merged_adapter(path, config)  # e.g. a previous instruct stage
    elif (path / "config.json").is_file():
        model = AutoModelForImageTextToText.from_pretrained(
            path,
            dtype=_dtype(config.precision),
            attn_implementation=config.attn_implementation,
            use_safetensors=True,
        )
        processor = AutoProcessor.from_pretrained(path)
    else:
        raise ConfigError(
            f"model {config.model!r}: no config.json there; pass a local model folder (e.g. from "
            "'medvl tiny' or a previous stage's output)"
        )
    set_pixel_budget(processor, config.data.min_pixels, config.data.max_pixels)
    model.config.use_cache = False
    getattr(model.config, "text_config", model.config).use_cache = False  # packing needs it off
    return model, processor


def _merged_adapter(path: Path, config: SFTConfig):
    """A previous stage's adapter merged into its base, so a new stage can train on top."""
    from medvl.models.loading import LoadOptions, load_model

    dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(_dtype(config.precision), "fp32")
    loaded = load_model(
        path,
        options=LoadOptions(
            dtype=dtype,
            device="cpu" if not torch.cuda.is_available() else "auto",
            merge_adapters=True,
            attn_implementation=config.attn_implementation,
        ),
    )
    model = loaded.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.train()
    model.medvl_merged_from = str(path)
    loaded.processor.tokenizer.padding_side = "right"
    return model, loaded.processor


def _save_merged_base(model, processor, folder: Path) -> None:
    """Keep the merged starting weights beside the new adapter, which records them as its base.

    The previous adapter's own base would be wrong: the new LoRA was trained on top of the
    merged weights.
    """
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    model.name_or_path = str(folder)
    logger.info("starting weights (%s merged) saved to %s", model.medvl_merged_from, folder)


def _dtype(precision: str) -> torch.dtype:
    if precision == "bf16" or (
        precision == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    ):
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    return torch.float32


def _prepare_records(config: SFTConfig, processor: Any) -> tuple[list[Record], list[int], list]:
    """Validate the training file; drop over-long records (never cut image tokens)."""
    from medvl.data.tokens import TokenCounter
    from medvl.data.validate import validate_jsonl

    counter = TokenCounter(processor)
    result = validate_jsonl(config.data.train, counter=counter, max_length=config.data.max_length)
    fatal = [p for p in result.problems if p.code != "too_long"]
    if fatal:
        lines = "; ".join(f"line {p.line} ({p.record_id}): {p.code}" for p in fatal[:5])
        raise MedvlError(
            f"{config.data.train}: {len(fatal)} invalid record(s), e.g. {lines}; run "
            "'medvl data validate' on it and fix or drop them (--out-clean)"
        )
    dropped = [p.record_id for p in result.problems if p.code == "too_long"]
    if dropped:
        logger.warning(
            "dropped %d record(s) longer than max_length %d (image tokens are never cut): %s",
            len(dropped),
            config.data.max_length,
            ", ".join(dropped[:20]),
        )
    records = result.valid[: config.data.max_train_samples or None]
    if not records:
        raise MedvlError(f"{config.data.train}: no usable training records")
    lengths = [result.token_lengths[r.id] for r in records]
    return records, lengths, dropped


def _ddp_backend() -> str | None:
    """gloo for multi-process CPU runs (torchrun/accelerate set WORLD_SIZE); else the default."""
    multi = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return "gloo" if multi and not torch.cuda.is_available() else None


def _training_args(config: SFTConfig) -> TrainingArguments:
    dtype = _dtype(config.precision)
    return TrainingArguments(
        output_dir=str(config.output_dir / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        warmup_steps=config.warmup_ratio,  # < 1 means a fraction of the steps
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.scheduler,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        report_to=["tensorboard"],
        remove_unused_columns=False,
        dataloader_num_workers=config.dataloader_workers,
        ddp_backend=_ddp_backend(),
        use_cpu=not torch.cuda.is_available(),  # also what makes a multi-process CPU run DDP
        deepspeed=str(config.deepspeed) if config.deepspeed else None,
        fsdp=config.fsdp or "",
        disable_tqdm=False,
    )


def run_sft(config: SFTConfig, *, callbacks: list | None = None) -> SFTResult:
    """Run one SFT stage end to end and write the run folder."""
    started = time.perf_counter()
    set_seed(config.seed)  # LoRA weights are initialised before the Trainer seeds anything
    model, processor = _load_model(config)
    spec = detect_family(model)
    records, lengths, dropped = _prepare_records(config, processor)
    if getattr(model, "medvl_merged_from", None):
        _save_merged_base(model, processor, Path(config.output_dir) / "base")
    model, plan = apply_plan(model, config, spec)
    logger.info("%s", plan.describe())
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "trainable.json", plan.to_dict())
    resume_dir = latest_complete_checkpoint(out / "checkpoints") if config.resume else None
    if config.resume and resume_dir is None:
        logger.warning("resume=true but no complete checkpoint under %s; starting fresh", out)
    history = HistoryCallback(out)
    validator = _validator(config, processor, history)
    extra = [history, *([validator] if validator else []), *(callbacks or [])]
    trainer = _build_trainer(config, model, processor, spec, records, lengths, extra)
    trainer.medvl["last_checkpoint"] = str(resume_dir) if resume_dir else None
    output = trainer.train(resume_from_checkpoint=str(resume_dir) if resume_dir else None)
    _save_outputs(config, trainer, processor, plan, dropped, len(records))
    seconds = time.perf_counter() - started
    validation = validator.last if validator else {}
    return SFTResult(out, plan, dropped, len(records), dict(output.metrics), seconds, validation)


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
    config: SFTConfig, model, processor, spec: FamilySpec, records, lengths, callbacks
) -> MedvlSFTTrainer:
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
    return MedvlSFTTrainer(
        model=model,
        args=_training_args(config),
        train_dataset=dataset,
        data_collator=_IdCollator(collator),
        callbacks=[
            throughput,
            CompleteCheckpointCallback(),
            *(callbacks or []),
        ],
        medvl={"config": config, "spec": spec, "lengths": lengths, "throughput": throughput},
    )


def _save_outputs(
    config: SFTConfig,
    trainer: Trainer,
    processor,
    plan: TrainablePlan,
    dropped: list[str],
    n_records: int,
) -> None:
    out = Path(config.output_dir)
    if not trainer.is_world_process_zero():
        return
    trainer.model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    resolved = config_to_dict(config)
    import yaml

    atomic_write_text(out / "medvl_config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    atomic_write_json(
        out / "manifest.json",
        build_manifest(
            resolved,
            {"train": Path(config.data.train), "val": config.data.val},
            {
                "kind": "sft",
                "stage": config.stage,
                "trainable": plan.to_dict(),
                "train_records": n_records,
                "dropped_too_long": dropped,
                "global_step": trainer.state.global_step,
            },
        ),
    )
