"""Exact sequence length of a record as a Qwen-VL processor builds it, image tokens included.

The Qwen-VL processors expand each ``<|image_pad|>`` into ``(h/patch) * (w/patch) / merge**2``
tokens after ``smart_resize`` rounds the image to the pixel budget. A length limit that ignores
this cuts through image tokens and the model then fails with "Image features and image tokens do
not match". :class:`TokenCounter` computes the same number from the image *size* alone (read
from the header), using transformers' own ``smart_resize``, so no pixel tensor is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.data.record import IMAGE_PLACEHOLDER, Record
from medvl.errors import MedvlError


@dataclass(frozen=True)
class PixelBudget:
    """How a processor resizes images: side multiple (patch x merge) and the pixel range."""

    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def image_tokens(self, width: int, height: int) -> int:
        """Number of ``<|image_pad|>`` tokens one image of this size becomes."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        h, w = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return (h // self.patch_size) * (w // self.patch_size) // (self.merge_size**2)


def budget_from_processor(
    processor: Any, min_pixels: int | None = None, max_pixels: int | None = None
) -> PixelBudget:
    """The pixel budget of a loaded processor, optionally overridden."""
    image_processor = processor.image_processor
    size = image_processor.size
    low = getattr(size, "shortest_edge", None) or getattr(image_processor, "min_pixels", None)
    high = getattr(size, "longest_edge", None) or getattr(image_processor, "max_pixels", None)
    return PixelBudget(
        patch_size=int(image_processor.patch_size),
        merge_size=int(image_processor.merge_size),
        min_pixels=int(min_pixels or low),
        max_pixels=int(max_pixels or high),
    )


def chat_messages(record: Record, *, with_answer: bool = True) -> list[dict[str, Any]]:
    """The record's turns in the processor's chat-template form (content parts, images in place).

    With ``with_answer=False`` the last assistant turn is dropped, giving the generation prompt.
    """
    turns = list(record.messages)
    if not with_answer and turns and turns[-1].role == "assistant":
        turns = turns[:-1]
    messages = []
    for turn in turns:
        parts: list[dict[str, Any]] = []
        pieces = turn.content.split(IMAGE_PLACEHOLDER)
        for index, text in enumerate(pieces):
            if index > 0:
                parts.append({"type": "image"})
            if text.strip("\n"):
                parts.append({"type": "text", "text": text.strip("\n")})
        messages.append({"role": turn.role, "content": parts})
    return messages


class TokenCounter:
    """Counts a record's full token length (chat template, text and image tokens)."""

    def __init__(
        self, processor: Any, *, min_pixels: int | None = None, max_pixels: int | None = None
    ):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.budget = budget_from_processor(processor, min_pixels, max_pixels)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, **kwargs: Any) -> TokenCounter:
        """Load the processor of a local model folder (no network)."""
        from transformers import AutoProcessor

        path = Path(model_dir)
        if not path.is_dir():
            raise MedvlError(
                f"{path}: not a model folder; pass a local folder with the processor "
                "files (e.g. one written by 'medvl tiny')"
            )
        try:
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise MedvlError(
                f"{path}: no usable processor files ({str(exc).splitlines()[0][:200]}); pass a "
                "Qwen-VL model folder with tokenizer and processor files, or a family name"
            ) from None
        return cls(processor, **kwargs)

    def text(self, record: Record, *, with_answer: bool = True) -> str:
        """The templated text with one ``<|image_pad|>`` per image (before expansion)."""
        return self.processor.apply_chat_template(
            chat_messages(record, with_answer=with_answer),
            tokenize=False,
            add_generation_prompt=not with_answer,
        )

    def count(
        self, record: Record, image_sizes: Sequence[tuple[int, int]], *, with_answer: bool = True
    ) -> int:
        """Token length of ``record`` given each image's (width, height)."""
        if len(image_sizes) != len(record.images):
            raise ValueError(f"{len(image_sizes)} sizes given for {len(record.images)} images")
        return self.count_many([record], [image_sizes], with_answer=with_answer)[0]

    def count_many(
        self,
        records: Sequence[Record],
        image_sizes: Sequence[Sequence[tuple]],
        *,
        with_answer: bool = True,
    ) -> list[int]:
        """Token lengths of many records at once (one batched tokenizer call: fast)."""
        for record, sizes in zip(records, image_sizes, strict=True):
            if len(sizes) != len(record.images):
                raise ValueError(f"{len(sizes)} sizes given for {len(record.images)} images")
        texts = [self.text(r, with_answer=with_answer) for r in records]
        encoded = self.tokenizer(texts)["input_ids"] if texts else []
        return [
            len(ids) + sum(self.budget.image_tokens(w, h) - 1 for w, h in sizes)
            for ids, sizes in zip(encoded, image_sizes, strict=True)
        ]
