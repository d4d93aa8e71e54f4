"""SFT data: the training file checked, over-long records dropped, records as a dataset.

Tokenizing and assistant-only label masking live in :mod:`medvl.data.features` (evaluation
builds on them too); this module only decides which records train and serves them lazily.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from medvl.data.features import FeatureBuilder, Sample
from medvl.data.record import Record
from medvl.errors import MedvlError
from medvl.train.sft_config import SFTConfig

logger = logging.getLogger(__name__)


class RecordDataset(torch.utils.data.Dataset):
    """A map-style dataset of records, tokenized on access (images and video frames are read
    lazily)."""

    def __init__(self, records: list[Record], base_dir: str | Path, builder: FeatureBuilder):
        self.records = records
        self.base_dir = Path(base_dir)
        self.builder = builder

    def __len__(self) -> int:
        return len(self.records)

    @property
    def vision_kinds(self) -> tuple[str, ...]:
        """Input kinds the vision tower runs on in this data: ``image`` always (a text-only
        batch still joins the tower's collectives), ``video`` when any record has one. The
        ZeRO-3 guard (:mod:`medvl.train.zero3_guard`) makes every batch call the tower once
        per kind."""
        return ("image", "video") if any(r.videos for r in self.records) else ("image",)

    def __getitem__(self, index: int) -> Sample:
        return self.builder(self.records[index], self.base_dir)


def prepare_records(
    config: SFTConfig, processor: Any, *, skip: dict[str, str] | None = None
) -> tuple[list[Record], list[int], list]:
    """``(records, token lengths, dropped ids)``: the training file validated, records longer
    than ``data.max_length`` dropped (image tokens are never cut), the first N kept. Records in
    ``skip`` (bad images under ``data.on_bad_image: skip``) are left out without an error."""
    from medvl.data.tokens import TokenCounter
    from medvl.data.validate import validate_jsonl

    counter = TokenCounter(processor)
    result = validate_jsonl(config.data.train, counter=counter, max_length=config.data.max_length)
    skip = skip or {}
    fatal = [p for p in result.problems if p.code != "too_long" and p.record_id not in skip]
    if fatal:
        lines = "; ".join(f"line {p.line} ({p.record_id}): {p.code}" for p in fatal[:5])
        raise MedvlError(
            f"{config.data.train}: {len(fatal)} invalid record(s), e.g. {lines}; run "
            "'medvl data validate' on it and fix or drop them (--out-clean)"
        )
    dropped = [p.record_id for p in result.problems if p.code == "too_long"]
    if dropped:
        logger.warning(
            "dropped %d record(s) longer than max_length %d (image tokens are never cut): %s",
            len(dropped),
            config.data.max_length,
            ", ".join(dropped[:20]),
        )
    records = result.valid[: config.data.max_train_samples or None]
    if not records:
        raise MedvlError(f"{config.data.train}: no usable training records")
    lengths = [result.token_lengths[r.id] for r in records]
    return records, lengths, dropped
