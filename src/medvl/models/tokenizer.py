"""A small Qwen-style tokenizer trained offline on a medical corpus, for tiny test models.

Real Qwen-VL tokenizers have 151k tokens; a tiny model with that vocabulary would be mostly
embedding table. This builds the same kind of tokenizer (byte-level BPE with Qwen2's
normalizer and pre-tokenizer regex, the real Qwen special tokens, the family's chat template)
with ~2.7k tokens learned from ``resources/medical_corpus.txt`` (English and Chinese
radiology/pathology text), so English and Chinese medical text tokenizes into short sequences
and every byte string still round-trips. Training is deterministic and takes well under a
second; nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from medvl.models.registry import FamilySpec, get_family

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

#: The special tokens every Qwen-VL tokenizer has, in the real tokenizers' id order.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
#: Target BPE vocabulary (before special tokens); the corpus may support fewer merges.
DEFAULT_VOCAB_SIZE = 3000
CORPUS_RESOURCE = "medical_corpus.txt"

#: Qwen2-VL's and Qwen2.5-VL's chat template, verbatim from Qwen2-VL-2B-Instruct.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: A close equivalent of Qwen3-VL-Instruct's template without tool definitions: no default
#: system prompt, images/videos/text parts in any message, tool results wrapped as a user turn.
QWEN3_VL_CHAT_TEMPLATE = """\
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {%- if message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' }}
    {%- endif %}
    {%- if message.content is string %}
        {{- message.content }}
    {%- else %}
        {%- for content in message.content %}
            {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                {%- set image_count.value = image_count.value + 1 %}
                {%- if add_vision_id %}{{- 'Picture ' ~ image_count.value ~ ': ' }}{%- endif %}
                {{- '<|vision_start|><|image_pad|><|vision_end|>' }}
            {%- elif content.type == 'video' or 'video' in content %}
                {%- set video_count.value = video_count.value + 1 %}
                {%- if add_vision_id %}{{- 'Video ' ~ video_count.value ~ ': ' }}{%- endif %}
                {{- '<|vision_start|><|video_pad|><|vision_end|>' }}
            {%- elif 'text' in content %}
                {{- content.text }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
    {%- if message.role == 'tool' %}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- else %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


def chat_template_for(spec: FamilySpec) -> str:
    """Return the chat template a tiny model of this family ships with.

    Qwen2-VL and Qwen2.5-VL share one template with a default system prompt; Qwen3-VL's has
    none, so the template choice follows ``spec.default_system_prompt``.
    """
    if spec.default_system_prompt is None:
        return QWEN3_VL_CHAT_TEMPLATE
    return QWEN2_VL_CHAT_TEMPLATE.replace(
        "You are a helpful assistant.", spec.default_system_prompt
    )


def read_corpus() -> str:
    """Return the packaged medical text corpus the tiny tokenizer is trained on."""
    return resources.files("medvl.resources").joinpath(CORPUS_RESOURCE).read_text("utf-8")


@lru_cache(maxsize=4)
def _train_bpe(vocab_size: int) -> str:
    """Train byte-level BPE on the corpus with Qwen2's pipeline; return the model as JSON.

    The normalizer and pre-tokenizer are taken from transformers' ``Qwen2Tokenizer`` so the
    merges are learned on exactly the pieces that class will split text into when it reloads
    the saved files. Cached per process because every tiny model of a session needs it.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    reference = Qwen2Tokenizer().backend_tokenizer
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = reference.normalizer
    bpe.pre_tokenizer = reference.pre_tokenizer
    bpe.decoder = reference.decoder
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    bpe.train_from_iterator(read_corpus().splitlines(keepends=True), trainer=trainer)
    return json.dumps(json.loads(bpe.to_str())["model"])


def build_tokenizer(
    family: str, *, vocab_size: int = DEFAULT_VOCAB_SIZE
) -> PreTrainedTokenizerBase:
    """Build the tiny tokenizer of ``family``: corpus BPE + Qwen special tokens + chat template.

    Ids follow the real layout: learned tokens first, then the 14 shared special tokens
    (``<|endoftext|>`` first), then the family's extra added tokens (``<think>``... for
    Qwen3-VL). eos is ``<|im_end|>`` and pad ``<|endoftext|>``, as in the Instruct models.
    """
    from tokenizers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    spec = get_family(family)
    model = json.loads(_train_bpe(vocab_size))
    first_id = len(model["vocab"])
    added = [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    added += [AddedToken(t, special=False, normalized=False) for t in spec.added_tokens]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(pair) for pair in model["merges"]],
        unk_token=None,
        bos_token=None,
        eos_token=spec.im_end,
        pad_token="<|endoftext|>",
        added_tokens_decoder={first_id + i: token for i, token in enumerate(added)},
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=32768,
        padding_side=spec.padding_side,
    )
    tokenizer.chat_template = chat_template_for(spec)
    logger.debug("built %s tokenizer with %d tokens", spec.name, len(tokenizer))
    return tokenizer
