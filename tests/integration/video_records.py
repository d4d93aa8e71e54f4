"""Hand-made yes/no training records with 4-slice ``frames`` videos and images, shared by the
video training tests (test_train_video.py, test_grpo_video.py): noise PNGs written under a
data root, one record per entry, the answer ``no`` for even and ``yes`` for odd indices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from medvl.data.jsonl import write_records
from medvl.data.record import Record


def noise_png(path: Path, size: tuple[int, int], sigma: int) -> str:
    """A Gaussian-noise PNG at ``path`` (``sigma`` its spread; Pillow draws fresh noise each
    call); returns its path relative to the data root (two levels up)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise(size, sigma).convert("RGB").save(path)
    return str(path.relative_to(path.parent.parent))


def frames_video(root: Path, i: int) -> dict[str, Any]:
    """Record ``i``'s video: four 64x48 slices ``ct/r{i}-{k}.png``."""
    return {
        "frames": [noise_png(root / "ct" / f"r{i}-{k}.png", (64, 48), 10 * i + k) for k in range(4)]
    }


def write_yes_no(root: Path, media: list[tuple[list[dict[str, Any]], list[str]]]) -> Path:
    """``root/train.jsonl`` with one closed yes/no record per ``(videos, images)`` of ``media``:
    the user turn is a ``<video>`` per video, an ``<image>`` per image, then the question."""
    records = []
    for i, (videos, images) in enumerate(media):
        prefix = "<video>\n" * len(videos) + "<image>\n" * len(images)
        answer = "yes" if i % 2 else "no"
        records.append(
            Record(
                id=f"r{i}",
                dataset="t",
                split="train",
                lang="en",
                images=images,
                videos=videos,
                messages=[
                    {"role": "user", "content": prefix + "Is there a lesion?"},
                    {"role": "assistant", "content": answer},
                ],
                answer=answer,
                answer_type="closed",
            )
        )
    path = root / "train.jsonl"
    write_records(path, records)
    return path
