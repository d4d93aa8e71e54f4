"""Canonical records -> the dataset TRL's ``GRPOTrainer`` samples prompts from.

GRPO needs an answer a reward can verify. A record is kept when it has a gold answer (the
option letter for MCQ, else ``answer`` or the last assistant turn) of a kind one of the recipe's
accuracy rewards checks (``mcq``, ``closed``, ``open``), and when its prompt, with image and
video tokens and the template, fits ``grpo.max_prompt_length``: prompts are never cut, since
cutting through media tokens breaks the model. Every other record is dropped, counted by reason.

TRL reads, per row: ``prompt`` (conversation with ``{"type": "image"}`` blocks) and ``images``
(PIL images, loaded lazily with :func:`medvl.data.medimage.load_image`, so DICOM/NIfTI work);
every other column (``id``, ``answer``, ``options``, ``answer_type``, ``lang``, ``question``)
reaches the reward functions as a keyword argument.

Records with videos (``<video>`` placeholders, :class:`medvl.data.video.VideoSpec` entries) train
too: their prompt length counts the video tokens exactly (:class:`medvl.data.tokens.TokenCounter`)
and, when any kept record has videos, each row also carries ``videos`` (one list of PIL frames
per ``<video>``, from :func:`medvl.data.volumes.load_frames`), which
:class:`medvl.train.grpo_video.VideoGRPOTrainer` gives to generation, the log-probabilities and
the loss (TRL 1.16 alone drops them). :func:`check_video_support` refuses videos where that path
cannot run (vLLM rollouts, a TRL without the hooks).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.data.images import image_header
from medvl.data.medimage import load_image
from medvl.data.record import Record
from medvl.data.tokens import TokenCounter, VideoShape, budget_from_processor
from medvl.data.validate_video import VideoShapes
from medvl.data.video import VideoSpec
from medvl.data.volumes import load_frames
from medvl.errors import MedvlError
from medvl.eval.prompts import PromptTemplate
from medvl.eval.scoring import gold_answer
from medvl.train.prompts import accepts, build_prompt, prompt_template
from medvl.train.rewards import REWARDS, reward_kind

logger = logging.getLogger(__name__)

#: Why a record is dropped (keys of :attr:`GRPOData.rejected`).
REASONS = {
    "no_answer": "no gold answer",
    "no_reward": "no reward in the recipe checks this kind of answer",
    "template": "the prompt template does not fit it (reasoning is for multiple choice)",
    "too_long": "prompt (with image and video tokens) longer than grpo.max_prompt_length",
    "bad_image": "unusable image (truncated, missing, ...) under data.on_bad_image: skip",
}


@dataclass
class GRPOData:
    """The kept records, the dataset built on them, and the dropped ids by reason."""

    records: list[Record]
    dataset: Any
    rejected: dict[str, list[str]] = field(default_factory=dict)
    prompt_lengths: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Dropped records per reason."""
        return {reason: len(ids) for reason, ids in self.rejected.items() if ids}


def load_valid_records(path: Path, skip: dict[str, str] | None = None) -> list[Record]:
    """Every record of ``path``, refusing the file when any record or image is invalid (records
    in ``skip``, dropped for a bad image, are left out instead)."""
    from medvl.data.validate import validate_jsonl

    result = validate_jsonl(path)
    problems = [p for p in result.problems if p.record_id not in (skip or {})]
    if problems:
        lines = "; ".join(f"line {p.line} ({p.record_id}): {p.code}" for p in problems[:5])
        raise MedvlError(
            f"{path}: {len(problems)} invalid record(s), e.g. {lines}; run "
            "'medvl data validate' on it and fix or drop them (--out-clean)"
        )
    return result.valid


def verifiable_kinds(rewards: list[str]) -> set[str]:
    """Answer kinds at least one of ``rewards`` checks."""
    return {kind for name in rewards for kind in REWARDS[name].verifies}


def prompt_length(record: Record, base_dir: Path, processor: Any, prompt: list) -> int:
    """Tokens of the templated prompt (generation prompt included), image tokens expanded."""
    text = processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    length = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    budget = budget_from_processor(processor)
    for path in record.image_paths(base_dir):
        header = image_header(path)
        length += budget.image_tokens(header.width, header.height) - 1
    return length


def video_prompt_length(
    counter: TokenCounter, record: Record, base_dir: Path, shapes: VideoShapes | None = None
) -> int:
    """Tokens of the prompt of ``record`` (already templated) with its images and videos: the
    token counter's exact count (Qwen3-VL timestamp text included). ``shapes``: the run's
    volume-shape cache (:func:`video_shape`)."""
    shapes = shapes or VideoShapes(base_dir)
    sizes = [(h.width, h.height) for h in map(image_header, record.image_paths(base_dir))]
    videos = [video_shape(v, base_dir, shapes) for v in record.videos]
    return counter.count(record, sizes, videos, with_answer=False)


def video_shape(spec: VideoSpec, base_dir: Path, shapes: VideoShapes | None = None) -> VideoShape:
    """``(frames, width, height)`` of one video: from the first file's header for ``frames``
    (validation checked that all frames share its size), else from validation's
    :class:`medvl.data.validate_video.VideoShapes`, which reads each volume or series once per
    ``shapes`` (records asking several questions about one scan share it); raises its message
    when the volume cannot be read."""
    if spec.frames is not None:
        header = image_header(spec.paths(base_dir)[0])
        return len(spec.frames), header.width, header.height
    shapes = shapes or VideoShapes(base_dir)
    shape, issues = shapes.volume_shape(0, spec, spec.paths(base_dir)[0], read=True)
    if shape is None:
        raise MedvlError("; ".join(issue.message for issue in issues) or "unreadable video")
    return shape


def select_records(
    records: list[Record], base_dir: Path, processor: Any, config: Any
) -> tuple[list[Record], dict[str, list[str]], dict[str, int]]:
    """``(kept, rejected ids by reason, prompt lengths)`` for the recipe ``config``."""
    kinds = verifiable_kinds(config.rewards)
    template = prompt_template(config.prompt.template, config.prompt.system)
    rejected: dict[str, list[str]] = {reason: [] for reason in REASONS}
    kept, lengths = [], {}
    counter = TokenCounter(processor) if any(r.videos for r in records) else None
    shapes = VideoShapes(base_dir)  # each volume read once for all records that share it
    for record in records:
        if gold_answer(record) is None:
            rejected["no_answer"].append(record.id)
            continue
        if reward_kind(record.options, record.answer_type) not in kinds:
            rejected["no_reward"].append(record.id)
            continue
        if not accepts(template, record):
            rejected["template"].append(record.id)
            continue
        if record.videos and counter is not None:
            length = video_prompt_length(counter, template.apply(record), base_dir, shapes)
        else:
            length = prompt_length(record, base_dir, processor, build_prompt(record, template))
        if length > config.grpo.max_prompt_length:
            rejected["too_long"].append(record.id)
            continue
        lengths[record.id] = length
        kept.append(record)
    return kept, rejected, lengths


def _refuse_empty(path: Path, n: int, rejected: dict[str, list[str]], rewards: list[str]) -> None:
    counts = ", ".join(f"{REASONS[r]}: {len(ids)}" for r, ids in rejected.items() if ids)
    raise MedvlError(
        f"{path}: none of its {n} records can train GRPO with rewards {rewards} ({counts}); "
        "GRPO needs records with a gold answer ('answer', or the option letter with 'options') "
        "and an accuracy reward for their kind (mcq_accuracy, closed_accuracy, open_f1)"
    )


def check_video_support(path: Path, records: list[Record], *, vllm: bool = False) -> None:
    """Raise a :class:`MedvlError` naming the records with videos when GRPO cannot train on
    them here: vLLM rollouts (TRL gives vLLM the images only) or a TRL release without the
    hooks :class:`medvl.train.grpo_video.VideoGRPOTrainer` overrides."""
    with_videos = [r.id for r in records if r.videos]
    if not with_videos:
        return
    from medvl.train.grpo_config import TRL_TESTED
    from medvl.train.grpo_video import check_video_hooks

    missing = check_video_hooks()
    reason = (
        "TRL's vLLM rollouts receive images only; set vllm.enabled=false (rollouts with "
        "transformers) for records with videos"
        if vllm
        else f"the installed trl does not fit medvl's video path ({missing}; medvl is tested "
        f"with trl{TRL_TESTED})"
        if missing
        else None
    )
    if reason:
        raise MedvlError(
            f"{path}: {len(with_videos)} record(s) have videos (e.g. "
            f"{', '.join(with_videos[:3])}) and GRPO cannot train on them here: {reason}. "
            "Leave them out of the GRPO data, or give the slices as images (one <image> "
            "placeholder per slice)"
        )


class PromptTransform:
    """Turns stored row indices into TRL rows (prompt, PIL images, reward columns) on access.

    TRL's sampler asks for each prompt ``num_generations`` times in a batch, and for the same
    batch ``steps_per_generation * num_iterations`` times in a row (it generates on the first
    and discards the others), so each distinct index is built once per batch and the last
    batch's rows are reused: a volume is decoded once per use, not dozens of times."""

    def __init__(self, records: list[Record], base_dir: Path, template: PromptTemplate):
        self.records = records
        self.base_dir = base_dir
        self.template = template
        self.with_videos = any(r.videos for r in records)
        self._last: dict[int, dict[str, Any]] = {}  # the previous batch's rows, by index

    def row(self, record: Record) -> dict[str, Any]:
        media = {}
        if self.with_videos:  # frames per <video>; VideoGRPOTrainer consumes the column
            media["videos"] = [load_frames(spec, self.base_dir) for spec in record.videos]
        return {
            **media,
            "prompt": build_prompt(record, self.template),
            "images": [load_image(p) for p in record.image_paths(self.base_dir)],
            "id": record.id,
            "answer": gold_answer(record),
            "options": dict(record.options) if record.options else None,
            "answer_type": record.answer_type,
            "lang": record.lang,
            "question": record.question,
        }

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        last, built = self._last, {}
        for i in batch["index"]:
            if i not in built:
                built[i] = last[i] if i in last else self.row(self.records[i])
        self._last = built
        rows = [built[i] for i in batch["index"]]
        return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}


def build_dataset(records: list[Record], base_dir: Path, template: PromptTemplate):
    """A ``datasets.Dataset`` of row indices; TRL reads its rows through the transform."""
    from datasets import Dataset

    dataset = Dataset.from_dict({"index": list(range(len(records)))})
    dataset.set_transform(PromptTransform(records, base_dir, template))
    return dataset


def prepare_data(
    config: Any,
    processor: Any,
    *,
    skip: dict[str, str] | None = None,
    records: list[Record] | None = None,
) -> GRPOData:
    """Read, validate and select the training records of ``config``; build the dataset.
    ``skip``: ids dropped for an unusable image (``data.on_bad_image: skip``), with reasons.
    ``records``: the file's records already validated (the run's preflight,
    :func:`medvl.train.preflight.screen_training_records`), so it is not validated again."""
    path = Path(config.data.train)
    if records is None:
        records = load_valid_records(path, skip)
    check_video_support(path, records, vllm=config.vllm.enabled)
    if config.data.max_train_samples:
        records = records[: config.data.max_train_samples]
    kept, rejected, lengths = select_records(records, path.parent, processor, config)
    rejected["bad_image"] = list(skip or {})
    if not kept:
        _refuse_empty(path, len(records), rejected, list(config.rewards))
    counts = Counter({reason: len(ids) for reason, ids in rejected.items() if ids})
    if counts:
        logger.warning(
            "kept %d of %d records; dropped %s",
            len(kept),
            len(records),
            ", ".join(f"{n} ({REASONS[r]})" for r, n in counts.items()),
        )
    template = prompt_template(config.prompt.template, config.prompt.system)
    dataset = build_dataset(kept, path.parent, template)
    return GRPOData(kept, dataset, rejected, lengths)
