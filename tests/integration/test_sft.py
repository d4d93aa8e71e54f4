"""SFT end to end on tiny models: what trains per stage, outputs, reload, bad input."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from medvl.config import load_config
from medvl.errors import ConfigError, MedvlError
from medvl.models.registry import get_family, parameters_by_part
from medvl.train.freeze import apply_plan
from medvl.train.sft_config import SFTConfig


def config(tmp_path, model_dir, phantom_dir, *overrides) -> SFTConfig:
    base = [
        f"model={model_dir}",
        f"data.train={phantom_dir / 'train.jsonl'}",
        f"output_dir={tmp_path / 'run'}",
        "max_steps=3",
        "batch_size=4",
        "logging_steps=1",
        "save_steps=100",
        "learning_rate=1e-3",
    ]
    return load_config(SFTConfig, None, [*base, *overrides])


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["stage=align"], {"merger": "full"}),
        (["stage=instruct"], {"language": "lora"}),
        (
            ["stage=instruct", "train_merger=true", "vision_lora=true"],
            {"language": "lora", "merger": "full", "vision": "lora"},
        ),
        (["stage=full", "unfreeze=[language,lm_head]"], {"language": "full", "lm_head": "full"}),
    ],
)
def test_stage_plans(family, overrides, expected, tiny_model_dirs, tmp_path):
    from transformers import AutoModelForImageTextToText

    model_dir = tiny_model_dirs(family)
    cfg = load_config(
        SFTConfig, None, [f"model={model_dir}", "data.train=x.jsonl", "output_dir=o", *overrides]
    )
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    model, plan = apply_plan(model, cfg, get_family(family))
    modes = {p: m for p, m in plan.modes.items() if m != "frozen"}
    assert modes == expected
    for part, entry in plan.counts.items():
        assert (entry["trainable"] > 0) == (part in expected), (part, entry)
    if "merger" in expected and family == "qwen3_vl":  # deepstack mergers train with the merger
        assert any("deepstack_merger_list" in m for m in plan.trainable_modules)


def test_instruct_run_writes_a_loadable_adapter(tiny_model_dirs, phantom_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from medvl.train.sft import run_sft

    model_dir = tiny_model_dirs("qwen2_vl")
    cfg = config(
        tmp_path,
        model_dir,
        phantom_dir,
        "stage=instruct",
        "train_merger=true",
        f"data.val={phantom_dir / 'val.jsonl'}",
        "validation.samples=4",
        "validation.max_new_tokens=4",
    )
    result = run_sft(cfg)
    out = result.output_dir
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "processor_config.json",
        "tokenizer.json",
        "manifest.json",
        "trainable.json",
        "medvl_config.yaml",
        "history.json",
        "training.png",
    ):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["train"]["sha256"] and manifest["versions"]["transformers"]
    # every training log entry says how far it is and how long is left
    logged = [e for e in json.loads((out / "history.json").read_text()) if "loss" in e]
    assert [e["progress"] for e in logged] == ["1/3", "2/3", "3/3"]
    assert all(e["steps_per_second"] > 0 and re.fullmatch(r"\d+:\d\d", e["eta"]) for e in logged)
    assert set(result.validation) >= {"overall", "closed_accuracy"}
    # the adapter holds LoRA weights and the fully trained merger; both changed from the base
    tensors = load_file(out / "adapter_model.safetensors")
    assert any("lora_B" in k for k in tensors) and any("merger" in k for k in tensors)
    base = AutoModelForImageTextToText.from_pretrained(model_dir)
    base_merger = {k: v.clone() for k, v in base.model.visual.merger.state_dict().items()}
    tuned = PeftModel.from_pretrained(base, out).eval()
    merged = tuned.merge_and_unload()
    assert any(
        not torch.equal(base_merger[k], v)
        for k, v in merged.model.visual.merger.state_dict().items()
    )
    frozen = parameters_by_part(merged)["vision"]
    reference = AutoModelForImageTextToText.from_pretrained(model_dir)
    ref = dict(reference.named_parameters())
    assert all(torch.equal(p, ref[n]) for n, p in frozen)  # the frozen tower did not move


def test_align_run_trains_only_the_merger(tiny_model_dirs, phantom_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    from medvl.train.sft import run_sft

    model_dir = tiny_model_dirs("qwen3_vl")
    result = run_sft(config(tmp_path, model_dir, phantom_dir, "stage=align", "packing=false"))
    before = dict(AutoModelForImageTextToText.from_pretrained(model_dir).named_parameters())
    after = AutoModelForImageTextToText.from_pretrained(result.output_dir)
    changed = {
        n.split(".")[2] for n, p in after.named_parameters() if not torch.equal(p, before[n])
    }
    assert changed == {"merger", "deepstack_merger_list"}


def test_bad_inputs_fail_before_training(tiny_model_dirs, phantom_dir, tmp_path):
    from medvl.train.sft import run_sft

    with pytest.raises(ConfigError, match=r"unknown key 'lora\.rank'"):
        config(tmp_path, "m", phantom_dir, "lora.rank=4")
    with pytest.raises(ConfigError, match="stage 'align' trains only the merger"):
        config(tmp_path, "m", phantom_dir, "stage=align", "train_merger=true")
    with pytest.raises(ConfigError, match=r"no config\.json"):
        run_sft(config(tmp_path, tmp_path / "missing", phantom_dir))
    bad = tmp_path / "bad.jsonl"
    lines = (phantom_dir / "train.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["images"] = ["images/does-not-exist.png"]
    bad.write_text("\n".join([*lines[1:5], json.dumps(record)]) + "\n")
    (tmp_path / "images").symlink_to(phantom_dir / "images")
    cfg = config(tmp_path, tiny_model_dirs("qwen2_vl"), phantom_dir, f"data.train={bad}")
    with pytest.raises(
        MedvlError,
        match=r"bad\.jsonl:5 \(id '[\w-]+'\): images\[0\] .*not found.*on_bad_image=skip",
    ):
        run_sft(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_over_long_records_are_dropped_not_cut(tiny_model_dirs, phantom_dir, tmp_path):
    from medvl.train.sft import run_sft

    cfg = config(tmp_path, tiny_model_dirs("qwen2_vl"), phantom_dir, "data.max_length=80")
    result = run_sft(cfg)
    assert result.dropped  # report-length records exceed 80 tokens
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    assert manifest["dropped_too_long"] == result.dropped
    assert result.train_records + len(result.dropped) == len(
        (phantom_dir / "train.jsonl").read_text().splitlines()
    )


def test_non_finite_loss_names_step_and_ids():
    from medvl.train.callbacks import check_finite

    check_finite(1.5, 3, ["a"], None)
    with pytest.raises(MedvlError, match=r"loss became nan at step 7 on batch ids a, b.*ckpt-5"):
        check_finite(float("nan"), 7, ["a", "b"], "ckpt-5")


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_dummy_vision_forward_touches_the_tower_without_changing_the_loss(family, tiny_model_dirs):
    from transformers import AutoModelForImageTextToText

    from medvl.train.zero3_guard import dummy_vision_loss

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs(family))
    extra = dummy_vision_loss(model)
    assert extra.item() == 0.0
    extra.backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("model.visual.")]
    assert grads and all(g is not None for g in grads)  # every rank joins the tower's collectives
    assert all(torch.count_nonzero(g) == 0 for g in grads)  # ... and nothing moves


def test_a_stage_can_start_from_an_adapter(tiny_model_dirs, phantom_dir, tmp_path):
    from medvl.models.loading import load_model
    from medvl.train.sft import run_sft

    first = run_sft(config(tmp_path / "a", tiny_model_dirs("qwen2_vl"), phantom_dir))
    second = run_sft(config(tmp_path / "b", first.output_dir, phantom_dir))
    adapter = json.loads((second.output_dir / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(second.output_dir / "base")
    loaded = load_model(second.output_dir)  # base resolved from the adapter, merged weights
    assert loaded.base == str(second.output_dir / "base")


def _toy_trainer(tmp_path, lengths, *overrides):
    """A MedvlSFTTrainer on a one-layer toy model, enough to drive its hooks directly."""
    from types import SimpleNamespace

    from transformers import TrainingArguments

    from medvl.train.arguments import training_arguments
    from medvl.train.callbacks import ThroughputCallback
    from medvl.train.sft_trainer import MedvlSFTTrainer, SFTRunState

    class ToyLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(16, 16)

        def forward(self, input_ids, **kwargs):
            return SimpleNamespace(logits=self.embed(input_ids))

    cfg = load_config(
        SFTConfig,
        None,
        ["model=m", "data.train=t.jsonl", f"output_dir={tmp_path}", "batch_size=2", *overrides],
    )
    return MedvlSFTTrainer(
        model=ToyLM(),
        args=TrainingArguments(**training_arguments(cfg, report_to=[])),
        train_dataset=list(range(len(lengths))),
        data_collator=lambda indices: {"index": torch.tensor(indices)},
        state=SFTRunState(cfg, spec=None, throughput=ThroughputCallback(), lengths=lengths),
    )


def test_the_trainer_uses_the_epoch_seeded_sampler(tmp_path):
    """``_get_train_sampler`` is private: this fails if transformers stops calling it."""
    from medvl.train.sft_trainer import EpochLengthGroupedSampler

    lengths = [5, 50, 7, 30, 12, 3, 40, 9, 22, 17]
    trainer = _toy_trainer(tmp_path, lengths)
    order = [i for batch in trainer.get_train_dataloader() for i in batch["index"].tolist()]
    assert order == list(EpochLengthGroupedSampler(2, lengths, seed=trainer.args.seed))
    assert sorted(order) == list(range(len(lengths)))
    again = EpochLengthGroupedSampler(2, lengths, seed=trainer.args.seed)
    again.set_epoch(1)
    again.set_epoch(0)  # a resumed run replays an epoch's order from (seed, epoch) alone
    assert list(again) == order


@pytest.mark.parametrize("average", ["sample", "square"])
def test_weighted_loss_is_scaled_for_accumulation_by_the_trainer(average, tmp_path):
    from medvl.train.loss import weighted_lm_loss

    trainer = _toy_trainer(tmp_path, [4, 4], f"loss_average={average}", "grad_accum=2")
    ids = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]])
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 7, 8, -100, -100]])
    with torch.no_grad():
        expected = weighted_lm_loss(trainer.model(ids).logits, labels, None, average)
    trainer.current_gradient_accumulation_steps = 2
    inputs = {"input_ids": ids, "labels": labels, "sample_ids": ["a", "b"]}
    loss = trainer.training_step(trainer.model, inputs, num_items_in_batch=torch.tensor(5))
    assert loss.item() == pytest.approx(expected.item() / 2, rel=1e-6)
