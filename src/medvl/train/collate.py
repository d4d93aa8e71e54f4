"""Batching: right-padding, or padding-free packing of several VLM samples per row.

:class:`PaddingCollator` lives in :mod:`medvl.data.features` (evaluation pads the same way)
and is re-exported here; packing is training-only.

Packing follows the facts measured with transformers 5.23 (../shared/notes/packing_facts.md):
``position_ids`` has 4 rows -- row 0 the plain text positions restarting at 0 for every sample
(transformers derives the block-diagonal causal mask from these restarts), rows 1-3 the
per-sample multimodal rope positions from the model's own ``get_rope_index``. No 2-D attention
mask is passed (it would disable the detection), a row is padded with a segment whose positions
restart at 0 and whose labels are -100, each sample's first label is -100 (no sample learns to
predict the next one's first token), and ``pixel_values``/``image_grid_thw`` (and the video
tensors ``pixel_values_videos``/``video_grid_thw``/``second_per_grid_ts``) follow token order.
The text model's cache must be off (``use_cache=False``), or packing is not detected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from medvl.data.features import IGNORE_INDEX, PaddingCollator, Sample, image_batch

__all__ = ["PackingCollator", "PaddingCollator", "balance_rows", "sample_positions"]

RopeIndexFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def balance_rows(lengths: Sequence[int], rows: int) -> list[list[int]]:
    """Assign sample indices to ``rows`` rows, longest first onto the shortest row (LPT).

    Within a row, samples keep their batch order, so the result is deterministic.
    """
    rows = max(1, min(rows, len(lengths)))
    totals, assignment = [0] * rows, [[] for _ in range(rows)]
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        target = min(range(rows), key=lambda r: (totals[r], r))
        assignment[target].append(index)
        totals[target] += lengths[index]
    return [sorted(row) for row in assignment if row]


def sample_positions(sample: Sample, rope_index: RopeIndexFn) -> torch.Tensor:
    """The (4, T) positions of one sample: text positions, then its 3 multimodal rope rows
    (images and videos: ``get_rope_index`` with both grids, and Qwen2.5-VL's seconds per
    temporal patch)."""
    n = len(sample)
    text = torch.arange(n, dtype=torch.long)
    if sample.image_grid_thw is None and sample.video_grid_thw is None:
        rope = text.expand(3, n)
    else:
        extra = {}
        if sample.second_per_grid_ts is not None:  # only Qwen2.5-VL's rope takes it
            extra["second_per_grid_ts"] = sample.second_per_grid_ts
        rope, _ = rope_index(
            sample.input_ids[None],
            sample.mm_token_type_ids[None],
            image_grid_thw=sample.image_grid_thw,
            video_grid_thw=sample.video_grid_thw,
            **extra,
        )
        rope = rope[:, 0, :]
    return torch.cat([text[None], rope.to(torch.long)], dim=0)


class PackingCollator:
    """Packs a batch's samples into ``rows`` balanced rows with no padding between samples."""

    def __init__(self, rope_index: RopeIndexFn, pad_token_id: int, rows: int = 2):
        self.rope_index = rope_index
        self.pad_token_id = pad_token_id
        self.rows = rows

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        layout = balance_rows([len(s) for s in samples], self.rows)
        ordered = [samples[i] for row in layout for i in row]
        width = max(sum(len(samples[i]) for i in row) for row in layout)
        ids = torch.full((len(layout), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(layout), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((4, len(layout), width), dtype=torch.long)
        for r, row in enumerate(layout):
            start = 0
            for i in row:
                sample, n = samples[i], len(samples[i])
                ids[r, start : start + n] = sample.input_ids
                labels[r, start : start + n] = sample.labels
                labels[r, start] = IGNORE_INDEX
                positions[:, r, start : start + n] = sample_positions(sample, self.rope_index)
                start += n
            pad = width - start
            positions[:, r, start:] = torch.arange(pad).expand(4, pad)  # its own segment
        batch = {"input_ids": ids, "labels": labels, "position_ids": positions, "use_cache": False}
        batch.update(image_batch(ordered))
        return batch
