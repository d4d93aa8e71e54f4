"""Processor settings shared by training, inference and validation."""

from __future__ import annotations

from typing import Any


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
