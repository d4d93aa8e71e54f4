"""Shared test setup: offline Hugging Face, and tiny models built once per session."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub/transformers: tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from collections.abc import Callable
from pathlib import Path

import pytest

#: Where the real Qwen2-VL-2B-Instruct tokenizer/processor/config (no weights) live, if present.
QWEN2_VL_FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/qwen2-vl-2b-instruct"


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> Callable[..., Path]:
    """Return ``get(family, size="tiny") -> Path``: a tiny model folder, built once per session.

    Folders are shared by every test of the session, so treat them as read-only: copy one
    (``shutil.copytree``) before writing into it.
    """
    from medvl.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    built: dict[tuple[str, str], Path] = {}

    def get(family: str, size: str = "tiny") -> Path:
        key = (family, size)
        if key not in built:
            built[key] = build_tiny_model(family, root / f"{family}-{size}", seed=0, size=size)
        return built[key]

    return get


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dirs) -> Callable[..., Path]:
    """Alias of :func:`tiny_model_dirs`."""
    return tiny_model_dirs


@pytest.fixture(scope="session")
def qwen2_vl_fixture_dir() -> Path:
    """The real Qwen2-VL-2B-Instruct config/tokenizer/processor folder; skip where absent."""
    if not (QWEN2_VL_FIXTURE / "config.json").is_file():
        pytest.skip(f"no real Qwen2-VL fixture at {QWEN2_VL_FIXTURE}")
    return QWEN2_VL_FIXTURE
