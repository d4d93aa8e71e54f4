"""GRPO on TRL's ``GRPOTrainer``: start model, rewards, data and run outputs for medical VLMs.

Rollouts, group advantages, the clipped loss, KL to the reference, vLLM, checkpoints and data
parallelism are TRL's. medvl adds: typed recipes with every drifted default explicit
(``grpo_config.py``), the start model (a base model, a merged SFT model, or an SFT adapter merged
into its base under ``output_dir/base_model`` so the reference and the saved adapter point at
the right weights), LoRA targets from the family registry, verifiable-answer data
(``grpo_data.py``), rewards shared with the evaluator (``rewards.py``), readable monitoring
(``grpo_monitor.py``) and safe resume (``checkpoints.py``).

TRL's VLM path: each dataset row holds ``prompt`` (a conversation) and ``images`` (PIL); the
sampler repeats each prompt ``num_generations`` times in a row, every row is generated and
scored on its own, and rewards receive every other column per completion, so any
``batch_size`` (completions per device) keeps each completion with its own prompt and answer.
Rows with videos also carry their frames (``videos``); TRL 1.16 would generate from them but
score the completions without them, so the trainer is
:class:`~medvl.train.grpo_video.VideoGRPOTrainer`, which gives the video tensors to generation,
the log-probabilities and the loss (vLLM rollouts with videos are refused before loading).

Log-probabilities only where the loss is (issue 16): TRL 1.16 already does what medvl's SFT does
with ``medvl.models.output_layer``, so medvl adds no override. ``GRPOTrainer.__init__`` patches
the policy and the reference with ``trl.trainer.utils.add_fused_lm_head``, and
``GRPOTrainer._get_per_token_logps_and_entropies`` calls ``model(..., labels=labels,
fused_lm_head=True)`` with every prompt and padding label set to -100 (``logits_to_keep`` =
completion length): the backbone runs to its hidden states and the output layer runs in tiles
(``trl.kernels.chunked_logprob``), never holding ``[tokens x vocab]`` logits. On CUDA/XPU with
Triton only the completion positions are projected; elsewhere (CPU) every position is projected,
tile by tile, to keep tile shapes fixed (a recompilation guard for devices like Neuron). On the
CPU that makes GRPO several times slower than needed, so :func:`score_completions_only` (the one
override, applied in ``_build_trainer``) lets TRL's forward take its compact path on the CPU
too: the same rows through the same kernel, minus the prompt rows
(tests/integration/test_grpo_logprobs.py checks log-probs, loss and gradients against TRL's own
path; benchmarks/bench_grpo.py measures the three ways).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, set_seed
from transformers.integrations import TensorBoardCallback

from medvl.errors import ConfigError
from medvl.models.loading import dtype_name, training_dtype
from medvl.models.registry import FamilySpec, detect_family, lora_target_regex, part_of
from medvl.progress import Progress
from medvl.train.arguments import explicit_warmup, training_arguments
from medvl.train.callbacks import EtaCallback, HistoryCallback, check_finite, draws_bar
from medvl.train.checkpoints import (
    CompleteCheckpointCallback,
    checkpoint_step,
    resume_checkpoint,
)
from medvl.train.grpo_config import TRL_TESTED, GRPOConfig
from medvl.train.grpo_data import GRPOData, check_video_support, prepare_data
from medvl.train.grpo_monitor import LoggedReward, RewardLog
from medvl.train.outputs import save_outputs
from medvl.train.preflight import check_output_dir, screen_training_records

logger = logging.getLogger(__name__)


@dataclass
class GRPOResult:
    """What a finished run produced."""

    output_dir: Path
    train_records: int
    rejected: dict[str, int]
    metrics: dict[str, Any]
    seconds: float
    accuracy_first_quarter: float | None
    accuracy_last_quarter: float | None
    accuracy_curve: list[tuple[int, float, int]] = field(default_factory=list)
    start_model: str = ""


def check_trl() -> None:
    """Refuse a TRL outside the tested range (its GRPO defaults and hooks move between releases)."""
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    found = version("trl")
    if found not in SpecifierSet(TRL_TESTED):
        raise ConfigError(
            f"trl {found} is installed; medvl's GRPO is tested with trl{TRL_TESTED}: "
            f"pip install 'trl{TRL_TESTED}'"
        )


def resolve_start(config: GRPOConfig) -> tuple[str, str | None]:
    """``(model folder to load, SFT adapter merged into it or None)``.

    An adapter-only SFT output is merged into its base once, under ``output_dir/base_model``
    (kept on resume): GRPO then adds a new LoRA on top (or trains the weights), TRL's reference
    model is exactly the SFT model, and the saved GRPO adapter names a base that holds the SFT.
    """
    from medvl.models.loading import adapter_base, is_adapter_dir

    path = Path(config.model)
    if not is_adapter_dir(path) or (path / "config.json").is_file():
        return str(path), None
    from accelerate import PartialState

    from medvl.models.merge import merge_adapter

    target = Path(config.output_dir) / "base_model"
    state = PartialState()
    with state.main_process_first():  # one process merges; the others wait, then load it
        kept = config.resume and (target / "config.json").is_file()
        if state.is_main_process and not kept:
            merge_adapter(adapter_base(path), path, target, overwrite=True)
    return str(target), str(path)


def load_policy(config: GRPOConfig) -> tuple[Any, Any, str, str | None]:
    """``(model, processor, start folder, merged SFT adapter)``; the model on CPU, eval mode."""
    from medvl.models.loading import LoadOptions, load_model

    start, adapter = resolve_start(config)
    options = LoadOptions(
        dtype=dtype_name(training_dtype(config.precision)),
        device="cpu",  # the Trainer moves it to each process's device
        attn_implementation=config.attn_implementation,
        min_pixels=config.data.min_pixels,
        max_pixels=config.data.max_pixels,
        video_min_pixels=config.data.video_min_pixels,
        video_max_pixels=config.data.video_max_pixels,
    )
    loaded = load_model(start, options=options)
    return loaded.model, loaded.processor, start, adapter


def lora_config(config: GRPOConfig, spec: FamilySpec):
    """A peft ``LoraConfig`` on the language model's attention+MLP (TRL wraps the model)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=lora_target_regex(spec, ["language"], config.lora.targets),
        task_type="CAUSAL_LM",
    )


def freeze_for_full(model: torch.nn.Module, config: GRPOConfig, spec: FamilySpec) -> int:
    """Train only ``full_parts``; returns the trainable parameter count."""
    trainable = 0
    for name, param in model.named_parameters():
        param.requires_grad = part_of(name, spec) in config.full_parts
        trainable += param.numel() if param.requires_grad else 0
    if not trainable:
        raise ConfigError(f"full_parts {config.full_parts} hold no parameters in this model")
    return trainable


def trl_args(config: GRPOConfig, *, tqdm: bool = True):
    """TRL's ``GRPOConfig`` with every value medvl cares about set explicitly (``tqdm``: whether
    the Trainer draws its progress bar)."""
    from trl import GRPOConfig as TRLConfig

    # TensorBoard is added as a callback after the None filter (see _build_trainer)
    shared = training_arguments(config, report_to="none", disable_tqdm=not tqdm)
    return TRLConfig(**shared, **_grpo_kwargs(config), **_vllm_kwargs(config))


def _grpo_kwargs(config: GRPOConfig) -> dict[str, Any]:
    g = config.grpo
    return {
        "num_generations": g.num_generations,
        "max_completion_length": g.max_completion_length,
        "beta": g.beta,
        "loss_type": g.loss_type,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "top_k": g.top_k,
        "epsilon": g.epsilon,
        "epsilon_high": g.epsilon_high,
        "scale_rewards": g.scale_rewards,
        "num_iterations": g.num_iterations,
        "mask_truncated_completions": g.mask_truncated_completions,
        "reward_weights": config.weights(),
        "log_completions": False,  # medvl writes readable samples itself (samples/)
    }


def _vllm_kwargs(config: GRPOConfig) -> dict[str, Any]:
    v = config.vllm
    return {
        "use_vllm": v.enabled,
        "vllm_mode": v.mode,
        "vllm_gpu_memory_utilization": v.gpu_memory_utilization,
        "vllm_tensor_parallel_size": v.tensor_parallel_size,
        "vllm_max_model_length": v.max_model_length,
        "vllm_enable_sleep_mode": v.enable_sleep_mode,
        "vllm_server_base_url": v.server_base_url,
        "vllm_server_host": v.server_host,
        "vllm_server_port": v.server_port,
        "vllm_server_timeout": v.server_timeout,
        "vllm_importance_sampling_correction": v.importance_sampling_correction,
    }


def check_vllm(config: GRPOConfig) -> None:
    """vLLM rollouts need a CUDA GPU and the ``vllm`` package; say so before loading anything."""
    if not config.vllm.enabled:
        return
    import importlib.util

    if not torch.cuda.is_available():
        raise ConfigError("vllm.enabled needs a CUDA GPU; set vllm.enabled=false on CPU")
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("vllm.enabled needs the vllm package: pip install vllm (or disable it)")


def build_rewards(config: GRPOConfig, log: RewardLog) -> list[LoggedReward]:
    """The recipe's rewards, in order, with their parameters (length limits default to the run's
    ``max_completion_length``)."""
    rewards = []
    for name in config.rewards:
        params = dict(config.reward_params.get(name, {}))
        if name == "length_penalty":
            params.setdefault("max_tokens", config.grpo.max_completion_length)
            params.setdefault("soft_tokens", max(1, params["max_tokens"] // 4))
        rewards.append(LoggedReward(name, log, params))
    return rewards


class DropUnscoredMetrics(TrainerCallback):
    """Leaves out metrics TRL logs as None (a reward that applied to no completion of those
    steps, e.g. ``mcq_accuracy`` on a batch of yes/no questions) before TensorBoard sees them."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in [k for k, v in (logs or {}).items() if v is None]:
            del logs[key]
        return control


class FiniteLossCallback(HistoryCallback):
    """History to ``history.json`` (and ``training.png``), stopping on a non-finite loss."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and logs["loss"] is not None:
            check_finite(float(logs["loss"]), state.global_step, [], None)
        return super().on_log(args, state, control, logs=logs, **kwargs)


def run_grpo(
    config: GRPOConfig, *, callbacks: list | None = None, progress: Progress | None = None
) -> GRPOResult:
    """Run GRPO end to end and write the run folder (adapter or model, samples, manifest).

    ``progress`` (the CLI's) decides how steps are shown, as in :func:`medvl.train.sft.run_sft`.
    """
    started = time.perf_counter()
    check_trl()
    check_vllm(config)
    out = check_output_dir(config.output_dir)  # before the model loads: fail in seconds
    records, bad_images = screen_training_records(config.data.train, config.data.on_bad_image)
    train = Path(config.data.train)  # videos with vLLM: refused before loading the model
    check_video_support(train, records, vllm=config.vllm.enabled)
    set_seed(config.seed)  # LoRA weights are initialised before the Trainer seeds anything
    model, processor, start, adapter = load_policy(config)
    data = prepare_data(config, processor, skip=bad_images, records=records)
    log, resume_dir = _reward_log(config, out)
    trainer = explicit_warmup(
        _build_trainer(config, model, processor, data, log, callbacks or [], progress),
        config.warmup_ratio,
    )
    output = trainer.train(resume_from_checkpoint=str(resume_dir) if resume_dir else None)
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, HistoryCallback):
            callback.finish(output.metrics, trainer.state.global_step)
    first, last = log.quarters()
    result = GRPOResult(
        out,
        len(data.records),
        data.counts(),
        dict(output.metrics),
        time.perf_counter() - started,
        first,
        last,
        list(log.accuracy),
        start,
    )
    _save_outputs(config, trainer, processor, data, result, adapter)
    return result


def _reward_log(config: GRPOConfig, out: Path) -> tuple[RewardLog, Path | None]:
    """The run's reward log, holding the accuracy an earlier run scored when resuming."""
    monitor = config.monitor
    log = RewardLog(config.rewards, out, monitor.samples_every, monitor.samples_per_dump)
    resume_dir = resume_checkpoint(out, config.resume)
    log.resume_from(checkpoint_step(resume_dir), main=int(os.environ.get("RANK", "0")) == 0)
    return log, resume_dir


def score_completions_only() -> None:
    """Make TRL's fused LM head project only scored (completion) positions on the CPU as well.

    ``trl.trainer.utils.add_fused_lm_head``'s forward decides per call with
    ``trl.trainer.utils._use_triton(device)`` whether to pass only the labelled rows
    (``hidden_states[mask]``) to its chunked log-prob kernel; the kernel itself picks Triton or
    its PyTorch tiles with its own copy of that function, so replacing the name in
    ``trl.trainer.utils`` changes the row selection and nothing else. Idempotent; does nothing
    when the TRL release lacks the name (the forward then keeps TRL's own choice)."""
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None or getattr(original, "medvl_override", False):
        return

    def compact(device: torch.device) -> bool:
        return device.type == "cpu" or original(device)

    compact.medvl_override = True  # type: ignore[attr-defined]
    compact.__wrapped__ = original  # type: ignore[attr-defined]  # TRL's own, for tests
    trl_utils._use_triton = compact


def _build_trainer(
    config: GRPOConfig,
    model,
    processor,
    data: GRPOData,
    log,
    callbacks: list,
    progress: Progress | None = None,
):
    """TRL's ``GRPOTrainer`` (with medvl's video path) on the policy: LoRA (TRL wraps it) or
    the ``full_parts`` trained."""
    from medvl.train.grpo_video import VideoGRPOTrainer

    spec = detect_family(model)
    score_completions_only()
    if config.tuning == "full":
        freeze_for_full(model, config, spec)
    return VideoGRPOTrainer(
        model=model,
        reward_funcs=build_rewards(config, log),
        args=trl_args(config, tqdm=draws_bar(progress)),
        train_dataset=data.dataset,
        processing_class=processor,
        peft_config=lora_config(config, spec) if config.tuning == "lora" else None,
        callbacks=[
            DropUnscoredMetrics(),
            TensorBoardCallback(),
            CompleteCheckpointCallback(),
            EtaCallback(progress),  # before the history, so history.json holds the ETA
            FiniteLossCallback(Path(config.output_dir)),
            *callbacks,
        ],
    )


def _save_outputs(
    config: GRPOConfig, trainer, processor, data: GRPOData, result: GRPOResult, adapter
) -> None:
    accuracy = _accuracy_summary(result)
    extra = {
        "kind": "grpo",
        "tuning": config.tuning,
        "start_model": result.start_model,
        "sft_adapter": adapter,
        "rewards": dict(zip(config.rewards, config.weights(), strict=True)),
        "train_records": len(data.records),
        "rejected": data.rejected,
        "global_step": trainer.state.global_step,
        "accuracy": {k: v for k, v in accuracy.items() if k != "per_step"},  # curve: accuracy.json
    }
    save_outputs(
        config,
        trainer,
        processor,
        data_files={"train": Path(config.data.train)},
        extra=extra,
        json_files={"trl_args.json": trainer.args.to_dict(), "accuracy.json": accuracy},
    )


def _accuracy_summary(result: GRPOResult) -> dict[str, Any]:
    return {
        "first_quarter": result.accuracy_first_quarter,
        "last_quarter": result.accuracy_last_quarter,
        "per_step": [
            {"step": s, "accuracy": a, "completions": n} for s, a, n in result.accuracy_curve
        ],
    }
