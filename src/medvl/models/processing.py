"""Processor settings shared by training, inference and validation, and token counters.

Videos (a CT/MRI series, a volume, any ordered frame list) reach every Qwen-VL processor the
same way, through :func:`video_call_kwargs`, so that training, inference and the token counter
see the same frames, the same resize and the same prompt text:

* frames are given as a list of PIL images per video, never resampled by the processor
  (``do_sample_frames=False``: medvl already chose the slices);
* a video shorter than the temporal patch (one slice) is padded by repeating its last frame,
  which is what the processors do to every odd tail anyway, and Qwen3-VL refuses fewer;
* each video carries metadata at :data:`medvl.data.video.VIDEO_FPS` (2) frames per second
  (:func:`medvl.data.video.processor_video_kwargs`), so one temporal patch of two slices spans
  one "second": Qwen2.5-VL's ``second_per_grid_ts`` is 1.0 (temporal rotary
  positions step by ``tokens_per_second`` per patch instead of collapsing to 0, as they do at
  the 24 fps transformers assumes without metadata) and Qwen3-VL writes ``<0.2 seconds>``,
  ``<1.2 seconds>``, ... before each patch;
* the video pixel range is a setting of its own (``data.video_max_pixels`` in recipes,
  ``--video-max-pixels`` on the command line, :func:`set_pixel_budgets`), apart from the image
  one;
* ``cap_pixels_per_frame`` is passed explicitly (the checkpoint's setting, else False), which
  fixes the per-frame pixel budget and silences transformers' warning about its default.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvl.data.video import (  # noqa: F401  (re-exported: the call lives with the record)
    pad_video_frames,
    processor_video_kwargs,
    temporal_patch_size,
    video_call_kwargs,
)
from medvl.errors import ConfigError

if TYPE_CHECKING:
    from medvl.data.tokens import TokenCounter


def set_pixel_budget(
    processor: Any, min_pixels: int | None = None, max_pixels: int | None = None
) -> Any:
    """Set the image processor's pixel range (``min_pixels``/``max_pixels``) in place.

    transformers 5.x keeps it as ``size.shortest_edge``/``size.longest_edge`` (pixel counts) in
    a ``SizeDict``; replacing it with a plain dict would break the processor.
    """
    if min_pixels is None and max_pixels is None:
        return processor
    from transformers.image_utils import SizeDict

    image_processor = processor.image_processor
    size = dict(vars(image_processor.size)) if image_processor.size is not None else {}
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    image_processor.size = SizeDict(**size)
    return processor


def set_video_pixel_budget(
    processor: Any, min_pixels: int | None = None, max_pixels: int | None = None
) -> Any:
    """Set the video processor's pixel range in place (as :func:`set_pixel_budget` for images).

    Qwen2-VL and Qwen2.5-VL apply the range to each frame; Qwen3-VL to the frames of one
    video together (``max_pixels`` is shared by all of them).
    """
    if min_pixels is None and max_pixels is None:
        return processor
    from transformers.image_utils import SizeDict

    video_processor = processor.video_processor
    size = dict(vars(video_processor.size)) if video_processor.size is not None else {}
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    video_processor.size = SizeDict(**size)
    return processor


def set_pixel_budgets(
    processor: Any,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    video_min_pixels: int | None = None,
    video_max_pixels: int | None = None,
) -> Any:
    """Set the image and the video pixel ranges in place; None keeps the processor's own.

    The two are independent: an image setting never reaches the video processor (as
    ``AutoProcessor.from_pretrained(max_pixels=...)`` would for Qwen2-VL and Qwen2.5-VL but not
    for Qwen3-VL), so training, inference and the token counter resize frames alike.
    """
    set_pixel_budget(processor, min_pixels, max_pixels)
    if getattr(processor, "video_processor", None) is not None:
        set_video_pixel_budget(processor, video_min_pixels, video_max_pixels)
    return processor


def check_pixel_range(
    min_pixels: int | None, max_pixels: int | None, names: tuple[str, str]
) -> None:
    """Refuse a pixel count below 1 or a minimum above the maximum; ``names`` are the two
    settings as the user spells them (``data.video_min_pixels``, ``--max-pixels``...)."""
    for name, value in zip(names, (min_pixels, max_pixels), strict=True):
        if value is not None and (isinstance(value, bool) or value < 1):
            raise ConfigError(f"{name} must be a positive pixel count, got {value!r}")
    if min_pixels and max_pixels and min_pixels > max_pixels:
        raise ConfigError(
            f"{names[0]} ({min_pixels}) is larger than {names[1]} ({max_pixels}); "
            f"lower {names[0]} or raise {names[1]}"
        )


def load_token_counter(
    model: str | Path,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    video_min_pixels: int | None = None,
    video_max_pixels: int | None = None,
) -> tuple[TokenCounter, bool]:
    """A counter for a model folder (exact) or a family name; returns ``(counter, exact)``.

    For a family name the image and video tokens are exact for the released checkpoints' pixel
    budgets (or the ones given), but the text is counted with medvl's tiny tokenizer, so totals
    are approximate: pass the model folder for exact lengths.
    """
    from medvl.data.tokens import TokenCounter

    if Path(model).is_dir():
        counter = TokenCounter.from_pretrained(model, min_pixels=min_pixels, max_pixels=max_pixels)
        if video_min_pixels is not None or video_max_pixels is not None:
            set_video_pixel_budget(counter.processor, video_min_pixels, video_max_pixels)
            counter = TokenCounter(counter.processor, min_pixels=min_pixels, max_pixels=max_pixels)
        return counter, True
    from medvl.models.registry import get_family
    from medvl.models.tiny import build_processor
    from medvl.models.tokenizer import build_tokenizer

    spec = get_family(str(model))
    processor = build_processor(spec, build_tokenizer(spec.name))
    set_video_pixel_budget(processor, *_released_video_budget(spec))
    set_video_pixel_budget(processor, video_min_pixels, video_max_pixels)
    counter = TokenCounter(
        processor,
        min_pixels=min_pixels or spec.default_min_pixels,
        max_pixels=max_pixels or spec.default_max_pixels,
    )
    return counter, False


def _released_video_budget(spec: Any) -> tuple[int, int]:
    """The video pixel range a released checkpoint of ``spec``'s family loads with.

    Qwen2-VL and Qwen2.5-VL checkpoints ship no video processor file: transformers builds the
    video processor from ``preprocessor_config.json``, so frames get the image range (checked
    on the Qwen2-VL-2B files). For Qwen3-VL the video processor class's own defaults are used.
    """
    if spec.name == "qwen3_vl":
        import transformers

        defaults = getattr(transformers, spec.video_processor_class).size
        return int(defaults["shortest_edge"]), int(defaults["longest_edge"])
    return int(spec.default_min_pixels), int(spec.default_max_pixels)
