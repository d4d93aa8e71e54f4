"""Every shipped recipe loads through its real config class and is headed by the command that
runs it.

Layout: ``recipes/<model>/{sft_align,sft_instruct,grpo}.yaml`` (a paper's reproduction adds a
suffix: ``grpo_medvlm_r1.yaml``), pipelines in ``recipes/pipelines/``, launcher configs in
``recipes/accelerate/`` (DeepSpeed JSON in ``recipes/deepspeed/``). The first line of each YAML
is parsed by the real ``medvl`` argument parser (for accelerate configs: the part after
``-m medvl.cli.main``) and must name the file itself, relative to the repository root, so it
can be pasted into a shell there.
"""

from __future__ import annotations

import contextlib
import io
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from medvl.cli.main import build_parser, main
from medvl.config import load_config
from medvl.pipeline.spec import load_pipeline
from medvl.train.grpo_config import DRIFT, GRPOConfig
from medvl.train.sft_config import SFTConfig

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "recipes").rglob("*.yaml"))
#: The model recipes the README promises (a test of the layout, not an exhaustive list).
SFT_MODELS = ("tiny", "qwen2_vl_2b", "qwen2_vl_7b", "qwen2_5_vl_3b", "qwen2_5_vl_7b", "qwen3_vl_4b")
PROMISED = {
    *(f"{model}/sft_{stage}.yaml" for model in SFT_MODELS for stage in ("align", "instruct")),
    "tiny/grpo.yaml",
    "qwen2_5_vl_3b/grpo.yaml",
    "qwen3_vl_4b/grpo.yaml",
    "qwen2_vl_2b/grpo_medvlm_r1.yaml",
}


def relative(path: Path) -> str:
    """The path as the header spells it: relative to the repository root, forward slashes."""
    return path.relative_to(ROOT).as_posix()


def kind_of(path: Path) -> str:
    """``sft``, ``grpo``, ``pipeline`` or ``accelerate``, from where the file lives."""
    folder, name = path.parent.name, path.name
    if folder == "pipelines":
        return "pipeline"
    if folder == "accelerate":
        return "accelerate"
    if name.startswith("sft_"):
        return "sft"
    if name.startswith("grpo"):
        return "grpo"
    raise AssertionError(f"{relative(path)} is outside recipes/<model>/{{sft_*,grpo*}}.yaml")


def header_args(path: Path) -> list[str]:
    """The ``medvl`` arguments of the file's first line (``# medvl ...``)."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    words = shlex.split(first.removeprefix("#"))
    if words[0] == "accelerate":
        assert words[1:4] == ["launch", "--config_file", relative(path)], first
        return words[words.index("medvl.cli.main") + 1 :]
    assert words[0] == "medvl", f"{relative(path)}: first line is not a medvl command: {first}"
    return words[1:]


def check_sft(path: Path) -> None:
    args = build_parser().parse_args(header_args(path))
    assert (args.command, args.train_command) == ("train", "sft")
    assert args.recipe == Path(relative(path))
    cfg = load_config(SFTConfig, path)
    assert cfg.output_dir and cfg.data.train
    if path.stem in ("sft_align", "sft_instruct"):  # the file name says the stage
        assert cfg.stage == path.stem.removeprefix("sft_")


def check_grpo(path: Path) -> None:
    args = build_parser().parse_args(header_args(path))
    assert (args.command, args.train_command) == ("train", "grpo")
    assert args.recipe == Path(relative(path))
    cfg = load_config(GRPOConfig, path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(DRIFT) <= set(raw["grpo"]), "every drifted GRPO default is set in the file"
    assert len(cfg.weights()) == len(cfg.rewards)


def check_pipeline(path: Path) -> None:
    args = build_parser().parse_args(header_args(path))
    assert (args.command, args.pipeline) == ("run", Path(relative(path)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", relative(path), "--dry-run"]) == 0
    for step in load_pipeline(path).steps:
        assert step.name in out.getvalue()
        if step.recipe is not None:  # a step's recipe exists and is of the step's kind
            assert (ROOT / step.recipe).is_file(), f"{step.name}: {step.recipe}"
            assert kind_of(ROOT / step.recipe) == step.kind, f"{step.name}: {step.recipe}"


def check_accelerate(path: Path) -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    args = build_parser().parse_args(header_args(path))
    assert (args.command, args.train_command) == ("train", "sft")
    cfg = ClusterConfig.from_yaml_file(str(path))
    assert cfg.num_processes >= 1
    deepspeed = (cfg.deepspeed_config or {}).get("deepspeed_config_file")
    assert deepspeed is None or (ROOT / deepspeed).is_file(), deepspeed


CHECKS: dict[str, Callable[[Path], None]] = {
    "sft": check_sft,
    "grpo": check_grpo,
    "pipeline": check_pipeline,
    "accelerate": check_accelerate,
}


@pytest.mark.parametrize("path", SHIPPED, ids=relative)
def test_every_recipe_loads_and_is_headed_by_its_command(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # headers and pipeline steps name recipes from the repository root
    CHECKS[kind_of(path)](path)


def test_the_layout_holds_every_promised_recipe():
    shipped = {relative(p).removeprefix("recipes/") for p in SHIPPED}
    assert shipped >= PROMISED, sorted(PROMISED - shipped)


def test_medvlm_r1_recipe_keeps_the_papers_values():
    r1 = load_config(GRPOConfig, ROOT / "recipes/qwen2_vl_2b/grpo_medvlm_r1.yaml")
    g = r1.grpo
    assert (g.num_generations, g.max_prompt_length, g.max_completion_length) == (4, 512, 512)
    assert (g.beta, r1.learning_rate, r1.data.max_pixels) == (0.04, 1e-6, 401408)
    assert r1.prompt.template == "reasoning" and "medvlm_r1_compat" in r1.rewards


#: recipe -> (family, video tokens of 16 slices that the header states, the header's numbers)
VOLUME_RECIPES = {
    "qwen2_5_vl_7b/sft_instruct_volumes.yaml": ("qwen2_5_vl", 2048, ["8 x 256 = 2,048"]),
    "qwen3_vl_4b/sft_instruct_volumes.yaml": ("qwen3_vl", 1568, ["8 x 196 = 1,568"]),
}


@pytest.mark.parametrize("name", sorted(VOLUME_RECIPES))
def test_volume_recipes_set_the_video_budget_their_header_computes(name):
    """The header's token arithmetic is what the family's real video processor gives under the
    recipe's ``data.video_max_pixels``: 16 slices of 448x448 (and 512x512 CT slices, resized to
    448x448) cost the stated tokens."""
    from medvl.models.processing import load_token_counter

    family, tokens, quoted = VOLUME_RECIPES[name]
    path = ROOT / "recipes" / name
    cfg = load_config(SFTConfig, path)
    header = path.read_text(encoding="utf-8")
    assert f"video_max_pixels: {cfg.data.video_max_pixels}" in header
    assert all(text in header for text in quoted)
    counter, _ = load_token_counter(family, video_max_pixels=cfg.data.video_max_pixels)
    for side in (448, 512):
        assert counter.video_budget.resized(16, side, side) == (448, 448), side
        assert counter.video_tokens((16, side, side)) == tokens, side
    if family == "qwen3_vl":  # the header's other cases: the class default, and 32 slices
        assert "8 x 36 = 288" in header and "16 x 81 = 1,296" in header
        assert counter.video_tokens((32, 512, 512)) == 1296
        default, _ = load_token_counter(family)
        assert default.video_budget.max_pixels == 786_432
        assert default.video_tokens((16, 448, 448)) == 288
    else:  # the released range would keep 512x512 slices at 504x504: 324 tokens per patch
        assert "504x504: 324 tokens" in header
        default, _ = load_token_counter(family)
        assert default.video_tokens((16, 512, 512)) == 8 * 324
