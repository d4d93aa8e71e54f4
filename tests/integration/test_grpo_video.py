"""GRPO on records with videos (medvl.train.grpo_video.VideoGRPOTrainer).

- The per-token log-probabilities medvl's GRPO scores a video prompt's completions with (in the
  loss, through ``_compute_loss``) equal a direct forward of the model with the processor's
  video tensors (fp32, rtol 1e-5), and differ from the same forward with other frames: the
  video is really used. The batch mixes a video+image prompt and a video-only prompt.
- A tiny run on 4 records with a 4-frame ``frames`` video completes on every family.
- Records with videos next to image-only records train in one batch.
- vLLM rollouts and a TRL without the hooks are refused, naming the records.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from video_records import frames_video, noise_png, write_yes_no

from medvl.config import load_config
from medvl.errors import MedvlError

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


def write_records_file(root: Path, kinds: list[str]) -> Path:
    """One yes/no record per entry of ``kinds`` in ``root/train.jsonl``: ``video`` (a 4-slice
    ``frames`` video), ``video+image`` (the video, then an image) or ``image``."""
    media = []
    for i, kind in enumerate(kinds):
        videos = [frames_video(root, i)] if "video" in kind else []
        images = (
            [noise_png(root / "img" / f"r{i}.png", (56, 56), 500 + i)] if "image" in kind else []
        )
        media.append((videos, images))
    return write_yes_no(root, media)


def grpo_config(model_dir: Path, train: Path, out: Path, *overrides: str):
    from medvl.train.grpo_config import GRPOConfig

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
            "grpo.temperature=0.7",
            "grpo.epsilon=0.2",
            "grpo.scale_rewards=group",
            "batch_size=4",
            "max_steps=1",
            "logging_steps=1",
            "save_steps=100",
            "precision=fp32",
            *overrides,
        ],
    )


def _losses(out: Path) -> list[float]:
    history = json.loads((out / "history.json").read_text())
    return [entry["loss"] for entry in history if "loss" in entry]


def _trainer(model_dir: Path, train: Path, out: Path):
    """medvl's GRPO trainer on ``train`` (full tuning, so the policy is the plain model)."""
    from medvl.train.grpo import _build_trainer, _reward_log, load_policy
    from medvl.train.grpo_data import prepare_data

    config = grpo_config(model_dir, train, out, "tuning=full")
    out.mkdir(parents=True)
    model, processor, _, _ = load_policy(config)
    data = prepare_data(config, processor)
    log, _ = _reward_log(config, out)
    return _build_trainer(config, model, processor, data, log, []), data


def _direct_logps(model, processor, row, completion, temperature, frames=None):
    """Log-probabilities of ``completion`` after ``row``'s prompt from one plain forward of the
    model with the processor's image and video tensors (no TRL, no medvl trainer)."""
    from medvl.data.video import video_call_kwargs

    text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    videos = frames if frames is not None else row["videos"]
    enc = processor(
        text=[text],
        images=row["images"] or None,
        return_tensors="pt",
        **video_call_kwargs(processor, videos),
    )
    n = completion.numel()
    ids = torch.cat([enc["input_ids"], completion[None]], dim=1)
    inputs = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    inputs["mm_token_type_ids"] = torch.cat(
        [enc["mm_token_type_ids"], torch.zeros_like(completion)[None]], dim=1
    )
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **inputs).logits
    logps = torch.log_softmax(logits[0, -n - 1 : -1].float() / temperature, dim=-1)
    return logps.gather(-1, completion[:, None]).squeeze(-1)


def test_logprobs_equal_a_direct_forward_with_the_video(tiny_model_dirs, tmp_path, monkeypatch):
    from transformers import set_seed

    from medvl.train.grpo_video import MEDIA_KEY

    train = write_records_file(tmp_path / "data", ["video+image", "video"])
    trainer, data = _trainer(tiny_model_dirs("qwen2_vl"), train, tmp_path / "run")
    rows = [data.dataset[i] for i in (0, 0, 1, 1)]  # num_generations=2 completions per prompt
    assert rows[0]["images"] and not rows[2]["images"] and len(rows[2]["videos"][0]) == 4
    generated = []
    generate = trainer.model.generate

    def generate_spy(**kwargs):
        generated.append(kwargs)
        return generate(**kwargs)

    monkeypatch.setattr(trainer.model, "generate", generate_spy)
    set_seed(0)
    trainer.model.train()
    batch = trainer._generate_and_score_completions(rows)
    # the rollouts saw the video: its tensors, and one type-2 token per merged patch
    (seen_by_generate,) = generated
    grid = seen_by_generate["video_grid_thw"]
    assert grid.tolist() == [[2, 4, 4]] * 4  # 4 frames -> 2 temporal patches of 56x56 px
    assert seen_by_generate["pixel_values_videos"].size(0) == int(grid.prod(-1).sum())
    video_tokens = (seen_by_generate["mm_token_type_ids"] == 2).sum(-1)
    assert video_tokens.tolist() == [int(g.prod()) // 4 for g in grid]
    assert seen_by_generate["image_grid_thw"].size(0) == 2  # rows 0 and 1: one image each
    assert "pixel_values_videos" not in batch and len(batch[MEDIA_KEY]) == 4

    seen = []
    scorer = trainer._get_per_token_logps_and_entropies

    def spy(*args, **kwargs):
        result = scorer(*args, **kwargs)
        seen.append(result[0].detach())
        return result

    monkeypatch.setattr(trainer, "_get_per_token_logps_and_entropies", spy)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop otherwise
    loss = trainer._compute_loss(trainer.model, batch)
    assert math.isfinite(float(loss)) and len(seen) == 1
    got = seen[0]

    model, processor, temperature = trainer.model, trainer.processing_class, trainer.temperature
    inverted = [[Image.eval(f, lambda v: 255 - v) for f in video] for video in rows[2]["videos"]]
    for i, row in enumerate(rows):
        mask = batch["completion_mask"][i].bool()
        completion = batch["completion_ids"][i][mask]
        expected = _direct_logps(model, processor, row, completion, temperature)
        torch.testing.assert_close(got[i][mask], expected, rtol=1e-5, atol=1e-5)
        if row is rows[2]:  # other frames, same tokens: other log-probabilities
            other = _direct_logps(model, processor, row, completion, temperature, inverted)
            assert (other - expected).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_grpo_run_on_videos(family, tiny_model_dirs, tmp_path):
    from medvl.train.grpo import run_grpo

    train = write_records_file(tmp_path / "data", ["video", "video+image", "video", "video"])
    result = run_grpo(grpo_config(tiny_model_dirs(family), train, tmp_path / "run"))
    assert result.train_records == 4 and result.metrics["train_runtime"] > 0
    losses = _losses(tmp_path / "run")
    assert losses and all(math.isfinite(x) for x in losses)


def test_videos_and_image_only_records_train_in_one_batch(tiny_model_dirs, tmp_path):
    """All 4 prompts x 2 generations in one generation batch, shuffled and split into two
    accumulation steps: the media must follow their rows (the trainer checks every row's
    prompt tokens against the prompt its media were encoded with)."""
    from medvl.train.grpo import run_grpo

    train = write_records_file(tmp_path / "data", ["image", "video", "image", "video"])
    overrides = ("batch_size=4", "grad_accum=2")
    result = run_grpo(
        grpo_config(tiny_model_dirs("qwen2_5_vl"), train, tmp_path / "run", *overrides)
    )
    assert result.train_records == 4
    assert all(math.isfinite(x) for x in _losses(tmp_path / "run"))


def test_videos_with_vllm_are_refused_naming_the_records(tmp_path):
    from medvl.data.jsonl import read_records
    from medvl.train.grpo_data import check_video_support

    train = write_records_file(tmp_path / "data", ["image", "video", "video+image"])
    records = read_records(train)
    with pytest.raises(MedvlError) as info:
        check_video_support(train, records, vllm=True)
    message = str(info.value)
    assert message.startswith(f"{train}: 2 record(s) have videos (e.g. r1, r2)")
    assert "vllm.enabled=false" in message
    check_video_support(train, records, vllm=False)  # transformers rollouts: supported
    check_video_support(train, records[:1], vllm=True)  # no video: vLLM is fine


def test_a_trl_without_the_hooks_is_named():
    from trl import GRPOTrainer

    from medvl.train.grpo_video import check_video_hooks

    assert check_video_hooks() is None

    class Old(GRPOTrainer):
        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask):
            pass

    assert check_video_hooks(Old) == (
        "its GRPOTrainer._get_per_token_logps_and_entropies lacks the parameter(s) "
        "logits_to_keep, batch_size"
    )
    assert check_video_hooks(object) == "its GRPOTrainer has no _generate_and_score_completions"


def test_a_trl_without_the_hooks_refuses_video_records(tmp_path, monkeypatch):
    import medvl.train.grpo_video as grpo_video
    from medvl.data.jsonl import read_records
    from medvl.train.grpo_data import check_video_support

    monkeypatch.setattr(grpo_video, "check_video_hooks", lambda: "its GRPOTrainer has no X")
    train = write_records_file(tmp_path / "data", ["video", "image"])
    records = read_records(train)
    with pytest.raises(MedvlError) as info:
        check_video_support(train, records)
    assert str(info.value).startswith(f"{train}: 1 record(s) have videos (e.g. r0)")
    assert "(its GRPOTrainer has no X; medvl is tested with trl>=1.16,<2)" in str(info.value)
    check_video_support(train, records[1:])  # image records never need the hooks


def test_video_tokens_without_their_media_are_refused(tiny_model_dirs, tmp_path):
    train = write_records_file(tmp_path / "data", ["video"])
    trainer, data = _trainer(tiny_model_dirs("qwen2_vl"), train, tmp_path / "run")
    row = data.dataset[0]
    media = trainer._encode_row(row)
    ids = torch.tensor([[*media.prompt_ids, 11, 12]])
    with pytest.raises(MedvlError, match="video tokens but its video tensors"):
        trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, torch.ones_like(ids), logits_to_keep=2
        )


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_lengths_count_the_video_tokens(family, tiny_model_dirs, tmp_path):
    """The length GRPO checks against max_prompt_length is the processor's (Qwen3-VL's
    timestamp text included): video tokens never pass the limit unseen."""
    from transformers import AutoProcessor

    from medvl.train.grpo_data import prepare_data
    from medvl.train.grpo_video import encode_prompt

    model_dir = tiny_model_dirs(family)
    train = write_records_file(tmp_path / "data", ["video", "video+image", "image"])
    processor = AutoProcessor.from_pretrained(model_dir)
    data = prepare_data(grpo_config(model_dir, train, tmp_path / "run"), processor)
    for i in range(3):
        row = data.dataset[i]
        media = encode_prompt(processor, row["prompt"], row["images"], row["videos"])
        assert data.prompt_lengths[row["id"]] == len(media.prompt_ids), row["id"]
        assert (media.video_grid_thw is None) == (not row["videos"])
    limit = data.prompt_lengths["r1"] - 1  # one token short of the video+image prompt
    assert data.prompt_lengths["r0"] <= limit < data.prompt_lengths["r1"]
    short = grpo_config(model_dir, train, tmp_path / "run", f"grpo.max_prompt_length={limit}")
    assert prepare_data(short, processor).rejected["too_long"] == ["r1"]
