"""How a batch's answer tokens are averaged into one loss.

The default (``token``) gives every answer token the same weight, which is what transformers
computes: a 60-token report then counts 30 times as much as a one-word "yes", and in a medical
mix of reports and short closed answers the closed questions barely move the model. ``sample``
gives every sample the same weight (the mean over its own answer tokens, then over samples);
``square`` weighs a sample's tokens by ``1/sqrt(n)``, the compromise InternVL 2.5 uses
(Chen et al. 2024, "square averaging"). Weights are normalised per micro-batch:
``loss = sum(w * nll) / sum(w)``.

A sample is one row of a padded batch, or one segment of a packed row (its text positions
restart at 0, see :mod:`medvl.train.collate`), so packing does not change the weights.

:func:`weighted_lm_loss` takes the logits of every position; :func:`chunked_lm_loss` computes
the same value from the final hidden states, running the output layer only where a label is,
in chunks (:mod:`medvl.models.output_layer`), so the ``[tokens x vocab]`` logits never exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch

from medvl.data.features import IGNORE_INDEX
from medvl.models.output_layer import (
    DEFAULT_CHUNK_ROWS,
    final_hidden_states,
    output_layer,
    scored_rows,
    weighted_nll_sum,
)

LossAverage = Literal["token", "sample", "square"]
#: Exponent p of the per-sample weight ``n ** -p`` (n = the sample's answer tokens).
EXPONENT: dict[str, float] = {"token": 0.0, "sample": 1.0, "square": 0.5}


def sample_index(labels: torch.Tensor, text_positions: torch.Tensor | None) -> torch.Tensor:
    """Which sample each position belongs to (same shape as ``labels``), numbered from 0.

    ``text_positions`` is row 0 of a packed batch's ``position_ids`` (restarting at 0 for
    every sample); without it every row is one sample.
    """
    rows, width = labels.shape
    if text_positions is None:
        return torch.arange(rows, device=labels.device)[:, None].expand(rows, width)
    starts = (text_positions == 0).reshape(-1).long()
    return (torch.cumsum(starts, 0) - 1).reshape(rows, width)


def token_weights(
    labels: torch.Tensor, text_positions: torch.Tensor | None, average: LossAverage
) -> torch.Tensor:
    """The weight of every label position: 0 where masked, else ``n ** -p`` of its sample."""
    scored = labels != IGNORE_INDEX
    samples = sample_index(labels, text_positions)
    counts = torch.bincount(samples[scored], minlength=int(samples.max()) + 1).to(torch.float32)
    per_sample = counts.clamp(min=1.0) ** -EXPONENT[average]
    return torch.where(scored, per_sample[samples], torch.zeros((), device=labels.device))


def weighted_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    text_positions: torch.Tensor | None,
    average: LossAverage,
) -> torch.Tensor:
    """Next-token cross-entropy (logits at t score the label at t + 1), averaged by ``average``."""
    weights = token_weights(labels, text_positions, average)[:, 1:]
    targets = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).reshape(targets.shape)
    total = weights.sum()
    if total == 0:  # nothing to learn in this micro-batch; keep the graph connected
        return logits.sum() * 0.0
    return (weights * nll).sum() / total


def scored_weights(
    labels: torch.Tensor, text_positions: torch.Tensor | None, average: LossAverage
) -> torch.Tensor:
    """The weights of the scored positions only, in the order of
    :func:`medvl.models.output_layer.scored_rows` (shifted labels != -100, row-major)."""
    weights = token_weights(labels, text_positions, average)[:, 1:]
    return weights[labels[:, 1:] != IGNORE_INDEX]


def chunked_lm_loss(
    model: torch.nn.Module,
    inputs: Mapping[str, Any],
    labels: torch.Tensor,
    average: LossAverage,
    num_items: torch.Tensor | int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> torch.Tensor:
    """The loss of ``model`` on ``inputs`` (its keyword arguments, without labels), exactly as
    from its full logits, but with the output layer only at labelled positions, in chunks.

    ``token``: the summed nll over ``num_items`` (transformers' ``num_items_in_batch``) or, if
    None, over this batch's labelled tokens (the model's own loss); ``sample``/``square``:
    :func:`weighted_lm_loss`'s average. A batch without labels gives a zero that keeps the
    output layer in the graph.
    """
    positions = inputs.get("position_ids")
    text_positions = positions[0] if positions is not None and positions.dim() == 3 else None
    hidden = final_hidden_states(model, inputs)
    labels = labels.to(hidden.device)
    rows, targets = scored_rows(hidden, labels)
    head = output_layer(model)
    if len(targets) == 0:
        return head(hidden[:, :1]).float().sum() * 0.0
    if average == "token":
        total = weighted_nll_sum(rows, targets, head, chunk_rows=chunk_rows)
        count = len(targets) if num_items is None else num_items
        return total / torch.as_tensor(count, device=total.device)
    weights = scored_weights(labels, text_positions, average)
    return weighted_nll_sum(rows, targets, head, weights, chunk_rows) / weights.sum()
