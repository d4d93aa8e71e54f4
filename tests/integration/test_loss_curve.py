"""A pinned loss curve: 20 steps of the tiny SFT recipe on CPU against committed values.

Any change to what training computes (data order, masking, loss averaging, packing, LoRA init,
the optimizer or scheduler settings medvl passes, a dependency's default) moves these numbers;
the test says so instead of letting the change pass silently.

The reference lives in ``tests/assets/sft_tiny_loss_curve.json`` with the overrides that
produced it. When a change is deliberate, regenerate it and commit the new file with the
change that explains it::

    MEDVL_UPDATE_LOSS_CURVE=1 .venv/bin/pytest tests/integration/test_loss_curve.py

(the test then rewrites the file and skips with a reminder to review it).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
RECIPE = "recipes/tiny/sft_instruct.yaml"
REFERENCE = ROOT / "tests" / "assets" / "sft_tiny_loss_curve.json"
STEPS = 20
PHANTOM = {"n": 40, "seed": 3}
#: fp32 on CPU: runs on one machine repeat bit for bit; the margin is for other BLAS builds
#: and thread counts, whose different summation order moves the last digits.
RTOL = 1e-4


def overrides(model_dir: Path, data_dir: Path, out: Path) -> list[str]:
    """The recipe's values, except: a fresh tiny model, a phantom set, 20 steps, a loss per step,
    no validation and no checkpoint (neither changes the curve; both cost time)."""
    return [
        f"model={model_dir}",
        f"data.train={data_dir / 'train.jsonl'}",
        "data.val=null",
        f"output_dir={out}",
        f"max_steps={STEPS}",
        "logging_steps=1",
        "save_steps=1000",
        "dataloader_workers=0",
        "precision=fp32",
    ]


def test_tiny_sft_loss_curve_matches_the_committed_one(tiny_model_dirs, tmp_path, monkeypatch):
    from medvl.config import load_config
    from medvl.data.phantom import generate_phantom
    from medvl.train.sft import run_sft
    from medvl.train.sft_config import SFTConfig

    # The curve is a CPU one: on a CUDA machine medvl would train on the GPU, in other kernels.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data_dir = tmp_path / "phantom"
    generate_phantom(data_dir, **PHANTOM)
    settings = overrides(tiny_model_dirs("qwen2_vl"), data_dir, tmp_path / "run")
    result = run_sft(load_config(SFTConfig, ROOT / RECIPE, settings))
    history = json.loads((result.output_dir / "history.json").read_text(encoding="utf-8"))
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) == STEPS

    if os.environ.get("MEDVL_UPDATE_LOSS_CURVE") == "1":
        _write_reference(losses)
        pytest.skip(f"reference rewritten: review and commit {REFERENCE.relative_to(ROOT)}")
    expected = json.loads(REFERENCE.read_text(encoding="utf-8"))["losses"]
    assert len(expected) == STEPS
    torch.testing.assert_close(
        torch.tensor(losses, dtype=torch.float64),
        torch.tensor(expected, dtype=torch.float64),
        rtol=RTOL,
        atol=0.0,
        msg=lambda why: f"{why}\nthis run:  {losses}\ncommitted: {expected}",
    )


def _write_reference(losses: list[float]) -> None:
    """Write the reference with everything needed to reproduce it by hand."""
    import transformers

    placeholders = overrides(Path("TINY_QWEN2_VL"), Path("PHANTOM"), Path("OUT"))
    REFERENCE.write_text(
        json.dumps(
            {
                "what": f"train loss of the first {STEPS} steps of {RECIPE} on CPU, fp32",
                "command": f"medvl train sft {RECIPE} " + " ".join(placeholders),
                "model": "TINY_QWEN2_VL: medvl tiny --family qwen2_vl --seed 0 --out TINY_QWEN2_VL",
                "data": f"PHANTOM: medvl data phantom --n {PHANTOM['n']} --seed {PHANTOM['seed']} "
                "--out PHANTOM",
                "regenerate": "MEDVL_UPDATE_LOSS_CURVE=1 .venv/bin/pytest "
                "tests/integration/test_loss_curve.py",
                "rtol": RTOL,
                "generated_with": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "machine": platform.machine(),
                },
                "losses": losses,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
