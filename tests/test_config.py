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
