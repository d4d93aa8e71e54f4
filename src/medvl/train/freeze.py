"""What trains in each stage: freezing, LoRA wrapping and per-part learning rates.

Everything is resolved through the family registry (``medvl.models.registry``), so the same
recipe means the same thing on Qwen2-VL, Qwen2.5-VL and Qwen3-VL. The resolved plan is logged
at start and saved with the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from medvl.models.registry import FamilySpec, lora_target_regex, part_of
from medvl.train.sft_config import SFTConfig
from medvl.train.training_config import PARTS

logger = logging.getLogger(__name__)


@dataclass
class TrainablePlan:
    """The resolved answer to "what trains": per part its mode and parameter counts."""

    stage: str
    modes: dict[str, str]  # part -> "frozen" | "full" | "lora"
    lora_target_regex: str | None = None
    modules_to_save: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    trainable_modules: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "modes": self.modes,
            "lora_target_regex": self.lora_target_regex,
            "modules_to_save": self.modules_to_save,
            "counts": self.counts,
            "trainable_modules": self.trainable_modules,
        }

    def describe(self) -> str:
        lines = [f"stage {self.stage}: what trains"]
        for part in PARTS:
            c = self.counts.get(part, {"trainable": 0, "total": 0})
            lines.append(
                f"  {part:<9} {self.modes.get(part, 'frozen'):<7} "
                f"{c['trainable']:>12,} / {c['total']:,} params"
            )
        return "\n".join(lines)


def _modes(config: SFTConfig) -> dict[str, str]:
    modes = dict.fromkeys(PARTS, "frozen")
    if config.stage == "align":
        modes["merger"] = "full"
    elif config.stage == "full":
        modes.update(dict.fromkeys(config.unfreeze, "full"))
    else:
        modes["language"] = "lora"
        if config.train_merger:
            modes["merger"] = "full"
        if config.vision_lora:
            modes["vision"] = "lora"
        if config.train_lm_head:
            modes["lm_head"] = "full"
    return modes


def merger_module_names(model: torch.nn.Module, spec: FamilySpec) -> list[str]:
    """Module names (as peft's ``modules_to_save`` suffixes) of the merger and its siblings.

    peft cannot wrap a ``ModuleList`` (Qwen3-VL's deepstack mergers), so lists are named by
    their items (``deepstack_merger_list.0`` ...).
    """
    modules = dict(model.named_modules())
    names = []
    for prefix in spec.merger_prefixes:
        full = prefix.rstrip(".")
        short = full.rsplit(".", 1)[-1]
        module = modules.get(full)
        if isinstance(module, torch.nn.ModuleList):
            names += [f"{short}.{i}" for i in range(len(module))]
        elif module is not None:
            names.append(short)
    return names


def apply_plan(model: torch.nn.Module, config: SFTConfig, spec: FamilySpec):
    """Freeze/unfreeze/wrap ``model`` for ``config.stage``; returns ``(model, plan)``."""
    modes = _modes(config)
    plan = TrainablePlan(stage=config.stage, modes=modes)
    for name, param in model.named_parameters():
        param.requires_grad = modes.get(part_of(name, spec)) == "full"
    lora_parts = [p for p in ("language", "vision") if modes[p] == "lora"]
    if lora_parts:
        from peft import LoraConfig, get_peft_model

        plan.lora_target_regex = lora_target_regex(spec, lora_parts, config.lora.targets)
        if modes["merger"] == "full":
            plan.modules_to_save = merger_module_names(model, spec)
        if modes["lm_head"] == "full":
            plan.modules_to_save.append("lm_head")
        lora = LoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=plan.lora_target_regex,
            modules_to_save=plan.modules_to_save or None,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    plan.counts = _counts(model, spec)
    plan.trainable_modules = sorted(
        {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}
    )
    if not plan.trainable_modules:
        from medvl.errors import ConfigError

        raise ConfigError(f"stage {config.stage!r} leaves nothing trainable on this model")
    return model, plan


def _counts(model: torch.nn.Module, spec: FamilySpec) -> dict[str, dict[str, int]]:
    counts = {part: {"trainable": 0, "total": 0} for part in (*PARTS, "other")}
    for name, param in model.named_parameters():
        entry = counts[part_of(name, spec)]
        entry["total"] += param.numel()
        entry["trainable"] += param.numel() if param.requires_grad else 0
    return counts


def param_groups(model: torch.nn.Module, config: SFTConfig, spec: FamilySpec) -> list[dict]:
    """Optimizer groups: one learning rate per part; no weight decay on norms and biases."""
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = part_of(name, spec)
        decay = param.ndim >= 2 and "norm" not in name.lower()
        groups.setdefault((part, decay), []).append(param)
    return [
        {
            "params": params,
            "lr": config.lr_for(part),
            "weight_decay": config.weight_decay if decay else 0.0,
            "name": f"{part}/{decay}",
        }
        for (part, decay), params in sorted(groups.items())
    ]
