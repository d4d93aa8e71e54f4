"""LoRA merge/export: same greedy outputs as base + adapter, the merger kept, stock key names,
processor files and a model card; unsafe merges refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import medvl
from medvl.cli.main import main
from medvl.data.jsonl import read_records
from medvl.errors import ConfigError
from medvl.infer.engine import ChatRequest, GenerationSettings
from medvl.infer.hf_engine import HFEngine
from medvl.models.loading import load_model
from medvl.models.merge import (
    MergeError,
    check_full_modules,
    checkpoint_keys,
    choose_dtype,
    full_module_tensors,
)

GREEDY = GenerationSettings(max_new_tokens=6)
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "processor_config.json",
    "generation_config.json",
    "config.json",
    "README.md",
)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_merged_model_equals_base_plus_adapter(
    family, tiny_model_dirs, tiny_adapter, phantom_dir, tmp_path
):
    base = tiny_model_dirs(family)
    adapter = tiny_adapter(family)
    out = tmp_path / "merged"
    assert main(["export", "merge", "--adapter", str(adapter), "--out", str(out)]) == 0

    for name in PROCESSOR_FILES:
        assert (out / name).is_file(), name
    assert checkpoint_keys(out) == checkpoint_keys(base)  # the stock checkpoint layout
    merged_weights = load_file(str(out / "model.safetensors"))
    merger = {k: v for k, v in full_module_tensors(adapter).items() if "merger" in k}
    assert merger
    for key, tensor in merger.items():  # the fully trained merger survived, bit for bit
        # Qwen2-VL checkpoints spell it "visual.merger...", Qwen3-VL "model.visual.merger..."
        stored = merged_weights.get(key, merged_weights.get(key.removeprefix("model.")))
        assert stored is not None and torch.equal(stored, tensor), key

    root = phantom_dir
    requests = [ChatRequest.from_record(r, root) for r in read_records(root / "test.jsonl")[:4]]
    requests.append(ChatRequest.from_question("What is MRI?"))
    with_adapter = HFEngine(load_model(base, [adapter]), batch_size=5, num_workers=0)
    standalone = HFEngine(load_model(out), batch_size=5, num_workers=0)
    plain = HFEngine(load_model(base), batch_size=5, num_workers=0)
    expected = [g.text for g in with_adapter.generate(requests, GREEDY)]
    assert [g.text for g in standalone.generate(requests, GREEDY)] == expected
    assert [g.text for g in plain.generate(requests, GREEDY)] != expected

    card = (out / "README.md").read_text(encoding="utf-8")
    assert str(base) in card and "merger" in card and "sft stage 2" in card
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"


def test_python_api_load_ask_and_chat(tiny_adapter, phantom_dir, tmp_path):
    adapter = tiny_adapter()
    image = phantom_dir / "images" / "phantom-00003.png"
    model = medvl.load(adapter)
    answer = model.ask(image, "Which organ is shown?", max_new_tokens=5)
    chat = model.chat(max_new_tokens=5)
    chat.add_image(image)
    assert chat.ask("Which organ is shown?") == answer
    with pytest.raises(ConfigError, match="unknown load option 'colour'"):
        medvl.load(adapter, colour="red")


def test_unsafe_merges_are_refused(tiny_model_dirs, tiny_adapter, tmp_path):
    bf16 = tmp_path / "bf16-base"
    bf16.mkdir()
    (bf16 / "config.json").write_text(json.dumps({"dtype": "bfloat16"}), encoding="utf-8")
    with pytest.raises(MergeError, match="float16 merge overflows"):
        choose_dtype("fp16", str(bf16))
    assert choose_dtype("auto", str(bf16)) == "bfloat16"
    adapter = tiny_adapter()
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ["export", "merge", "--adapter", str(adapter), "--out", str(out)]
    assert main(args) == 2
    assert (out / "keep.txt").is_file()  # nothing was touched
    base_model = load_model(tiny_model_dirs("qwen2_vl")).model
    with pytest.raises(MergeError, match="did not survive the merge"):
        check_full_modules(base_model, full_module_tensors(adapter), str(adapter))
