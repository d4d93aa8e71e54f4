"""Perplexity of the reference answer given the image(s) and the question (teacher-forced).

For each record the whole chat -- system and user turns with their images, then the reference
assistant answer -- goes through the model in one forward pass. Only the answer's text tokens are
scored: system, user, image and template tokens are masked, and so is the ``<|im_end|>`` that
closes the answer (it measures whether the model stops, not what it says; its probability after
a one-word answer would also dominate short closed answers). The labels come from
:class:`medvl.data.features.FeatureBuilder` with :func:`~medvl.data.features.final_answer_span`,
the same tokenization as training, and the shifted negative log-likelihood (position t scores
the token at t + 1) from :func:`medvl.models.output_layer.token_nll`: the output layer runs only
at answer positions, in chunks, so no ``[tokens x vocab]`` logits are ever held.

The reference answer is the last assistant turn; a record whose conversation ends with a user
turn uses its ``answer`` field as that turn; a record with neither is skipped and counted.
Earlier assistant turns of a multi-turn record are context, not scored.

Three numbers come out: the pooled perplexity ``exp(total nll / total answer tokens)`` (the
standard corpus perplexity: every token weighs the same), the mean of the per-record perplexities
(every record weighs the same; a few short, badly predicted answers raise it), and per record the
summed nll and token count, so any grouping can be pooled again (:func:`group_perplexity`).
Batches are right-padded; padding, prompt and image positions carry label -100 and never count,
so the result does not depend on the batch size (checked in
``tests/integration/test_perplexity.py``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medvl.data.features import IGNORE_INDEX, FeatureBuilder, PaddingCollator, final_answer_span
from medvl.data.record import Message, Record
from medvl.errors import ConfigError, MedvlError
from medvl.eval.breakdown import group_label
from medvl.eval.scoring import record_kind
from medvl.infer.factory import EngineSpec, load_local
from medvl.models.output_layer import final_hidden_states, output_layer, scored_rows, token_nll

#: Breakdown keys always reported (record fields); ``--breakdown`` adds meta keys.
DEFAULT_GROUP_KEYS = ("answer_type", "question_type", "lang")
NO_ANSWER = "no reference answer"

Progress = Callable[[int, int], None]


class PerplexityError(MedvlError):
    """Records that cannot be scored for perplexity; the message names the record and the fix."""


@dataclass(frozen=True)
class RecordPerplexity:
    """One record's summed answer-token nll (nats) and the number of answer tokens scored."""

    id: str
    nll: float
    tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.tokens)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "nll": self.nll,
            "tokens": self.tokens,
            "perplexity": self.perplexity,
        }


@dataclass
class PerplexityResult:
    """Per-record values in input order, and the ids skipped with the reason."""

    records: list[RecordPerplexity]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def nll(self) -> float:
        return sum(r.nll for r in self.records)

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.records)

    @property
    def perplexity(self) -> float:
        """Pooled over tokens: ``exp(total nll / total answer tokens)``."""
        return pooled_perplexity(self.records)

    @property
    def mean_record_perplexity(self) -> float:
        """The plain mean of the per-record perplexities."""
        if not self.records:
            return math.nan
        return sum(r.perplexity for r in self.records) / len(self.records)


def pooled_perplexity(values: Sequence[RecordPerplexity]) -> float:
    """``exp(sum nll / sum tokens)`` over ``values``; NaN when there is no token."""
    tokens = sum(v.tokens for v in values)
    return math.exp(sum(v.nll for v in values) / tokens) if tokens else math.nan


def reference_record(record: Record) -> Record | None:
    """``record`` ending with its reference answer as the assistant turn, or None if it has none.

    The last assistant turn is the reference; when the conversation ends with a user turn, the
    ``answer`` field becomes that turn (a record converted without an assistant turn).
    """
    last = record.messages[-1] if record.messages else None
    if last is not None and last.role == "assistant":
        return record if last.content.strip() else None
    if record.answer is None or not record.answer.strip():
        return None
    messages = [*record.messages, Message("assistant", record.answer)]
    return dataclasses.replace(record, messages=messages)


def split_references(records: Sequence[Record]) -> tuple[list[Record], dict[str, str]]:
    """The records to score (each ending with its answer) and the skipped ids with the reason."""
    scorable, skipped = [], {}
    for record in records:
        with_answer = reference_record(record)
        if with_answer is None:
            skipped[record.id] = NO_ANSWER
        else:
            scorable.append(with_answer)
    return scorable, skipped


def check_references(
    records: Sequence[Record], source: str | Path, base_dir: str | Path | None = None
) -> None:
    """Refuse data that cannot be scored: no record with a reference answer, or (with
    ``base_dir``) a scorable record whose image file is missing. Cheap: run it before loading
    the model."""
    if not records:
        raise PerplexityError(f"{source}: no records to score")
    scorable, _ = split_references(records)
    if not scorable:
        raise PerplexityError(
            f"{source}: none of the {len(records)} records has a reference answer (a final "
            "assistant turn or an 'answer' field); perplexity needs the answer to score"
        )
    if base_dir is None:
        return
    for record in scorable:
        for path in record.image_paths(base_dir):
            if not path.is_file():
                raise PerplexityError(
                    f"{source}: record {record.id!r}: image {path} not found; image paths are "
                    "relative to the JSONL file's folder"
                )


def answer_perplexity(
    model: Any,
    processor: Any,
    records: Sequence[Record],
    base_dir: str | Path,
    *,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> PerplexityResult:
    """Teacher-forced perplexity of each record's reference answer (see the module docstring).

    ``model`` is a loaded Qwen-VL model (with or without peft adapters, see
    :func:`medvl.models.loading.load_model`), ``processor`` its processor, ``base_dir`` the
    folder image paths are relative to. ``progress(done, total)`` is called after each batch.
    Raises :class:`PerplexityError` when no record has an answer or one cannot be tokenized.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    check_references(records, "the data")
    scorable, skipped = split_references(records)
    builder = FeatureBuilder(processor, spans=final_answer_span)
    pad_id = processor.tokenizer.pad_token_id
    collate = PaddingCollator(pad_id if pad_id is not None else 0)
    model.eval()
    scored: list[RecordPerplexity] = []
    with torch.inference_mode():
        for start in range(0, len(scorable), batch_size):
            chunk = scorable[start : start + batch_size]
            batch = collate([_sample(builder, record, base_dir) for record in chunk])
            scored += _score_batch(model, batch, [record.id for record in chunk])
            if progress is not None:
                progress(len(scored), len(scorable))
    return PerplexityResult(scored, skipped)


def _sample(builder: FeatureBuilder, record: Record, base_dir: str | Path) -> Any:
    """The record's tokens with labels on its answer; errors name the record."""
    try:
        sample = builder(record, base_dir)
    except MedvlError as exc:
        raise PerplexityError(f"record {record.id!r}: {exc}") from None
    if not bool((sample.labels != IGNORE_INDEX).any()):
        raise PerplexityError(
            f"record {record.id!r}: no whole token of the answer {record.reference!r} lies in the "
            "answer text; check the record's last assistant turn"
        )
    return sample


def _score_batch(model: Any, batch: dict[str, Any], ids: Sequence[str]) -> list[RecordPerplexity]:
    """One forward pass to the final hidden states; the output layer then runs only at the
    positions that score an answer token, a chunk of rows at a time, so memory does not grow
    with vocabulary x sequence length (:mod:`medvl.models.output_layer`)."""
    labels = batch.pop("labels")
    hidden = final_hidden_states(model, _to_device(model, batch))
    rows, targets = scored_rows(hidden, labels)
    nll = token_nll(rows, targets, output_layer(model)).double().cpu()
    keep = labels[:, 1:] != IGNORE_INDEX
    owner = keep.nonzero()[:, 0]  # the batch row of each scored token, in the same order
    per_row = torch.zeros(len(ids), dtype=torch.float64).index_add_(0, owner, nll)
    counts = keep.sum(dim=1)
    return [
        RecordPerplexity(record_id, float(per_row[row]), int(counts[row]))
        for row, record_id in enumerate(ids)
    ]


def _to_device(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Tensors onto the model's device; pixel values in its floating-point compute dtype."""
    device = next(model.parameters()).device
    dtype = getattr(model, "dtype", None)
    if dtype is None or not dtype.is_floating_point:
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device)
            if value.is_floating_point():
                value = value.to(dtype)
        moved[key] = value
    return moved


def group_perplexity(
    result: PerplexityResult, records: Sequence[Record], keys: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per breakdown key and group: pooled perplexity, answer tokens and records scored.

    A key is a record field (``answer_type``, ``question_type``, ``lang``, ``dataset``,
    ``kind``) or a ``meta`` key; records without a value fall in ``(none)``.
    """
    rows = {record.id: _group_row(record) for record in records}
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for key in keys:
        members: dict[str, list[RecordPerplexity]] = {}
        for value in result.records:
            members.setdefault(group_label(rows[value.id], key), []).append(value)
        groups[key] = {
            label: {
                "perplexity": pooled_perplexity(values),
                "tokens": sum(v.tokens for v in values),
                "records": len(values),
            }
            for label, values in sorted(members.items())
        }
    return groups


def _group_row(record: Record) -> Mapping[str, Any]:
    return {
        "kind": record_kind(record),
        "answer_type": record.answer_type,
        "question_type": record.question_type,
        "lang": record.lang,
        "dataset": record.dataset,
        "meta": record.meta,
    }


def perplexity_json(
    result: PerplexityResult,
    records: Sequence[Record],
    keys: Sequence[str] = DEFAULT_GROUP_KEYS,
    **info: Any,
) -> dict[str, Any]:
    """The body of ``perplexity.json``: totals, groups, per-record values and ``info``."""
    return {
        "metric": "teacher-forced perplexity of the reference answer text (<|im_end|> excluded)",
        "perplexity": result.perplexity,
        "mean_record_perplexity": result.mean_record_perplexity,
        "nll": result.nll,
        "tokens": result.tokens,
        "counts": {
            "records": len(records),
            "scored": len(result.records),
            "skipped": len(result.skipped),
        },
        "skipped": dict(result.skipped),
        "groups": group_perplexity(result, records, keys),
        "records": [value.to_dict() for value in result.records],
        **info,
    }


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class PerplexityConfig:
    """One perplexity run: which records, where to write, and extra group keys."""

    data: Path = field(metadata={"help": "canonical .jsonl with reference answers"})
    out: Path = field(metadata={"help": "run folder; perplexity.json is written there"})
    limit: int | None = field(default=None, metadata={"help": "only the first N records"})
    breakdown: tuple[str, ...] = field(
        default=(), metadata={"help": f"group keys besides {', '.join(DEFAULT_GROUP_KEYS)}"}
    )

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be positive, got {self.limit}")

    @property
    def group_keys(self) -> list[str]:
        """The default keys, then the extra ones."""
        extra = [k for k in self.breakdown if k not in DEFAULT_GROUP_KEYS]
        return [*DEFAULT_GROUP_KEYS, *extra]


@dataclass(frozen=True)
class PerplexityRun:
    """What :func:`run_perplexity` wrote: the file and its body."""

    path: Path
    body: dict[str, Any]


def run_perplexity(
    config: PerplexityConfig, spec: EngineSpec, *, progress: Progress | None = None
) -> PerplexityRun:
    """Score ``config.data`` with the local model of ``spec`` (an
    :class:`medvl.infer.factory.EngineSpec`; its ``batch_size`` is records per forward pass)
    and write ``perplexity.json`` to ``config.out``. The data is checked before the model
    loads, so bad input fails fast; a server spec is refused (this needs the weights)."""
    from medvl.data.jsonl import read_records
    from medvl.fileio import atomic_write_json
    from medvl.provenance import file_sha256

    data = Path(config.data)
    records = read_records(data)[: config.limit]
    check_references(records, data, data.parent)
    loaded = load_local(spec)
    result = answer_perplexity(
        loaded.model,
        loaded.processor,
        records,
        data.parent,
        batch_size=spec.batch_size,
        progress=progress,
    )
    body = perplexity_json(
        result,
        records,
        config.group_keys,
        data={"path": str(data), "sha256": file_sha256(data), "limit": config.limit},
        model=loaded.fingerprint(),
        settings={"batch_size": spec.batch_size, "dtype": str(loaded.dtype).removeprefix("torch.")},
    )
    path = Path(config.out) / "perplexity.json"
    atomic_write_json(path, body)
    return PerplexityRun(path, body)
