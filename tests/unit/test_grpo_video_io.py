"""How often GRPO reads a record's videos.

Prompt-length check (``video_shape``), through validation's VideoShapes:

- The shape equals the frames :func:`medvl.data.volumes.load_frames` gives (count and size,
  a coronal cut of thick slices resized to square pixels included).
- One ``VideoShapes`` per run reads a volume shared by several records once.
- A missing volume raises a readable MedvlError naming the file.

Rows (``PromptTransform``): TRL asks for each prompt ``num_generations`` times per batch and
for the same batch several times in a row; each record's frames are read once per batch, the
repeated batch reuses them, and only the last batch is kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import medvl.data.volumes as volumes
from medvl.data.record import Record
from medvl.data.validate_video import VideoShapes
from medvl.data.video import VideoSpec
from medvl.errors import MedvlError
from medvl.train import grpo_data
from medvl.train.grpo_data import PromptTransform, video_shape
from medvl.train.prompts import prompt_template


def _volume(path: Path) -> Path:
    """A 40 x 32 x 12 int16 NIfTI volume, 1 x 1 x 2.5 mm voxels (RAS+ voxel order)."""
    import nibabel as nib

    voxels = np.random.default_rng(3).integers(-500, 500, size=(40, 32, 12)).astype(np.int16)
    nib.save(nib.Nifti1Image(voxels, np.diag([1.0, 1.0, 2.5, 1.0])), path)
    return path


@pytest.mark.parametrize(
    ("axis", "sample", "expected"),
    [
        ("axial", {}, (12, 40, 32)),  # every slice; x across, y down
        ("axial", {"n": 3}, (3, 40, 32)),
        ("coronal", {}, (32, 40, 30)),  # 12 slices of 2.5 mm -> 30 px at 1 mm
    ],
)
def test_volume_shape_is_the_shape_of_the_loaded_frames(tmp_path, axis, sample, expected):
    _volume(tmp_path / "ct.nii.gz")
    spec = VideoSpec.from_dict({"volume": "ct.nii.gz", "axis": axis, "sample": sample})
    frames = volumes.load_frames(spec, tmp_path)
    assert video_shape(spec, tmp_path) == (len(frames), *frames[0].size) == expected


def test_one_run_reads_a_shared_volume_once(tmp_path, monkeypatch):
    _volume(tmp_path / "ct.nii.gz")
    calls = []
    real = volumes.load_frames

    def counting(spec, base_dir):
        calls.append(spec)
        return real(spec, base_dir)

    monkeypatch.setattr(volumes, "load_frames", counting)
    shapes = VideoShapes(tmp_path)
    spec = VideoSpec.from_dict({"volume": "ct.nii.gz"})
    shapes_seen = {video_shape(spec, tmp_path, shapes) for _ in range(3)}  # 3 questions, 1 scan
    assert shapes_seen == {(12, 40, 32)}
    assert len(calls) == 1


def test_a_missing_volume_is_named(tmp_path):
    spec = VideoSpec.from_dict({"volume": "gone.nii.gz"})
    with pytest.raises(MedvlError, match=r"gone\.nii\.gz: volume file not found"):
        video_shape(spec, tmp_path)


def _frames_record(root: Path, rid: str, seed: int) -> Record:
    names = []
    for k in range(3):
        path = root / rid / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.effect_noise((32, 32), seed + k).convert("RGB").save(path)
        names.append(f"{rid}/{k}.png")
    return Record.from_dict(
        {
            "id": rid,
            "dataset": "t",
            "split": "train",
            "lang": "en",
            "images": [],
            "videos": [{"frames": names}],
            "messages": [
                {"role": "user", "content": "<video>\nIs there a lesion?"},
                {"role": "assistant", "content": "yes"},
            ],
            "answer": "yes",
            "answer_type": "closed",
        }
    )


def test_rows_read_each_video_once_per_batch_and_reuse_a_repeated_batch(tmp_path, monkeypatch):
    records = [_frames_record(tmp_path, f"r{i}", 10 * i) for i in range(3)]
    calls = []
    real = grpo_data.load_frames

    def counting(spec, base_dir):
        calls.append(spec.frames[0])
        return real(spec, base_dir)

    monkeypatch.setattr(grpo_data, "load_frames", counting)
    transform = PromptTransform(records, tmp_path, prompt_template("plain"))
    batch = {"index": [0, 0, 1, 1]}  # 2 prompts x num_generations=2
    first = transform(batch)
    assert calls == ["r0/0.png", "r1/0.png"]
    assert first["id"] == ["r0", "r0", "r1", "r1"]
    direct = real(records[1].videos[0], tmp_path)
    assert [np.array(f).tolist() for f in first["videos"][2][0]] == [
        np.array(f).tolist() for f in direct
    ]
    assert transform(batch)["videos"] == first["videos"]  # TRL's repeat: no new read
    assert len(calls) == 2
    transform({"index": [2, 2]})  # a new batch reads its own record ...
    transform({"index": [0, 0]})  # ... and keeps only the last batch: r0 is read again
    assert calls == ["r0/0.png", "r1/0.png", "r2/0.png", "r0/0.png"]
