"""The 3-D phantom: deterministic CT/MRI-like volumes with lesions in known slabs, as video VQA.

:func:`generate_phantom_volumes` writes ``volumes.jsonl`` (one canonical record per volume, one
``<video>`` each, ``split`` "all"), the volumes, ``dataset_info.json`` and ``README.md``. Split
it by patient with ``medvl data split`` (several volumes belong to one patient: they share the
anatomy, so they must land in one split). The same arguments always give byte-identical files.

Volumes are written as NIfTI (``volumes/phv-NNNNN.nii.gz``, int16 CT Hounsfield units or MRI
signal, RAS+ affine with the voxel spacing in mm, records use ``volume`` entries with the
modality's window) or, with ``volume_format="frames"``, as PNG slices
(``frames/phv-NNNNN/slice-ZZ.png``, inferior to superior, already windowed and in radiological
orientation: what a NIfTI reader shows) with ``frames`` entries.

Questions (English, and Chinese for a ``zh_fraction`` share), one per volume, with balanced
answers: ``presence`` ("Is there a lesion?" yes/no), ``half`` ("In which half (upper/lower) of
the volume is the lesion?"; upper = superior = the later slices) and ``counting`` (0, 1 or 2).
How the volumes look is described in :mod:`medvl.data.phantom_volume_scene`.
"""

from __future__ import annotations

import gzip
import logging
import re
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.data import phantom_volume_scene as scene_mod
from medvl.data.jsonl import write_records
from medvl.data.phantom_images import encode_png
from medvl.data.phantom_volume_scene import Anatomy, VolumeScene
from medvl.data.record import Message, Record
from medvl.data.video import VIDEO_PLACEHOLDER, VideoSpec
from medvl.errors import ConfigError
from medvl.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "1"
DATASET = "phantom3d"
VOLUME_FORMATS = ("nifti", "frames")
QUESTION_WEIGHTS = (("presence", 0.45), ("half", 0.35), ("counting", 0.20))
VOLUMES_PER_PATIENT = ((1, 2, 3), (0.5, 0.3, 0.2))
QUESTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "presence": {
        "en": (
            "Is there a lesion in this volume?",
            "Does this scan show any lesion?",
            "Are any lesions visible in this series?",
        ),
        "zh": ("该容积图像中是否有病灶？", "这组扫描中能看到病灶吗？"),
    },
    "half": {
        "en": (
            "In which half (upper/lower) of the volume is the lesion?",
            "Is the lesion in the upper or the lower half of the scan?",
        ),
        "zh": ("病灶位于容积的哪一半（上半部/下半部）？", "病灶在扫描范围的上半部还是下半部？"),
    },
    "counting": {
        "en": ("How many lesions are there?", "How many lesions does this volume contain?"),
        "zh": ("该容积中有几个病灶？", "共有多少个病灶？"),
    },
}
ANSWERS = {
    "en": {"yes": "yes", "no": "no", "upper": "upper", "lower": "lower"},
    "zh": {"yes": "是", "no": "否", "upper": "上半部", "lower": "下半部"},
}
_STEM = re.compile(r"^phv-\d{5,}(\.nii\.gz)?$")


@dataclass(frozen=True)
class VolumePlan:
    """One volume's question and the facts it needs, fixed before the volume is drawn."""

    index: int
    patient: int
    qtype: str
    lang: str
    count: int
    half: str | None  # "upper"/"lower", None without lesions


@dataclass(frozen=True)
class VolumeSummary:
    """What :func:`generate_phantom_volumes` wrote."""

    out_dir: Path
    records_path: Path
    n: int
    seed: int
    patients: int
    volumes_per_patient: dict[int, int]
    question_types: dict[str, int]
    answers: dict[str, dict[str, int]]
    languages: dict[str, int]
    volume_format: str
    seconds: float


def _quotas(n: int) -> list[int]:
    """Volumes per question type (largest remainder)."""
    raw = [w * n for _, w in QUESTION_WEIGHTS]
    counts = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _balanced(rng: np.random.Generator, values: Sequence[Any], n: int) -> list[Any]:
    """``n`` values in shuffled blocks that each hold every value once."""
    blocks = -(-n // len(values))
    return [values[j] for _ in range(blocks) for j in rng.permutation(len(values))][:n]


def plan_volumes(n: int, zh_fraction: float, rng: np.random.Generator) -> list[VolumePlan]:
    """Question type, language, lesion count and half of every volume, and its patient.

    Answers are balanced per question type (yes/no, upper/lower, 0/1/2); a patient holds 1-3
    consecutive volumes.
    """
    qtypes = [q for (q, _), k in zip(QUESTION_WEIGHTS, _quotas(n), strict=True) for _ in range(k)]
    qtypes = [qtypes[i] for i in rng.permutation(n)]
    targets = {
        "presence": iter(_balanced(rng, ("yes", "no"), n)),
        "half": iter(_balanced(rng, ("upper", "lower"), n)),
        "counting": iter(_balanced(rng, (0, 1, 2), n)),
    }
    zh = set(rng.permutation(n)[: int(np.floor(n * zh_fraction + 0.5))].tolist())
    sizes, probs = VOLUMES_PER_PATIENT
    patients: list[int] = []
    while len(patients) < n:
        patients += [len(set(patients))] * int(sizes[int(rng.choice(len(sizes), p=probs))])
    plans = []
    for i, qtype in enumerate(qtypes):
        target = next(targets[qtype])
        if qtype == "counting":
            count = int(target)
        else:
            count = 0 if target == "no" else int(rng.integers(1, 3))
        half = target if qtype == "half" else str(rng.choice(["upper", "lower"]))
        lang = "zh" if i in zh else "en"
        plans.append(VolumePlan(i, patients[i], qtype, lang, int(count), half if count else None))
    return plans


def _scene(
    plan: VolumePlan, anatomy: Anatomy, size: int, slices: int, rng: np.random.Generator
) -> VolumeScene:
    modality = str(rng.choice(["CT", "MRI"]))
    for _ in range(50):
        shift = tuple(float(v) for v in rng.uniform(-0.02, 0.02, 3))
        lesions = scene_mod.place_lesions(
            anatomy, shift, plan.count, str(plan.half), rng, scene_mod.FOV_MM / slices
        )
        if lesions is not None:
            return VolumeScene(modality, size, slices, anatomy, shift, lesions)  # type: ignore[arg-type]
    raise RuntimeError(f"could not place {plan.count} lesions in volume {plan.index}")


def _answer(plan: VolumePlan) -> str:
    if plan.qtype == "counting":
        return str(plan.count)
    key = ("yes" if plan.count else "no") if plan.qtype == "presence" else str(plan.half)
    return ANSWERS[plan.lang][key]


def _meta(plan: VolumePlan, scene: VolumeScene, slab: list[int] | None, template: str) -> dict:
    return {
        "patient_id": f"phv-p{plan.patient:04d}",
        "study_id": f"phv-s{plan.index:05d}",
        "modality": scene.modality,
        "lesion_count": plan.count,
        "lesion_half": plan.half,
        "lesion_slab": slab,
        "lesions_mm": [
            [*(round(c, 2) for c in les.centre), round(les.radius, 2)] for les in scene.lesions
        ],
        "shape": [scene.size, scene.size, scene.slices],
        "spacing_mm": [round(s, 4) for s in scene.spacing],
        "slice_order": "inferior to superior",
        "template": template,
        "generator": f"phantom3d-v{GENERATOR_VERSION}",
    }


def _record(
    plan: VolumePlan,
    scene: VolumeScene,
    slab: list[int] | None,
    video: VideoSpec,
    rng: np.random.Generator,
) -> Record:
    templates = QUESTIONS[plan.qtype][plan.lang]
    t = int(rng.integers(len(templates)))
    answer = _answer(plan)
    return Record(
        id=f"{DATASET}-{plan.index:05d}",
        dataset=DATASET,
        split="all",
        lang=plan.lang,
        images=[],
        videos=[video],
        messages=[
            Message("user", f"{VIDEO_PLACEHOLDER}\n{templates[t]}"),
            Message("assistant", answer),
        ],
        answer=answer,
        answer_type="open" if plan.qtype == "counting" else "closed",
        question_type=plan.qtype,
        meta=_meta(plan, scene, slab, f"{plan.qtype}.{plan.lang}.{t}"),
    )


def nifti_bytes(stored: np.ndarray, spacing: Sequence[float]) -> bytes:
    """A gzipped NIfTI-1 file of ``stored`` with a RAS+ affine centred on the volume; gzip's
    timestamp is 0 so equal volumes give equal bytes."""
    import nibabel as nib

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(stored.shape) - 1) / 2 * np.array(spacing)
    image = nib.Nifti1Image(stored, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = b"medvl phantom3d volume (synthetic)"
    return gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    atomic_write_bytes(path, data, durable=False)


def _write_volume(out_dir: Path, stem: str, scene: VolumeScene, stored: np.ndarray, fmt: str):
    """Write one volume; returns its video entry (paths relative to ``out_dir``)."""
    if fmt == "nifti":
        name = f"volumes/{stem}.nii.gz"
        _write_if_changed(out_dir / name, nifti_bytes(stored, scene.spacing))
        window = scene_mod.WINDOWS[scene.modality]
        return VideoSpec(volume=name, axis="axial", window=window)  # type: ignore[arg-type]
    names = []
    for z, frame in enumerate(scene_mod.axial_frames(stored, scene.modality)):
        name = f"frames/{stem}/slice-{z:02d}.png"
        _write_if_changed(out_dir / name, encode_png(frame))
        names.append(name)
    return VideoSpec(frames=tuple(names))


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Delete volumes or frame folders of an earlier, larger run (and of the other format)."""
    for folder in (out_dir / "volumes", out_dir / "frames"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if _STEM.match(path.name) and str(path.relative_to(out_dir)) not in keep:
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def _check_args(n: int, seed: int, size: int, slices: int, zh: float, fmt: str) -> None:
    checks = (
        (n >= 1, f"n must be a positive number of volumes, got {n}"),
        (seed >= 0, f"seed must be a non-negative integer, got {seed}"),
        (
            scene_mod.MIN_SIZE <= size <= scene_mod.MAX_SIZE,
            f"size must be {scene_mod.MIN_SIZE}..{scene_mod.MAX_SIZE} pixels, got {size}",
        ),
        (
            scene_mod.MIN_SLICES <= slices <= scene_mod.MAX_SLICES,
            f"slices must be {scene_mod.MIN_SLICES}..{scene_mod.MAX_SLICES}, got {slices}",
        ),
        (0.0 <= zh <= 1.0, f"zh_fraction must lie in [0, 1], got {zh}"),
        (fmt in VOLUME_FORMATS, f"volume_format must be one of {VOLUME_FORMATS}, got {fmt!r}"),
    )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def generate_phantom_volumes(
    out_dir: str | Path,
    *,
    n: int = 200,
    seed: int = 0,
    slices: int = 16,
    size: int = 64,
    zh_fraction: float = 0.2,
    volume_format: str = "nifti",
) -> VolumeSummary:
    """Write ``n`` phantom volumes and their records to ``out_dir``; byte-identical per arguments.

    Raises :class:`~medvl.errors.ConfigError` for an argument out of range.
    """
    _check_args(n, seed, size, slices, zh_fraction, volume_format)
    start = time.perf_counter()
    out_dir = Path(out_dir)
    root = np.random.SeedSequence(seed)
    plans = plan_volumes(n, zh_fraction, np.random.default_rng(root))
    n_patients = plans[-1].patient + 1
    seeds = root.spawn(n + n_patients)
    anatomies = [scene_mod.draw_anatomy(np.random.default_rng(s)) for s in seeds[n:]]
    records, keep = [], set()
    for plan, child in zip(plans, seeds[:n], strict=True):
        rng = np.random.default_rng(child)
        scene = _scene(plan, anatomies[plan.patient], size, slices, rng)
        display = scene_mod.render_display(scene, rng)
        stored = scene_mod.to_stored(display, scene.modality)
        stem = f"phv-{plan.index:05d}"
        video = _write_volume(out_dir, stem, scene, stored, volume_format)
        keep.add(f"volumes/{stem}.nii.gz" if volume_format == "nifti" else f"frames/{stem}")
        records.append(_record(plan, scene, scene_mod.bright_slab(display), video, rng))
    _remove_stale(out_dir, keep)
    records_path = out_dir / "volumes.jsonl"
    write_records(records_path, records)
    summary = _summary(out_dir, records_path, plans, records, seed, volume_format, start)
    atomic_write_json(out_dir / "dataset_info.json", _info(summary, slices, size, zh_fraction))
    atomic_write_text(out_dir / "README.md", _readme(summary, slices, size))
    logger.info("wrote %d phantom volumes to %s in %.2fs", n, out_dir, summary.seconds)
    return summary


def _summary(
    out_dir: Path,
    records_path: Path,
    plans: list[VolumePlan],
    records: list[Record],
    seed: int,
    volume_format: str,
    start: float,
) -> VolumeSummary:
    per_patient = Counter(Counter(p.patient for p in plans).values())
    answers: dict[str, Counter[str]] = {}
    for record in records:
        answers.setdefault(str(record.question_type), Counter())[str(record.answer)] += 1
    return VolumeSummary(
        out_dir=out_dir,
        records_path=records_path,
        n=len(plans),
        seed=seed,
        patients=plans[-1].patient + 1,
        volumes_per_patient=dict(sorted(per_patient.items())),
        question_types=dict(sorted(Counter(p.qtype for p in plans).items())),
        answers={q: dict(sorted(c.items())) for q, c in sorted(answers.items())},
        languages=dict(sorted(Counter(p.lang for p in plans).items())),
        volume_format=volume_format,
        seconds=round(time.perf_counter() - start, 3),
    )


def _info(summary: VolumeSummary, slices: int, size: int, zh_fraction: float) -> dict[str, Any]:
    return {
        "dataset": DATASET,
        "generator": "medvl.data.phantom_volumes",
        "generator_version": GENERATOR_VERSION,
        "n": summary.n,
        "seed": summary.seed,
        "slices": slices,
        "size": size,
        "zh_fraction": zh_fraction,
        "volume_format": summary.volume_format,
        "patients": summary.patients,
        "volumes_per_patient": {str(k): v for k, v in summary.volumes_per_patient.items()},
        "question_types": summary.question_types,
        "answers": summary.answers,
        "languages": summary.languages,
        "slice_order": "inferior to superior; upper half = superior = later slices",
    }


def _readme(summary: VolumeSummary, slices: int, size: int) -> str:
    return "\n".join(
        [
            "# Phantom 3-D medical VQA dataset",
            "",
            f"Synthetic volumes from `medvl.data.phantom_volumes` version {GENERATOR_VERSION}, "
            f"n={summary.n}, seed={summary.seed}, {slices} slices of {size}x{size} px "
            f"({summary.volume_format}).",
            "Regenerating with the same arguments gives byte-identical files.",
            "Not real patient data: for tests, demos and smoke training.",
            "",
            f"{summary.patients} patients hold 1-3 volumes each (meta `patient_id`, `study_id`);",
            "split by patient: `medvl data split volumes.jsonl --out splits`.",
            "Lesions are bright spheres, all in one half of the volume (upper = superior).",
            "",
            f"Question types: {summary.question_types}; answers: {summary.answers}.",
            "",
        ]
    )
