"""The workbench's volume logic without a browser: where an uploaded or typed volume is read
from, the frames and captions the slice scroller shows (the frames the model gets), the record
media of the Results and Data tabs, and the report's filmstrip.

Volumes are written by hand: a NIfTI file with nibabel (slice k filled with 10 * k, so the
order of the frames can be read from their grey levels) and PNG slice folders.
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medvl.data.record import Record
from medvl.errors import MedvlError
from medvl.eval.report_gallery import filmstrip, select_gallery
from medvl.ui.volume_view import (
    evenly,
    prepare_video,
    record_media,
    save_strip,
    scroll,
    video_for_turn,
    video_key,
    volume_source,
)

SLICES = 10
SPACING_MM = 2.0


def nifti(path: Path, slices: int = SLICES) -> Path:
    """An 8x6xN int16 volume, RAS+ identity axes with 2 mm slices; slice k holds 10 * k."""
    import nibabel as nib

    data = np.zeros((8, 6, slices), np.int16)
    for k in range(slices):
        data[:, :, k] = 10 * k
    affine = np.diag([1.0, 1.0, SPACING_MM, 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def slice_folder(folder: Path, count: int) -> Path:
    """PNG slices ``s1.png`` .. ``s{count}.png``; slice i has grey level 20 * i."""
    folder.mkdir(parents=True)
    for i in range(1, count + 1):
        Image.new("L", (12, 10), 20 * i).save(folder / f"s{i}.png")
    return folder


def grey(image: Image.Image) -> int:
    return int(np.asarray(image.convert("L"))[0, 0])


def test_evenly_keeps_first_and_last():
    assert evenly(list(range(10)), 4) == [0, 3, 6, 9]  # round(j * 9 / 3): 0, 3, 6, 9
    assert evenly(list(range(16)), 5) == [0, 4, 8, 11, 15]  # 3.75 -> 4, 7.5 -> 8, 11.25 -> 11
    assert evenly([1, 2], 5) == [1, 2]
    assert evenly([], 3) == []


def test_typed_path_and_missing_path(tmp_path):
    volume = nifti(tmp_path / "ct.nii.gz")
    assert volume_source(None, f"  {volume}  ", tmp_path / "scratch") == volume
    assert volume_source([], "", tmp_path) is None
    with pytest.raises(MedvlError, match="no such file or folder"):
        volume_source(None, str(tmp_path / "nope"), tmp_path)


def test_uploads_one_file_several_files_and_a_zip(tmp_path):
    volume = nifti(tmp_path / "ct.nii.gz")
    scratch = tmp_path / "scratch"
    assert volume_source([str(volume)], "ignored when uploads exist", scratch) == volume
    # a series uploaded file by file: Gradio keeps each upload in its own folder
    uploads = []
    for i in range(3):
        (tmp_path / f"up{i}").mkdir()
        uploads.append(tmp_path / f"up{i}" / f"IM{i}.png")
        Image.new("L", (4, 4), i).save(uploads[-1])
    folder = volume_source([str(u) for u in uploads], None, scratch)
    assert sorted(p.name for p in folder.iterdir()) == ["IM0.png", "IM1.png", "IM2.png"]
    (tmp_path / "up3").mkdir()
    (tmp_path / "up3" / "IM0.png").write_bytes(uploads[0].read_bytes())
    with pytest.raises(MedvlError, match=r"two uploaded files are named IM0\.png"):
        volume_source([str(uploads[0]), str(tmp_path / "up3" / "IM0.png")], None, scratch)
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zipped:  # a zipped folder: study/series/IMn.png
        for upload in uploads:
            zipped.write(upload, f"study/series/{upload.name}")
    unpacked = volume_source([str(archive)], None, scratch)
    assert unpacked.name == "series" and len(list(unpacked.iterdir())) == 3
    one = tmp_path / "one.zip"
    with zipfile.ZipFile(one, "w") as zipped:
        zipped.write(volume, "ct.nii.gz")
    assert volume_source([str(one)], None, scratch).name == "ct.nii.gz"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zipped:
        zipped.writestr("../outside.dcm", b"x")
    with pytest.raises(MedvlError, match="leaves the zip"):
        volume_source([str(evil)], None, scratch)
    assert not (scratch / "outside.dcm").exists()


def test_uploads_are_gathered_once_and_reused_when_a_control_changes(tmp_path):
    # the panel calls volume_source again on every change of n, axis or window
    uploads = []
    for i in range(3):
        (tmp_path / f"up{i}").mkdir()
        uploads.append(str(tmp_path / f"up{i}" / f"IM{i}.png"))
        Image.new("L", (4, 4), i).save(uploads[-1])
    scratch = tmp_path / "scratch"
    folder = volume_source(uploads, None, scratch)
    assert volume_source(uploads, None, scratch) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["IM0.png", "IM1.png", "IM2.png"]
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for upload in uploads:
            zipped.write(upload, f"series/{Path(upload).name}")
    unpacked = volume_source([str(archive)], None, scratch)
    (unpacked / "IM0.png").unlink()  # a second call must not unpack again
    assert volume_source([str(archive)], None, scratch) == unpacked
    assert sorted(p.name for p in unpacked.iterdir()) == ["IM1.png", "IM2.png"]
    assert sorted(p.name for p in scratch.iterdir()) == sorted([folder.name, unpacked.parent.name])


def test_upload_limits_refuse_many_members_and_huge_sizes(tmp_path, monkeypatch):
    import medvl.ui.volume_view as volume_view

    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zipped:
        for i in range(6):
            zipped.writestr(f"s/IM{i}.dcm", b"x")
    uploads = []
    for i in range(6):
        (tmp_path / f"up{i}").mkdir()
        uploads.append(str(tmp_path / f"up{i}" / f"IM{i}.dcm"))
        Path(uploads[-1]).write_bytes(b"x" * 100)
    scratch = tmp_path / "scratch"
    monkeypatch.setattr(volume_view, "_MAX_FILES", 5)
    with pytest.raises(MedvlError, match=r"many\.zip: 6 files, more than 5"):
        volume_source([str(many)], None, scratch)
    with pytest.raises(MedvlError, match=r"6 uploaded files: 6 files, more than 5"):
        volume_source(uploads, None, scratch)
    monkeypatch.setattr(volume_view, "_MAX_FILES", 20_000)
    monkeypatch.setattr(volume_view, "_MAX_BYTES", 599)  # six members/uploads of 100 bytes
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("ct.nii", b"\0" * 600)  # declared size counts, not the packed size
    with pytest.raises(MedvlError, match=r"bomb\.zip: 0\.0 GiB, more than 0 GiB"):
        volume_source([str(bomb)], None, scratch)
    with pytest.raises(MedvlError, match=r"6 uploaded files: .* give the volume as a path"):
        volume_source(uploads, None, scratch)
    assert not scratch.exists() or not any(scratch.iterdir())


def test_a_failed_unpack_leaves_no_half_volume(tmp_path):
    from medvl.ui.volume_view import _fill_atomically

    folder = tmp_path / "scratch" / "volume-x"

    def full_disk(part: Path) -> None:
        (part / "IM0.dcm").write_bytes(b"x")
        raise OSError(28, "No space left on device")

    with pytest.raises(MedvlError, match=r"No space left on device.*free disk space"):
        _fill_atomically(folder, "scan.zip", full_disk)
    assert list(folder.parent.iterdir()) == []  # neither the folder nor its partial fill


def test_prepared_nifti_frames_are_the_sampled_slices_in_order(tmp_path):
    volume = nifti(tmp_path / "ct.nii.gz")
    key = video_key(None, str(volume), 4, "axial", "minmax", "")
    video = prepare_video(volume, 4, "axial", "minmax", "", key)
    assert video.spec.to_dict() == {
        "volume": str(volume), "axis": "axial", "sample": {"n": 4}, "window": "minmax",
    }  # fmt: skip
    # slices 0, 3, 6, 9 hold 0, 30, 60, 90; min..max over them maps to 0..255
    assert [grey(f) for f in video.frames] == [0, 85, 170, 255]
    assert video.captions[1] == "frame 2 of 4 · axial slice 3 of 0..9 · 6.0 mm from the first"
    assert "4 of 10 slices (axial, inferior to superior)" in video.summary
    assert "2.00 mm apart" in video.summary
    sagittal = prepare_video(volume, 3, "sagittal", "file default", None, key)
    assert len(sagittal.frames) == 3 and "sagittal slice 7 of 0..7" in sagittal.captions[-1]


def test_prepared_slice_folder_uses_natural_order(tmp_path):
    folder = slice_folder(tmp_path / "slices", 12)
    video = prepare_video(folder, 4, "axial", "file default", "", ("k",))
    # s1, s5, s8, s12 (natural order: s2 before s10), picked at round(j * 11 / 3)
    assert [Path(p).name for p in video.spec.frames] == ["s1.png", "s5.png", "s8.png", "s12.png"]
    assert [grey(f) for f in video.frames] == [20, 100, 160, 240]
    assert video.captions[3] == "frame 4 of 4 · s12.png"


def test_video_for_turn_reuses_the_prepared_video(tmp_path):
    volume = nifti(tmp_path / "ct.nii.gz")
    values = [None, str(volume), 4, "axial", "minmax", ""]
    assert video_for_turn(None, [None, "", 4, "axial", "minmax", ""], tmp_path) is None
    prepared = prepare_video(volume, 4, "axial", "minmax", "", video_key(*values))
    assert video_for_turn(prepared, values, tmp_path) is prepared
    changed = video_for_turn(prepared, [None, str(volume), 2, "axial", "minmax", ""], tmp_path)
    assert changed is not prepared and [grey(f) for f in changed.frames] == [0, 255]
    with pytest.raises(MedvlError, match="axis must be one of"):
        video_for_turn(None, [None, str(volume), 4, "oblique", "minmax", ""], tmp_path)


def test_strip_and_scroll(tmp_path):
    frames = [Image.new("RGB", (20, 10), (i, i, i)) for i in range(10)]
    strip = Image.open(save_strip(frames, tmp_path, "s"))
    # 8 of 10 frames, each 96 px high and 192 px wide, 2 px apart
    assert strip.size == (8 * 192 + 7 * 2, 96)
    assert strip.getpixel((0, 0))[0] == 0 and strip.getpixel((strip.width - 1, 0))[0] == 9
    items = [("a", "first"), ("b", "second")]
    assert scroll(items, 1) == ("b", "second")
    assert scroll(items, 7) == ("b", "second") and scroll([], 0) == (None, "")


def test_record_media_lists_images_then_frames(tmp_path):
    slice_folder(tmp_path / "slices", 3)
    nifti(tmp_path / "ct.nii.gz")
    Image.new("RGB", (30, 30), "red").save(tmp_path / "view.png")
    record = Record.from_dict({
        "id": "r1", "dataset": "hand", "split": "test", "lang": "en",
        "images": ["view.png"],
        "videos": [
            {"frames": ["slices/s1.png", "slices/s3.png"]},
            {"volume": "ct.nii.gz", "sample": {"n": 3}},
            {"volume": "missing.nii.gz"},
        ],
        "messages": [
            {"role": "user", "content": "<image>\n<video>\n<video>\n<video>\nSame?"},
            {"role": "assistant", "content": "yes"},
        ],
        "answer": "yes",
    })  # fmt: skip
    items = record_media(record, tmp_path)
    captions = [caption for _, caption in items]
    assert captions[0] == "image 1 of 1 · view.png"
    assert captions[1:3] == [
        "video 1 of 3 · frame 1 of 2 · s1.png",
        "video 1 of 3 · frame 2 of 2 · s3.png",
    ]
    assert captions[3].startswith("video 2 of 3 · frame 1 of 3 · axial slice 0 of 0..9")
    assert items[-1][0] is None and "missing.nii.gz" in captions[-1] and len(items) == 7
    # slices 0, 5, 9 (round(j * 9 / 2)) hold 0, 50, 90: min..max maps them to 0, 142, 255
    assert [grey(image) for image, _ in items[3:6]] == [0, 142, 255]
    assert len(record_media(record, tmp_path, with_images=False)) == 6


def decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_filmstrip_picks_five_frames_of_the_models_video(tmp_path):
    volume = nifti(tmp_path / "ct.nii.gz", slices=40)
    frames, why = filmstrip({"volume": str(volume), "sample": {"n": 16}, "window": "minmax"})
    assert why is None and len(frames) == 5
    # the model gets slices round(j * 39 / 15); the strip shows frames 0, 4, 8, 11, 15 of them
    slices = [round(j * 39 / 15) for j in (0, 4, 8, 11, 15)]  # 0, 10, 21, 29, 39
    expected = [round(10 * s * 255 / 390) for s in slices]
    shown = [grey(decode(f)) for f in frames]
    assert all(abs(a - b) <= 3 for a, b in zip(shown, expected, strict=True)), (shown, expected)
    assert max(decode(frames[0]).size) == 8  # small volumes are not enlarged
    folder = slice_folder(tmp_path / "slices", 12)
    listed = {"frames": [str(folder / f"s{i}.png") for i in range(1, 13)]}
    frames, _ = filmstrip(listed)
    shown = [grey(decode(f)) for f in frames]  # s1 s4 s7 s9 s12: picked at round(j * 11 / 4)
    assert all(abs(a - b) <= 3 for a, b in zip(shown, [20, 80, 140, 180, 240], strict=True))
    assert filmstrip({"volume": str(tmp_path / "gone.nii.gz")})[1].startswith("gone.nii.gz")


def test_gallery_examples_carry_absolute_video_entries(tmp_path):
    nifti(tmp_path / "ct.nii.gz")
    record = {
        "id": "v1", "dataset": "hand", "split": "test", "lang": "en", "images": [],
        "videos": [{"volume": "ct.nii.gz", "sample": {"n": 4}}],
        "messages": [{"role": "user", "content": "<video>\nLesion?"},
                     {"role": "assistant", "content": "no"}],
        "answer": "no",
    }  # fmt: skip
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(record) + "\n")
    rows = {"v1": {"kind": "closed", "correct": 0.0, "prediction": "yes", "extracted": "yes"}}
    gallery = select_gallery("a", {"a": rows}, ["v1"], str(data))
    example = gallery["errors"]["a"][0]
    assert gallery["problem"] is None and example["question"] == "Lesion?"
    assert example["images"] == []
    assert example["videos"] == [
        {"volume": str(tmp_path / "ct.nii.gz"), "axis": "axial", "sample": {"n": 4}}
    ]
    assert len(filmstrip(example["videos"][0])[0]) == 4  # n=4 frames: all four shown


def test_report_html_shows_a_filmstrip_for_video_records(tmp_path):
    from medvl.eval.breakdown import BootstrapSettings
    from medvl.eval.report import build_report
    from medvl.eval.report_html import render_html
    from medvl.eval.scoring_run import score_files

    nifti(tmp_path / "ct.nii.gz", slices=20)
    slice_folder(tmp_path / "slices", 3)
    videos = {
        "v1": {"volume": "ct.nii.gz", "sample": {"n": 8}},  # 8 frames: 5 shown
        "v2": {"frames": ["slices/s1.png", "slices/s2.png", "slices/s3.png"]},  # 3: all shown
        "v3": {"volume": "deleted.nii.gz"},
    }
    records = [
        {
            "id": rid, "dataset": "hand", "split": "test", "lang": "en", "images": [],
            "videos": [entry], "answer": "yes", "answer_type": "closed",
            "messages": [{"role": "user", "content": f"<video>\nLesion ({rid})?"},
                         {"role": "assistant", "content": "yes"}],
        }
        for rid, entry in videos.items()
    ]  # fmt: skip
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    runs = []
    for name, replies in (("base", ["no", "no", "no"]), ("tuned", ["yes", "yes", "yes"])):
        rows = [
            {"id": rid, "prompt": "p", "prediction": reply, "error": None, "engine": "hf"}
            for rid, reply in zip(videos, replies, strict=True)
        ]
        pred = tmp_path / f"{name}.jsonl"
        pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
        score_files(data, pred, tmp_path / name, bootstrap=BootstrapSettings(20))
        runs.append(tmp_path / name)
    html = render_html(build_report(runs, settings=BootstrapSettings(resamples=20)))
    strips = re.findall(r'<div class="strip"[^>]*>(.*?)</div>', html)
    counts = [len(re.findall(r"<img ", strip)) for strip in strips]
    # v1, v2, v3 disagree (shown once) and are base's errors (shown again)
    assert counts == [5, 3, 0, 5, 3, 0], counts
    assert "video not shown: deleted.nii.gz" in strips[2]
    assert "no image" not in html


def test_chat_history_shows_the_volume_strip_after_the_images(tmp_path):
    from medvl.ui.chat import history

    turn = {"role": "user", "text": "Lesion?", "images": [tmp_path / "a.png"], "videos": []}
    turn["strips"] = [tmp_path / "volume-0000.png"]
    assert history([turn]) == [
        {"role": "user", "content": {"path": str(tmp_path / "a.png")}},
        {"role": "user", "content": {"path": str(tmp_path / "volume-0000.png")}},
        {"role": "user", "content": "Lesion?"},
    ]
