"""Filesystem faults: a full disk, a read-only folder and a file in the way of an output are one
line naming the path and the fix, exit 2, in every command; a rerun after the fix finishes.

Two kinds of test: ones that always run (a real file in the way; an ENOSPC injected into
predict's fsync, as a full disk raises it there), and ones on a real 512 KiB tmpfs that is
filled up or remounted read-only (they need root and ``mount``, as in CI; skipped otherwise).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from medvl.cli.main import main
from medvl.data.jsonl import read_records, write_records
from medvl.data.record import Record
from medvl.errors import filesystem_error
from medvl.infer.predict import read_prediction_rows


def error_line(capsys) -> str:
    """The one stderr line of a failed command (the tqdm bar may draw above it)."""
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in err if line.startswith("medvl: error: ")]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    return errors[0]


@pytest.fixture
def data(tmp_path, phantom_dir) -> Path:
    shutil.copytree(phantom_dir / "images", tmp_path / "images")
    path = tmp_path / "data.jsonl"
    write_records(path, read_records(phantom_dir / "train.jsonl")[:4])
    return path


def predict_argv(model: Path, data: Path, out: Path) -> list[str]:
    argv = ["predict", "--model", str(model), "--data", str(data), "--out", str(out)]
    return [*argv, "--batch-size", "2", "--max-new-tokens", "2"]


def score_argv(tmp_path: Path, out: Path) -> list[str]:
    """``eval score`` of a one-record file (written under ``tmp_path``) into ``out``."""
    data, pred = tmp_path / "d.jsonl", tmp_path / "p.jsonl"
    if not data.exists():
        record = Record(
            id="a",
            dataset="t",
            split="test",
            lang="en",
            images=[],
            messages=[{"role": "user", "content": "Is it CT?"}],
            answer="yes",
            answer_type="closed",
        )
        write_records(data, [record])
        pred.write_text('{"id": "a", "prediction": "yes"}\n', encoding="utf-8")
    argv = ["eval", "score", "--data", str(data), "--pred", str(pred), "--out", str(out)]
    return [*argv, "--resamples", "10"]


# ------------------------------------------------------------------ always run


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left on the disk (ENOSPC); free space"),
        (errno.EROFS, "read-only (EROFS); write the output to a folder on a writable disk"),
        (errno.EACCES, "permission denied (EACCES)"),
        (errno.ENOTDIR, "a file is where a folder should be (ENOTDIR)"),
        (errno.EISDIR, "this is a folder, not a file (EISDIR)"),
        (errno.EEXIST, "a file is in the way"),
    ],
)
def test_each_filesystem_errno_is_one_line_naming_the_path(code, words):
    error = filesystem_error(OSError(code, os.strerror(code), "/data/out/x.json"))
    assert error is not None and error.exit_code == 2
    assert str(error).startswith("/data/out/x.json: cannot write: ") and words in str(error)
    assert "\n" not in str(error)
    try:  # a wrapper raised while handling it is traced back to it
        try:
            raise OSError(code, os.strerror(code), "/data/out/x.json")
        except OSError as exc:
            raise RuntimeError("saving failed") from exc
    except RuntimeError as wrapped:
        assert str(filesystem_error(wrapped)) == str(error)


def test_other_errors_are_not_filesystem_errors():
    assert filesystem_error(OSError(errno.ENOENT, "No such file", "x")) is None
    assert filesystem_error(ValueError("bad")) is None
    assert filesystem_error(RuntimeError("CUDA out of memory")) is None


def test_output_under_a_file_is_refused_before_the_model_loads(tmp_path, data, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder", encoding="utf-8")
    missing_model = tmp_path / "no-model-here"  # never reached: the output is checked first
    assert main(predict_argv(missing_model, data, blocker / "pred.jsonl")) == 2
    line = error_line(capsys)
    assert f"{blocker}: cannot write: a file is where a folder should be" in line
    assert main(predict_argv(missing_model, data, tmp_path)) == 2  # a folder as --out
    assert f"{tmp_path}: cannot write: this is a folder, not a file" in error_line(capsys)
    argv = ["eval", "run", "--bench", "vqa_rad", "--data", str(data), "--model"]
    assert main([*argv, str(missing_model), "--out", str(blocker / "run")]) == 2
    assert f"{blocker}: cannot write: a file is where a folder should be" in error_line(capsys)
    assert main(score_argv(tmp_path, blocker / "run")) == 2
    assert f"{blocker / 'run'}: cannot write: a file is where a folder" in error_line(capsys)
    assert main(score_argv(tmp_path, blocker)) == 2  # the run folder itself is a file
    assert f"{blocker}: cannot write: a file is in the way" in error_line(capsys)
    src = tmp_path / "src.json"
    src.write_text("[]", encoding="utf-8")
    convert = ["data", "convert", "--format", "llava", "--input", str(src), "--out"]
    assert main([*convert, str(blocker / "x.jsonl")]) == 2
    assert f"{blocker}" in error_line(capsys)
    blocker.unlink()
    assert main(score_argv(tmp_path, blocker / "run")) == 0


def test_full_disk_in_predict_is_one_line_and_the_rerun_resumes(
    tiny_model_dirs, data, tmp_path, capsys, monkeypatch
):
    """ENOSPC injected where a full disk raises it (predict's fsync of the second batch)."""
    real_fsync, calls = os.fsync, []

    def full_disk_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:  # 1: the new empty file, 2: batch one, 3: batch two
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    out = tmp_path / "pred.jsonl"
    argv = predict_argv(tiny_model_dirs("qwen2_vl"), data, out)
    monkeypatch.setattr(os, "fsync", full_disk_fsync)
    assert main(argv) == 2
    line = error_line(capsys)
    assert line == (
        f"medvl: error: {out}: cannot write: no space left on the disk (ENOSPC); free space or "
        "write to another disk, then rerun: finished work is kept and the rerun resumes"
    )
    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed
    assert main(argv) == 0
    assert "already there, 4 records" in capsys.readouterr().out
    assert len(read_prediction_rows(out)) == 4


# ------------------------------------------------------------------ a real small filesystem


@pytest.fixture
def small_fs(tmp_path) -> Iterator[Path]:
    """A 512 KiB tmpfs mounted for the test (root and a working ``mount`` only)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    cmd = ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Write a filler file until the disk is full; delete it to free the space."""
    filler = folder / "filler.bin"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


def test_full_disk_in_eval_score_then_rerun(small_fs, tmp_path, capsys):
    filler = fill(small_fs)
    out = small_fs / "run"
    assert main(score_argv(tmp_path, out)) == 2
    line = error_line(capsys)
    assert f"{out}" in line and "no space left on the disk (ENOSPC)" in line
    filler.unlink()
    assert main(score_argv(tmp_path, out)) == 0
    assert (out / "metrics.json").is_file()


def test_full_disk_in_predict_then_rerun(small_fs, tiny_model_dirs, data, capsys):
    out = small_fs / "pred.jsonl"
    argv = predict_argv(tiny_model_dirs("qwen2_vl"), data, out)
    filler = fill(small_fs)
    assert main(argv) == 2
    line = error_line(capsys)
    assert f"{out}: cannot write: no space left on the disk (ENOSPC)" in line
    filler.unlink()
    assert main(argv) == 0
    assert len(read_prediction_rows(out)) == 4


def test_checkpoint_writers_on_a_full_disk_name_the_file(small_fs):
    """What SFT/GRPO saves call: torch.save (its error never names the errno) and
    safetensors' save_file."""
    filler = fill(small_fs)
    tensors = {"w": torch.zeros(100_000)}
    for path, save in (
        (small_fs / "optimizer.pt", lambda p: torch.save(tensors, p)),
        (small_fs / "adapter.safetensors", lambda p: save_file(tensors, p)),
    ):
        with pytest.raises(Exception) as info:
            save(str(path))
        error = filesystem_error(info.value)
        assert error is not None, info.value
        assert str(error).startswith(f"{path}: cannot write: no space left on the disk")
    filler.unlink()


def test_read_only_folder_is_refused_in_one_line(small_fs, tmp_path, capsys):
    remount(small_fs, "ro")
    try:
        out = small_fs / "run"
        assert main(score_argv(tmp_path, out)) == 2
        assert "the filesystem is read-only (EROFS)" in error_line(capsys)
        with pytest.raises(RuntimeError) as info:
            torch.save({}, str(small_fs / "x.pt"))
        assert "read-only (EROFS)" in str(filesystem_error(info.value))
    finally:
        remount(small_fs, "rw")
    assert main(score_argv(tmp_path, small_fs / "run")) == 0
