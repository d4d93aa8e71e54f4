"""Reading a record's videos as ordered RGB frames (slices of a series or volume).

:func:`load_frames` is the one entry point every consumer uses (token counting, training
features, inference, the UI). ``frames`` entries load each file with
:func:`medvl.data.medimage.load_image`, in the order given.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from medvl.data.medimage import load_image
from medvl.data.video import VideoSpec
from medvl.errors import MedvlError


def load_frames(spec: VideoSpec, base_dir: str | Path) -> list[Image.Image]:
    """The entry's frames in order, as 8-bit RGB images of one size."""
    if spec.frames is not None:
        return [load_image(path, window=spec.window) for path in spec.paths(base_dir)]
    raise MedvlError(f"video kind {spec.kind!r} is not readable yet")  # filled in by issue 18
