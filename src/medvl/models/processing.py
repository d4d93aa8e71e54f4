"""Processor settings shared by training, inference and validation, and token counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medvl.data.tokens import TokenCounter


def set_pixel_budget(
    processor: Any, min_pixels: int | None = None, max_pixels: int | None = None
) -> Any:
    """Set the image processor's pixel range (``min_pixels``/``max_pixels``) in place.

    transformers 5.x keeps it as ``size.shortest_edge``/``size.longest_edge`` (pixel counts) in
    a ``SizeDict``; replacing it with a plain dict would break the processor.
    """
    if min_pixels is None and max_pixels is None:
        return processor
    from transformers.image_utils import SizeDict

    image_processor = processor.image_processor
    size = dict(vars(image_processor.size)) if image_processor.size is not None else {}
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    image_processor.size = SizeDict(**size)
    return processor


def load_token_counter(
    model: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None
) -> tuple[TokenCounter, bool]:
    """A counter for a model folder (exact) or a family name; returns ``(counter, exact)``.

    For a family name the image tokens are exact for the released checkpoints' pixel budget,
    but the text is counted with medvl's tiny tokenizer, so totals are approximate: pass the
    model folder for exact lengths.
    """
    if Path(model).is_dir():
        counter = TokenCounter.from_pretrained(model, min_pixels=min_pixels, max_pixels=max_pixels)
        return counter, True
    from medvl.models.registry import get_family
    from medvl.models.tiny import build_processor
    from medvl.models.tokenizer import build_tokenizer

    spec = get_family(str(model))
    processor = build_processor(spec, build_tokenizer(spec.name))
    counter = TokenCounter(
        processor,
        min_pixels=min_pixels or spec.default_min_pixels,
        max_pixels=max_pixels or spec.default_max_pixels,
    )
    return counter, False
