"""The phantom dataset: deterministic synthetic medical VQA that a tiny Qwen-VL can learn on CPU.

:func:`generate_phantom` writes ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` (canonical records,
one image each), ``images/phantom-NNNNN.png``, ``dataset_info.json`` and ``README.md``. The same
``(n, seed, fractions)`` always give byte-identical files, so tests, demos and benchmarks can pin
results; another seed gives other data.

Each sample first draws its facts (modality, organ, lesion count, side and size, image size), then
an image that shows them (see :mod:`medvl.data.phantom_images`), then one question about them:

* closed: ``presence`` (yes/no, balanced), ``laterality`` (left/right, only for one-sided lesions),
  ``modality`` (CT/MRI/X-ray), and every multiple-choice variant (options A-D, answer = letter);
* open: ``organ``, ``counting`` (digits), ``size`` (small/large), ``findings`` (one sentence) and
  ``report`` (four templated sentences, fully determined by the facts).

Sides are the patient's, in radiological convention (patient's left = image right). A
``zh_fraction`` share of the records asks and answers in Chinese. Question phrasing varies over a
few templates per type and language, so the model has to read the question.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medvl.data import phantom_text as text
from medvl.data.jsonl import write_records
from medvl.data.phantom_images import (
    ALIGNED_SIZES,
    IMAGE_HALF_OF_SIDE,
    MODALITY_ORGANS,
    ODD_SIZES,
    Scene,
    encode_png,
    place_lesions,
    render,
    sizes_from,
)
from medvl.data.phantom_plan import SPLITS, SampleSpec, pick, schedule
from medvl.data.record import IMAGE_PLACEHOLDER, Message, Record
from medvl.errors import ConfigError
from medvl.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "2"
DATASET = "phantom"
_IMAGE_NAME = re.compile(r"^phantom-\d{5,}\.png$")


@dataclass(frozen=True)
class PhantomSummary:
    """What :func:`generate_phantom` wrote: paths and per-split counts."""

    out_dir: Path
    split_paths: dict[str, Path]
    images_dir: Path
    info_path: Path
    readme_path: Path
    n: int
    seed: int
    counts: dict[str, int]
    question_types: dict[str, dict[str, int]]
    languages: dict[str, dict[str, int]]
    answer_types: dict[str, dict[str, int]]
    mcq: dict[str, int]
    seconds: float


def _lesion_plan(spec: SampleSpec, rng: np.random.Generator) -> tuple[int, str, str | None]:
    """Lesion count, side ("left"/"right"/"bilateral"/"none") and size that suit the question.

    At most two large lesions fit on one side of the smallest organs, so three large one-sided
    lesions become small (laterality questions) or bilateral (all others).
    """
    some = (1, 2, 3), (0.5, 0.3, 0.2)
    if spec.qtype == "laterality":
        count, side = pick(rng, *some), str(spec.target)
    else:
        if spec.qtype == "presence":
            count = 0 if spec.target == "no" else pick(rng, *some)
        elif spec.qtype == "size":
            count = pick(rng, *some)
        elif spec.qtype == "counting":
            count = pick(rng, (0, 1, 2, 3), (0.16, 0.28, 0.28, 0.28))
        else:
            count = pick(rng, (0, 1, 2, 3), (0.35, 0.30, 0.20, 0.15))
        if count == 0:
            return 0, "none", None
        sides = ("left", "right") if count == 1 else ("left", "right", "bilateral")
        side = pick(rng, sides, None if count == 1 else (0.35, 0.35, 0.30))
    size = pick(rng, ("small", "large"))
    if count == 3 and size == "large" and side != "bilateral":
        size, side = ("small", side) if spec.qtype == "laterality" else (size, "bilateral")
    return count, side, size


def _lesion_sides(count: int, side: str, rng: np.random.Generator) -> list[str]:
    if side != "bilateral":
        return [side] * count
    return ["left", "right"] + [pick(rng, ("left", "right"))] * (count - 2)


def _sample_facts(spec: SampleSpec, rng: np.random.Generator) -> text.Facts:
    """Draw the facts of one sample and place its lesions (on a larger image if crowded)."""
    modality = pick(rng, tuple(MODALITY_ORGANS))
    organ = pick(rng, MODALITY_ORGANS[modality])
    count, side, size = _lesion_plan(spec, rng)
    sides = _lesion_sides(count, side, rng)
    width, height = pick(rng, ODD_SIZES if rng.uniform() < 0.2 else ALIGNED_SIZES)
    for w, h in sizes_from(width, height):
        lesions = place_lesions(organ, w, h, sides, str(size), rng) if count else ()
        if lesions is not None:
            scene = Scene(modality, organ, w, h, lesions)
            return text.Facts(modality, organ, count, side, size, scene)
    raise RuntimeError(f"could not place {count} {size} lesions ({side}) in a {organ} phantom")


def _meta(facts: text.Facts, template: str, mcq: bool) -> dict[str, Any]:
    half = {"none": None, "bilateral": "both"}.get(facts.side, IMAGE_HALF_OF_SIDE.get(facts.side))
    return {
        "modality": facts.modality,
        "organ": facts.organ,
        "lesion_count": facts.count,
        "lesion_side": facts.side,
        "lesion_size": facts.size,
        "lesion_image_half": half,
        "lesions": [[les.x, les.y, les.r] for les in facts.scene.lesions],
        "image_size": [facts.scene.width, facts.scene.height],
        "template": template,
        "mcq": mcq,
        "generator": f"phantom-v{GENERATOR_VERSION}",
    }


def _build_record(
    spec: SampleSpec, facts: text.Facts, image: str, rng: np.random.Generator
) -> Record:
    """One canonical record: the question about ``facts`` and its gold answer."""
    templates = text.question_templates(spec.qtype, spec.lang, spec.mcq)
    t = int(rng.integers(len(templates)))
    prompt, options = templates[t], None
    answer = text.answer(spec.qtype, facts, spec.lang)
    if spec.mcq:
        options = text.mcq_options(spec.qtype, facts, spec.lang, str(spec.letter), rng)
        lines = [f"{letter}. {option}" for letter, option in options.items()]
        prompt = "\n".join([prompt, *lines, text.MCQ_INSTRUCTION[spec.lang]])
        answer = str(spec.letter)
    closed = spec.mcq or spec.qtype in text.CLOSED_TYPES
    template_id = f"{'mcq.' if spec.mcq else ''}{spec.qtype}.{spec.lang}.{t}"
    return Record(
        id=f"{DATASET}-{spec.index:05d}",
        dataset=DATASET,
        split=spec.split,
        lang=spec.lang,
        images=[image],
        messages=[Message("user", f"{IMAGE_PLACEHOLDER}\n{prompt}"), Message("assistant", answer)],
        answer=answer,
        options=options,
        answer_type="closed" if closed else "open",
        question_type=spec.qtype,
        meta=_meta(facts, template_id, spec.mcq),
    )


def _check_args(
    n: int, seed: int, val_fraction: float, test_fraction: float, zh_fraction: float
) -> None:
    if n < 1:
        raise ConfigError(f"n must be a positive number of samples, got {n}")
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    for name, value in (
        ("val_fraction", val_fraction),
        ("test_fraction", test_fraction),
        ("zh_fraction", zh_fraction),
    ):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must lie in [0, 1], got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            "val_fraction + test_fraction must be below 1 so that train is not "
            f"empty, got {val_fraction} + {test_fraction}"
        )


def _remove_stale_images(images_dir: Path, keep: set[str]) -> None:
    """Delete phantom PNGs left by an earlier, larger run so the folder matches the records."""
    if not images_dir.is_dir():
        return
    stale = sorted(
        p for p in images_dir.iterdir() if _IMAGE_NAME.match(p.name) and p.name not in keep
    )
    for path in stale:
        path.unlink()
    if stale:
        logger.info("removed %d stale phantom images from %s", len(stale), images_dir)


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write atomically unless the file already holds ``data`` (regenerating rewrites nothing)."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    atomic_write_bytes(path, data, durable=False)


def _tally(records: Sequence[Record], key: str) -> dict[str, int]:
    return dict(sorted(Counter(str(getattr(r, key)) for r in records).items()))


def _summarize(
    out_dir: Path, n: int, seed: int, by_split: dict[str, list[Record]], seconds: float
) -> PhantomSummary:
    return PhantomSummary(
        out_dir=out_dir,
        split_paths={split: out_dir / f"{split}.jsonl" for split in SPLITS},
        images_dir=out_dir / "images",
        info_path=out_dir / "dataset_info.json",
        readme_path=out_dir / "README.md",
        n=n,
        seed=seed,
        counts={s: len(by_split[s]) for s in SPLITS},
        question_types={s: _tally(by_split[s], "question_type") for s in SPLITS},
        languages={s: _tally(by_split[s], "lang") for s in SPLITS},
        answer_types={s: _tally(by_split[s], "answer_type") for s in SPLITS},
        mcq={s: sum(r.options is not None for r in by_split[s]) for s in SPLITS},
        seconds=seconds,
    )


def generate_phantom(
    out_dir: str | Path,
    *,
    n: int = 600,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    zh_fraction: float = 0.2,
) -> PhantomSummary:
    """Write the phantom dataset of ``n`` samples to ``out_dir``; byte-identical per arguments.

    The test split holds every question type once ``n`` >= 28. Raises
    :class:`~medvl.errors.ConfigError` for an argument out of range.
    """
    _check_args(n, seed, val_fraction, test_fraction, zh_fraction)
    start = time.perf_counter()
    out_dir = Path(out_dir)
    root = np.random.SeedSequence(seed)
    specs = schedule(n, val_fraction, test_fraction, zh_fraction, np.random.default_rng(root))
    by_split: dict[str, list[Record]] = {split: [] for split in SPLITS}
    for spec, child in zip(specs, root.spawn(n), strict=True):
        rng = np.random.default_rng(child)
        facts = _sample_facts(spec, rng)
        name = f"{DATASET}-{spec.index:05d}.png"
        _write_if_changed(out_dir / "images" / name, encode_png(render(facts.scene, rng)))
        by_split[spec.split].append(_build_record(spec, facts, f"images/{name}", rng))
    _remove_stale_images(out_dir / "images", {f"{DATASET}-{s.index:05d}.png" for s in specs})
    summary = _summarize(out_dir, n, seed, by_split, seconds=0.0)
    for split in SPLITS:
        write_records(summary.split_paths[split], by_split[split])
    info = _info(summary, val_fraction, test_fraction, zh_fraction)
    atomic_write_json(summary.info_path, info)
    atomic_write_text(summary.readme_path, text.readme(info))
    summary = replace(summary, seconds=round(time.perf_counter() - start, 3))
    counts = ", ".join(f"{s}={c}" for s, c in summary.counts.items())
    logger.info("wrote %d phantom records to %s in %.2fs (%s)", n, out_dir, summary.seconds, counts)
    return summary


def _info(
    summary: PhantomSummary, val_fraction: float, test_fraction: float, zh_fraction: float
) -> dict[str, Any]:
    """The dataset_info.json content: everything needed to regenerate and describe the data."""
    return {
        "dataset": DATASET,
        "generator": "medvl.data.phantom",
        "generator_version": GENERATOR_VERSION,
        "n": summary.n,
        "seed": summary.seed,
        "fractions": {"val": val_fraction, "test": test_fraction, "zh": zh_fraction},
        "laterality_convention": "radiological: the patient's left is on the image's right",
        "splits": {
            split: {
                "file": summary.split_paths[split].name,
                "count": summary.counts[split],
                "question_types": summary.question_types[split],
                "languages": summary.languages[split],
                "answer_types": summary.answer_types[split],
                "multiple_choice": summary.mcq[split],
            }
            for split in SPLITS
        },
    }
