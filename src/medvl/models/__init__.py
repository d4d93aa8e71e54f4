"""Model families (module names per Qwen-VL generation), the tiny tokenizer and tiny models.

The registry is imported eagerly (it is light); the tokenizer and tiny-model builders import
transformers, so they load on first use: ``from medvl.models import FAMILIES`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from medvl.models.registry import (
    FAMILIES,
    OTHER,
    PARTS,
    FamilySpec,
    detect_family,
    get_family,
    lora_target_regex,
    parameters_by_part,
    part_of,
    split_by_part,
)

_LAZY = {
    "SPECIAL_TOKENS": "medvl.models.tokenizer",
    "build_tokenizer": "medvl.models.tokenizer",
    "chat_template_for": "medvl.models.tokenizer",
    "SIZES": "medvl.models.tiny",
    "TinySize": "medvl.models.tiny",
    "build_from_real_config": "medvl.models.tiny",
    "build_processor": "medvl.models.tiny",
    "build_tiny_config": "medvl.models.tiny",
    "build_tiny_model": "medvl.models.tiny",
    "token_ids": "medvl.models.tiny",
}

__all__ = [
    "FAMILIES",
    "OTHER",
    "PARTS",
    "FamilySpec",
    "detect_family",
    "get_family",
    "lora_target_regex",
    "parameters_by_part",
    "part_of",
    "split_by_part",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Import the tokenizer/tiny builders on first access (PEP 562) to keep imports light."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
