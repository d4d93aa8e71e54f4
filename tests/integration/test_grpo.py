"""GRPO on TRL's GRPOTrainer with tiny real models: recipes, bad input, prompts, data, a run at
per-device batch size > 1 scored against each prompt's own answer, resume, and (slow) learning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medvl.config import load_config
from medvl.data.jsonl import read_records, write_records
from medvl.errors import ConfigError, MedvlError
from medvl.eval.scoring import gold_answer
from medvl.train.grpo_config import GRPOConfig
from medvl.train.prompts import build_prompt, prompt_template
from medvl.train.rewards import closed_accuracy_reward, mcq_accuracy_reward

ROOT = Path(__file__).resolve().parents[2]
GRPO = [
    "grpo.num_generations=2",
    "grpo.max_prompt_length=1024",
    "grpo.max_completion_length=6",
    "grpo.beta=0.04",
    "grpo.loss_type=grpo",
    "grpo.temperature=1.0",
    "grpo.epsilon=0.2",
    "grpo.scale_rewards=group",
]


def config(*overrides: str) -> GRPOConfig:
    base = ["model=m", "data.train=t.jsonl", "output_dir=o", "rewards=[mcq_accuracy]"]
    return load_config(GRPOConfig, None, [*base, *GRPO, *overrides])


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_dirs, tmp_path_factory) -> Path:
    """A medvl-style SFT output: LoRA on the language model + a fully trained lm_head."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from medvl.models.registry import get_family, lora_target_regex

    base = tiny_model_dirs("qwen2_vl")
    model = AutoModelForImageTextToText.from_pretrained(base)
    lora = LoraConfig(
        r=4,
        target_modules=lora_target_regex(get_family("qwen2_vl"), ["language"]),
        modules_to_save=["lm_head"],
    )
    model = get_peft_model(model, lora)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.02)
    out = tmp_path_factory.mktemp("sft") / "adapter"
    model.save_pretrained(out)
    AutoProcessor.from_pretrained(base).save_pretrained(out)
    return out


# --- recipes and bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rewards=[mcq_accuracy,accuracy]"], "unknown reward 'accuracy'; known rewards: format"),
        (["rewards=[format,mcq_accuracy]", "reward_weights=[1.0]"], "1 value(s) for 2 reward(s)"),
        (["batch_size=3"], "num_generations (2) must divide the generation batch"),
        (["rewards=[format]"], "check no answer; add an accuracy reward"),
        (["rewards=[mcq_accuracy,mcq_accuracy]"], "names a reward twice"),
        (["reward_params={mcq_accuracy: {max_tokens: 3}}"], "not a parameter of reward"),
        (["grpo.loss_type=ppo"], "grpo.loss_type 'ppo' is unknown"),
        (["grpo.num_generations=1", "batch_size=1"], "use 2 or more"),
        (["prompt.template=r1"], "prompt.template 'r1' is unknown"),
        (["tuning=full", "full_parts=[decoder]"], "full_parts ['decoder']"),
    ],
)
def test_bad_recipes_fail_before_training_with_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=None) as info:
        config("batch_size=4", *overrides)
    assert message in str(info.value)


def test_a_recipe_must_state_the_drifted_defaults():
    base = ["model=m", "data.train=t.jsonl", "output_dir=o", "rewards=[mcq_accuracy]"]
    without_beta = [o for o in GRPO if not o.startswith("grpo.beta")]
    with pytest.raises(ConfigError) as info:
        load_config(GRPOConfig, None, [*base, *without_beta])
    assert "grpo.beta is not set" in str(info.value) and "0.04 to 0.0 in v0.19" in str(info.value)


def test_cli_reports_a_bad_recipe_in_one_line(capsys):
    from medvl.cli.main import main

    recipe = str(ROOT / "recipes/tiny/grpo.yaml")
    assert main(["train", "grpo", recipe, "rewards=[mcq_accuracy,nope]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medvl: error: unknown reward 'nope'")


# --- prompts and data -------------------------------------------------------------------------


def test_reasoning_prompt_is_medvlm_r1s_with_images_first_and_system_role(phantom_dir):
    record = next(r for r in read_records(phantom_dir / "train.jsonl") if r.options)
    messages = build_prompt(record, prompt_template("reasoning", system="Be brief."))
    assert messages[0] == {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    user = messages[-1]
    assert user["role"] == "user" and user["content"][0] == {"type": "image"}
    text = user["content"][1]["text"]
    options = "\n".join(f"{k}) {v}" for k, v in record.options.items())
    assert text.startswith(f"{record.question.splitlines()[0]}\n{options}\nYour task:\n1. Think")
    assert "Answer with the option" not in text and text.endswith("outside of these tags.")


def test_plain_prompt_is_the_sft_prompt(phantom_dir):
    from medvl.data.tokens import chat_messages

    for record in read_records(phantom_dir / "train.jsonl")[:5]:
        plain = build_prompt(record, prompt_template("plain"))
        assert plain == chat_messages(record, with_answer=False)


def test_records_are_kept_only_with_a_verifiable_answer(tiny_model_dirs, phantom_dir, tmp_path):
    from transformers import AutoProcessor

    from medvl.train.grpo_data import prepare_data

    processor = AutoProcessor.from_pretrained(tiny_model_dirs("qwen2_vl"))
    records = read_records(phantom_dir / "train.jsonl")
    mcq = sum(1 for r in records if r.options)
    cfg = config(f"data.train={phantom_dir / 'train.jsonl'}")
    data = prepare_data(cfg, processor)
    assert len(data.records) == mcq and data.counts() == {"no_reward": len(records) - mcq}
    row = data.dataset[0]
    assert set(row) >= {"prompt", "images", "id", "answer", "options", "answer_type", "lang"}
    assert row["answer"] in row["options"] and row["images"][0].mode == "RGB"


def test_overlong_prompts_are_dropped_never_cut(tiny_model_dirs, phantom_dir):
    from transformers import AutoProcessor

    from medvl.train.grpo_data import prepare_data

    processor = AutoProcessor.from_pretrained(tiny_model_dirs("qwen2_vl"))
    rewards = "rewards=[mcq_accuracy,closed_accuracy,open_f1]"
    full = prepare_data(config(f"data.train={phantom_dir / 'train.jsonl'}", rewards), processor)
    lengths = sorted(full.prompt_lengths.values())
    limit = lengths[len(lengths) // 2]
    cut = config(
        f"data.train={phantom_dir / 'train.jsonl'}", rewards, f"grpo.max_prompt_length={limit}"
    )
    data = prepare_data(cut, processor)
    assert all(full.prompt_lengths[r.id] <= limit for r in data.records)
    assert len(data.rejected["too_long"]) == sum(1 for n in lengths if n > limit) > 0


def test_a_dataset_without_answers_is_refused_before_training(
    tiny_model_dirs, phantom_dir, tmp_path
):
    from dataclasses import replace

    from medvl.train.grpo import run_grpo

    records = read_records(phantom_dir / "train.jsonl")
    bare = [replace(r, answer=None, options=None, messages=r.messages[:1]) for r in records]
    (tmp_path / "images").symlink_to(phantom_dir / "images")  # phantom_dir is read-only
    path = tmp_path / "no_answers.jsonl"
    write_records(path, bare)
    cfg = config(
        f"model={tiny_model_dirs('qwen2_vl')}",
        f"data.train={path}",
        f"output_dir={tmp_path / 'run'}",
    )
    with pytest.raises(MedvlError) as info:
        run_grpo(cfg)
    assert f"none of its {len(records)} records can train GRPO" in str(info.value)
    assert f"no gold answer: {len(records)}" in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_run_validates_its_training_file_once(
    tiny_model_dirs, phantom_dir, tmp_path, monkeypatch
):
    """The preflight's validation (every image header) gives the records GRPO selects from;
    the file is not validated a second time after the model loads."""
    import medvl.data.validate as validate
    from medvl.train.grpo import run_grpo

    calls = []
    real = validate.validate_jsonl

    def counting(path, **kwargs):
        calls.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(validate, "validate_jsonl", counting)
    cfg = config(
        f"model={tiny_model_dirs('qwen2_vl')}",
        f"data.train={phantom_dir / 'train.jsonl'}",
        f"output_dir={tmp_path / 'run'}",
        "grpo.max_prompt_length=8",  # every prompt too long: stops before any training
    )
    with pytest.raises(MedvlError, match=r"longer than grpo\.max_prompt_length"):
        run_grpo(cfg)
    assert len(calls) == 1


# --- end to end -------------------------------------------------------------------------------


def test_batched_run_scores_each_completion_against_its_own_prompt(
    sft_adapter, phantom_dir, tmp_path
):
    """Per-device batch 6 (3 prompts x 2 generations), 2 micro-steps per generation batch: every
    completion's prompt, image and answer column come from one record, and its rewards are
    that record's answer scored (the MedVLM-R1/R1-V forks were only right at batch size 1)."""
    from medvl.train.grpo import run_grpo

    out = tmp_path / "run"
    overrides = [
        f"model={sft_adapter}",
        f"data.train={phantom_dir / 'train.jsonl'}",
        f"output_dir={out}",
        "rewards=[mcq_accuracy,closed_accuracy,open_f1,format]",
        "batch_size=6",
        "grad_accum=2",
        "max_steps=2",
        "learning_rate=1e-3",
        "logging_steps=1",
        "save_steps=1",
        "monitor.samples_every=1",
        "monitor.samples_per_dump=100",
    ]
    result = run_grpo(config(*overrides))
    records = {r.id: r for r in read_records(phantom_dir / "train.jsonl")}
    rows = [row for step in (0, 1) for row in _samples(out, step)]
    assert len(rows) == 2 * 12 and len({row["answer"] for row in rows}) >= 4
    for i, row in enumerate(rows):
        record = records[row["id"]]
        assert row["id"] == rows[i - i % 2]["id"]  # the 2 generations of a prompt stay together
        assert row["answer"] == gold_answer(record)
        expected = build_prompt(record, prompt_template("plain"))[-1]["content"]
        assert row["prompt"] == "".join(p.get("text", "") for p in expected)
        assert row["image_sizes"] == [list(_size(p)) for p in record.image_paths(phantom_dir)]
        assert row["rewards"] == _own_rewards(row["completion"], record)
    _check_outputs(out, result)
    first = json.loads((out / "history.json").read_text())

    resumed = run_grpo(config(*overrides, "max_steps=3", "resume=true"))
    assert resumed.metrics["train_runtime"] > 0
    history = json.loads((out / "history.json").read_text())
    assert history[: len(first)] == first and any(e["step"] == 3 for e in history)
    assert [e["progress"] for e in history if "loss" in e] == ["1/2", "2/2", "3/3"]
    assert all("eta" in e and e["steps_per_second"] > 0 for e in history if "loss" in e)
    assert json.loads((out / "manifest.json").read_text())["global_step"] == 3
    steps = [json.loads(line)["step"] for line in (out / "accuracy.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2] and [s for s, _, _ in resumed.accuracy_curve] == steps


def _samples(out: Path, step: int) -> list[dict]:
    return json.loads((out / "samples" / f"step-{step:06d}.json").read_text(encoding="utf-8"))


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _own_rewards(completion: str, record) -> dict:
    columns = {
        "answer": [gold_answer(record)],
        "options": [record.options],
        "answer_type": [record.answer_type],
        "lang": [record.lang],
    }
    from medvl.train.rewards import format_reward, open_f1_reward

    return {
        "mcq_accuracy": mcq_accuracy_reward([completion], **columns)[0],
        "closed_accuracy": closed_accuracy_reward([completion], **columns)[0],
        "open_f1": open_f1_reward([completion], **columns)[0],
        "format": format_reward([completion])[0],
    }


def _check_outputs(out: Path, result) -> None:
    for name in ("adapter_config.json", "adapter_model.safetensors", "processor_config.json"):
        assert (out / name).is_file(), name
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(out / "base_model")  # the merged SFT model
    assert (out / "base_model" / "config.json").is_file()
    args = json.loads((out / "trl_args.json").read_text())
    assert (args["beta"], args["loss_type"], args["num_generations"]) == (0.04, "grpo", 2)
    assert args["scale_rewards"] == "group" and args["per_device_train_batch_size"] == 6
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "grpo" and manifest["config"]["grpo"]["beta"] == 0.04
    history = json.loads((out / "history.json").read_text())
    logged = set().union(*history)
    for key in (
        "rewards/closed_accuracy/mean",
        "rewards/mcq_accuracy/std",
        "frac_reward_zero_std",
        "completions/mean_length",
        "kl",
        "accuracy",
    ):
        assert key in logged, key
    assert list((out / "checkpoints" / "runs").rglob("events.out.tfevents*"))
    assert result.accuracy_first_quarter is not None and result.train_records > 20


# --- slow: learning ---------------------------------------------------------------------------


@pytest.mark.slow
def test_grpo_raises_the_accuracy_reward_from_a_tiny_sft_model(tiny_model_dirs, tmp_path, capsys):
    """The phantom set; a tiny SFT model (the tiny instruct recipe, briefly, on the questions
    GRPO can verify, so it learns to answer shortly); then the tiny GRPO recipe: the mean
    accuracy reward of the last quarter of the steps beats the first quarter's."""
    from medvl.data.phantom import generate_phantom
    from medvl.train.grpo import run_grpo
    from medvl.train.sft import run_sft
    from medvl.train.sft_config import SFTConfig

    generate_phantom(tmp_path / "phantom", n=300, seed=3)
    train = tmp_path / "phantom" / "train.jsonl"
    closed = tmp_path / "phantom" / "closed.jsonl"
    write_records(closed, [r for r in read_records(train) if r.answer_type == "closed"])
    sft = [
        f"model={tiny_model_dirs('qwen2_vl')}",
        f"data.train={closed}",
        "data.val=null",
        f"output_dir={tmp_path / 'sft'}",
        "max_steps=250",
        "save_steps=1000",
    ]
    run_sft(load_config(SFTConfig, ROOT / "recipes/tiny/sft_instruct.yaml", sft))
    grpo = [f"model={tmp_path / 'sft'}", f"data.train={train}", f"output_dir={tmp_path / 'grpo'}"]
    result = run_grpo(load_config(GRPOConfig, ROOT / "recipes/tiny/grpo.yaml", grpo))
    first, last = result.accuracy_first_quarter, result.accuracy_last_quarter
    with capsys.disabled():
        print(f"\nGRPO mean accuracy reward: first quarter {first:.4f}, last quarter {last:.4f}")
    assert result.start_model == str(tmp_path / "grpo" / "base_model")  # SFT adapter merged
    assert result.rejected == {
        "no_reward": sum(1 for r in read_records(train) if r.answer_type != "closed")
    }
    assert last > first + 0.03
