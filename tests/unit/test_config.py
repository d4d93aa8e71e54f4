"""Configs: YAML + overrides into dataclasses; every mistake names the key and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from medvl.config import apply_overrides, config_to_dict, load_config
from medvl.errors import ConfigError


@dataclass
class LoraSection:
    r: int = 8
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class Recipe:
    stage: Literal["align", "instruct", "full"] = "instruct"
    lr: float = 1e-4
    output_dir: Path = Path("runs/x")
    max_steps: int | None = None
    lora: LoraSection = field(default_factory=LoraSection)

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}; try lr=1e-4")


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_and_overrides_build_typed_config(tmp_path):
    path = write(tmp_path, "stage: align\nlr: 2\nlora:\n  r: 4\n")
    config = load_config(
        Recipe, path, ["lora.alpha=32", "max_steps=10", "lora.targets=[a,b]", "lr=1e-3"]
    )
    assert config.stage == "align"
    assert config.lr == 1e-3 and isinstance(config.lr, float)
    assert config.lora == LoraSection(r=4, alpha=32.0, targets=["a", "b"])
    assert config.max_steps == 10
    assert config.output_dir == Path("runs/x")
    assert config_to_dict(config)["output_dir"] == "runs/x"


def test_unknown_key_names_key_source_and_allowed(tmp_path):
    path = write(tmp_path, "lora:\n  rank: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(Recipe, path)
    message = str(info.value)
    assert "unknown key 'lora.rank'" in message
    assert str(path) in message
    assert "alpha, r, targets" in message


def test_bad_literal_lists_allowed_values():
    with pytest.raises(ConfigError, match=r"'stage' .* is 'merge'; allowed values: 'align', "):
        load_config(Recipe, None, ["stage=merge"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"'lora\.r' .* must be int, got 'big'"):
        load_config(Recipe, None, ["lora.r=big"])
    with pytest.raises(ConfigError, match="'max_steps'"):
        load_config(Recipe, None, ["max_steps=true"])


def test_post_init_validation_message_reaches_user():
    with pytest.raises(ConfigError, match="lr must be positive"):
        load_config(Recipe, None, ["lr=-1"])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "stage: align\nlora: [unclosed\n")
    with pytest.raises(ConfigError, match=r"recipe\.yaml:\d+: invalid YAML"):
        load_config(Recipe, path)


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError, match="must look like key=value"):
        apply_overrides({}, ["lr"])


def test_every_recipe_field_has_help_text():
    from medvl.train.grpo_config import GRPOConfig
    from medvl.train.sft_config import SFTConfig
    from medvl.train.training_config import fields_without_help

    assert fields_without_help(SFTConfig) == []
    assert fields_without_help(GRPOConfig) == []


def test_shared_training_fields_are_declared_once():
    import dataclasses

    from medvl.train.grpo_config import GRPOConfig
    from medvl.train.sft_config import SFTConfig
    from medvl.train.training_config import TrainingSection

    shared = {f.name for f in dataclasses.fields(TrainingSection)}
    assert issubclass(SFTConfig, TrainingSection) and issubclass(GRPOConfig, TrainingSection)
    assert not shared & set(SFTConfig.__annotations__)
    # GRPO restates only the defaults it changes (help text and checks stay shared)
    grpo_defaults = {"learning_rate", "batch_size", "warmup_ratio", "scheduler", "logging_steps"}
    assert shared & set(GRPOConfig.__annotations__) == grpo_defaults
    sft = {f.name for f in dataclasses.fields(SFTConfig)} - shared
    grpo = {f.name for f in dataclasses.fields(GRPOConfig)} - shared
    assert sft & grpo == {"data"}  # the one shared name whose type differs


TRAINING = ["model=m", "data.train=t.jsonl", "output_dir=o"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("learning_rate=0", "learning_rate must be positive, got 0.0; e.g. learning_rate=1e-4"),
        ("batch_size=0", "batch_size and grad_accum must be >= 1, got 0 and 1"),
        ("grad_accum=0", "batch_size and grad_accum must be >= 1, got 8 and 0"),
        ("max_steps=0", "max_steps is 0; use -1 (train for `epochs`) or a positive count"),
        ("epochs=0", "epochs is 0.0: nothing to train; set epochs > 0"),
        ("warmup_ratio=-0.1", "warmup_ratio must be a fraction of the run's steps in [0, 1]"),
        ("warmup_ratio=1.5", "got 1.5; e.g. warmup_ratio=0.05"),
        ("weight_decay=-1", "weight_decay must be >= 0"),
        ("max_grad_norm=-1", "max_grad_norm must be >= 0 (0: no clipping)"),
        ("save_steps=0", "logging_steps and save_steps must be >= 1"),
        ("save_total_limit=0", "save_total_limit is 0; keep >= 1 checkpoint, or null"),
        ("lora.dropout=1.0", "lora.dropout must be in [0, 1)"),
        ("lora.r=0", "lora.r must be >= 1, got 0"),
    ],
)
def test_training_section_range_checks_name_the_field_and_fix(override, message):
    from medvl.train.sft_config import SFTConfig

    with pytest.raises(ConfigError) as info:
        load_config(SFTConfig, None, [*TRAINING, override])
    assert message in str(info.value)


def test_epochs_may_be_zero_when_max_steps_is_set():
    from medvl.train.sft_config import SFTConfig

    assert load_config(SFTConfig, None, [*TRAINING, "epochs=0", "max_steps=5"]).max_steps == 5


def test_training_arguments_are_shared_and_specific_keywords_win():
    from medvl.train.arguments import training_arguments
    from medvl.train.sft_config import SFTConfig

    cfg = load_config(SFTConfig, None, [*TRAINING, "grad_accum=4", "precision=fp32"])
    args = training_arguments(cfg, report_to="none", seed=7)
    assert args["output_dir"] == str(Path("o") / "checkpoints")
    assert args["gradient_accumulation_steps"] == 4 and args["data_seed"] == cfg.seed
    assert args["bf16"] is False and args["fp16"] is False
    assert args["report_to"] == "none" and args["seed"] == 7
