"""Training features: records as a dataset of tokenized samples with assistant-only labels.

The tokenizing and label masking live in :mod:`medvl.data.features` (evaluation builds on them
too); they are re-exported here for the training code and older imports.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medvl.data.features import (
    IGNORE_INDEX,
    FeatureBuilder,
    Sample,
    assistant_spans,
)
from medvl.data.record import Record

__all__ = [
    "IGNORE_INDEX",
    "FeatureBuilder",
    "RecordDataset",
    "Sample",
    "assistant_spans",
]


class RecordDataset(torch.utils.data.Dataset):
    """A map-style dataset of records, tokenized on access (images are read lazily)."""

    def __init__(
        self,
        records: list[Record],
        base_dir: str | Path,
        builder: FeatureBuilder,
        lengths: list[int] | None = None,
    ):
        self.records = records
        self.base_dir = Path(base_dir)
        self.builder = builder
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        return self.builder(self.records[index], self.base_dir)
