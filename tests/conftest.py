"""Shared test setup for every tier: offline Hugging Face, the ``gpu`` marker, tiny models and a
phantom dataset built once per session, and the subprocess form of ``medvl train sft``.

Tiers: ``unit/`` (pure functions and small objects, no model), ``integration/`` (tiny models,
training, the CLI end to end, servers, pipelines), ``recipes/`` (every shipped recipe) and
``faults/`` (bad input, kills, resume, truncated files, error messages).
"""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub/transformers: tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

#: The repository root (recipes/, pyproject.toml).
ROOT = Path(__file__).resolve().parents[1]
#: Where the real Qwen2-VL-2B-Instruct tokenizer/processor/config (no weights) live, if present.
QWEN2_VL_FIXTURE = ROOT.parent / "shared/fixtures/qwen2-vl-2b-instruct"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu``-marked tests when CUDA is not available: collected, reported, not run."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)


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


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """A 40-record phantom dataset (train/val/test.jsonl + images/), built once per session.

    Shared by every test, so read-only: write derived files into ``tmp_path`` (link
    ``images/`` there when the records must resolve).
    """
    from medvl.data.phantom import generate_phantom

    out = tmp_path_factory.mktemp("phantom")
    generate_phantom(out, n=40, seed=3)
    return out


@pytest.fixture(scope="session")
def sft_command() -> Callable[..., list[str]]:
    """Return ``command(model_dir, data_dir, out, *overrides) -> argv``: the real
    ``medvl train sft`` on the tiny instruct recipe, run in a subprocess (kill, resume, DDP)."""
    recipe = ROOT / "recipes" / "tiny" / "sft_instruct.yaml"

    def command(model_dir: Path, data_dir: Path, out: Path, *overrides: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "medvl.cli.main",
            "train",
            "sft",
            str(recipe),
            f"model={model_dir}",
            f"data.train={data_dir / 'train.jsonl'}",
            "data.val=null",
            f"output_dir={out}",
            "batch_size=2",
            "logging_steps=1",
            "save_total_limit=null",
            "dataloader_workers=0",
            *overrides,
        ]

    return command


@pytest.fixture(scope="session")
def subprocess_env() -> dict[str, str]:
    """The environment for medvl subprocesses: offline, one thread, quiet tokenizers."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
