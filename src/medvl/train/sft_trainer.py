"""The SFT ``Trainer``: per-part learning rates, weighted loss averages, length grouping that
replays exactly on resume, the ZeRO-3 dummy vision forward and a finite-loss guard.

Everything else (the loop, optimizer steps, gradient accumulation, checkpoints, data
parallelism) is transformers'. Hooks used: ``create_optimizer`` and ``compute_loss`` (public,
documented for overriding), ``loss_is_scaled_for_ga`` (public attribute) and one private method,
``_get_train_sampler`` (see :meth:`MedvlSFTTrainer._get_train_sampler` for why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from medvl.models.output_layer import has_output_layer
from medvl.models.registry import FamilySpec
from medvl.train.callbacks import ThroughputCallback, check_finite
from medvl.train.freeze import param_groups
from medvl.train.loss import chunked_lm_loss, weighted_lm_loss
from medvl.train.sft_config import SFTConfig
from medvl.train.zero3_guard import dummy_vision_loss, missing_vision_calls


@dataclass
class SFTRunState:
    """What :class:`MedvlSFTTrainer` needs beyond its ``TrainingArguments``."""

    config: SFTConfig
    spec: FamilySpec
    throughput: ThroughputCallback
    lengths: list[int] | None = None  # token lengths of the training records (images included)
    last_checkpoint: str | None = None  # named when the loss stops being finite


class SampleIdCollator:
    """Wraps a collator to carry the batch's record ids (for error messages) and token counts."""

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, samples):
        batch = self.collator(samples)
        batch["sample_ids"] = [s.id for s in samples]
        return batch


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order that depends only on (seed, epoch), so a resumed run replays it."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        self.seed = seed
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


class MedvlSFTTrainer(Trainer):
    """``Trainer`` with per-part learning rates, length grouping and a finite-loss guard."""

    def __init__(self, *args, state: SFTRunState, **kwargs):
        self.sft_state = state
        super().__init__(*args, **kwargs)
        if state.config.loss_average != "token":
            # compute_loss returns a per-micro-batch mean: the Trainer divides it by the
            # accumulation steps itself (its own scaling, not a copy of it). The second line is
            # what the first means to transformers < 5.19, which has no loss_is_scaled_for_ga.
            self.loss_is_scaled_for_ga = False
            self.model_accepts_loss_kwargs = False

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            groups = param_groups(self.model, self.sft_state.config, self.sft_state.spec)
            optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)
            kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        """The one private Trainer method medvl overrides: transformers (5.25) has no public way
        to pass a training sampler.

        Its own ``train_sampling_strategy="group_by_length"`` reads lengths only from a
        ``datasets.Dataset`` column (ours is a torch dataset of lazily tokenized records whose
        lengths, image tokens included, were measured once) and draws the order from the global
        random state; ours depends on (seed, epoch) only, so a resumed run replays it exactly.
        ``tests/integration/test_sft.py::test_the_trainer_uses_the_epoch_seeded_sampler`` fails
        if a transformers release stops calling this method.
        """
        lengths = self.sft_state.lengths
        if self.sft_state.config.group_by_length and lengths:
            return EpochLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=lengths,
                seed=self.args.seed,
            )
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """transformers' loss (``token``) or a weighted average, plus the ZeRO-3 guard.

        Not ``compute_loss_func``: that hook sees only the outputs and labels, while a packed
        row's sample boundaries are in ``position_ids``; and transformers takes its result as
        normalised over the whole accumulated batch (scaling it by the process count), while
        the weighted averages are per micro-batch (see :mod:`medvl.train.loss`).

        ``loss_impl: chunked`` (the default) computes the same loss from the final hidden
        states, with the output layer only at labelled positions and in chunks
        (:mod:`medvl.models.output_layer`); ``full`` (and any call that wants the outputs, or a
        model without the ``model`` + ``lm_head`` layout) takes the logits of every position.
        """
        ids = inputs.pop("sample_ids", [])
        self.sft_state.throughput.count(len(ids), int(inputs["input_ids"].numel()))
        config = self.sft_state.config
        kinds = getattr(self.train_dataset, "vision_kinds", ("image",))
        calls = missing_vision_calls(inputs, kinds) if config.dummy_image_forward else 0
        extra = dummy_vision_loss(model, calls) if calls else None  # before the model's forward
        if config.loss_impl == "chunked" and not return_outputs and has_output_layer(model):
            result = self._chunked_loss(model, inputs, num_items_in_batch, config.loss_average)
        elif config.loss_average == "token":
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        else:
            result = self._weighted_loss(model, inputs, return_outputs, config.loss_average)
        if extra is not None:
            result = (result[0] + extra, *result[1:]) if return_outputs else result + extra
        loss = result[0] if return_outputs else result
        check_finite(
            float(loss.detach()), self.state.global_step + 1, ids, self.sft_state.last_checkpoint
        )
        return result

    def _weighted_loss(self, model, inputs, return_outputs: bool, average: str):
        """Per-sample (or square-root) averaged loss of one micro-batch."""
        labels = inputs.pop("labels")
        positions = inputs.get("position_ids")
        text_positions = positions[0] if positions is not None and positions.dim() == 3 else None
        outputs = model(**inputs)
        loss = weighted_lm_loss(outputs.logits, labels, text_positions, average)
        return (loss, outputs) if return_outputs else loss

    def _chunked_loss(self, model, inputs, num_items_in_batch, average: str) -> torch.Tensor:
        """:func:`chunked_lm_loss`, scaled as transformers scales its own ``token`` loss: over
        ``num_items_in_batch`` (the accumulated batch's labelled tokens) when the Trainer passes
        it to the model, times the process count when tokens are averaged across devices."""
        labels = inputs.pop("labels")
        scaled = average == "token" and self.model_accepts_loss_kwargs
        num_items = num_items_in_batch if scaled else None
        loss = chunked_lm_loss(model, inputs, labels, average, num_items)
        if num_items is not None and self.args.average_tokens_across_devices:
            tp_size = self.get_tp_size() if hasattr(self, "get_tp_size") else 1
            processes = self.accelerator.num_processes // tp_size
            loss = loss * (processes if self.args.n_gpu <= 1 else self.args.n_gpu)
        return loss
