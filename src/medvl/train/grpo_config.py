"""The GRPO recipe: every knob of a medical VLM GRPO run, typed and checked before training.

The GRPO hyperparameters whose TRL defaults changed between releases (``beta`` 0.04 -> 0.0 in
v0.19, ``loss_type`` bnpo -> dapo in v0.22, ``num_generations``, lengths, sampling, clipping,
reward scaling) have no default here: a recipe must state them, and the run saves them.
``batch_size`` follows TRL: it counts *completions* per device and step, so one step holds
``batch_size / num_generations`` prompts per device.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medvl.errors import ConfigError
from medvl.train.prompts import TEMPLATES
from medvl.train.rewards import REWARDS
from medvl.train.training_config import (
    ON_BAD_IMAGE_HELP,
    PARTS,
    VIDEO_MAX_PIXELS_HELP,
    VIDEO_MIN_PIXELS_HELP,
    BadImagePolicy,
    Scheduler,
    TrainingSection,
    check_data_pixels,
    shared_field,
)

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo")
#: Why each required GRPO field has no default (shown when a recipe leaves one out).
DRIFT = {
    "num_generations": "the group size: TRL's default is 8, MedVLM-R1 used 4",
    "max_prompt_length": "TRL 1.x dropped it (early releases cut prompts from the left); "
    "medvl drops longer records, image tokens included; MedVLM-R1: 512",
    "max_completion_length": "TRL's default went from 256 to 512; MedVLM-R1: 512",
    "beta": "TRL's default went from 0.04 to 0.0 in v0.19; MedVLM-R1: 0.04",
    "loss_type": "TRL's default went from 'grpo' to 'bnpo' (v0.18) to 'dapo' (v0.22); "
    "MedVLM-R1: grpo",
    "temperature": "TRL's default went from 0.9 to 1.0; MedVLM-R1: 1.0",
    "epsilon": "the PPO clip range; TRL: 0.2",
    "scale_rewards": "TRL's bool became 'group'/'batch'/'none'; MedVLM-R1: group",
}


#: TRL releases medvl's GRPO is tested with (GRPO for VLMs, ``log_metric``, string scale_rewards,
#: the private hooks ``grpo_video`` overrides); ``medvl.train.grpo`` refuses others.
TRL_TESTED = ">=1.16,<2"


@dataclass(kw_only=True)
class GRPOSection:
    """The RL hyperparameters, all explicit (see :data:`DRIFT` for why)."""

    num_generations: int | None = field(default=None, metadata={"help": "completions per prompt"})
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "longer prompts (with image and video tokens) are dropped"}
    )
    max_completion_length: int | None = field(default=None, metadata={"help": "new tokens"})
    beta: float | None = field(default=None, metadata={"help": "KL coefficient (0: no ref)"})
    loss_type: str | None = field(default=None, metadata={"help": ", ".join(LOSS_TYPES)})
    temperature: float | None = field(default=None, metadata={"help": "rollout temperature"})
    epsilon: float | None = field(default=None, metadata={"help": "clip range (low)"})
    scale_rewards: str | None = field(default=None, metadata={"help": "group, batch or none"})
    epsilon_high: float | None = field(default=None, metadata={"help": "default: epsilon"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (1.0: off)"})
    top_k: int = field(default=0, metadata={"help": "top-k sampling (0: off)"})
    num_iterations: int = field(default=1, metadata={"help": "updates per generation batch"})
    mask_truncated_completions: bool = field(
        default=False, metadata={"help": "no loss on completions cut at max length"}
    )

    def __post_init__(self) -> None:
        missing = [name for name in DRIFT if getattr(self, name) is None]
        if missing:
            name = missing[0]
            raise ConfigError(
                f"grpo.{name} is not set; set it explicitly in the recipe ({DRIFT[name]})"
                + (f"; also missing: {', '.join(missing[1:])}" if missing[1:] else "")
            )
        if self.loss_type not in LOSS_TYPES:
            raise ConfigError(
                f"grpo.loss_type {self.loss_type!r} is unknown; use one of {', '.join(LOSS_TYPES)}"
            )
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ConfigError(
                f"grpo.scale_rewards {self.scale_rewards!r}: use 'group', 'batch' or 'none'"
            )
        if self.num_generations < 2:
            raise ConfigError(
                f"grpo.num_generations is {self.num_generations}; GRPO compares completions "
                "of the same prompt, so use 2 or more (MedVLM-R1: 4)"
            )
        for name in ("max_prompt_length", "max_completion_length", "num_iterations"):
            if getattr(self, name) < 1:
                raise ConfigError(f"grpo.{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0 or self.beta < 0 or self.epsilon <= 0:
            raise ConfigError("grpo.temperature and grpo.epsilon must be > 0 and grpo.beta >= 0")


@dataclass(kw_only=True)
class GRPODataSection:
    """Canonical JSONL records with a verifiable answer (MCQ, closed or open)."""

    train: Path = field(metadata={"help": "training JSONL (canonical records)"})
    min_pixels: int | None = field(default=None, metadata={"help": "processor min_pixels"})
    max_pixels: int | None = field(default=None, metadata={"help": "processor max_pixels"})
    video_min_pixels: int | None = field(default=None, metadata={"help": VIDEO_MIN_PIXELS_HELP})
    video_max_pixels: int | None = field(default=None, metadata={"help": VIDEO_MAX_PIXELS_HELP})
    max_train_samples: int | None = field(default=None, metadata={"help": "use the first N"})
    on_bad_image: BadImagePolicy = field(default="refuse", metadata={"help": ON_BAD_IMAGE_HELP})

    def __post_init__(self) -> None:
        check_data_pixels(self)


@dataclass(kw_only=True)
class PromptSection:
    """How a record becomes the prompt (see ``medvl.train.prompts``)."""

    template: str = field(default="plain", metadata={"help": ", ".join(TEMPLATES)})
    system: str | None = field(
        default=None, metadata={"help": "system-role text; null: the chat template's default"}
    )

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ConfigError(
                f"prompt.template {self.template!r} is unknown; use one of {', '.join(TEMPLATES)}"
            )
        if self.system is not None and not self.system.strip():
            raise ConfigError("prompt.system is empty; give the system prompt text or null")


@dataclass(kw_only=True)
class VLLMSection:
    """TRL's vLLM rollout options, passed through as ``vllm_*`` (GPU only; needs ``vllm``)."""

    enabled: bool = field(default=False, metadata={"help": "GRPOConfig.use_vllm"})
    mode: Literal["colocate", "server"] = field(
        default="colocate",
        metadata={"help": "colocate: vLLM in the training processes; server: a trl vllm-serve"},
    )
    gpu_memory_utilization: float = field(default=0.3, metadata={"help": "colocate only"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "colocate only"})
    max_model_length: int | None = field(default=None, metadata={"help": "prompt + completion"})
    enable_sleep_mode: bool = field(
        default=False, metadata={"help": "colocate: free vLLM memory between rollouts"}
    )
    server_base_url: str | None = field(default=None, metadata={"help": "server mode"})
    server_host: str = field(default="0.0.0.0", metadata={"help": "server mode: host"})
    server_port: int = field(default=8000, metadata={"help": "server mode: port"})
    server_timeout: float = field(
        default=240.0, metadata={"help": "server mode: seconds to wait for the server"}
    )
    importance_sampling_correction: bool = field(
        default=True,
        metadata={"help": "correct for vLLM's and the trainer's token probabilities differing"},
    )


@dataclass(kw_only=True)
class MonitorSection:
    """What a person can read while the run goes: sample completions on disk."""

    samples_every: int = field(default=10, metadata={"help": "steps between sample dumps (0 off)"})
    samples_per_dump: int = field(default=16, metadata={"help": "completions written per dump"})


@dataclass(kw_only=True)
class GRPOConfig(TrainingSection):
    """A complete GRPO recipe (YAML keys mirror these fields and those of TrainingSection)."""

    data: GRPODataSection = field(metadata={"help": "training data"})
    grpo: GRPOSection = field(metadata={"help": "RL hyperparameters, all explicit"})
    rewards: list[str] = field(metadata={"help": ", ".join(REWARDS)})
    reward_weights: list[float] | None = field(
        default=None, metadata={"help": "one per reward; null: all 1.0"}
    )
    reward_params: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={"help": "keyword arguments per reward, e.g. length_penalty: {max_tokens: 512}"},
    )
    prompt: PromptSection = field(
        default_factory=PromptSection, metadata={"help": "how a record becomes the prompt"}
    )
    tuning: Literal["lora", "full"] = field(
        default="lora", metadata={"help": "lora: new LoRA on the language model; full: weights"}
    )
    full_parts: list[str] = field(
        default_factory=lambda: ["language"], metadata={"help": "tuning full: parts that train"}
    )
    # GRPO's defaults that differ from SFT's (the fields and their checks: TrainingSection)
    learning_rate: float = shared_field("learning_rate", 1e-6)
    batch_size: int = shared_field(
        "batch_size", 4, "completions per device per step (batch_size / num_generations prompts)"
    )
    warmup_ratio: float = shared_field("warmup_ratio", 0.0)
    scheduler: Scheduler = shared_field("scheduler", "linear")  # noqa: RUF009 (a field())
    logging_steps: int = shared_field("logging_steps", 1)
    vllm: VLLMSection = field(
        default_factory=VLLMSection, metadata={"help": "vLLM rollouts (GPU only)"}
    )
    monitor: MonitorSection = field(
        default_factory=MonitorSection, metadata={"help": "sample completions written to disk"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_rewards()
        self._check_batch()
        unknown = sorted(set(self.full_parts) - set(PARTS))
        if unknown or not self.full_parts:
            raise ConfigError(
                f"full_parts {self.full_parts}: list one or more of {', '.join(PARTS)}"
            )

    def _check_rewards(self) -> None:
        if not self.rewards:
            raise ConfigError(f"rewards is empty; list one or more of {', '.join(REWARDS)}")
        for name in self.rewards:
            if name not in REWARDS:
                raise ConfigError(f"unknown reward {name!r}; known rewards: {', '.join(REWARDS)}")
        if len(set(self.rewards)) != len(self.rewards):
            raise ConfigError(f"rewards {self.rewards} names a reward twice; weight it instead")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ConfigError(
                f"reward_weights has {len(self.reward_weights)} value(s) for {len(self.rewards)} "
                f"reward(s) {self.rewards}; give one weight per reward, in the same order"
            )
        if not any(REWARDS[name].verifies for name in self.rewards):
            raise ConfigError(
                f"rewards {self.rewards} check no answer; add an accuracy reward "
                "(mcq_accuracy, closed_accuracy, open_f1 or medvlm_r1_compat)"
            )
        for name, params in self.reward_params.items():
            _check_reward_params(name, params, self.rewards)

    def _check_batch(self) -> None:
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        generation_batch = self.batch_size * self.grad_accum * processes
        if generation_batch % self.grpo.num_generations:
            raise ConfigError(
                f"grpo.num_generations ({self.grpo.num_generations}) must divide the generation "
                f"batch batch_size x grad_accum x processes = {self.batch_size} x "
                f"{self.grad_accum} x {processes} = {generation_batch}; batch_size counts "
                f"completions, so make it a multiple of {self.grpo.num_generations}"
            )

    def weights(self) -> list[float]:
        """One weight per reward (1.0 each when none are given)."""
        return list(self.reward_weights) if self.reward_weights else [1.0] * len(self.rewards)


def _check_reward_params(name: str, params: Any, rewards: list[str]) -> None:
    if name not in rewards:
        raise ConfigError(f"reward_params.{name}: {name!r} is not in rewards {rewards}")
    if not isinstance(params, dict):
        raise ConfigError(f"reward_params.{name} must be a mapping of keyword: value")
    signature = inspect.signature(REWARDS[name].fn)
    allowed = [
        p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    for key in params:
        if key not in allowed:
            raise ConfigError(
                f"reward_params.{name}.{key} is not a parameter of reward {name!r}; "
                f"allowed: {', '.join(allowed) or 'none'}"
            )
