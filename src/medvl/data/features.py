"""Records to model tensors with labels on chosen assistant text, and right-padded batches.

The processor renders the chat template and expands each ``<|image_pad|>`` into the image's
tokens. Labels are -100 (:data:`IGNORE_INDEX`) everywhere except the characters a *span
function* picks; system, user and image tokens never carry a label. Two span functions exist:

* :func:`assistant_spans` (training): every assistant turn's content and its closing
  ``<|im_end|>`` (so the model learns to stop), per turn in multi-turn records;
* :func:`final_answer_span` (evaluation, perplexity): the last assistant turn's text only.

Character spans come from rendering growing prefixes of the conversation (the Qwen templates are
prefix-consistent), and the fast tokenizer's offsets map them to tokens; the mask is then
stretched over the expanded image tokens. A token is labelled only when it lies wholly inside a
span. Training (:mod:`medvl.train`) and evaluation (:mod:`medvl.eval`) both build on this
module, which knows neither.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medvl.data.medimage import load_image
from medvl.data.record import Record
from medvl.data.tokens import chat_messages
from medvl.errors import MedvlError

IGNORE_INDEX = -100

#: ``(processor, messages) -> (rendered text, [(start, end) character spans to label])``.
SpanFn = Callable[[Any, list[dict[str, Any]]], tuple[str, list[tuple[int, int]]]]


@dataclass
class Sample:
    """One tokenized record, ready for collation."""

    id: str
    input_ids: torch.Tensor  # (T,)
    labels: torch.Tensor  # (T,)
    mm_token_type_ids: torch.Tensor  # (T,)
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def _turn_prefixes(
    processor: Any, messages: list[dict[str, Any]], index: int, text: str
) -> tuple[str, str]:
    """The generation prompt before turn ``index`` and the rendered text up to and including it."""
    prompt = processor.apply_chat_template(
        messages[:index], tokenize=False, add_generation_prompt=True
    )
    upto = processor.apply_chat_template(messages[: index + 1], tokenize=False)
    if not (text.startswith(prompt) and text.startswith(upto)):
        raise MedvlError("the chat template is not prefix-consistent; cannot mask prompts")
    return prompt, upto


def assistant_spans(processor: Any, messages: list[dict[str, Any]]) -> tuple[str, list[tuple]]:
    """The rendered text and the character spans of each assistant reply, its ``<|im_end|>``
    and the one newline the template writes after it.

    Labelling that newline is what Qwen's own fine-tuning code, LLaMA-Factory and ms-swift do
    (their turn suffix is ``<|im_end|>\n``), so the same records give the same loss in medvl as
    in those tools (``benchmarks/bench_sft_peers.py``). Generation stops at ``<|im_end|>``, so
    the label changes what the loss averages over, not what the model says.
    """
    text = processor.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt, upto = _turn_prefixes(processor, messages, index, text)
        end = len(upto.rstrip("\n"))
        end += upto.startswith("\n", end)  # at most one newline after the turn
        spans.append((len(prompt), end))
    return text, spans


def final_answer_span(
    processor: Any, messages: list[dict[str, Any]]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the one span of the last message's answer text.

    Only the answer's characters are labelled: not the ``<|im_end|>`` that closes the turn nor
    anything else the template adds around it, so the perplexity measures the answer alone.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise MedvlError("the conversation must end with the assistant answer to be scored")
    text = processor.apply_chat_template(messages, tokenize=False)
    prompt, upto = _turn_prefixes(processor, messages, len(messages) - 1, text)
    answer = "".join(p["text"] for p in messages[-1]["content"] if p.get("type") == "text")
    start = upto.find(answer, len(prompt)) if answer.strip() else -1
    if start < 0:
        raise MedvlError(
            "the chat template does not render the assistant answer verbatim after the prompt; "
            "cannot locate the answer tokens"
        )
    return text, [(start, start + len(answer))]


def _token_mask(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> tuple[list, list]:
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    mask = [
        any(start >= s and end <= e for s, e in spans) and end > start for start, end in offsets
    ]
    return ids, mask


def _expand_mask(short_ids: list[int], mask: list[bool], long_ids: list[int], pad_id: int):
    """Stretch a mask over the processor's expanded ids (each image pad -> many pads)."""
    out, j = [], 0
    for token, keep in zip(short_ids, mask, strict=True):
        if token == pad_id:
            while j < len(long_ids) and long_ids[j] == pad_id:
                out.append(False)
                j += 1
            continue
        if j >= len(long_ids) or long_ids[j] != token:
            raise MedvlError("tokenizer and processor disagree on the token sequence")
        out.append(keep)
        j += 1
    if j != len(long_ids):
        raise MedvlError("tokenizer and processor disagree on the sequence length")
    return out


class FeatureBuilder:
    """Turns a record (and its images) into a :class:`Sample` labelled where ``spans`` says.

    The default, :func:`assistant_spans`, is the training target (every assistant turn and its
    ``<|im_end|>``); pass :func:`final_answer_span` to label the last answer's text only.
    """

    def __init__(self, processor: Any, spans: SpanFn = assistant_spans):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.spans = spans
        self.image_pad_id = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def __call__(self, record: Record, base_dir: str | Path) -> Sample:
        images = [load_image(p) for p in record.image_paths(base_dir)]
        messages = chat_messages(record, with_answer=True)
        text, spans = self.spans(self.processor, messages)
        short_ids, mask = _token_mask(self.tokenizer, text, spans)
        encoded = self.processor(text=[text], images=images or None, return_tensors="pt")
        ids = encoded["input_ids"][0]
        full_mask = _expand_mask(short_ids, mask, ids.tolist(), self.image_pad_id)
        labels = torch.where(torch.tensor(full_mask), ids, torch.full_like(ids, IGNORE_INDEX))
        mm = encoded.get("mm_token_type_ids")
        return Sample(
            id=record.id,
            input_ids=ids,
            labels=labels,
            mm_token_type_ids=mm[0] if mm is not None else torch.zeros_like(ids),
            pixel_values=encoded.get("pixel_values") if images else None,
            image_grid_thw=encoded.get("image_grid_thw") if images else None,
        )


def image_batch(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """``pixel_values`` and ``image_grid_thw`` of the samples, concatenated in the given order."""
    with_images = [s for s in samples if s.pixel_values is not None]
    if not with_images:
        return {}
    return {
        "pixel_values": torch.cat([s.pixel_values for s in with_images]),
        "image_grid_thw": torch.cat([s.image_grid_thw for s in with_images]),
    }


class PaddingCollator:
    """Right-pads samples to the longest in the batch (training's usual path, and evaluation's)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        width = max(len(s) for s in samples)
        ids = torch.full((len(samples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(samples), width), dtype=torch.long)
        mm = torch.zeros((len(samples), width), dtype=torch.long)
        for row, sample in enumerate(samples):
            n = len(sample)
            ids[row, :n], labels[row, :n] = sample.input_ids, sample.labels
            attention[row, :n], mm[row, :n] = 1, sample.mm_token_type_ids
        batch = {
            "input_ids": ids,
            "labels": labels,
            "attention_mask": attention,
            "mm_token_type_ids": mm,
            "use_cache": False,
        }
        batch.update(image_batch(samples))
        return batch
