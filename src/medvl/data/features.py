"""Records to model tensors with labels on chosen assistant text, and right-padded batches.

The processor renders the chat template and expands each ``<|image_pad|>`` into the image's
tokens and each video (a volume's slices, read with :func:`medvl.data.volumes.load_frames`) into
its temporal patches (Qwen3-VL also writes a ``<t seconds>`` timestamp before each). Labels are
-100 (:data:`IGNORE_INDEX`) everywhere except the characters a *span function* picks; system,
user, image and video tokens never carry a label. Two span functions exist:

* :func:`assistant_spans` (training): every assistant turn's content and its closing
  ``<|im_end|>`` (so the model learns to stop), per turn in multi-turn records;
* :func:`final_answer_span` (evaluation, perplexity): the last assistant turn's text only.

Character spans come from rendering growing prefixes of the conversation (the Qwen templates are
prefix-consistent), and the fast tokenizer's offsets map them to tokens; the mask is then
stretched over the expanded image and video regions (:func:`_expand_mask`). A token is labelled
only when it lies wholly inside a span. Training (:mod:`medvl.train`) and evaluation
(:mod:`medvl.eval`) both build on this module, which knows neither.
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
from medvl.data.video import video_call_kwargs
from medvl.data.volumes import load_frames
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
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None  # (videos, 3): temporal patches, height, width
    second_per_grid_ts: torch.Tensor | None = None  # (videos,): Qwen2.5-VL only

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


@dataclass(frozen=True)
class _VisionTokens:
    """The token ids that frame a media item in the rendered template, and per pad token the
    expanded pad count of each of its items, in order (images and videos separately)."""

    start: int
    end: int
    counts: dict[int, list[int]]


def _expand_mask(
    short_ids: list[int], mask: list[bool], long_ids: list[int], vision: _VisionTokens
) -> list[bool]:
    """Stretch a mask over the processor's expanded ids; every token of a media region is False.

    The template writes each item as ``<|vision_start|><|X_pad|><|vision_end|>``. The processor
    replaces it with the item's pads (Qwen2/2.5-VL), or for a Qwen3-VL video with a
    ``<t seconds><|vision_start|>pads<|vision_end|>`` group per temporal patch. Whatever the
    family, the region ends at the ``<|vision_end|>`` after the item's last pad, so the item's
    pad count (from its grid) locates it; outside regions both sequences must agree token by
    token.
    """
    pending = {pad: iter(counts) for pad, counts in vision.counts.items()}
    out: list[bool] = []
    i = j = 0
    while i < len(short_ids):
        pad = short_ids[i + 1] if i + 1 < len(short_ids) else None
        if short_ids[i] == vision.start and pad in pending:
            if short_ids[i + 2 : i + 3] != [vision.end]:
                raise MedvlError("the chat template does not close a media item as expected")
            j_end = _region_end(long_ids, j, pad, next(pending[pad], 0), vision.end)
            out.extend([False] * (j_end - j))
            i, j = i + 3, j_end
            continue
        if j >= len(long_ids) or long_ids[j] != short_ids[i]:
            raise MedvlError("tokenizer and processor disagree on the token sequence")
        out.append(mask[i])
        i, j = i + 1, j + 1
    if j != len(long_ids):
        raise MedvlError("tokenizer and processor disagree on the sequence length")
    return out


def _region_end(long_ids: list[int], j: int, pad: int, count: int, end: int) -> int:
    """Index after the ``<|vision_end|>`` that follows the ``count``-th ``pad`` from ``j``."""
    seen = 0
    while j < len(long_ids) and (seen < count or long_ids[j] != end):
        seen += long_ids[j] == pad
        j += 1
    if seen != count or j >= len(long_ids):
        raise MedvlError("the processor's media tokens do not match the media's grid")
    return j + 1


class FeatureBuilder:
    """Turns a record (its images and videos) into a :class:`Sample` labelled where ``spans``
    says.

    The default, :func:`assistant_spans`, is the training target (every assistant turn and its
    ``<|im_end|>``); pass :func:`final_answer_span` to label the last answer's text only. Videos
    go to the processor with every frame kept (no resampling) at
    :data:`medvl.data.video.VIDEO_FPS`, as inference and the token counter give them.
    """

    def __init__(self, processor: Any, spans: SpanFn = assistant_spans):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.spans = spans
        ids = self.tokenizer.convert_tokens_to_ids
        self.image_pad_id = ids("<|image_pad|>")
        self.video_pad_id = ids("<|video_pad|>")
        self.vision_ids = (ids("<|vision_start|>"), ids("<|vision_end|>"))

    def __call__(self, record: Record, base_dir: str | Path) -> Sample:
        images = [load_image(p) for p in record.image_paths(base_dir)]
        videos = [load_frames(spec, base_dir) for spec in record.videos]
        messages = chat_messages(record, with_answer=True)
        text, spans = self.spans(self.processor, messages)
        short_ids, mask = _token_mask(self.tokenizer, text, spans)
        encoded = self.processor(
            text=[text],
            images=images or None,
            return_tensors="pt",
            **video_call_kwargs(self.processor, videos),  # one slice padded to a temporal patch
        )
        ids = encoded["input_ids"][0]
        full_mask = _expand_mask(short_ids, mask, ids.tolist(), self._vision_tokens(encoded))
        labels = torch.where(torch.tensor(full_mask), ids, torch.full_like(ids, IGNORE_INDEX))
        mm = encoded.get("mm_token_type_ids")
        return Sample(
            id=record.id,
            input_ids=ids,
            labels=labels,
            mm_token_type_ids=mm[0] if mm is not None else self._token_types(ids),
            pixel_values=encoded.get("pixel_values") if images else None,
            image_grid_thw=encoded.get("image_grid_thw") if images else None,
            pixel_values_videos=encoded.get("pixel_values_videos") if videos else None,
            video_grid_thw=encoded.get("video_grid_thw") if videos else None,
            second_per_grid_ts=encoded.get("second_per_grid_ts") if videos else None,
        )

    def _vision_tokens(self, encoded: Any) -> _VisionTokens:
        """Pad counts per image and per video, from the grids the processor returned."""
        counts = {}
        for pad, key, sub in (
            (self.image_pad_id, "image_grid_thw", "image_processor"),
            (self.video_pad_id, "video_grid_thw", "video_processor"),
        ):
            grid = encoded.get(key)
            if grid is not None:
                merge = int(getattr(self.processor, sub).merge_size) ** 2
                counts[pad] = [int(g.prod()) // merge for g in grid]
        return _VisionTokens(*self.vision_ids, counts)

    def _token_types(self, ids: torch.Tensor) -> torch.Tensor:
        """0 text, 1 image pad, 2 video pad (for processors that do not return them)."""
        types = torch.zeros_like(ids)
        types[ids == self.image_pad_id] = 1
        types[ids == self.video_pad_id] = 2
        return types


#: Sample fields concatenated over a batch's samples, in sample order, when any sample has them.
MEDIA_FIELDS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
)


def image_batch(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """The samples' image and video tensors (``pixel_values``, ``image_grid_thw``,
    ``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``), each concatenated in
    the given order over the samples that have it; absent keys are left out."""
    batch = {}
    for name in MEDIA_FIELDS:
        parts = [getattr(s, name) for s in samples if getattr(s, name) is not None]
        if parts:
            batch[name] = torch.cat(parts)
    return batch


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
