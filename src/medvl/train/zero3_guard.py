"""Keep every process in step when a batch has no image (ZeRO-3 / FSDP).

Under DeepSpeed ZeRO-3 or FSDP the vision tower's weights are sharded and gathered
collectively during its forward pass. If one process's batch is text-only it skips the tower,
the others wait for it forever, and the run hangs (2U1#57, LLaMA-Factory#5648). The fix the
field converged on: run the tower on a tiny dummy image and add its output times zero to the
loss, so every process calls the same collectives and no gradient changes.
"""

from __future__ import annotations

from typing import Any

import torch


def dummy_vision_loss(model: Any) -> torch.Tensor:
    """``0 * sum(vision tower output)`` on a 2x2-patch black image (keeps collectives aligned)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    visual = base.model.visual
    config = base.config.vision_config
    channels = getattr(config, "in_channels", None) or getattr(config, "in_chans", 3)
    width = channels * config.temporal_patch_size * config.patch_size**2
    merge = config.spatial_merge_size
    parameter = next(visual.parameters())
    pixels = torch.zeros(merge * merge, width, dtype=parameter.dtype, device=parameter.device)
    grid = torch.tensor([[1, merge, merge]], device=parameter.device)
    output = visual(pixels, grid_thw=grid)
    total = sum(t.float().sum() for t in _tensors(output))
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
