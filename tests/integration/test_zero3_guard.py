"""The ZeRO-3 / FSDP guard with videos: every batch calls the vision tower the same number of
times, all before the language model, whatever mix of images and videos it holds, and the loss
is unchanged (the collectives of sharded weights then line up across processes)."""

from __future__ import annotations

import pytest
import torch
from test_sft_video import CASES, make_record

from medvl.config import load_config
from medvl.data.features import FeatureBuilder
from medvl.train.collate import PaddingCollator
from medvl.train.sft_config import SFTConfig
from medvl.train.zero3_guard import dummy_vision_loss, missing_vision_calls


def test_missing_calls_count_each_kind_the_data_holds():
    both = ("image", "video")
    assert missing_vision_calls({"input_ids": 0}, both) == 2
    assert missing_vision_calls({"pixel_values": 0}, both) == 1
    assert missing_vision_calls({"pixel_values_videos": 0}, both) == 1
    assert missing_vision_calls({"pixel_values": 0, "pixel_values_videos": 0}, both) == 0
    assert missing_vision_calls({"input_ids": 0}, ("image",)) == 1  # image data: as before
    assert missing_vision_calls({"pixel_values": 0}, ("image",)) == 0


def _trainer(model_dir, tmp_path, records, guard: bool):
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainingArguments

    from medvl.models.registry import detect_family
    from medvl.train.arguments import training_arguments
    from medvl.train.callbacks import ThroughputCallback
    from medvl.train.sft_data import RecordDataset
    from medvl.train.sft_trainer import MedvlSFTTrainer, SFTRunState

    cfg = load_config(
        SFTConfig,
        None,
        [
            f"model={model_dir}",
            "data.train=t.jsonl",
            f"output_dir={tmp_path / 'run'}",
            f"dummy_image_forward={str(guard).lower()}",
        ],
    )
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(model_dir)
    dataset = RecordDataset(records, tmp_path, FeatureBuilder(processor))
    trainer = MedvlSFTTrainer(
        model=model,
        args=TrainingArguments(**training_arguments(cfg, report_to=[])),
        train_dataset=dataset,
        data_collator=PaddingCollator(0),
        state=SFTRunState(cfg, detect_family(model), ThroughputCallback()),
    )
    return trainer, dataset


def _calls(model) -> list[str]:
    """Record, in order, each forward of the vision tower and of the language model."""
    events: list[str] = []
    model.model.visual.register_forward_pre_hook(lambda *_: events.append("tower"))
    model.model.language_model.register_forward_pre_hook(lambda *_: events.append("language"))
    return events


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_every_batch_calls_the_tower_once_per_kind_before_the_model(
    family, tiny_model_dirs, tmp_path
):
    records = [make_record(tmp_path, case) for case in CASES]  # video, two_images, mixed, text
    guarded, dataset = _trainer(tiny_model_dirs(family), tmp_path, records, guard=True)
    plain, _ = _trainer(tiny_model_dirs(family), tmp_path, records, guard=False)
    assert dataset.vision_kinds == ("image", "video")
    events = _calls(guarded.model)
    samples = [dataset[i] for i in range(len(records))]
    batches = {"video": [0], "images": [1], "both": [2], "text": [3], "video+images": [0, 1]}
    for name, indices in batches.items():
        batch = PaddingCollator(0)([samples[i] for i in indices])
        events.clear()
        with torch.no_grad():
            loss = guarded.compute_loss(guarded.model, dict(batch))
            expected = plain.compute_loss(plain.model, dict(batch))
        assert events == ["tower", "tower", "language"], name
        assert loss.item() == expected.item(), name  # + 0 * tower output: bit-identical


def test_image_only_data_keeps_one_tower_call(tiny_model_dirs, tmp_path):
    records = [make_record(tmp_path, case) for case in CASES if not case[4]]  # no videos
    trainer, dataset = _trainer(tiny_model_dirs("qwen2_vl"), tmp_path, records, guard=True)
    assert dataset.vision_kinds == ("image",)
    events = _calls(trainer.model)
    for index in range(len(records)):  # two images, then text-only
        events.clear()
        with torch.no_grad():
            trainer.compute_loss(trainer.model, dict(PaddingCollator(0)([dataset[index]])))
        assert events == ["tower", "language"]


def test_two_dummy_calls_leave_every_gradient_zero(tiny_model_dirs):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs("qwen3_vl"))
    events = _calls(model)
    extra = dummy_vision_loss(model, calls=2)
    assert events == ["tower", "tower"] and extra.item() == 0.0
    extra.backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("model.visual.")]
    assert grads and all(g is not None and torch.count_nonzero(g) == 0 for g in grads)
