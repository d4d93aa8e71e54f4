"""medvl: fine-tune, use and evaluate Qwen-VL vision-language models for medicine."""

from __future__ import annotations

from typing import Any

from medvl.provenance import __version__ as __version__


def __getattr__(name: str) -> Any:
    """``medvl.load`` imports the inference stack on first use, so ``import medvl`` stays cheap."""
    if name == "load":
        from medvl.infer.api import load

        return load
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
