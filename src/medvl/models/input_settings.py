"""What, besides the weights, changes what a local model says from the same request: its
precision and quantization, how images and video frames are resized (the pixel budgets), and,
when set, the attention kernel and a merged adapter.

The evaluator's prediction cache key and ``predict``'s resume check include these settings, so
predictions made under other settings are never reused or mixed with these
(:meth:`medvl.infer.engine.Engine.input_settings`).
"""

from __future__ import annotations

from typing import Any

from medvl.models.loading import LoadOptions, dtype_name, resolve_device, resolve_dtype

#: Load options, besides the weights, that change what a local model says: quantization and how
#: images and video frames are resized. With the resolved precision they enter the prediction
#: cache key, so predictions made under other settings are never reused as these.
OUTPUT_OPTIONS = (
    "quantization",
    "min_pixels",
    "max_pixels",
    "video_min_pixels",
    "video_max_pixels",
)


#: Options that change outputs only numerically (the attention kernel; merging the last adapter
#: into the weights, "not exact peft"): in the key only when set, so keys made at their defaults
#: stay valid.
OUTPUT_OPTIONS_IF_SET = ("attn_implementation", "merge_adapters")


def input_settings(options: LoadOptions | None, dtype: Any = None) -> dict[str, Any]:
    """The precision (``dtype`` when the model is loaded, else resolved from ``options`` on
    this machine: ``auto`` is bf16 on a GPU, fp32 on a CPU), :data:`OUTPUT_OPTIONS`, and
    :data:`OUTPUT_OPTIONS_IF_SET` that are set."""
    options = options or LoadOptions()
    if dtype is None:
        dtype = resolve_dtype(options.dtype, resolve_device(options.device))
    settings = {"dtype": dtype_name(dtype), **{k: getattr(options, k) for k in OUTPUT_OPTIONS}}
    settings.update({k: getattr(options, k) for k in OUTPUT_OPTIONS_IF_SET if getattr(options, k)})
    return settings
