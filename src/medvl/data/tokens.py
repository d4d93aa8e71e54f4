"""Exact sequence length of a record as a Qwen-VL processor builds it, image and video tokens
included.

The Qwen-VL processors expand each ``<|image_pad|>`` into ``(h/patch) * (w/patch) / merge**2``
tokens after ``smart_resize`` rounds the image to the pixel budget. A length limit that ignores
this cuts through image tokens and the model then fails with "Image features and image tokens do
not match". :class:`TokenCounter` computes the same number from the image *size* alone (read
from the header), using transformers' own ``smart_resize``, so no pixel tensor is built.

Videos (given to the processor as :func:`medvl.models.processing.video_call_kwargs` does) follow
:class:`VideoBudget`: the frame count is padded to a multiple of the temporal patch (2), each
frame is resized under the video processor's pixel range (Qwen3-VL shares ``max_pixels`` among
the frames of a video), and one ``<|video_pad|>`` becomes ``t * (h/patch) * (w/patch) /
merge**2`` tokens. Qwen3-VL also writes a ``<{time:.1f} seconds>`` text and its own
``<|vision_start|>``/``<|vision_end|>`` before and around each temporal patch; that text is
tokenized in place, so its count is exact too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.data.record import IMAGE_PLACEHOLDER, Record
from medvl.data.video import VIDEO_FPS, VIDEO_PLACEHOLDER
from medvl.errors import MedvlError

#: A video's size as the counter needs it: (frames, width, height), frames before padding.
VideoShape = tuple[int, int, int]


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


_MEDIA_PARTS = {IMAGE_PLACEHOLDER: "image", VIDEO_PLACEHOLDER: "video"}
_PLACEHOLDER_RE = re.compile(f"({re.escape(IMAGE_PLACEHOLDER)}|{re.escape(VIDEO_PLACEHOLDER)})")


@dataclass(frozen=True)
class VideoBudget:
    """How a video processor turns ``n`` frames of one size into a grid of patches.

    ``shared_pixels`` (Qwen3-VL): ``max_pixels`` bounds all frames of a video together, the
    frame count rounded to the temporal patch; otherwise (Qwen2-VL, Qwen2.5-VL) each frame.
    ``cap_pixels_per_frame``/``max_video_tokens``: transformers' optional qwen-vl-utils cap.
    ``timestamps`` (Qwen3-VL): a ``<t seconds>`` text before each temporal patch.
    """

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    min_pixels: int
    max_pixels: int
    shared_pixels: bool = False
    timestamps: bool = False
    cap_pixels_per_frame: bool = False
    max_video_tokens: int = 0

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def frames(self, n_frames: int) -> int:
        """Frames the processor receives: a video shorter than one temporal patch is padded
        with its last frame (:func:`medvl.models.processing.pad_video_frames`)."""
        if n_frames < 1:
            raise ValueError(f"a video needs at least one frame, got {n_frames}")
        return max(n_frames, self.temporal_patch_size)

    def resized(self, n_frames: int, width: int, height: int) -> tuple[int, int]:
        """(height, width) every frame is resized to, as the video processor's ``resize``."""
        n = self.frames(n_frames)
        if self.shared_pixels:
            from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

            max_pixels = self.max_pixels
            if self.cap_pixels_per_frame:
                per_frame = min(self.max_video_tokens * self.factor**2, self.max_pixels // n)
                max_pixels = max(per_frame, int(self.min_pixels * 1.05)) * n
            return smart_resize(
                n,
                height,
                width,
                temporal_factor=self.temporal_patch_size,
                factor=self.factor,
                min_pixels=self.min_pixels,
                max_pixels=max_pixels,
            )
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize

        max_pixels = self.max_pixels
        if self.cap_pixels_per_frame:
            total = int(self.max_video_tokens * self.factor**2 * 0.9)
            share = total * self.temporal_patch_size // n
            max_pixels = max(min(max_pixels, share), int(self.min_pixels * 1.05))
        return smart_resize(height, width, self.factor, self.min_pixels, max_pixels)

    def grid(self, n_frames: int, width: int, height: int) -> tuple[int, int, int]:
        """``video_grid_thw``: temporal patches and patch rows and columns of one frame."""
        h, w = self.resized(n_frames, width, height)
        t = -(-self.frames(n_frames) // self.temporal_patch_size)
        return t, h // self.patch_size, w // self.patch_size

    def frame_tokens(self, n_frames: int, width: int, height: int) -> int:
        """``<|video_pad|>`` tokens per temporal patch."""
        _, grid_h, grid_w = self.grid(n_frames, width, height)
        return grid_h * grid_w // self.merge_size**2

    def video_tokens(self, n_frames: int, width: int, height: int) -> int:
        """``<|video_pad|>`` tokens of the whole video (timestamp text not included)."""
        t = self.grid(n_frames, width, height)[0]
        return t * self.frame_tokens(n_frames, width, height)

    def timestamp_texts(self, n_frames: int) -> list[str]:
        """Qwen3-VL's ``<t seconds>`` text per temporal patch: the mean time of the patch's first
        and last frame at :data:`~medvl.data.video.VIDEO_FPS` (the last patch repeats the
        last frame)."""
        size = self.temporal_patch_size
        indices = list(range(self.frames(n_frames)))
        indices += [indices[-1]] * (-len(indices) % size)
        times = [
            (indices[i] + indices[i + size - 1]) / 2 / VIDEO_FPS
            for i in range(0, len(indices), size)
        ]
        return [f"<{time:.1f} seconds>" for time in times]


def video_budget_from_processor(processor: Any) -> VideoBudget:
    """The video pixel budget and family rules of a loaded processor's video processor."""
    video_processor = processor.video_processor
    size = video_processor.size
    qwen3 = type(video_processor).__name__.startswith("Qwen3VL")
    return VideoBudget(
        patch_size=int(video_processor.patch_size),
        merge_size=int(video_processor.merge_size),
        temporal_patch_size=int(video_processor.temporal_patch_size),
        min_pixels=int(size.shortest_edge),
        max_pixels=int(size.longest_edge),
        shared_pixels=qwen3,
        timestamps=qwen3,
        cap_pixels_per_frame=bool(getattr(video_processor, "cap_pixels_per_frame", None)),
        max_video_tokens=int(getattr(video_processor, "max_video_tokens", 0) or 0),
    )


def chat_messages(record: Record, *, with_answer: bool = True) -> list[dict[str, Any]]:
    """The record's turns in the processor's chat-template form: content parts with one
    ``{"type": "image"}`` per ``<image>`` and one ``{"type": "video"}`` per ``<video>``, in place
    and in text order.

    With ``with_answer=False`` the last assistant turn is dropped, giving the generation prompt.
    """
    turns = list(record.messages)
    if not with_answer and turns and turns[-1].role == "assistant":
        turns = turns[:-1]
    messages = []
    for turn in turns:
        parts: list[dict[str, Any]] = []
        for piece in _PLACEHOLDER_RE.split(turn.content):
            if piece in _MEDIA_PARTS:
                parts.append({"type": _MEDIA_PARTS[piece]})
            elif piece.strip("\n"):
                parts.append({"type": "text", "text": piece.strip("\n")})
        messages.append({"role": turn.role, "content": parts})
    return messages


class TokenCounter:
    """Counts a record's full token length (chat template, text, image and video tokens)."""

    def __init__(
        self, processor: Any, *, min_pixels: int | None = None, max_pixels: int | None = None
    ):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.budget = budget_from_processor(processor, min_pixels, max_pixels)
        self.video_budget = (
            video_budget_from_processor(processor)
            if getattr(processor, "video_processor", None) is not None
            else None
        )

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
        """The templated text with one ``<|image_pad|>`` per image and one ``<|video_pad|>`` per
        video (before expansion)."""
        return self.processor.apply_chat_template(
            chat_messages(record, with_answer=with_answer),
            tokenize=False,
            add_generation_prompt=not with_answer,
        )

    def video_tokens(self, shape: VideoShape) -> int:
        """``<|video_pad|>`` tokens of one video of ``(frames, width, height)``; Qwen3-VL's
        timestamp texts and per-patch markers count as text, as the image markers do."""
        return self._video_pads(shape)

    def count(
        self,
        record: Record,
        image_sizes: Sequence[tuple[int, int]],
        video_shapes: Sequence[VideoShape] = (),
        *,
        with_answer: bool = True,
    ) -> int:
        """Token length of ``record`` given each image's (width, height) and each video's
        (frames, width, height)."""
        return self.count_many([record], [image_sizes], [video_shapes], with_answer=with_answer)[0]

    def count_many(
        self,
        records: Sequence[Record],
        image_sizes: Sequence[Sequence[tuple]],
        video_shapes: Sequence[Sequence[VideoShape]] | None = None,
        *,
        with_answer: bool = True,
    ) -> list[int]:
        """Token lengths of many records at once (one batched tokenizer call: fast)."""
        if video_shapes is None:
            video_shapes = [()] * len(records)
        for record, sizes, shapes in zip(records, image_sizes, video_shapes, strict=True):
            if len(sizes) != len(record.images):
                raise ValueError(f"{len(sizes)} sizes given for {len(record.images)} images")
            if len(shapes) != len(record.videos):
                raise ValueError(f"{len(shapes)} shapes given for {len(record.videos)} videos")
        texts = [
            self._expand_videos(self.text(r, with_answer=with_answer), shapes)
            for r, shapes in zip(records, video_shapes, strict=True)
        ]
        encoded = self.tokenizer(texts)["input_ids"] if texts else []
        return [
            len(ids)
            + sum(self.budget.image_tokens(w, h) - 1 for w, h in sizes)
            + sum(self._video_pads(shape) - self._pads_in_text(shape) for shape in shapes)
            for ids, sizes, shapes in zip(encoded, image_sizes, video_shapes, strict=True)
        ]

    def _require_video_budget(self) -> VideoBudget:
        if self.video_budget is None:
            raise MedvlError(
                f"{type(self.processor).__name__} has no video processor; videos need a "
                "Qwen-VL processor"
            )
        return self.video_budget

    def _video_pads(self, shape: VideoShape) -> int:
        return self._require_video_budget().video_tokens(*shape)

    def _pads_in_text(self, shape: VideoShape) -> int:
        """``<|video_pad|>`` tokens :meth:`_expand_videos` leaves in the text for one video."""
        budget = self._require_video_budget()
        return budget.grid(*shape)[0] if budget.timestamps else 1

    def _expand_videos(self, text: str, shapes: Sequence[VideoShape]) -> str:
        """For Qwen3-VL, each video's ``<|vision_start|><|video_pad|><|vision_end|>`` becomes
        the processor's per-patch ``<t seconds><|vision_start|><|video_pad|><|vision_end|>``
        (one pad per patch; the rest are added as numbers), so the timestamp text is tokenized
        with its real neighbours."""
        if not shapes or not self._require_video_budget().timestamps:
            return text
        start = getattr(self.processor, "vision_start_token", "<|vision_start|>")
        end = getattr(self.processor, "vision_end_token", "<|vision_end|>")
        pad = getattr(self.processor, "video_token", "<|video_pad|>")
        pieces = text.split(start + pad + end)
        if len(pieces) != len(shapes) + 1:
            raise ValueError(f"{len(pieces) - 1} video placeholders for {len(shapes)} videos")
        out = pieces[0]
        for shape, piece in zip(shapes, pieces[1:], strict=True):
            stamps = self.video_budget.timestamp_texts(shape[0])  # type: ignore[union-attr]
            out += "".join(f"{stamp}{start}{pad}{end}" for stamp in stamps) + piece
        return out
