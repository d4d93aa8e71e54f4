"""Tiny random-weight models of the real Qwen-VL architectures, built offline.

Tests and demos need a model folder that loads like a real checkpoint
(``AutoModelForImageTextToText`` / ``AutoProcessor``), runs a forward pass and ``generate`` on
CPU in milliseconds, and never touches the network. These builders use transformers' real
config, model and processor classes at toy size with the medical tiny tokenizer, so code that
works on them meets the same module names, token layout and image-token arithmetic as on the
real checkpoints. :func:`build_from_real_config` goes one step closer: the real tokenizer,
processor and config of a downloaded model folder, with the depth and widths shrunk.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvl.errors import MedvlError, UnknownNameError
from medvl.models.registry import FamilySpec, detect_family, get_family
from medvl.models.tokenizer import SPECIAL_TOKENS, build_tokenizer

if TYPE_CHECKING:
    from transformers import GenerationConfig, PretrainedConfig, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TinySize:
    """Widths and depths of a toy model; heads divide widths into 16- or 32-wide heads."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vision_intermediate: int

    @property
    def head_dim(self) -> int:
        """Width of one text attention head (mrope sections split half of it)."""
        return self.text_hidden // self.text_heads


SIZES: dict[str, TinySize] = {
    "tiny": TinySize(64, 2, 4, 2, 128, 64, 2, 4, 128),
    "small": TinySize(128, 4, 4, 2, 256, 128, 4, 4, 256),
}
#: Image side length bounds, in merged visual tokens: images become 4..256 tokens on CPU.
MIN_IMAGE_TOKENS = 4
MAX_IMAGE_TOKENS = 256
#: Real mrope sections (for head_dim 128) that tiny sections are scaled from.
_REFERENCE_MROPE = {"qwen2_vl": (16, 24, 24), "qwen2_5_vl": (16, 24, 24), "qwen3_vl": (24, 20, 20)}
_ROPE_THETA = {"qwen2_vl": 1_000_000.0, "qwen2_5_vl": 1_000_000.0, "qwen3_vl": 5_000_000.0}


def get_size(size: str) -> TinySize:
    """Return the preset ``size`` (``"tiny"`` or ``"small"``)."""
    if size not in SIZES:
        raise UnknownNameError("tiny model size", size, tuple(SIZES))
    return SIZES[size]


def scale_mrope_section(reference: tuple[int, ...] | list[int], head_dim: int) -> list[int]:
    """Scale a real mrope section (temporal, height, width) to sum to ``head_dim // 2``.

    Multimodal rope splits each head's rotary frequencies between time, height and width;
    the sections must add up to half the head width or the rotary embedding is mis-shaped.
    The remainder after rounding down goes to the temporal section.
    """
    half, total = head_dim // 2, sum(reference)
    scaled = [max(1, part * half // total) for part in reference]
    scaled[0] += half - sum(scaled)
    if scaled[0] < 1:
        raise MedvlError(f"head_dim {head_dim} is too small for a 3-part mrope section")
    return scaled


def token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """The special token ids a Qwen-VL config must agree with its tokenizer on."""
    ids = dict(
        zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)), strict=True)
    )
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def width_scaled_init(hidden: int) -> float:
    """Weight init std for a toy-width language model: ``1/sqrt(hidden)``.

    The stock 0.02 is about ``1/sqrt(2500)``, right for the ~2k-wide real models; at width 64 it
    leaves attention logits near zero and logits capped, and a random model then needs several
    times more steps to learn to look at the image (measured on the phantom set: presence
    questions broke through after ~8 epochs instead of ~26). The vision tower keeps 0.02.
    """
    return round(hidden**-0.5, 6)


def _text_config(spec: FamilySpec, size: TinySize, vocab_size: int, ids: dict) -> dict[str, Any]:
    rope = {
        "rope_type": "default",
        "rope_theta": _ROPE_THETA[spec.name],
        "mrope_section": scale_mrope_section(_REFERENCE_MROPE[spec.name], size.head_dim),
    }
    if spec.name == "qwen3_vl":
        rope["mrope_interleaved"] = True
    text = {
        "vocab_size": vocab_size,
        "hidden_size": size.text_hidden,
        "intermediate_size": size.text_intermediate,
        "num_hidden_layers": size.text_layers,
        "num_attention_heads": size.text_heads,
        "num_key_value_heads": size.text_kv_heads,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "initializer_range": width_scaled_init(size.text_hidden),
        "rope_parameters": rope,
        **{key: ids[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id")},
    }
    if spec.name == "qwen3_vl":
        text["head_dim"] = size.head_dim
    else:
        text["max_window_layers"] = size.text_layers
    return text


def _vision_config(spec: FamilySpec, size: TinySize) -> dict[str, Any]:
    common = {
        "depth": size.vision_depth,
        "num_heads": size.vision_heads,
        "patch_size": spec.patch_size,
        "spatial_merge_size": spec.merge_size,
        "temporal_patch_size": spec.temporal_patch_size,
    }
    if spec.name == "qwen2_vl":  # hidden_size is the merger's output width here
        return {
            **common,
            "embed_dim": size.vision_hidden,
            "hidden_size": size.text_hidden,
            "mlp_ratio": size.vision_intermediate // size.vision_hidden,
        }
    widths = {
        "hidden_size": size.vision_hidden,
        "intermediate_size": size.vision_intermediate,
        "out_hidden_size": size.text_hidden,
    }
    if spec.name == "qwen2_5_vl":  # windowed blocks except the last, like the real 3:1 mix
        return {**common, **widths, "fullatt_block_indexes": [size.vision_depth - 1]}
    stacked = min(3, size.vision_depth, size.text_layers)  # deepstack feeds the first LM layers
    return {
        **common,
        **widths,
        "num_position_embeddings": 256,
        "deepstack_visual_indexes": list(range(size.vision_depth - stacked, size.vision_depth)),
    }


def build_tiny_config(
    family: str, tokenizer: PreTrainedTokenizerBase, size: str = "tiny"
) -> PretrainedConfig:
    """Return the real config class of ``family`` at toy size, agreeing with ``tokenizer``.

    The vocabulary is ``len(tokenizer)`` rounded up to a multiple of 64 (as real checkpoints
    pad theirs); word embeddings are untied so the ``lm_head`` part has its own parameters.
    """
    import transformers

    spec, tiny = get_family(family), get_size(size)
    ids = token_ids(tokenizer)
    vocab_size = -(-len(tokenizer) // 64) * 64
    config_class = getattr(transformers, spec.config_class)
    return config_class(
        text_config=_text_config(spec, tiny, vocab_size, ids),
        vision_config=_vision_config(spec, tiny),
        tie_word_embeddings=False,
        **ids,
    )


def build_processor(spec: FamilySpec, tokenizer: PreTrainedTokenizerBase) -> Any:
    """Return the family's real processor class with CPU-friendly image and video sizes."""
    import transformers

    pixels_per_token = spec.image_factor**2
    common = {
        "patch_size": spec.patch_size,
        "temporal_patch_size": spec.temporal_patch_size,
        "merge_size": spec.merge_size,
        "image_mean": list(spec.image_mean),
        "image_std": list(spec.image_std),
    }
    image_size = {
        "shortest_edge": MIN_IMAGE_TOKENS * pixels_per_token,
        "longest_edge": MAX_IMAGE_TOKENS * pixels_per_token,
    }
    video_size = {"shortest_edge": 4 * pixels_per_token, "longest_edge": 64 * pixels_per_token}
    image_processor = getattr(transformers, spec.image_processor_class)(size=image_size, **common)
    video_processor = getattr(transformers, spec.video_processor_class)(size=video_size, **common)
    return getattr(transformers, spec.processor_class)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


def build_generation_config(ids: dict[str, int]) -> GenerationConfig:
    """Greedy decoding that stops at ``<|im_end|>`` (or ``<|endoftext|>``), as chat models do."""
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=ids["bos_token_id"],
        eos_token_id=[ids["eos_token_id"], ids["bos_token_id"]],
        pad_token_id=ids["pad_token_id"],
        do_sample=False,
    )


def _random_model(config: PretrainedConfig, seed: int) -> Any:
    """Initialise a model from ``config`` with a seeded RNG, leaving the global RNG untouched."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForImageTextToText.from_config(config, dtype=torch.float32)


def _write_model_card(out_dir: Path, title: str, details: dict[str, Any]) -> None:
    lines = [
        f"# {title}",
        "",
        "Random weights written by medvl for tests and demos. It has learned nothing: its",
        "outputs are noise. It loads with `AutoModelForImageTextToText` and `AutoProcessor`",
        "from this folder, offline.",
        "",
        "```json",
        json.dumps(details, indent=2, sort_keys=True),
        "```",
        "",
    ]
    (out_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")


def build_tiny_model(family: str, out_dir: Path, *, seed: int = 0, size: str = "tiny") -> Path:
    """Write a complete random-weight model folder of ``family`` at ``size``; return the folder.

    The folder holds config.json, model.safetensors (float32), the tiny medical tokenizer,
    the processor files, generation_config.json (greedy, stops at ``<|im_end|>``) and a
    README. Same family, size and seed give byte-identical weights and tokenizer files.
    """
    spec, out_dir = get_family(family), Path(out_dir)
    tokenizer = build_tokenizer(spec.name)
    config = build_tiny_config(spec.name, tokenizer, size)
    model = _random_model(config, seed)
    model.generation_config = build_generation_config(token_ids(tokenizer))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    build_processor(spec, tokenizer).save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    details = {"family": spec.name, "size": size, "seed": seed, "parameters": n_params}
    _write_model_card(out_dir, f"Tiny random {spec.name} ({size})", details)
    logger.info("wrote tiny %s model (%s, %d parameters) to %s", spec.name, size, n_params, out_dir)
    return out_dir


def _shrink_text(text: dict[str, Any], spec: FamilySpec, size: TinySize) -> None:
    reference = text.get("rope_parameters") or {}
    section = reference.get("mrope_section") or _REFERENCE_MROPE[spec.name]
    text.update(
        hidden_size=size.text_hidden,
        intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_kv_heads,
        rope_parameters={**reference, "mrope_section": scale_mrope_section(section, size.head_dim)},
        initializer_range=width_scaled_init(size.text_hidden),
    )
    for key in ("layer_types", "max_window_layers"):
        text.pop(key, None)
    if "head_dim" in text:
        text["head_dim"] = size.head_dim


def build_from_real_config(
    config_dir: Path,
    out_dir: Path,
    *,
    size: str = "tiny",
    seed: int = 0,
) -> Path:
    """Shrink a real checkpoint's architecture to ``size`` and write it with random weights.

    ``config_dir`` needs config.json plus the real tokenizer and processor files (weights are
    not read). The vocabulary, special token ids, patch size and tokenizer stay real; depths
    and widths come from the ``size`` preset. Use it to check code against the real
    tokenizer and image processor without downloading or running a multi-GB model.
    """
    from transformers import AutoConfig, AutoProcessor, GenerationConfig

    config_dir, out_dir = Path(config_dir), Path(out_dir)
    real = AutoConfig.from_pretrained(config_dir)
    spec, tiny = detect_family(real), get_size(size)
    data = real.to_dict()
    _shrink_text(data["text_config"], spec, tiny)
    vision = _vision_config(spec, tiny)
    vision.update(patch_size=data["vision_config"].get("patch_size", spec.patch_size))
    data["vision_config"] = {**data["vision_config"], **vision}
    config = type(real).from_dict(data)
    model = _random_model(config, seed)
    if (config_dir / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(config_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    AutoProcessor.from_pretrained(config_dir).save_pretrained(out_dir)
    details = {"family": spec.name, "size": size, "seed": seed, "source": str(config_dir)}
    _write_model_card(out_dir, f"Shrunk random {spec.name} ({size})", details)
    return out_dir
