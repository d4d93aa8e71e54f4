"""Batching: right-padding, or padding-free packing of several VLM samples per row.

Packing follows the facts measured with transformers 5.23 (../shared/notes/packing_facts.md):
``position_ids`` has 4 rows -- row 0 the plain text positions restarting at 0 for every sample
(transformers derives the block-diagonal causal mask from these restarts), rows 1-3 the
per-sample multimodal rope positions from the model's own ``get_rope_index``. No 2-D attention
mask is passed (it would disable the detection), a row is padded with a segment whose positions
restart at 0 and whose labels are -100, each sample's first label is -100 (no sample learns to
predict the next one's first token), and ``pixel_values``/``image_grid_thw`` follow token order.
The text model's cache must be off (``use_cache=False``), or packing is not detected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from medvl.train.features import IGNORE_INDEX, Sample

RopeIndexFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _images(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    with_images = [s for s in samples if s.pixel_values is not None]
    if not with_images:
        return {}
    return {
        "pixel_values": torch.cat([s.pixel_values for s in with_images]),
        "image_grid_thw": torch.cat([s.image_grid_thw for s in with_images]),
    }


class PaddingCollator:
    """Right-pads samples to the longest in the batch (the usual path, and the baseline)."""

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
        batch.update(_images(samples))
        return batch


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
    """The (4, T) positions of one sample: text positions, then its 3 multimodal rope rows."""
    n = len(sample)
    text = torch.arange(n, dtype=torch.long)
    if sample.image_grid_thw is None:
        rope = text.expand(3, n)
    else:
        rope, _ = rope_index(
            sample.input_ids[None],
            sample.mm_token_type_ids[None],
            image_grid_thw=sample.image_grid_thw,
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
        batch.update(_images(ordered))
        return batch
