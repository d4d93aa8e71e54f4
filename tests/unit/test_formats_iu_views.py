"""IU-Xray / OpenI with both views: the Kaggle release's two tables -> two-image records.

The fixture follows the Kaggle ``raddar/chest-xrays-indiana-university`` layout, written here:
``indiana_reports.csv`` (uid, MeSH, Problems, image, indication, comparison, findings,
impression), ``indiana_projections.csv`` (uid, filename, projection) and the PNGs under
``images/images_normalized/`` named like ``1_IM-0001-4001.dcm.png``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from medvl.data.formats import convert
from medvl.data.formats.iu_xray import pick_views
from medvl.data.jsonl import read_records

REPORTS = """uid,MeSH,Problems,image,indication,comparison,findings,impression
1,normal,normal,Xray Chest PA and Lateral,Positive TB test,None.,The cardiac silhouette and \
mediastinum size are within normal limits.,Normal chest x-XXXX.
2,Cardiomegaly/borderline,Cardiomegaly,"Chest, 2 views, frontal and lateral",Preop.,None.,\
Borderline cardiomegaly.,No acute pulmonary findings.
3,normal,normal,PA chest,Cough,,,Heart size is normal and the lungs are clear.
4,normal,normal,Lateral chest,Cough,,Clear lungs.,
5,normal,normal,PA and lateral,Cough,,No effusion.,
"""
PROJECTIONS = """uid,filename,projection
1,1_IM-0001-4001.dcm.png,Frontal
1,1_IM-0001-3001.dcm.png,Lateral
2,2_IM-0652-1001.dcm.png,Frontal
2,2_IM-0652-2001.dcm.png,Lateral
2,2_IM-0652-3001.dcm.png,Frontal
3,3_IM-1384-1001.dcm.png,Frontal
4,4_IM-2050-1001.dcm.png,Lateral
"""


def kaggle_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "openi"
    images = folder / "images" / "images_normalized"
    images.mkdir(parents=True)
    (folder / "indiana_reports.csv").write_text(REPORTS, encoding="utf-8")
    (folder / "indiana_projections.csv").write_text(PROJECTIONS, encoding="utf-8")
    for line in PROJECTIONS.splitlines()[1:]:
        Image.new("L", (16, 16), 128).save(images / line.split(",")[1])
    return folder


def test_both_views_become_one_two_image_record(tmp_path):
    folder = kaggle_folder(tmp_path)
    out = tmp_path / "iu.jsonl"
    report = convert("iu_xray", folder, out)
    records = {r.id: r for r in read_records(out)}
    assert sorted(records) == ["iu_xray-1", "iu_xray-2", "iu_xray-3", "iu_xray-4"]
    first = records["iu_xray-1"]
    assert first.images == [
        "openi/images/images_normalized/1_IM-0001-4001.dcm.png",  # frontal first
        "openi/images/images_normalized/1_IM-0001-3001.dcm.png",
    ]
    assert first.messages[0].content.startswith("<image>\n<image>\nDescribe the findings")
    assert first.answer == (
        "The cardiac silhouette and mediastinum size are within normal limits. Normal chest x-XXXX."
    )
    assert first.meta["views"] == ["frontal", "lateral"] and first.meta["MeSH"] == "normal"
    two = records["iu_xray-2"]  # two frontal images: the first frontal and the lateral
    assert [Path(p).name for p in two.images] == [
        "2_IM-0652-1001.dcm.png",
        "2_IM-0652-2001.dcm.png",
    ]
    single = records["iu_xray-3"]  # one view only: stays a single-image record
    assert single.images[0].endswith("3_IM-1384-1001.dcm.png") and len(single.images) == 1
    assert single.answer == "Heart size is normal and the lungs are clear."
    assert records["iu_xray-4"].meta["views"] == ["lateral"]
    assert report.problems == [("iu_xray-5", report.problems[0][1])]
    assert "no image of uid '5'" in report.problems[0][1]


def test_views_option_frontal_and_all(tmp_path):
    folder = kaggle_folder(tmp_path)
    frontal = tmp_path / "frontal.jsonl"
    report = convert("iu_xray", folder / "indiana_reports.csv", frontal, views="frontal")
    records = {r.id: r for r in read_records(frontal)}
    assert all(len(r.images) == 1 for r in records.values())
    assert records["iu_xray-2"].images[0].endswith("2_IM-0652-1001.dcm.png")
    assert "iu_xray-4" not in records
    assert any("no frontal image" in why for _, why in report.problems)
    every = tmp_path / "all.jsonl"
    convert("iu_xray", folder, every, views="all")
    two = {r.id: r for r in read_records(every)}["iu_xray-2"]
    assert two.meta["views"] == ["frontal", "frontal", "lateral"]
    assert two.messages[0].content.count("<image>") == 3


def test_pick_views_by_hand():
    images = [("l.png", "Lateral"), ("f1.png", "Frontal"), ("f2.png", "Frontal")]
    assert pick_views(images, "both") == [("f1.png", "Frontal"), ("l.png", "Lateral")]
    assert pick_views(images, "frontal") == [("f1.png", "Frontal")]
    assert [n for n, _ in pick_views(images, "all")] == ["f1.png", "f2.png", "l.png"]
    assert pick_views([("x.png", "")], "both") == [("x.png", "")]
    assert pick_views([("l.png", "Lateral")], "frontal") == []


def test_bad_views_option_and_missing_projections(tmp_path):
    from medvl.errors import MedvlError

    folder = kaggle_folder(tmp_path)
    with pytest.raises(MedvlError, match="views='side'"):
        convert("iu_xray", folder, tmp_path / "x.jsonl", views="side")
    (folder / "indiana_projections.csv").unlink()
    with pytest.raises(MedvlError, match=r"needs indiana_projections\.csv"):
        convert("iu_xray", folder, tmp_path / "x.jsonl")
