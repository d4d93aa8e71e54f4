"""The video pixel budget is a setting of its own everywhere: recipes (``data.video_min_pixels``
/ ``data.video_max_pixels``), ``medvl data validate|stats`` and the model commands
(``--video-max-pixels``), :class:`LoadOptions`, and pipeline eval steps. It changes the video
token count exactly as the counter says, and never follows the image budget.

Hand-computed grids on the tiny models (4 frames of 224x224 / 256x256):

* Qwen2-VL (14 px patches, 2x2 merge, factor 28, per-frame range 3,136..50,176 px):
  default 224x224 fits -> grid (2, 16, 16) -> 2 x 256 / 4 = 128 tokens; with
  ``video_max_pixels`` 12,544 (112x112) beta = sqrt(50,176 / 12,544) = 2 -> 112x112 ->
  grid (2, 8, 8) -> 32 tokens.
* Qwen3-VL (16 px patches, factor 32, range 4,096..65,536 px for the whole video): 4 x 256 x 256
  = 262,144 > 65,536, beta = 2 -> 128x128 -> grid (2, 8, 8) -> 32 tokens; with 16,384 beta = 4
  -> 64x64 -> grid (2, 4, 4) -> 8 tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from medvl.cli.main import build_parser, main
from medvl.cli.options import load_options
from medvl.config import load_config
from medvl.data.jsonl import read_records
from medvl.data.tokens import TokenCounter
from medvl.errors import ConfigError
from medvl.models.loading import LoadOptions, load_processor
from medvl.models.processing import video_call_kwargs

ROOT = Path(__file__).resolve().parents[2]
#: family -> (frame side, video_max_pixels, tokens by default, tokens with the setting)
HAND = {"qwen2_vl": (224, 12_544, 128, 32), "qwen3_vl": (256, 16_384, 32, 8)}


def write_video_data(root: Path, side: int, n_frames: int = 4) -> Path:
    """One record with one ``frames`` video of ``n_frames`` PNG slices, ``side`` px square."""
    (root / "ct").mkdir(parents=True, exist_ok=True)
    frames = []
    for k in range(n_frames):
        Image.effect_noise((side, side), 20 + k).convert("RGB").save(root / "ct" / f"{k}.png")
        frames.append(f"ct/{k}.png")
    row = {
        "id": "v1",
        "dataset": "t",
        "split": "train",
        "lang": "en",
        "images": [],
        "videos": [{"frames": frames}],
        "messages": [
            {"role": "user", "content": "<video>\nIs there a lesion?"},
            {"role": "assistant", "content": "yes"},
        ],
        "answer": "yes",
        "answer_type": "closed",
    }
    path = root / "train.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    return path


def processor_length(processor, record, base_dir: Path) -> tuple[int, int]:
    """(sequence length, <|video_pad|> count) of the real processor call."""
    frames = [[Image.open(p).convert("RGB") for p in record.video_paths(base_dir)]]
    text = TokenCounter(processor).text(record)
    ids = processor(text=[text], **video_call_kwargs(processor, frames))["input_ids"][0]
    pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    return len(ids), sum(1 for i in ids if i == pad)


@pytest.mark.parametrize("family", sorted(HAND))
def test_load_options_budget_changes_tokens_as_the_counter_says(family, tiny_model_dirs, tmp_path):
    side, budget, default_pads, budget_pads = HAND[family]
    record = read_records(write_video_data(tmp_path, side))[0]
    model = tiny_model_dirs(family)
    lengths = {}
    for name, options in {
        "default": LoadOptions(),
        "video": LoadOptions(video_max_pixels=budget),
        "image only": LoadOptions(max_pixels=budget),  # must not reach the video processor
    }.items():
        processor = load_processor(model, options)
        counter = TokenCounter(processor)
        length, pads = processor_length(processor, record, tmp_path)
        assert counter.count(record, [], [(4, side, side)]) == length, name
        assert counter.video_tokens((4, side, side)) == pads, name
        lengths[name] = (length, pads)
    assert lengths["default"][1] == lengths["image only"][1] == default_pads
    assert lengths["video"][1] == budget_pads
    assert lengths["default"][0] - lengths["video"][0] == default_pads - budget_pads


def test_cli_and_pipeline_pass_the_video_budget(tmp_path):
    from medvl.pipeline.spec import Step
    from medvl.pipeline.steps import EVAL_KEYS, _engine_spec

    predict = ["predict", "--data", "d.jsonl", "--out", "o.jsonl", "--model", "m"]
    args = build_parser().parse_args(
        [*predict, "--video-max-pixels", "200704", "--video-min-pixels", "3136"]
    )
    options = load_options(args)
    assert (options.video_min_pixels, options.video_max_pixels) == (3136, 200704)
    assert options.max_pixels is None
    commands = (["eval", "run", "--bench", "custom", "--data", "d.jsonl"], ["serve"], ["chat"])
    for command in commands:
        parsed = build_parser().parse_args([*command, "--model", "m", "--video-max-pixels", "9"])
        assert load_options(parsed).video_max_pixels == 9, command
    assert {"video_min_pixels", "video_max_pixels"} <= EVAL_KEYS
    step = Step(name="ev", kind="eval", params={"model": "m", "video_max_pixels": 12544})
    assert _engine_spec(step).load.video_max_pixels == 12544
    assert _engine_spec(Step(name="ev", kind="eval", params={"model": "m"})).load is None
    with pytest.raises(ConfigError, match=r"video_min_pixels \(10000\) is larger than"):
        LoadOptions(video_min_pixels=10_000, video_max_pixels=5_000)


def test_sft_sample_length_follows_the_setting(tiny_model_dirs, tmp_path):
    from medvl.data.features import FeatureBuilder
    from medvl.train.sft import _load_model
    from medvl.train.sft_config import SFTConfig
    from medvl.train.sft_data import prepare_records

    side, budget, default_pads, budget_pads = HAND["qwen2_vl"]
    train = write_video_data(tmp_path / "data", side)
    common = [f"model={tiny_model_dirs('qwen2_vl')}", f"data.train={train}", "data.val=null"]
    common += [f"output_dir={tmp_path / 'out'}"]
    lengths = {}
    for name, extra in {"default": [], "video": [f"data.video_max_pixels={budget}"]}.items():
        config = load_config(SFTConfig, ROOT / "recipes/tiny/sft_instruct.yaml", common + extra)
        processor = _load_model(config).processor
        records, counted, _ = prepare_records(config, processor)
        sample = FeatureBuilder(processor)(records[0], train.parent)
        assert len(sample) == counted[0], name  # the dataset's sample is the counted length
        lengths[name] = counted[0]
        if extra:
            assert processor.video_processor.size.longest_edge == budget
            assert processor.image_processor.size.longest_edge != budget  # images untouched
    assert lengths["default"] - lengths["video"] == default_pads - budget_pads
    with pytest.raises(ConfigError, match=r"data\.video_max_pixels must be a positive"):
        load_config(SFTConfig, None, [*common, "data.video_max_pixels=0"])


def test_grpo_data_section_has_the_video_budget():
    from medvl.train.grpo_config import GRPOConfig

    recipe = ROOT / "recipes/tiny/grpo.yaml"
    config = load_config(GRPOConfig, recipe, ["data.video_max_pixels=200704"])
    assert (config.data.video_min_pixels, config.data.video_max_pixels) == (None, 200704)
    with pytest.raises(ConfigError, match=r"data\.video_min_pixels \(9000\) is larger"):
        load_config(GRPOConfig, recipe, ["data.video_min_pixels=9000", "data.video_max_pixels=10"])


def test_validate_and_stats_take_the_video_budget(tiny_model_dirs, tmp_path, capsys):
    side, budget, default_pads, budget_pads = HAND["qwen2_vl"]
    path = write_video_data(tmp_path, side)
    model = str(tiny_model_dirs("qwen2_vl"))
    counter = TokenCounter.from_pretrained(model)
    record = read_records(path)[0]
    short = counter.count(record, [], [(4, side, side)]) - default_pads + budget_pads
    report = tmp_path / "report.json"
    # max_length between the two lengths: too long by default, fits with the video budget
    argv = ["data", "validate", str(path), "--model", model, "--max-length", str(short)]
    assert main([*argv, "--report", str(report)]) == 2
    problem = json.loads(report.read_text())["problems"][0]
    assert problem["code"] == "too_long"
    assert "data.video_max_pixels" in problem["message"]
    assert "--video-max-pixels" in problem["message"]
    assert main([*argv, "--video-max-pixels", str(budget), "--report", str(report)]) == 0
    assert json.loads(report.read_text())["token_length"]["max"] == short
    capsys.readouterr()
    out = tmp_path / "stats.json"
    stats = ["data", "stats", str(path), "--model", model, "--out", str(out)]
    assert main([*stats, "--video-max-pixels", str(budget)]) == 0
    assert json.loads(out.read_text())["video_tokens"]["summary"]["max"] == budget_pads
    assert main(stats) == 0
    assert json.loads(out.read_text())["video_tokens"]["summary"]["max"] == default_pads
    assert main([*stats, "--video-min-pixels", "99", "--video-max-pixels", "9"]) == 2
    assert "--video-min-pixels (99) is larger than --video-max-pixels (9)" in (
        capsys.readouterr().err
    )
