"""Keep every process in step when a batch lacks images or videos (ZeRO-3 / FSDP).

Under DeepSpeed ZeRO-3 or FSDP the vision tower's weights are sharded and gathered
collectively during its forward pass. If one process's batch is text-only it skips the tower,
the others wait for it forever, and the run hangs (2U1#57, LLaMA-Factory#5648). The fix the
field converged on: run the tower on a tiny dummy image and add its output times zero to the
loss, so every process calls the same collectives and no gradient changes.

Qwen-VL calls the same tower once for a batch's images and once more for its videos, so with
videos in the data a process may call it 0, 1 or 2 times per step. Every process must make the
same number of calls, in the same order relative to the language model: one per input kind
the training data holds (:func:`missing_vision_calls` counts the ones a batch lacks), each
run *before* the model's forward (:func:`dummy_vision_loss`, called first in the trainer's
``compute_loss``), so the tower's gathers all come ahead of the language model's on every
process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

#: Input kind -> the batch key whose presence means the model runs the tower on it.
VISION_INPUTS = {"image": "pixel_values", "video": "pixel_values_videos"}


def missing_vision_calls(inputs: Mapping[str, Any], kinds: Iterable[str]) -> int:
    """Tower calls a batch skips: one per input kind of the data (``image``, ``video``) that
    the batch holds none of."""
    return sum(VISION_INPUTS[kind] not in inputs for kind in kinds)


def dummy_vision_loss(model: Any, calls: int = 1) -> torch.Tensor:
    """``0 * sum(vision tower output)`` over ``calls`` forwards on a 2x2-patch black image
    (keeps collectives aligned)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    visual = base.model.visual
    config = base.config.vision_config
    channels = getattr(config, "in_channels", None) or getattr(config, "in_chans", 3)
    width = channels * config.temporal_patch_size * config.patch_size**2
    merge = config.spatial_merge_size
    parameter = next(visual.parameters())
    pixels = torch.zeros(merge * merge, width, dtype=parameter.dtype, device=parameter.device)
    grid = torch.tensor([[1, merge, merge]], device=parameter.device)
    total = torch.zeros((), device=parameter.device)
    for _ in range(calls):
        output = visual(pixels, grid_thw=grid)
        total = total + sum(t.float().sum() for t in _tensors(output))
    return total * 0.0


def _tensors(output: Any):
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, dict) or hasattr(output, "values"):
        for value in output.values():
            yield from _tensors(value)
    elif isinstance(output, list | tuple):
        for value in output:
            yield from _tensors(value)
