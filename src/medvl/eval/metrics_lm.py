"""Perplexity of reference tokens from a causal LM's logits (torch, imported by callers).

The logits at position t predict the token at t + 1, so the last position's logits and the first
label are not used: ``nll = CE(logits[..., :-1, :], labels[..., 1:])`` summed over the positions
whose shifted label is not ``ignore_index`` (-100: prompt, padding, image tokens), and
``perplexity = exp(total nll / number of scored tokens)``. Pooling tokens over a batch (not
averaging per-sequence perplexities) keeps one long-tailed sample from dominating the mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def token_nll(
    logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = IGNORE_INDEX
) -> tuple[float, int]:
    """``(summed negative log-likelihood in nats, number of scored tokens)``.

    ``logits`` is ``(batch, seq, vocab)`` or ``(seq, vocab)``; ``labels`` has the same leading
    shape. Computed in float32 whatever the logits' dtype.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not align: "
            "expected logits (..., seq, vocab) and labels (..., seq)"
        )
    shifted_logits = logits[..., :-1, :].float().reshape(-1, logits.shape[-1])
    shifted_labels = labels[..., 1:].reshape(-1)
    total = F.cross_entropy(
        shifted_logits, shifted_labels, ignore_index=ignore_index, reduction="sum"
    )
    return float(total), int((shifted_labels != ignore_index).sum())


def perplexity_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = IGNORE_INDEX
) -> float:
    """``exp(mean token NLL)`` over every scored (shifted, non-ignored) token of the batch."""
    total, count = token_nll(logits, labels, ignore_index=ignore_index)
    if count == 0:
        raise ValueError(
            "no token to score: every shifted label is ignore_index; "
            "the reference answer must have at least one unmasked label"
        )
    return math.exp(total / count)
