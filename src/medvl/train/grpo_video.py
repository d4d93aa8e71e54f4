"""GRPO on prompts with videos: the parts of TRL's ``GRPOTrainer`` that drop them, filled in.

TRL 1.16 handles a VLM prompt's images but not its videos: ``_generate_and_score_completions``
rebuilds the forward inputs with ``processing_class(images=..., text=...)`` (no videos, and the
text's single ``<|video_pad|>`` makes ``mm_token_type_ids`` shorter than the prompt), and
``_get_per_token_logps_and_entropies`` / ``_compute_loss`` pass image fields only, so a raw run
scores completions against the video's placeholder tokens and never errs.

:class:`VideoGRPOTrainer` (TRL's trainer, used for every medvl GRPO run) takes over a batch's
media when any of its rows has videos (dataset column ``videos``: one list of PIL frames per
``<video>``, from :func:`medvl.data.volumes.load_frames`), and leaves every other batch to TRL:

1. ``_generate_and_score_completions``: each record's prompt is encoded once (its
   ``num_generations`` rows share it), as medvl's SFT and inference do (chat template, then
   ``processor(text, images, **video_call_kwargs(...))``), into :class:`PromptMedia`; the rows
   go on to TRL without ``images``/``videos``, so TRL sees a text batch and never calls the
   processor itself.
2. ``_tokenize_prompts`` (generation): returns those prompt ids and the media tensors, which
   TRL's generation path passes to ``model.generate`` (``mm_token_type_ids`` left-padded with
   the prompts), so rollouts see the video.
3. ``_get_per_token_logps_and_entropies`` (old/reference log-probs, and the loss): TRL's own
   loop runs with the model behind a :class:`MediaFeeder`, which adds each chunk's media
   (``pixel_values``, ``image_grid_thw``, ``pixel_values_videos``, ``video_grid_thw``,
   ``second_per_grid_ts``, ``mm_token_type_ids``) to every forward call, in row order.
4. The media ride in the batch TRL buffers, as one :class:`PromptMedia` per row under
   ``medvl_media`` (a list: TRL's shuffle and split keep it aligned with the rows), and
   ``_compute_loss`` hands them to step 3.

The hooks are private TRL methods: :data:`VIDEO_HOOKS` names them with the parameters medvl
relies on, :func:`check_video_hooks` refuses video data when a TRL release lacks them
(``medvl.train.grpo_config.TRL_TESTED`` bounds the version), and
tests/integration/test_grpo_video.py checks the log-probs against a direct forward with the
video tensors. A prompt holding video tokens without its media is refused
(:meth:`VideoGRPOTrainer._refuse_unseen_videos`), never scored silently. vLLM rollouts receive
images only, so videos with ``vllm.enabled`` are refused (``grpo_data.check_video_support``).
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from trl import GRPOTrainer

from medvl.data.features import MEDIA_FIELDS, image_batch
from medvl.data.video import video_call_kwargs
from medvl.errors import MedvlError

#: TRL's private methods the video path overrides, with the parameters it relies on.
VIDEO_HOOKS: dict[str, tuple[str, ...]] = {
    "_generate_and_score_completions": ("inputs",),
    "_tokenize_prompts": ("prompts",),
    "_get_per_token_logps_and_entropies": (
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
    ),
    "_compute_loss": ("model", "inputs"),
}
#: Dataset columns the video path consumes (TRL never sees them).
MEDIA_COLUMNS = ("images", "videos")
#: Key of the per-row media in the batch TRL buffers between generation and the loss.
MEDIA_KEY = "medvl_media"
_VIDEO_FIELDS = frozenset({"pixel_values_videos", "video_grid_thw", "second_per_grid_ts"})


def check_video_hooks(trainer_class: type = GRPOTrainer) -> str | None:
    """Why ``trainer_class`` cannot train on videos (a missing hook or parameter), or None."""
    for name, params in VIDEO_HOOKS.items():
        method = getattr(trainer_class, name, None)
        if method is None:
            return f"its GRPOTrainer has no {name}"
        found = inspect.signature(method).parameters
        missing = [p for p in params if p not in found]
        if missing:
            return f"its GRPOTrainer.{name} lacks the parameter(s) {', '.join(missing)}"
    return None


@dataclass
class PromptMedia:
    """One prompt as the processor encodes it: token ids, their types (0 text, 1 image pad,
    2 video pad) and the media tensors of that prompt alone (None where it has none)."""

    prompt_ids: list[int]
    mm_token_type_ids: list[int]
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None
    second_per_grid_ts: torch.Tensor | None = None  # Qwen2.5-VL only


def encode_prompt(
    processor: Any,
    prompt: list[dict[str, Any]],
    images: list[Any],
    videos: list[list[Any]],
    **template_kwargs: Any,
) -> PromptMedia:
    """Encode one conversation with its images and videos (frame lists) as SFT and inference
    do: the chat template's text (generation prompt added), then one processor call."""
    text = processor.apply_chat_template(
        prompt, tokenize=False, add_generation_prompt=True, **template_kwargs
    )
    encoded = processor(
        text=[text],
        images=images or None,
        return_tensors="pt",
        **video_call_kwargs(processor, videos),
    )
    ids = encoded["input_ids"][0]
    types = encoded.get("mm_token_type_ids")
    if types is None:
        raise MedvlError(
            f"{type(processor).__name__} returns no mm_token_type_ids; GRPO on videos needs a "
            "Qwen-VL processor"
        )
    tensors = {
        name: encoded.get(name)
        for name in MEDIA_FIELDS
        if (videos if name in _VIDEO_FIELDS else images)
    }
    return PromptMedia(ids.tolist(), types[0].tolist(), **tensors)


def media_inputs(rows: list[PromptMedia], device: torch.device) -> dict[str, torch.Tensor]:
    """The rows' media tensors, each concatenated in row order (absent keys left out)."""
    return {name: value.to(device) for name, value in image_batch(rows).items()}


def token_types(
    rows: list[PromptMedia], input_ids: torch.Tensor, prompt_width: int
) -> torch.Tensor:
    """``mm_token_type_ids`` for prompt+completion rows whose prompts TRL left-padded to
    ``prompt_width``: each prompt's types right-aligned there, zeros elsewhere. Raises when a
    row's prompt tokens are not the ones encoded (the media would not match the tokens)."""
    types = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        n = len(row.prompt_ids)
        start = prompt_width - n
        expected = torch.tensor(row.prompt_ids, device=input_ids.device)
        if start < 0 or not torch.equal(input_ids[i, start:prompt_width], expected):
            raise MedvlError(
                "GRPO on videos: a row's prompt tokens differ from the encoded prompt its "
                "video belongs to (an unsupported TRL change?); refusing to score it"
            )
        types[i, start:prompt_width] = torch.tensor(row.mm_token_type_ids, device=types.device)
    return types


class MediaFeeder:
    """The model, called with each chunk's media added: TRL's log-prob loop calls the model
    once per chunk of consecutive rows; the feeder hands the next rows' media to each call."""

    def __init__(self, model: Any, rows: list[PromptMedia], prompt_width: int):
        self.model = model
        self.rows = rows
        self.prompt_width = prompt_width
        self.used = 0

    def __call__(self, **inputs: Any) -> Any:
        ids = inputs["input_ids"]
        rows = self.rows[self.used : self.used + ids.size(0)]
        if len(rows) != ids.size(0):
            raise MedvlError("GRPO on videos: more rows were scored than prompts encoded")
        self.used += ids.size(0)
        extra = media_inputs(rows, ids.device)
        extra["mm_token_type_ids"] = token_types(rows, ids, self.prompt_width)
        return self.model(**inputs, **extra)

    def finish(self) -> None:
        """Check that every row's media went to the model."""
        if self.used != len(self.rows):
            raise MedvlError(
                f"GRPO on videos: {self.used} of {len(self.rows)} rows were scored with media"
            )


class VideoGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer``; batches with videos go through medvl's media path (see the
    module docstring), every other batch through TRL's own."""

    _medvl_media: list[PromptMedia] | None = None

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not any(row.get("videos") for row in inputs):
            return super()._generate_and_score_completions(inputs)
        self._refuse_unsupported()
        rows = self._encode_rows(inputs)
        bare = [{k: v for k, v in row.items() if k not in MEDIA_COLUMNS} for row in inputs]
        with self._media(rows):
            output = super()._generate_and_score_completions(bare)
        output[MEDIA_KEY] = rows
        return output

    def _encode_rows(self, inputs: list[dict[str, Any]]) -> list[PromptMedia]:
        """One :class:`PromptMedia` per row; the ``num_generations`` rows TRL makes of one
        record (same ``id``) share one encoding (the processor runs once per record)."""
        encoded: dict[Any, PromptMedia] = {}
        rows = []
        for row in inputs:
            key = row.get("id", object())  # a row without an id is encoded alone
            if key not in encoded:
                encoded[key] = self._encode_row(row)
            rows.append(encoded[key])
        return rows

    def _encode_row(self, row: dict[str, Any]) -> PromptMedia:
        return encode_prompt(
            self.processing_class,
            row["prompt"],
            list(row.get("images") or []),
            list(row.get("videos") or []),
            chat_template=self.chat_template,
            **self.chat_template_kwargs,
        )

    def _refuse_unsupported(self) -> None:
        """Rollout paths that would not receive the media (medvl sets none of them)."""
        reason = None
        if getattr(self, "use_vllm", False):
            reason = "vLLM rollouts receive images only"
        elif getattr(self, "use_transformers_continuous_batching", False):
            reason = "continuous-batching rollouts receive no media"
        elif (
            getattr(self, "tools", None)
            or getattr(self, "environment_factories", None) is not None
            or getattr(self, "rollout_func", None) is not None
        ):
            reason = "tools, environments and custom rollouts are not supported with videos"
        if reason:
            raise MedvlError(f"GRPO on videos: {reason}; train these records without it")

    @contextmanager
    def _media(self, rows: list[PromptMedia] | None):
        """Make ``rows`` the media of the rows the next log-prob calls score."""
        previous, self._medvl_media = self._medvl_media, rows
        try:
            yield
        finally:
            self._medvl_media = previous

    def _tokenize_prompts(self, prompts: list):
        rows = self._medvl_media
        if rows is None:
            return super()._tokenize_prompts(prompts)
        if len(rows) != len(prompts):
            raise MedvlError(f"GRPO on videos: {len(prompts)} prompts for {len(rows)} encoded")
        fields: dict[str, Any] = dict(image_batch(rows))
        fields["mm_token_type_ids"] = [row.mm_token_type_ids for row in rows]
        return [row.prompt_ids for row in rows], None, fields

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, *args: Any, **kwargs: Any
    ):
        rows = self._medvl_media
        if rows is None:
            self._refuse_unseen_videos(input_ids, logits_to_keep)
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
            )
        if len(rows) != input_ids.size(0):
            raise MedvlError(f"GRPO on videos: {input_ids.size(0)} rows for {len(rows)} prompts")
        feeder = MediaFeeder(model, rows, input_ids.size(1) - logits_to_keep)
        result = super()._get_per_token_logps_and_entropies(
            feeder, input_ids, attention_mask, logits_to_keep, *args, **kwargs
        )
        feeder.finish()
        return result

    def _compute_loss(self, model, inputs):
        with self._media(inputs.get(MEDIA_KEY)):
            return super()._compute_loss(model, inputs)

    def _refuse_unseen_videos(self, input_ids: torch.Tensor, logits_to_keep: int) -> None:
        """Raise when a prompt holds video tokens but no media came with it (TRL would score
        the completion against the placeholders)."""
        video_id = getattr(self, "_video_pad_token_id", None)
        prompts = input_ids[:, : input_ids.size(1) - logits_to_keep]
        if video_id is not None and bool((prompts == video_id).any()):
            raise MedvlError(
                "GRPO: a prompt holds video tokens but its video tensors were not passed to the "
                "model; refusing to train on the placeholders (report this with your TRL version)"
            )
