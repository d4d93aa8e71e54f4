"""Shared builders for the inference tests (no tests here): a trained-looking LoRA adapter and
a small phantom dataset, each built once per test session and treated as read-only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

_CACHE: dict[tuple, Path] = {}


def make_adapter(base: Path, out: Path, *, seed: int = 1) -> Path:
    """A peft LoRA adapter as SFT saves one: LoRA on the language model's q/v projections with
    random (non-zero) B weights, plus the merger trained in full (``modules_to_save``), saved
    with the processor files next to it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from medvl.models.loading import quiet_peft_warnings
    from medvl.models.registry import detect_family

    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    spec = detect_family(model)
    full = ["merger"]
    if spec.name == "qwen3_vl":  # a ModuleList cannot be wrapped whole: name its members
        full += [
            f"deepstack_merger_list.{i}"
            for i in range(len(model.model.visual.deepstack_merger_list))
        ]
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=r".*\.language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)",
        modules_to_save=full,
    )
    with quiet_peft_warnings():
        peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
            elif "modules_to_save" in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.2)
    peft_model.save_pretrained(out)
    AutoProcessor.from_pretrained(base).save_pretrained(out)
    (out / "manifest.json").write_text(
        json.dumps({"kind": "sft", "stage": 2, "data": {"train": {"path": "train.jsonl"}}}),
        encoding="utf-8",
    )
    return out


def adapter_dir(tiny_model_dirs, tmp_path_factory, family: str = "qwen2_vl") -> Path:
    """The session's adapter for the tiny model of ``family`` (built on first use)."""
    key = ("adapter", family)
    if key not in _CACHE:
        out = tmp_path_factory.mktemp(f"adapter-{family}")
        _CACHE[key] = make_adapter(tiny_model_dirs(family), out)
    return _CACHE[key]


def phantom_dir(tmp_path_factory) -> Path:
    """A 40-record phantom dataset (train/val/test.jsonl + images), built once."""
    from medvl.data.phantom import generate_phantom

    key = ("phantom",)
    if key not in _CACHE:
        out = tmp_path_factory.mktemp("phantom")
        generate_phantom(out, n=40, seed=3)
        _CACHE[key] = out
    return _CACHE[key]


def copy_model(source: Path, target: Path) -> Path:
    """A writable copy of a read-only session model folder."""
    shutil.copytree(source, target)
    return target
