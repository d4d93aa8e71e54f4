"""The output layer and its cross-entropy, only where a label is and in chunks of rows.

With a 152k-token vocabulary the output layer (``lm_head``) dominates a Qwen-VL step, and its
``[tokens x vocab]`` logits dominate memory, yet in SFT and perplexity only the answer tokens
carry a label. So the model runs to its final hidden states through its own ``forward``
(multimodal rope, packed ``position_ids``, vision features and any peft/DDP wrapping untouched),
with ``logits_to_keep`` an all-false mask so its own output layer projects no row; a forward hook
on the inner model (``model.model``) keeps ``last_hidden_state``. Then only the hidden states
whose shifted label is scored go through ``lm_head``, ``chunk_rows`` rows at a time, so neither
the forward nor the backward ever holds more than ``[chunk_rows x vocab]`` logits: with
gradients, each chunk runs under ``torch.utils.checkpoint`` and its logits are recomputed in the
backward pass. The result is exact (the same rows through the same layer; only the summation
order differs), checked against the full-logits path in ``tests/integration/test_sft_chunked.py``.

On CUDA, when ``liger_kernel`` happens to be installed (an optional extra, not a medvl
dependency), the unweighted sum uses Liger's fused linear cross-entropy, which does the same
chunking in Triton kernels; everywhere else (CPU, weighted averages, a LoRA-wrapped or
ZeRO-3-partitioned output layer) the plain PyTorch path runs. ``MEDVL_LIGER=0`` in the environment
turns Liger off (to compare the two paths, or to rule Liger out when a loss looks wrong).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
#: Rows of logits computed at once: 2048 x 151,936 fp32 logits are 1.2 GB.
DEFAULT_CHUNK_ROWS = 2048


def causal_lm(model: nn.Module) -> nn.Module:
    """The ``...ForConditionalGeneration`` module inside ``model`` (peft, DDP or bare).

    Looks at registered children only (``_modules``): peft's wrappers forward attribute lookups
    to the wrapped model, so ``hasattr`` would stop at the wrapper.
    """
    for module in model.modules():
        children = module._modules
        if "lm_head" in children and "model" in children:
            return module
    raise TypeError(f"{type(model).__name__} has no child 'lm_head' next to a base 'model'")


def has_output_layer(model: nn.Module) -> bool:
    """Whether ``model`` has the ``model`` + ``lm_head`` layout the chunked path needs."""
    try:
        causal_lm(model)
    except TypeError:
        return False
    return True


def output_layer(model: nn.Module) -> nn.Module:
    """The output layer module (called as a module, so LoRA on it and ZeRO-3 gathering apply)."""
    return causal_lm(model)._modules["lm_head"]


def final_hidden_states(model: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
    """``(batch, seq, hidden)``: the model's last hidden states from its own forward pass.

    ``inputs`` are the model's keyword arguments without ``labels``; the output layer is asked
    for no row (``logits_to_keep`` an empty index), so it costs nothing.
    """
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _args: Any, output: Any) -> None:
        hidden = getattr(output, "last_hidden_state", None)
        captured["hidden"] = output[0] if hidden is None else hidden

    ids = inputs.get("input_ids")
    device = ids.device if ids is not None else inputs["inputs_embeds"].device
    # an empty 1-D index keeps no position: (batch, 0, hidden) on every transformers 5.x (5.17
    # indexes hidden_states[:, logits_to_keep, :], which a 2-D boolean mask breaks)
    nothing = torch.zeros(0, dtype=torch.long, device=device)
    handle = causal_lm(model)._modules["model"].register_forward_hook(keep)
    try:
        model(**inputs, logits_to_keep=nothing)
    finally:
        handle.remove()
    return captured["hidden"]


def scored_rows(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states that predict a label and those labels: position t scores label t + 1.

    Returns ``(rows, targets)`` of shapes ``(n, hidden)`` and ``(n,)``, in row-major order.
    """
    shifted = labels[:, 1:].to(hidden.device)
    keep = shifted != IGNORE_INDEX
    return hidden[:, :-1][keep], shifted[keep]


def _chunk_nll(rows: torch.Tensor, targets: torch.Tensor, head: nn.Module) -> torch.Tensor:
    logits = head(rows).float()
    return nn.functional.cross_entropy(logits, targets, reduction="none")


def _chunk_weighted_sum(
    rows: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, head: nn.Module
) -> torch.Tensor:
    return (_chunk_nll(rows, targets, head) * weights).sum()


def token_nll(
    rows: torch.Tensor,
    targets: torch.Tensor,
    head: nn.Module,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> torch.Tensor:
    """Per-row negative log-likelihood (float32, ``(n,)``), without gradients (evaluation)."""
    with torch.no_grad():
        parts = [
            _chunk_nll(rows[i : i + chunk_rows], targets[i : i + chunk_rows], head)
            for i in range(0, len(rows), chunk_rows)
        ]
    return torch.cat(parts) if parts else rows.new_zeros(0, dtype=torch.float32)


def weighted_nll_sum(
    rows: torch.Tensor,
    targets: torch.Tensor,
    head: nn.Module,
    weights: torch.Tensor | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> torch.Tensor:
    """``sum_i w_i * CE(head(rows_i), targets_i)`` (float32 scalar), differentiable.

    ``weights=None`` means all ones. Never holds more than ``chunk_rows`` rows of logits, in
    the forward or the backward pass (each chunk is checkpointed and recomputed).
    """
    if weights is None and _liger_applies(rows, head):
        return _liger_sum(rows, targets, head)
    if weights is None:
        weights = torch.ones(len(targets), dtype=torch.float32, device=rows.device)
    weights = weights.to(device=rows.device, dtype=torch.float32)
    total = rows.new_zeros((), dtype=torch.float32)
    grad = torch.is_grad_enabled()
    for i in range(0, len(rows), chunk_rows):
        part = (rows[i : i + chunk_rows], targets[i : i + chunk_rows], weights[i : i + chunk_rows])
        if grad:
            total = total + checkpoint(_chunk_weighted_sum, *part, head, use_reentrant=False)
        else:
            total = total + _chunk_weighted_sum(*part, head)
    return total


def _liger_applies(rows: torch.Tensor, head: nn.Module) -> bool:
    """Liger's kernel takes a plain weight: only a bare ``nn.Linear`` on CUDA, not partitioned."""
    if not rows.is_cuda or type(head) is not nn.Linear or hasattr(head.weight, "ds_id"):
        return False
    if os.environ.get("MEDVL_LIGER", "1") == "0":
        return False
    try:
        import liger_kernel.transformers  # noqa: F401  (optional, not a medvl dependency)
    except ImportError:
        return False
    return True


def _liger_sum(rows: torch.Tensor, targets: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")(head.weight, rows, targets, head.bias)
    loss = loss[0] if isinstance(loss, tuple) else loss
    return loss.float()
