"""The Qwen-VL model families medvl supports, and where each keeps its parts.

Freezing, LoRA targeting and weight merging all need to know which parameters belong to the
vision tower, the vision-to-language merger, the language model and the output head. Those
module names differ between Qwen2-VL, Qwen2.5-VL and Qwen3-VL and between transformers
releases, so they live here, in one table, instead of as string literals scattered over the
training code. The prefixes below were read off ``named_parameters()`` of
``AutoModelForImageTextToText`` in transformers 5.x (see tests/integration/test_registry.py,
which checks every parameter of a real-architecture tiny model lands in exactly one part).

This module imports neither torch nor transformers, so the CLI can validate a family name
before paying for those imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medvl.errors import UnknownNameError

if TYPE_CHECKING:
    import torch

#: The named parts of a Qwen-VL model, in the order a forward pass meets them.
PARTS: tuple[str, ...] = ("vision", "merger", "language", "lm_head")
#: What :func:`part_of` returns for a parameter outside every known part.
OTHER = "other"

#: Wrapper prefixes added by peft (``PeftModel``/``LoraModel``) in front of the model's own names.
_WRAPPER_PREFIXES: tuple[str, ...] = ("base_model.model.",)

LANGUAGE_LORA_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@dataclass(frozen=True)
class FamilySpec:
    """Everything medvl needs to know about one Qwen-VL generation.

    Prefixes are matched against ``named_parameters()`` names (after stripping a peft wrapper
    prefix); merger prefixes are checked before vision prefixes because the merger lives
    inside the vision module (``model.visual.merger``). ``added_tokens`` are the family's
    non-special added tokens after the 14 shared Qwen special tokens (tool calls, ``<think>``...),
    in the real tokenizer's id order.
    """

    name: str
    model_type: str
    config_class: str
    model_class: str
    processor_class: str
    video_processor_class: str
    example_checkpoint: str
    vision_prefixes: tuple[str, ...]
    merger_prefixes: tuple[str, ...]
    language_prefixes: tuple[str, ...]
    lm_head_prefixes: tuple[str, ...]
    vision_block_prefix: str
    language_layer_prefix: str
    language_lora_targets: tuple[str, ...]
    vision_lora_targets: tuple[str, ...]
    patch_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    default_system_prompt: str | None
    added_tokens: tuple[str, ...] = ()
    image_processor_class: str = "Qwen2VLImageProcessor"
    padding_side: str = "right"
    merge_size: int = 2
    temporal_patch_size: int = 2
    #: The released checkpoints' image pixel budget (preprocessor shortest/longest edge).
    default_min_pixels: int = 56 * 56
    default_max_pixels: int = 28 * 28 * 16384
    im_start: str = "<|im_start|>"
    im_end: str = "<|im_end|>"
    vision_start: str = "<|vision_start|>"
    vision_end: str = "<|vision_end|>"
    image_pad: str = "<|image_pad|>"
    video_pad: str = "<|video_pad|>"

    @property
    def image_factor(self) -> int:
        """Pixels per merged visual token along one side (image sides are rounded to this)."""
        return self.patch_size * self.merge_size


_QWEN2_5_ADDED = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
_QWEN3_ADDED = (*_QWEN2_5_ADDED, "<tool_response>", "</tool_response>", "<think>", "</think>")
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_COMMON = {
    "vision_prefixes": ("model.visual.",),
    "language_prefixes": ("model.language_model.",),
    "lm_head_prefixes": ("lm_head.",),
    "vision_block_prefix": "model.visual.blocks.",
    "language_layer_prefix": "model.language_model.layers.",
    "language_lora_targets": LANGUAGE_LORA_TARGETS,
}

_SPECS: tuple[FamilySpec, ...] = (
    FamilySpec(
        name="qwen2_vl",
        model_type="qwen2_vl",
        config_class="Qwen2VLConfig",
        model_class="Qwen2VLForConditionalGeneration",
        processor_class="Qwen2VLProcessor",
        video_processor_class="Qwen2VLVideoProcessor",
        example_checkpoint="Qwen/Qwen2-VL-2B-Instruct",
        merger_prefixes=("model.visual.merger.",),
        vision_lora_targets=("qkv", "proj", "fc1", "fc2"),
        patch_size=14,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
        default_system_prompt="You are a helpful assistant.",
        padding_side="left",
        **_COMMON,
    ),
    FamilySpec(
        name="qwen2_5_vl",
        model_type="qwen2_5_vl",
        config_class="Qwen2_5_VLConfig",
        model_class="Qwen2_5_VLForConditionalGeneration",
        processor_class="Qwen2_5_VLProcessor",
        video_processor_class="Qwen2VLVideoProcessor",
        example_checkpoint="Qwen/Qwen2.5-VL-3B-Instruct",
        merger_prefixes=("model.visual.merger.",),
        vision_lora_targets=("qkv", "proj", "gate_proj", "up_proj", "down_proj"),
        patch_size=14,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
        default_system_prompt="You are a helpful assistant.",
        added_tokens=_QWEN2_5_ADDED,
        **_COMMON,
    ),
    FamilySpec(
        name="qwen3_vl",
        model_type="qwen3_vl",
        config_class="Qwen3VLConfig",
        model_class="Qwen3VLForConditionalGeneration",
        processor_class="Qwen3VLProcessor",
        video_processor_class="Qwen3VLVideoProcessor",
        example_checkpoint="Qwen/Qwen3-VL-2B-Instruct",
        merger_prefixes=("model.visual.merger.", "model.visual.deepstack_merger_list."),
        vision_lora_targets=("qkv", "proj", "linear_fc1", "linear_fc2"),
        patch_size=16,
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
        default_system_prompt=None,
        added_tokens=_QWEN3_ADDED,
        default_min_pixels=256 * 256,
        default_max_pixels=4096 * 4096,
        **_COMMON,
    ),
)

_BY_NAME: dict[str, FamilySpec] = {spec.name: spec for spec in _SPECS}
#: The family names medvl accepts, e.g. in ``--family``.
FAMILIES: tuple[str, ...] = tuple(_BY_NAME)


def _normalise(name: str) -> str:
    """Accept common spellings: ``Qwen2.5-VL`` and ``qwen2_5_vl`` name the same family."""
    return name.strip().lower().replace("-", "_").replace(".", "_")


def get_family(name: str) -> FamilySpec:
    """Return the spec of family ``name`` (e.g. ``"qwen2_vl"``, also ``"Qwen2.5-VL"``)."""
    spec = _BY_NAME.get(_normalise(name))
    if spec is None:
        raise UnknownNameError("model family", name, FAMILIES)
    return spec


def detect_family(model_or_config: Any) -> FamilySpec:
    """Return the family of a model, a config, or a config dict, from its ``model_type``.

    Peft-wrapped models work too (their ``config`` attribute reaches the base model's).
    """
    config = getattr(model_or_config, "config", model_or_config)
    if isinstance(config, Mapping):
        model_type = config.get("model_type")
    else:
        model_type = getattr(config, "model_type", None)
    for spec in _SPECS:
        if spec.model_type == model_type:
            return spec
    raise UnknownNameError("model type", str(model_type), [s.model_type for s in _SPECS])


def _strip_wrappers(param_name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        if param_name.startswith(prefix):
            return param_name[len(prefix) :]
    return param_name


def part_of(param_name: str, spec: FamilySpec) -> str:
    """Name a parameter's part: ``vision``, ``merger``, ``language``, ``lm_head`` or ``other``.

    Works on names from ``named_parameters()``/``state_dict()`` of the model or of a peft
    wrapper around it (LoRA's ``lora_A``/``base_layer`` names stay inside their module's part).
    """
    name = _strip_wrappers(param_name)
    ordered = (
        ("merger", spec.merger_prefixes),
        ("vision", spec.vision_prefixes),
        ("language", spec.language_prefixes),
        ("lm_head", spec.lm_head_prefixes),
    )
    for part, prefixes in ordered:
        if name.startswith(prefixes):
            return part
    return OTHER


def split_by_part(
    names_and_values: Iterable[tuple[str, Any]], spec: FamilySpec
) -> dict[str, list[tuple[str, Any]]]:
    """Group ``(name, value)`` pairs by :func:`part_of`; every part key is present, maybe empty."""
    groups: dict[str, list[tuple[str, Any]]] = {part: [] for part in (*PARTS, OTHER)}
    for name, value in names_and_values:
        groups[part_of(name, spec)].append((name, value))
    return groups


def parameters_by_part(
    model: torch.nn.Module, spec: FamilySpec | None = None
) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    """Group a model's parameters by part, for freezing, LoRA targeting or per-part stats.

    ``spec`` defaults to :func:`detect_family` of the model. A model with tied word
    embeddings has an empty ``lm_head`` group, since ``named_parameters()`` lists a shared
    tensor once (under ``embed_tokens``).
    """
    spec = spec or detect_family(model)
    return split_by_part(model.named_parameters(), spec)


def lora_target_regex(
    spec: FamilySpec,
    parts: Iterable[str] = ("language",),
    language_targets: Iterable[str] | None = None,
) -> str:
    """Return a peft ``target_modules`` regex for the default LoRA targets of ``parts``.

    ``parts`` may hold ``"language"`` and ``"vision"``. Bare names are not enough: peft
    matches ``target_modules=["linear_fc1"]`` by suffix, which also hits Qwen3-VL's merger
    and deepstack mergers, and Qwen2.5-VL's vision MLP shares ``gate_proj``/``up_proj``/
    ``down_proj`` with the language model; the regex anchors each name under its part's
    block prefix (peft full-matches a string against module names). ``language_targets``
    replaces the family's default language-model module names.
    """
    anchors = {
        "language": (
            spec.language_layer_prefix,
            tuple(language_targets or spec.language_lora_targets),
        ),
        "vision": (spec.vision_block_prefix, spec.vision_lora_targets),
    }
    alternatives = []
    for part in parts:
        if part not in anchors:
            raise UnknownNameError("LoRA part", part, tuple(anchors))
        prefix, names = anchors[part]
        alternatives.append(rf"{re.escape(prefix)}\d+\.(?:.*\.)?(?:{'|'.join(names)})")
    return rf"(?:.*\.)?(?:{'|'.join(alternatives)})"
