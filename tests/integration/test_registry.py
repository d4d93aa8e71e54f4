"""The family registry: names, detection, and that its prefixes cover real module names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medvl.errors import MedvlError, UnknownNameError
from medvl.models.registry import (
    FAMILIES,
    OTHER,
    PARTS,
    detect_family,
    get_family,
    lora_target_regex,
    parameters_by_part,
    part_of,
)


def load_model(folder):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder)


def test_families_are_the_three_qwen_vl_generations():
    assert FAMILIES == ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("qwen2_vl", "qwen2_vl"),
        ("Qwen2-VL", "qwen2_vl"),
        ("qwen2.5-vl", "qwen2_5_vl"),
        ("QWEN3_VL", "qwen3_vl"),
    ],
)
def test_get_family_accepts_common_spellings(alias, name):
    assert get_family(alias).name == name


def test_unknown_family_names_the_allowed_ones():
    with pytest.raises(UnknownNameError) as info:
        get_family("llava")
    assert isinstance(info.value, MedvlError)
    assert info.value.allowed == list(FAMILIES)
    for name in FAMILIES:
        assert name in str(info.value)


def test_detect_family_from_config_dict_and_unknown_type(tiny_model_dirs):
    for family in FAMILIES:
        config = json.loads((tiny_model_dirs(family) / "config.json").read_text())
        assert detect_family(config).name == family
    with pytest.raises(UnknownNameError, match="qwen2_vl"):
        detect_family({"model_type": "llama"})


def test_default_system_prompt_only_before_qwen3():
    assert get_family("qwen2_vl").default_system_prompt == "You are a helpful assistant."
    assert get_family("qwen2_5_vl").default_system_prompt == "You are a helpful assistant."
    assert get_family("qwen3_vl").default_system_prompt is None


@pytest.mark.parametrize("family", FAMILIES)
def test_every_parameter_belongs_to_one_known_part(family, tiny_model_dirs):
    model = load_model(tiny_model_dirs(family))
    spec = detect_family(model)
    assert spec.name == family
    groups = parameters_by_part(model, spec)
    assert groups[OTHER] == []
    for part in PARTS:
        assert groups[part], f"{family}: no parameters in part {part!r}"
    counted = sum(len(groups[part]) for part in PARTS)
    assert counted == len(list(model.named_parameters()))
    merger_roots = ("model.visual.merger.", "model.visual.deepstack_merger_list.")
    assert all(name.startswith(merger_roots) for name, _ in groups["merger"])
    assert not any("merger" in name for name, _ in groups["vision"])
    assert [name for name, _ in groups["lm_head"]] == ["lm_head.weight"]


def test_qwen3_merger_part_includes_deepstack_mergers(tiny_model_dirs):
    model = load_model(tiny_model_dirs("qwen3_vl"))
    names = [name for name, _ in parameters_by_part(model)["merger"]]
    assert any(name.startswith("model.visual.deepstack_merger_list.") for name in names)
    assert any(name.startswith("model.visual.merger.") for name in names)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_targets_name_the_linear_layers(family, tiny_model_dirs):
    """Every linear layer of the vision blocks and LM layers is a LoRA target, and vice versa."""
    import torch

    model = load_model(tiny_model_dirs(family))
    spec = get_family(family)
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    vision = {n.rsplit(".", 1)[1] for n in linears if n.startswith(spec.vision_block_prefix)}
    language = {n.rsplit(".", 1)[1] for n in linears if part_of(n + ".weight", spec) == "language"}
    assert vision == set(spec.vision_lora_targets)
    assert language == set(spec.language_lora_targets)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_regex_wraps_exactly_the_block_linears(family, tiny_model_dirs):
    """Vision+language LoRA touches every block/layer linear and nothing in the mergers."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = load_model(tiny_model_dirs(family))
    spec = get_family(family)
    blocks = (spec.vision_block_prefix, spec.language_layer_prefix)
    expected = {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.startswith(blocks)
    }
    regex = lora_target_regex(spec, ("vision", "language"))
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=regex))
    wrapped = {
        name.removeprefix("base_model.model.").removesuffix(".lora_A.default")
        for name, _ in peft_model.named_modules()
        if name.endswith(".lora_A.default")
    }
    assert wrapped == expected
    lora_parts = {part_of(n, spec) for n, p in peft_model.named_parameters() if "lora_" in n}
    assert lora_parts == {"vision", "language"}
    with pytest.raises(UnknownNameError):
        lora_target_regex(spec, ("merger",))


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("base_model.model.model.visual.blocks.0.attn.qkv.lora_A.default.weight", "vision"),
        (
            "base_model.model.model.language_model.layers.1.mlp.up_proj.base_layer.weight",
            "language",
        ),
        ("base_model.model.lm_head.weight", "lm_head"),
        ("model.visual.deepstack_merger_list.0.norm.weight", "merger"),
        ("something.else", OTHER),
    ],
)
def test_part_of_sees_through_peft_wrappers(name, part):
    assert part_of(name, get_family("qwen3_vl")) == part


def test_registry_import_stays_light():
    """The CLI validates family names before torch/transformers load; keep it that way."""
    code = (
        "import sys, medvl.models, medvl.models.registry; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
