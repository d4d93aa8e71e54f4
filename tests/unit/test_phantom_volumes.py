"""Tests of the 3-D phantom: determinism, the NIfTI files, the facts each question asks about
(read back from the volumes, not from the generator's own bookkeeping), balance and the CLI."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medvl.cli.main import main
from medvl.data.jsonl import read_records
from medvl.data.medimage import WINDOW_PRESETS, apply_window, load_image
from medvl.data.phantom_images import BACKGROUND_MAX, LESION_LEVEL
from medvl.data.phantom_volume_scene import FOV_MM
from medvl.data.phantom_volumes import ANSWERS, VolumeSummary, generate_phantom_volumes
from medvl.data.record import Record
from medvl.data.video import VIDEO_PLACEHOLDER
from medvl.errors import ConfigError, MedvlError

N, SIZE, SLICES = 36, 48, 12
# Halfway between the brightest anatomy and a lesion, in 8-bit display values.
BRIGHT = int(255 * (BACKGROUND_MAX + LESION_LEVEL) / 2)


@pytest.fixture(scope="module")
def nifti(tmp_path_factory: pytest.TempPathFactory) -> VolumeSummary:
    return generate_phantom_volumes(
        tmp_path_factory.mktemp("nifti"), n=N, seed=3, size=SIZE, slices=SLICES
    )


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> VolumeSummary:
    return generate_phantom_volumes(
        tmp_path_factory.mktemp("frames"),
        n=N,
        seed=3,
        size=SIZE,
        slices=SLICES,
        volume_format="frames",
    )


def window(record: Record) -> tuple[float, float]:
    value = record.videos[0].window
    return WINDOW_PRESETS[value] if isinstance(value, str) else value


def display(summary: VolumeSummary, record: Record) -> np.ndarray:
    """The record's volume as 8-bit display values, [x, y, z], read with nibabel."""
    image = nib.load(summary.out_dir / str(record.videos[0].volume))
    return apply_window(np.asarray(image.dataobj), window(record))


def all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_same_seed_gives_identical_bytes_and_another_seed_other_data(nifti, tmp_path):
    again = generate_phantom_volumes(tmp_path / "a", n=N, seed=3, size=SIZE, slices=SLICES)
    assert all_files(again.out_dir) == all_files(nifti.out_dir)
    other = generate_phantom_volumes(tmp_path / "b", n=N, seed=4, size=SIZE, slices=SLICES)
    assert other.records_path.read_bytes() != nifti.records_path.read_bytes()


def test_nifti_files_have_the_affine_spacing_and_stored_values(nifti):
    for record in read_records(nifti.records_path):
        spec = record.videos[0]
        assert spec.kind == "volume" and spec.axis == "axial"
        image = nib.load(nifti.out_dir / str(spec.volume))
        spacing = (FOV_MM / SIZE, FOV_MM / SIZE, FOV_MM / SLICES)
        assert image.shape == (SIZE, SIZE, SLICES) and image.get_data_dtype() == np.int16
        assert image.header.get_zooms() == pytest.approx(spacing)
        assert np.allclose(image.affine[:3, :3], np.diag(spacing))  # RAS+, no reorientation
        assert int(image.header["qform_code"]) == int(image.header["sform_code"]) == 1
        assert image.header.get_xyzt_units()[0] == "mm"
        data = np.asarray(image.dataobj)
        if record.meta["modality"] == "CT":
            assert spec.window == "abdomen" and data.min() == -1000  # air around the body
        else:
            assert data.min() >= 0
        assert record.meta["spacing_mm"] == pytest.approx(spacing, abs=1e-4)


def test_every_answer_is_what_the_volume_shows(nifti):
    """Count the bright connected blobs and the half they lie in, from the voxels alone."""
    for record in read_records(nifti.records_path):
        pixels = display(nifti, record)
        blobs, count = ndimage.label(pixels > BRIGHT)
        assert count == record.meta["lesion_count"], record.id
        if count:
            z = np.flatnonzero((blobs > 0).any(axis=(0, 1)))
            half = "lower" if z.max() < SLICES // 2 else "upper" if z.min() >= SLICES // 2 else "?"
            assert half == record.meta["lesion_half"], record.id
            assert [z.min(), z.max()] == record.meta["lesion_slab"], record.id
        words = ANSWERS[record.lang]
        expected = {
            "presence": words["yes" if count else "no"],
            "half": words.get(str(record.meta["lesion_half"])),
            "counting": str(count),
        }[str(record.question_type)]
        assert record.answer == expected == record.messages[1].content
        assert record.messages[0].content.startswith(VIDEO_PLACEHOLDER + "\n")


def test_answers_are_balanced_and_patients_hold_several_volumes(nifti):
    records = read_records(nifti.records_path)
    by_type: dict[str, Counter[str]] = {}
    for r in records:
        key = str(r.meta["lesion_half"] if r.question_type == "half" else r.meta["lesion_count"])
        if r.question_type == "presence":
            key = "yes" if r.meta["lesion_count"] else "no"
        by_type.setdefault(str(r.question_type), Counter())[key] += 1
    assert set(by_type) == {"presence", "half", "counting"}
    for qtype, counts in by_type.items():
        expected = {"presence": 2, "half": 2, "counting": 3}[qtype]
        assert len(counts) == expected and max(counts.values()) - min(counts.values()) <= 1
    patients = Counter(r.meta["patient_id"] for r in records)
    assert max(patients.values()) >= 2 and len(patients) < len(records)
    assert len({r.meta["study_id"] for r in records}) == len(records)
    assert {r.lang for r in records} == {"en", "zh"}


def test_frames_are_the_nifti_slices_as_a_reader_shows_them(nifti, frames):
    """PNG slices equal medimage's own NIfTI slice reader (window, radiological orientation)."""
    a, b = read_records(nifti.records_path), read_records(frames.records_path)
    for ra, rb in zip(a, b, strict=True):
        assert ra.to_dict() | {"videos": None} == rb.to_dict() | {"videos": None}
        spec, paths = ra.videos[0], rb.videos[0].paths(frames.out_dir)
        assert len(paths) == SLICES
        for z, path in enumerate(paths):
            shown = load_image(nifti.out_dir / str(spec.volume), window=window(ra), slice_index=z)
            assert np.array_equal(np.asarray(shown), np.asarray(Image.open(path).convert("RGB")))


def test_load_frames_reads_both_formats_alike(nifti, frames):
    from medvl.data.volumes import load_frames

    record_a = read_records(nifti.records_path)[0]
    record_b = read_records(frames.records_path)[0]
    try:
        from_volume = load_frames(record_a.videos[0], nifti.out_dir)
    except MedvlError as exc:  # the NIfTI reader of issue 18 has not landed
        pytest.skip(f"load_frames cannot read volumes yet: {exc}")
    from_frames = load_frames(record_b.videos[0], frames.out_dir)
    assert [np.asarray(f).tolist() for f in from_volume] == [
        np.asarray(f).tolist() for f in from_frames
    ]


def test_regenerating_smaller_or_in_the_other_format_removes_stale_files(tmp_path):
    generate_phantom_volumes(tmp_path, n=6, seed=0, size=32, slices=4)
    generate_phantom_volumes(tmp_path, n=3, seed=0, size=32, slices=4)
    assert sorted(p.name for p in (tmp_path / "volumes").iterdir()) == [
        f"phv-0000{i}.nii.gz" for i in range(3)
    ]
    generate_phantom_volumes(tmp_path, n=2, seed=0, size=32, slices=4, volume_format="frames")
    assert not list((tmp_path / "volumes").iterdir())
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["phv-00000", "phv-00001"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be"),
        ({"size": 8}, "size must be"),
        ({"slices": 2}, "slices must be"),
        ({"volume_format": "dicom"}, "volume_format"),
    ],
)
def test_bad_arguments_raise_config_errors(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        generate_phantom_volumes(tmp_path, **kwargs)


def test_cli_writes_volumes_and_refuses_bad_input_with_exit_2(tmp_path, capsys):
    out = tmp_path / "pv"
    args = ["data", "phantom", "--volumes", "--out", str(out), "--n", "8", "--size", "32"]
    assert main([*args, "--slices", "6"]) == 0
    printed = capsys.readouterr().out
    assert "phantom volumes (n 8" in printed and "split by patient" in printed
    assert len(read_records(out / "volumes.jsonl")) == 8
    assert main([*args, "--slices", "1"]) == 2
    assert "slices must be" in capsys.readouterr().err
