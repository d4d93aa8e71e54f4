"""Fixtures of the integration tier: a trained-looking LoRA adapter (built once per session and
read-only), and the hand-made SFT samples and fp32 model of the packing and loss tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest


def _make_adapter(base: Path, out: Path, *, seed: int = 1) -> Path:
    """A peft LoRA adapter as SFT saves one: LoRA on the language model's q/v projections with
    random (non-zero) B weights, plus the merger trained in full (``modules_to_save``), saved
    with the processor files next to it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from medvl.models.loading import quiet_peft_warnings
    from medvl.models.registry import detect_family

    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    spec = detect_family(model)
    full = ["merger"]
    if spec.name == "qwen3_vl":  # a ModuleList cannot be wrapped whole: name its members
        full += [
            f"deepstack_merger_list.{i}"
            for i in range(len(model.model.visual.deepstack_merger_list))
        ]
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=r".*\.language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)",
        modules_to_save=full,
    )
    with quiet_peft_warnings():
        peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
            elif "modules_to_save" in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.2)
    peft_model.save_pretrained(out)
    AutoProcessor.from_pretrained(base).save_pretrained(out)
    (out / "manifest.json").write_text(
        json.dumps({"kind": "sft", "stage": 2, "data": {"train": {"path": "train.jsonl"}}}),
        encoding="utf-8",
    )
    return out


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model_dirs, tmp_path_factory) -> Callable[..., Path]:
    """Return ``get(family="qwen2_vl") -> Path``: the session's LoRA adapter (q/v LoRA, merger
    trained in full, processor and manifest beside it) for that family's tiny model."""
    built: dict[str, Path] = {}

    def get(family: str = "qwen2_vl") -> Path:
        if family not in built:
            out = tmp_path_factory.mktemp(f"adapter-{family}")
            built[family] = _make_adapter(tiny_model_dirs(family), out)
        return built[family]

    return get


#: (question, answer, image size or None for a text-only sample) of the packing/loss tests.
QUESTIONS = [
    ("Is there a nodule?", "yes", (112, 84)),
    ("Describe the findings.", "Two small nodules in the left lung. No effusion.", (140, 112)),
    ("What modality is this?", "CT", (56, 56)),
    ("Which side is the lesion on?", "left", None),  # text-only sample
]


@pytest.fixture
def sft_samples(tmp_path) -> Callable[[Path], tuple]:
    """Return ``make(model_dir) -> (processor, samples)``: the four :data:`QUESTIONS` as SFT
    features (noise images written into ``tmp_path``), three with an image and one text-only."""

    def make(model_dir: Path) -> tuple:
        from PIL import Image
        from transformers import AutoProcessor

        from medvl.data.features import FeatureBuilder
        from medvl.data.record import Record

        processor = AutoProcessor.from_pretrained(model_dir)
        builder = FeatureBuilder(processor)
        samples = []
        for i, (question, answer, size) in enumerate(QUESTIONS):
            images = []
            if size is not None:
                Image.effect_noise(size, 40 + 10 * i).convert("RGB").save(tmp_path / f"{i}.png")
                images = [f"{i}.png"]
            placeholder = "<image>\n" if images else ""
            record = Record(
                id=f"s{i}",
                dataset="t",
                split="train",
                lang="en",
                images=images,
                messages=[
                    {"role": "user", "content": placeholder + question},
                    {"role": "assistant", "content": answer},
                ],
            )
            samples.append(builder(record, tmp_path))
        return processor, samples

    return make


@pytest.fixture(scope="session")
def fp32_model() -> Callable[[Path], object]:
    """Return ``load(model_dir) -> model``: a fresh fp32 model in eval mode, without KV cache."""

    def load(model_dir: Path):
        import torch
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
        model.config.text_config.use_cache = False
        return model.eval()

    return load
