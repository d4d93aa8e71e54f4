"""Model inputs for a local Hugging Face engine: one request prepared, then a left-padded batch.

:func:`prepare_request` turns a :class:`~medvl.infer.engine.ChatRequest` into the processor's
tensors (chat template applied; images read with :func:`medvl.data.medimage.load_image`, or their
processed pixels taken from :mod:`medvl.infer.image_cache`; videos through
:func:`medvl.infer.video_media.video_inputs`), or into the one-line reason it failed: a bad
request never raises. :func:`collate_left` stacks prepared requests with left padding, so every
prompt ends where generation starts and greedy batched outputs equal one-at-a-time ones.
:class:`medvl.infer.hf_engine.HFEngine` and the server's micro-batches use both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from medvl.infer.engine import ChatRequest
from medvl.infer.image_cache import ProcessedImageCache, encode_cached, settings_digest
from medvl.infer.video_media import video_inputs

#: Per-token tensors that are left-padded (with the pad id for input_ids, 0 otherwise).
SEQUENCE_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass
class Prepared:
    """One request after image loading and processing: model inputs, or the reason it failed."""

    index: int
    request: ChatRequest
    prompt: str = ""
    inputs: dict[str, Any] | None = None
    error: str | None = None

    @property
    def length(self) -> int:
        return 0 if self.inputs is None else int(self.inputs["input_ids"].shape[-1])


def default_workers() -> int:
    """Threads for image preparation: one per spare core, at most 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def prepare_request(
    processor: Any,
    index: int,
    request: ChatRequest,
    cache: ProcessedImageCache | None = None,
) -> Prepared:
    """Load the request's images and build its model inputs; never raises for bad input.

    With ``cache``, image files already processed with the same image processor settings are
    taken from it. The settings digest is taken per request (~30 us), so a pixel range changed
    in place on the processor never meets pixels processed under the old one."""
    from PIL import Image

    from medvl.data.medimage import load_image

    problem = request.check()
    if problem:
        return Prepared(index, request, error=problem)
    try:
        prompt = processor.apply_chat_template(
            request.messages, tokenize=False, add_generation_prompt=True
        )
        digest = settings_digest(processor) if cache is not None and cache.enabled else None
        if digest is not None and request.images and not request.videos:
            encoded = encode_cached(processor, prompt, request.images, cache, digest)
        else:
            images = [
                image.convert("RGB") if isinstance(image, Image.Image) else load_image(image)
                for image in request.images
            ]
            encoded = processor(
                text=[prompt],
                images=images or None,
                return_tensors="pt",
                **video_inputs(processor, request.videos),
            )
    except Exception as exc:  # a bad image or message fails this request only
        return Prepared(index, request, error=failure_reason(exc))
    return Prepared(index, request, prompt=prompt, inputs=dict(encoded))


def collate_left(samples: list[Prepared], pad_token_id: int) -> dict[str, Any]:
    """Stack prepared requests into one batch, left-padding the per-token tensors."""
    width = max(s.length for s in samples)
    batch: dict[str, Any] = {}
    for key in SEQUENCE_KEYS:
        if key not in samples[0].inputs:
            continue
        fill = pad_token_id if key == "input_ids" else 0
        dtype = samples[0].inputs[key].dtype
        out = torch.full((len(samples), width), fill, dtype=dtype)
        for row, sample in enumerate(samples):
            values = sample.inputs[key][0]
            out[row, width - values.shape[0] :] = values
        batch[key] = out
    others = {key for s in samples for key in s.inputs if key not in SEQUENCE_KEYS}
    for key in sorted(others):
        parts = [s.inputs[key] for s in samples if key in s.inputs]
        batch[key] = torch.cat(parts, dim=0)
    return batch


def failure_reason(exc: BaseException) -> str:
    """An exception as one line of at most 500 characters (its type name if it has no text)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]
