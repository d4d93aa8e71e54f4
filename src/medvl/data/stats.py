"""Dataset statistics: what a set of records holds, as a JSON-ready dict, a text table and plots.

Why: before training or evaluating, one wants to see at a glance how records spread over datasets,
splits, answer and question types, modalities and languages, how long the answers are (a model
trained on one-word answers will answer in one word) and how many images each record carries.

Answer length counts words and characters of the gold answer text (the option text for multiple
choice). "Words" are Latin/digit runs plus single CJK characters, so Chinese answers get a
meaningful count too. Token counts come from a token counter elsewhere and are passed in:
``token_counts`` is each record's whole sequence (chat template, text and image tokens), and
``image_token_counts`` its image tokens, ``video_token_counts`` its video tokens (the
``<|video_pad|>`` tokens); text tokens are the difference (the chat template, the
``<|vision_start|>``/``<|vision_end|>`` markers and Qwen3-VL's video timestamps count as text).

Videos (CT/MRI series, volumes, frame lists) are counted per record, by kind, and by frames:
a ``frames`` entry's list length or a ``sample.n`` without a slab is known from the record
itself; other entries are known only from ``video_frame_counts`` (each record's total frames,
as validation measured them), else counted as unknown.

Modality and organ are read from the keys publishers use: ``meta.modality`` (SLAKE, phantom),
else MedVLM-R1/HuatuoGPT's ``meta.subset`` (``"MR (Mag-netic Resonance Imaging)"`` -> ``MRI``,
``"CT(Computed Tomography)"`` -> ``CT``, ``"X-Ray"`` -> ``X-ray``; other subsets as written),
else OmniMedVQA's ``meta.modality_type``; organ from ``meta.organ``, else VQA-RAD's
``meta.image_organ`` (HEAD/CHEST/ABD), else SLAKE's ``meta.location``.
"""

from __future__ import annotations

import io
import itertools
import logging
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medvl.data.record import Record
from medvl.fileio import atomic_write_bytes

logger = logging.getLogger(__name__)

LENGTH_BINS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200)  # lower edges; last bin is open-ended
TOKEN_BINS = (0, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
CATEGORIES = ("dataset", "split", "answer_type", "question_type", "modality", "organ", "lang")
#: meta keys read for a derived category, first present wins.
META_SOURCES = {
    "modality": ("modality", "subset", "modality_type"),
    "organ": ("organ", "image_organ", "location"),
}
#: (words in a lower-cased subset name, modality): MedVLM-R1's and HuatuoGPT's subset labels.
SUBSET_MODALITIES = (
    (("magnetic", "mri", "mr "), "MRI"),
    (("computed tomography", "ct(", "ct "), "CT"),
    (("x-ray", "xray", "x ray"), "X-ray"),
)
#: (stats key, title) of the token sections, in print order.
TOKEN_SECTIONS = (
    ("tokens", "tokens per record (text + image + video)"),
    ("text_tokens", "text tokens per record"),
    ("image_tokens", "image tokens per record"),
    ("video_tokens", "video tokens per record"),
)
FRAME_BINS = (0, 1, 2, 4, 8, 16, 32, 64, 128)
_WORD = re.compile(r"[A-Za-z0-9]+(?:['.-][A-Za-z0-9]+)*|[\u3400-\u9fff]")
UNKNOWN = "unknown"


def answer_text(record: Record) -> str:
    """The gold answer as text: the option text for multiple choice, else answer or reference."""
    answer = record.answer if record.answer is not None else record.reference
    if record.options and answer in record.options:
        return record.options[answer] or answer
    return answer or ""


def count_words(text: str) -> int:
    """Latin/digit words plus CJK characters (each Chinese character counts as one word)."""
    return len(_WORD.findall(text))


def histogram(values: Sequence[int], edges: Sequence[int]) -> dict[str, int]:
    """Counts per bin labelled "lo-hi" (inclusive) with an open last bin "lo+"; empty bins kept."""
    labels = [
        f"{lo}" if hi - lo == 1 else f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)
    ] + [f"{edges[-1]}+"]
    counts = dict.fromkeys(labels, 0)
    for value in values:
        index = sum(value >= edge for edge in edges) - 1
        counts[labels[max(index, 0)]] += 1
    return counts


def summarize(values: Sequence[int]) -> dict[str, float | int | None]:
    """min, max, mean and median of ``values`` (None for an empty list)."""
    if not values:
        return {"min": None, "max": None, "mean": None, "median": None}
    return {
        "min": min(values),
        "max": max(values),
        "mean": round(statistics.fmean(values), 3),
        "median": statistics.median(values),
    }


def modality_of_subset(subset: str) -> str:
    """MedVLM-R1/HuatuoGPT's subset label as a modality: ``"CT(Computed Tomography)"`` -> CT."""
    text = f"{subset.strip().lower()} "
    for words, modality in SUBSET_MODALITIES:
        if text.startswith(words) or any(w in text for w in words if len(w) > 3):
            return modality
    return subset.strip()


def _category(record: Record, name: str) -> str:
    if name not in META_SOURCES:
        value = getattr(record, name)
        return str(value) if value not in (None, "") else UNKNOWN
    for key in META_SOURCES[name]:
        value = record.meta.get(key)
        if value not in (None, ""):
            return modality_of_subset(str(value)) if key == "subset" else str(value)
    return UNKNOWN


def _image_stats(records: Sequence[Record], base_dir: str | Path | None) -> dict[str, Any]:
    per_record = Counter(len(r.images) for r in records)
    if base_dir is None:
        paths = {image for r in records for image in r.images}
    else:
        paths = {str(path) for r in records for path in r.image_paths(base_dir)}
    stats: dict[str, Any] = {
        "images_per_record": {str(k): per_record[k] for k in sorted(per_record)},
        "distinct_images": len(paths),
    }
    if base_dir is not None:
        stats["missing_images"] = sum(not Path(p).is_file() for p in paths)
    return stats


def _frames_in_record(record: Record) -> int | None:
    """Frames of all the record's videos when the record alone says (None otherwise)."""
    total = 0
    for video in record.videos:
        if video.frames is not None:
            total += len(video.frames)
        elif "n" in video.sample and "slab" not in video.sample:
            total += int(video.sample["n"])
        else:
            return None
    return total


def _video_stats(
    records: Sequence[Record], frame_counts: Sequence[int | None] | None
) -> dict[str, Any]:
    per_record = Counter(len(r.videos) for r in records)
    kinds = Counter(v.kind for r in records for v in r.videos)
    with_videos = [i for i, r in enumerate(records) if r.videos]
    frames = [
        frame_counts[i]
        if frame_counts is not None and frame_counts[i] is not None
        else _frames_in_record(records[i])
        for i in with_videos
    ]
    known = [f for f in frames if f is not None]
    return {
        "videos_per_record": {str(k): per_record[k] for k in sorted(per_record)},
        "videos": sum(kinds.values()),
        "kinds": dict(kinds.most_common()),
        "frames_per_record": {
            "histogram": histogram(known, FRAME_BINS),
            "summary": summarize(known),
        },
        "frames_unknown": len(frames) - len(known),
    }


def dataset_stats(
    records: Sequence[Record],
    base_dir: str | Path | None = None,
    *,
    token_counts: Sequence[int] | None = None,
    image_token_counts: Sequence[int] | None = None,
    video_token_counts: Sequence[int] | None = None,
    video_frame_counts: Sequence[int | None] | None = None,
) -> dict[str, Any]:
    """Counts and length distributions of ``records`` as a JSON-serialisable dict.

    Keys: ``n_records``; ``counts`` (per :data:`CATEGORIES`; modality and organ from the meta
    keys of :data:`META_SOURCES`, missing values as "unknown"); ``answer_words``/``answer_chars``
    (``histogram`` and ``summary``); ``images`` (records per image count, distinct images and,
    when ``base_dir`` is given, how many are missing on disk); ``tokens`` (whole sequence) when
    ``token_counts`` is given, ``image_tokens`` when ``image_token_counts`` is,
    ``video_tokens`` when ``video_token_counts`` is, and ``text_tokens`` (the total less the
    image and video tokens given) when the total and image tokens are; ``videos`` (records per
    video count, videos by kind, frames per record with videos) when any record has videos.
    One count per record each (``video_frame_counts``: each record's total frames, or None).
    """
    records = list(records)
    for name, counts in (
        ("token_counts", token_counts),
        ("image_token_counts", image_token_counts),
        ("video_token_counts", video_token_counts),
        ("video_frame_counts", video_frame_counts),
    ):
        if counts is not None and len(counts) != len(records):
            raise ValueError(
                f"{name} has {len(counts)} values for {len(records)} records; "
                "pass one count per record"
            )
    words = [count_words(answer_text(r)) for r in records]
    chars = [len(answer_text(r)) for r in records]
    stats: dict[str, Any] = {
        "n_records": len(records),
        "counts": {
            name: dict(Counter(_category(r, name) for r in records).most_common())
            for name in CATEGORIES
        },
        "answer_words": {"histogram": histogram(words, LENGTH_BINS), "summary": summarize(words)},
        "answer_chars": {"histogram": histogram(chars, LENGTH_BINS), "summary": summarize(chars)},
        "images": _image_stats(records, base_dir),
    }
    if any(r.videos for r in records):
        stats["videos"] = _video_stats(records, video_frame_counts)
    columns: dict[str, list[int]] = {}
    if token_counts is not None:
        columns["tokens"] = [int(t) for t in token_counts]
    if image_token_counts is not None:
        columns["image_tokens"] = [int(t) for t in image_token_counts]
    if video_token_counts is not None:
        columns["video_tokens"] = [int(t) for t in video_token_counts]
    if "tokens" in columns and "image_tokens" in columns:
        videos = columns.get("video_tokens", [0] * len(records))
        columns["text_tokens"] = [
            t - i - v
            for t, i, v in zip(columns["tokens"], columns["image_tokens"], videos, strict=True)
        ]
    for key, _ in TOKEN_SECTIONS:
        if key in columns:
            values = columns[key]
            stats[key] = {"histogram": histogram(values, TOKEN_BINS), "summary": summarize(values)}
    return stats


def _section(title: str, rows: dict[str, Any], total: int | None = None) -> list[str]:
    width = max([len(str(k)) for k in rows] + [len(title)])
    lines = [title, "-" * (width + 18)]
    for key, value in rows.items():
        share = f"  {100 * value / total:5.1f}%" if total and isinstance(value, int) else ""
        lines.append(f"{key!s:<{width}}  {value!s:>8}{share}")
    return [*lines, ""]


def format_stats_table(stats: dict[str, Any]) -> str:
    """A plain-text report of :func:`dataset_stats`' output, one aligned table per section."""
    total = stats["n_records"]
    lines = [f"records: {total}", ""]
    for name, counts in stats["counts"].items():
        lines += _section(name, counts, total)
    for key, title in (
        ("answer_words", "answer length (words)"),
        ("answer_chars", "answer length (chars)"),
        *TOKEN_SECTIONS,
    ):
        if key in stats:
            lines += _section(title, stats[key]["histogram"], total)
            lines += _section(f"{title}: summary", stats[key]["summary"])
    images = stats["images"]
    lines += _section("images per record", images["images_per_record"], total)
    lines += _section("images", {k: v for k, v in images.items() if k != "images_per_record"})
    videos = stats.get("videos")
    if videos:
        lines += _section("videos per record", videos["videos_per_record"], total)
        lines += _section("videos by kind", videos["kinds"], videos["videos"])
        frames = videos["frames_per_record"]
        lines += _section("frames per record with videos", frames["histogram"])
        lines += _section("frames per record: summary", frames["summary"])
        if videos["frames_unknown"]:
            lines += _section("frames", {"unknown (pass --model)": videos["frames_unknown"]})
    return "\n".join(lines).rstrip() + "\n"


def plot_stats(stats: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Bar charts (PNG) of each count and histogram in ``stats``; [] when matplotlib is missing.

    matplotlib is optional: without it a warning is logged and no file is written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed; no plots written (pip install matplotlib)")
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = {f"counts_{name}": counts for name, counts in stats["counts"].items()}
    for key in ("answer_words", "answer_chars", *(k for k, _ in TOKEN_SECTIONS)):
        if key in stats:
            charts[key] = stats[key]["histogram"]
    charts["images_per_record"] = stats["images"]["images_per_record"]
    if "videos" in stats:
        charts["videos_per_record"] = stats["videos"]["videos_per_record"]
        charts["frames_per_record"] = stats["videos"]["frames_per_record"]["histogram"]
    paths = []
    for name, data in charts.items():
        fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(data) + 2), 3.5))
        ax.bar([str(k) for k in data], list(data.values()), color="#4a7ab0")
        ax.set_title(name.replace("_", " "))
        ax.set_ylabel("records")
        ax.tick_params(axis="x", labelrotation=45)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        path = out_dir / f"{name}.png"
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths
