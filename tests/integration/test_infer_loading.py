"""Model loading: safetensors only, clear messages for bad folders and CPU quantization,
pixel budgets, processors saved with adapters, fingerprints, and a cheap ``import medvl``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from medvl.errors import ConfigError
from medvl.models.loading import (
    LoadOptions,
    ModelLoadError,
    dtype_name,
    load_model,
    model_fingerprint,
    processor_source,
    resolve_dtype,
    training_dtype,
)


def test_safetensors_only(tiny_model_dirs, tiny_adapter, tmp_path):
    base = tiny_model_dirs("qwen2_vl")
    pickled = tmp_path / "pickled"
    shutil.copytree(base, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pytorch_model\*\.bin and no \*\.safetensors"):
        load_model(pickled)
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_adapter(), adapter)
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    with pytest.raises(ModelLoadError, match=r"adapter_model\.bin instead of"):
        load_model(base, [adapter])


def test_bad_paths_and_options_say_what_to_do(tiny_model_dirs, tmp_path):
    with pytest.raises(ModelLoadError, match="no such model folder"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="not a peft adapter folder"):
        load_model(tiny_model_dirs("qwen2_vl"), [tmp_path])
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        load_model(tiny_model_dirs("qwen2_vl"), options=LoadOptions(quantization="4bit"))
    with pytest.raises(ConfigError, match="dtype 'fp8'"):
        LoadOptions(dtype="fp8")
    with pytest.raises(ConfigError, match="larger than max_pixels"):
        LoadOptions(min_pixels=10_000, max_pixels=100)
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA GPU"):
            load_model(tiny_model_dirs("qwen2_vl"), options=LoadOptions(device="cuda"))


def test_dtype_resolution_for_inference_and_training():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert training_dtype("fp16") == torch.float16 and training_dtype("fp32") == torch.float32
    cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    # training never picks fp16 on its own: auto is bf16 where the GPU has it, else fp32
    assert training_dtype("auto") == (torch.bfloat16 if cuda_bf16 else torch.float32)
    assert [dtype_name(training_dtype(p)) for p in ("bf16", "fp16", "fp32")] == [
        "bf16",
        "fp16",
        "fp32",
    ]


def test_dtype_attention_and_pixel_budget(tiny_model_dirs):
    options = LoadOptions(
        dtype="bf16", attn_implementation="eager", min_pixels=56 * 56, max_pixels=112 * 112
    )
    loaded = load_model(tiny_model_dirs("qwen3_vl"), options=options)
    assert loaded.dtype == torch.bfloat16 and loaded.device.type == "cpu"
    assert loaded.model.config._attn_implementation == "eager"
    size = loaded.processor.image_processor.size
    assert (size.shortest_edge, size.longest_edge) == (56 * 56, 112 * 112)
    assert loaded.processor.tokenizer.padding_side == "left"
    assert loaded.family.name == "qwen3_vl" and not loaded.model.training


def test_processor_and_fingerprint_follow_the_adapter(tiny_model_dirs, tiny_adapter, tmp_path):
    base = str(tiny_model_dirs("qwen2_vl"))
    adapter = str(tiny_adapter())
    assert processor_source(base, (adapter,)) == adapter
    assert processor_source(base, ()) == base
    plain, tuned = model_fingerprint(base), model_fingerprint(base, (adapter,))
    assert plain["id"] != tuned["id"] and plain == model_fingerprint(base)
    moved = tmp_path / "moved"
    shutil.copytree(base, moved)
    assert model_fingerprint(str(moved))["id"] == plain["id"]  # paths are not identity
    config = json.loads((moved / "config.json").read_text())
    config["text_config"]["rms_norm_eps"] = 1e-5
    (moved / "config.json").write_text(json.dumps(config))
    assert model_fingerprint(str(moved))["id"] != plain["id"]


def test_import_medvl_stays_light():
    code = (
        "import sys, medvl; assert callable(medvl.__getattr__('load').__call__);"
        "import medvl.infer, medvl.models;"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
