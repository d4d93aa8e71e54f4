"""``medvl data volumes``: a folder of DICOM series and NIfTI files + a CSV -> canonical records.

The fixtures are written here: two DICOM series (one with a missing slice, one sharing its
folder with a second series), a NIfTI volume and a CSV with good and bad rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
from test_series import axial_positions, write_series

from medvl.cli.main import main
from medvl.data.jsonl import read_records
from medvl.data.volumes import load_frames


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "scans"
    positions = axial_positions(6)
    del positions[2]
    write_series(root / "p1" / "ct", positions, uid="1.1")
    write_series(root / "p2" / "study", axial_positions(3), uid="2.1")
    write_series(root / "p2" / "study" / "other", axial_positions(2), uid="2.2")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 4), np.float32), np.eye(4)), root / "mr.nii.gz")
    (root / "notes.txt").write_text("not a volume")
    return root


def test_volumes_command_writes_records_and_skips_bad_rows(tmp_path, capsys):
    root = dataset(tmp_path)
    table = write_csv(
        tmp_path / "qa.csv",
        [
            {"volume": "p1/ct", "question": "Is there a nodule?", "answer": "Yes"},
            {
                "volume": "p2/study",
                "question": "Which lobe?",
                "answer": "Right upper lobe",
                "series_uid": "2.1",
                "split": "test",
            },
            {"volume": "mr.nii.gz", "question": "病灶在哪里？", "answer": "左侧"},
            {"volume": "p2/study", "question": "Any effusion?", "answer": "No"},
            {"volume": "absent", "question": "?", "answer": "no"},
            {"volume": "notes.txt", "question": "?", "answer": "no"},
            {"volume": "mr.nii.gz", "question": "", "answer": "no"},
        ],
    )
    out = tmp_path / "out" / "vqa.jsonl"
    code = main(
        [
            "data",
            "volumes",
            str(root),
            "--csv",
            str(table),
            "--out",
            str(out),
            "--sample-n",
            "4",
            "--window",
            "lung",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    records = read_records(out)
    assert [r.id for r in records] == ["volumes-00001", "volumes-00002", "volumes-00003"]
    first, second, third = records
    assert first.messages[0].content == "<video>\nIs there a nodule?"
    assert (first.answer, first.answer_type, first.split, first.lang) == (
        "Yes",
        "closed",
        "train",
        "en",
    )
    assert first.videos[0].to_dict() == {
        "series": "../scans/p1/ct",
        "axis": "axial",
        "sample": {"n": 4},
        "window": "lung",
    }
    assert first.meta["patient_id"] == "PAT-1" and first.meta["study_uid"] == "1.2.3.4"
    assert first.meta["series_uid"] == "1.1" and first.meta["slices"] == 5
    assert first.meta["order_rule"] == "ImagePositionPatient"
    assert "missing slice" in first.meta["warnings"][0]
    assert second.meta["series_uid"] == "2.1" and second.videos[0].series_uid == "2.1"
    assert (second.split, second.answer_type) == ("test", "open")
    assert (third.lang, third.videos[0].volume, third.meta["slices"]) == (
        "zh",
        "../scans/mr.nii.gz",
        4,
    )
    assert "patient_id" not in third.meta
    assert len(load_frames(first.videos[0], out.parent)) == 4
    assert "skipped row 5: " in printed and "2 series in one folder" in printed
    assert "2.1 (3 slices), 2.2 (2 slices)" in printed
    assert "skipped row 6: " in printed and "not found under the root" in printed
    assert "skipped row 7: " in printed and "not a DICOM series folder" in printed
    assert "skipped row 8: empty 'question' or 'answer'" in printed
    assert "wrote 3 records" in printed and "(2 DICOM series, 1 NIfTI volumes)" in printed


def test_report_rows_and_zero_records_exit_2(tmp_path, capsys):
    root = dataset(tmp_path)
    table = write_csv(
        tmp_path / "reports.csv",
        [
            {"volume": "p1/ct", "report": "Small nodule in the right upper lobe."},
            {"volume": "mr.nii.gz", "report": "未见异常。"},
        ],
    )
    out = tmp_path / "reports.jsonl"
    assert main(["data", "volumes", str(root), "--csv", str(table), "--out", str(out)]) == 0
    ct, mr = read_records(out)
    assert ct.messages[0].content == (
        "<video>\nDescribe the findings of this CT scan as a radiology report."
    )
    assert (ct.answer_type, ct.question_type, ct.answer) == (
        "open",
        "report",
        "Small nodule in the right upper lobe.",
    )
    assert (
        mr.lang == "zh"
        and mr.messages[0].content == "<video>\n请根据这组CT/MRI影像写出影像所见报告。"
    )
    bad = write_csv(tmp_path / "bad.csv", [{"volume": "absent", "report": "x"}])
    capsys.readouterr()
    code = main(["data", "volumes", str(root), "--csv", str(bad), "--out", str(tmp_path / "b")])
    captured = capsys.readouterr()
    assert code == 2 and "no usable row (1 skipped)" in captured.err + captured.out
    no_column = write_csv(tmp_path / "nocol.csv", [{"path": "p1/ct", "report": "x"}])
    code = main(["data", "volumes", str(root), "--csv", str(no_column), "--out", str(out)])
    assert code == 2 and "no 'volume' column" in "".join(capsys.readouterr())
    code = main(
        ["data", "volumes", str(root), "--csv", str(table), "--out", str(out), "--window", "lungs"]
    )
    assert code == 2 and "unknown; use one of lung" in "".join(capsys.readouterr())
