"""Inference: engines (local Hugging Face, OpenAI-compatible client), prediction, chat, server.

Everything loads on first use (PEP 562), so ``import medvl.infer`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "ChatRequest": "medvl.infer.engine",
    "Engine": "medvl.infer.engine",
    "Generation": "medvl.infer.engine",
    "GenerationSettings": "medvl.infer.engine",
    "InferenceError": "medvl.infer.engine",
    "TokenStream": "medvl.infer.engine",
    "EngineSpec": "medvl.infer.factory",
    "open_engine": "medvl.infer.factory",
    "HFEngine": "medvl.infer.hf_engine",
    "OpenAIEngine": "medvl.infer.openai_engine",
    "PredictSummary": "medvl.infer.predict",
    "predict_file": "medvl.infer.predict",
    "predict_records": "medvl.infer.predict",
    "read_prediction_rows": "medvl.infer.predict",
    "ChatSession": "medvl.infer.chat",
    "ServerConfig": "medvl.infer.protocol",
    "create_app": "medvl.infer.server",
    "BackgroundServer": "medvl.infer.server",
    "MedvlModel": "medvl.infer.api",
    "load": "medvl.infer.api",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    """Import the inference modules on first access, keeping ``import medvl.infer`` light."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
