"""Records to training tensors: loss only on what the assistant says.

The processor renders the chat template and expands each ``<|image_pad|>`` into the image's
tokens. Labels are -100 everywhere except the assistant turns' content and their closing
``<|im_end|>`` (so the model learns to stop); system, user and image tokens never carry loss.
This holds per turn in multi-turn records.

Trainable character spans come from rendering growing prefixes of the conversation (the Qwen
templates are prefix-consistent), and the fast tokenizer's offsets map them to tokens; the
mask is then stretched over the expanded image tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medvl.data.medimage import load_image
from medvl.data.record import Record
from medvl.data.tokens import chat_messages
from medvl.errors import MedvlError

IGNORE_INDEX = -100


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


def assistant_spans(processor: Any, messages: list[dict[str, Any]]) -> tuple[str, list[tuple]]:
    """The rendered text and the character spans of each assistant reply (+ its ``<|im_end|>``)."""
    text = processor.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = processor.apply_chat_template(
            messages[:index], tokenize=False, add_generation_prompt=True
        )
        upto = processor.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (text.startswith(prompt) and text.startswith(upto)):
            raise MedvlError("the chat template is not prefix-consistent; cannot mask prompts")
        end = upto.rstrip("\n")
        spans.append((len(prompt), len(end)))
    return text, spans


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
    """Turns a record (and its images) into a :class:`Sample` with assistant-only labels."""

    def __init__(self, processor: Any):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_pad_id = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def __call__(self, record: Record, base_dir: str | Path) -> Sample:
        images = [load_image(p) for p in record.image_paths(base_dir)]
        messages = chat_messages(record, with_answer=True)
        text, spans = assistant_spans(self.processor, messages)
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


class RecordDataset(torch.utils.data.Dataset):
    """A map-style dataset of records, tokenized on access (images are read lazily)."""

    def __init__(
        self,
        records: list[Record],
        base_dir: str | Path,
        builder: FeatureBuilder,
        lengths: list[int] | None = None,
    ):
        self.records = records
        self.base_dir = Path(base_dir)
        self.builder = builder
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        return self.builder(self.records[index], self.base_dir)
