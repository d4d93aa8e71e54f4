"""Training runs on records with videos (ordered slices) and several images: SFT, both stages of
the tiny recipes, completes with a finite loss; GRPO trains on videos (API and CLI; the
log-probabilities are checked in test_grpo_video.py) and on multi-image records."""

from __future__ import annotations

import json
import math
from pathlib import Path

from video_records import frames_video, noise_png, write_yes_no

from medvl.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def write_dataset(root: Path, n: int, *, videos: bool = True) -> Path:
    """``n`` yes/no records in ``root/train.jsonl``: with videos, every record has a 4-slice
    ``frames`` video and every other one an image too; without, each has two images."""
    media = []
    for i in range(n):
        if videos:
            even = i % 2 == 0
            images = [noise_png(root / "img" / f"r{i}.png", (56, 56), 500 + i)] if even else []
            media.append(([frames_video(root, i)], images))
        else:
            pngs = [root / "img" / f"r{i}-{v}.png" for v in (0, 1)]
            media.append(
                ([], [noise_png(p, (56, 56), 700 + 2 * i + v) for v, p in enumerate(pngs)])
            )
    return write_yes_no(root, media)


def _losses(out: Path) -> list[float]:
    history = json.loads((out / "history.json").read_text())
    return [entry["loss"] for entry in history if "loss" in entry]


def test_sft_both_stages_train_on_videos_and_images(tiny_model_dirs, tmp_path):
    from medvl.train.sft import run_sft
    from medvl.train.sft_config import SFTConfig

    train = write_dataset(tmp_path / "data", 8)
    common = [f"data.train={train}", "data.val=null", "max_steps=2", "logging_steps=1"]
    common += ["batch_size=4", "save_steps=100", "validation.samples=0"]
    align = load_config(
        SFTConfig,
        ROOT / "recipes" / "tiny" / "sft_align.yaml",
        [f"model={tiny_model_dirs('qwen2_vl')}", f"output_dir={tmp_path / 'align'}", *common],
    )
    first = run_sft(align)  # packed rows (the recipe's default)
    assert first.train_records == 8
    instruct = load_config(
        SFTConfig,
        ROOT / "recipes" / "tiny" / "sft_instruct.yaml",
        [
            f"model={first.output_dir}",
            f"output_dir={tmp_path / 'instruct'}",
            *common,
            "packing=false",
        ],
    )
    second = run_sft(instruct)  # padded batches
    for result in (first, second):
        losses = _losses(result.output_dir)
        assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses), losses


def _grpo_config(model_dir: Path, train: Path, out: Path, *overrides: str):
    from medvl.train.grpo_config import GRPOConfig

    # the cheapest run of tests/integration/test_grpo.py's settings, one step
    return load_config(
        GRPOConfig,
        None,
        [
            f"model={model_dir}",
            f"data.train={train}",
            f"output_dir={out}",
            "rewards=[closed_accuracy]",
            "grpo.num_generations=2",
            "grpo.max_prompt_length=1024",
            "grpo.max_completion_length=4",
            "grpo.beta=0.04",
            "grpo.loss_type=grpo",
            "grpo.temperature=1.0",
            "grpo.epsilon=0.2",
            "grpo.scale_rewards=group",
            "batch_size=4",
            "max_steps=1",
            "logging_steps=1",
            "save_steps=100",
            *overrides,
        ],
    )


def test_grpo_trains_on_videos(tiny_model_dirs, tmp_path):
    from medvl.train.grpo import run_grpo

    train = write_dataset(tmp_path / "data", 4)  # every record a video, every other an image
    result = run_grpo(_grpo_config(tiny_model_dirs("qwen2_vl"), train, tmp_path / "run"))
    assert result.train_records == 4 and result.rejected == {}
    losses = _losses(tmp_path / "run")
    assert losses and all(math.isfinite(x) for x in losses)


def test_grpo_cli_trains_on_videos(tiny_model_dirs, tmp_path, capsys):
    from medvl.cli.main import main

    train = write_dataset(tmp_path / "data", 4)
    args = ["train", "grpo", str(ROOT / "recipes" / "tiny" / "grpo.yaml")]
    args += [f"model={tiny_model_dirs('qwen2_vl')}", f"data.train={train}"]
    args += [f"output_dir={tmp_path / 'o'}", "max_steps=1", "batch_size=4", "save_steps=100"]
    args += ["logging_steps=1"]
    args += ["grpo.num_generations=2", "grpo.max_completion_length=4"]
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    assert _losses(tmp_path / "o")


def test_grpo_runs_on_two_image_records(tiny_model_dirs, tmp_path):
    from medvl.train.grpo import run_grpo

    train = write_dataset(tmp_path / "data", 4, videos=False)
    result = run_grpo(_grpo_config(tiny_model_dirs("qwen2_vl"), train, tmp_path / "run"))
    assert result.train_records == 4 and result.metrics["train_runtime"] > 0
    losses = _losses(tmp_path / "run")
    assert losses and all(math.isfinite(x) for x in losses)
