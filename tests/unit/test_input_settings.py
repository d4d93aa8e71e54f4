"""The input settings in the prediction cache key and predict's resume check."""

from __future__ import annotations

from medvl.models.input_settings import input_settings
from medvl.models.loading import LoadOptions


def test_defaults_keep_the_keys_made_before():
    """At their defaults the attention kernel and adapter merge are left out (old keys hold)."""
    assert input_settings(LoadOptions(dtype="fp32")) == {
        "dtype": "fp32",
        "quantization": None,
        "min_pixels": None,
        "max_pixels": None,
        "video_min_pixels": None,
        "video_max_pixels": None,
    }


def test_kernel_and_merged_adapter_change_the_settings():
    """Both change outputs numerically, so predictions made with them are not reused."""
    plain = input_settings(LoadOptions(dtype="fp32"))
    eager = input_settings(LoadOptions(dtype="fp32", attn_implementation="eager"))
    merged = input_settings(LoadOptions(dtype="fp32", merge_adapters=True))
    assert eager == {**plain, "attn_implementation": "eager"}
    assert merged == {**plain, "merge_adapters": True}
