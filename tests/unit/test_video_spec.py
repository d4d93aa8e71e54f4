"""The ``videos`` field of the canonical record: parsing, checking, round trip, placeholders."""

from __future__ import annotations

import pytest

from medvl.data.record import FieldError, Record
from medvl.data.video import VideoSpec


def record(videos, content="<video>\nIs there a lesion?", images=()):
    return Record.from_dict(
        {
            "id": "v1",
            "dataset": "t",
            "split": "test",
            "lang": "en",
            "images": list(images),
            "videos": videos,
            "messages": [
                {"role": "user", "content": content},
                {"role": "assistant", "content": "yes"},
            ],
        }
    )


def test_each_kind_round_trips_and_old_records_stay_byte_identical():
    entries = [
        {"frames": ["ct/1.png", "ct/2.png"]},
        {"volume": "ct/a.nii.gz", "axis": "coronal", "sample": {"n": 16}, "window": "lung"},
        {"series": "dcm/s1", "series_uid": "1.2.3", "axis": "axial", "window": [40.0, 400.0]},
    ]
    rec = record(entries, content="<video><video>\n<video> Compare.")
    assert [v.kind for v in rec.videos] == ["frames", "volume", "series"]
    assert rec.to_dict()["videos"] == entries
    assert Record.from_dict(rec.to_dict()).to_dict() == rec.to_dict()
    assert rec.question == "Compare."
    assert [p.as_posix() for p in rec.video_paths("/d")] == [
        "/d/ct/1.png",
        "/d/ct/2.png",
        "/d/ct/a.nii.gz",
        "/d/dcm/s1",
    ]
    plain = record(None, content="Is there a lesion?")
    assert plain.videos == [] and "videos" not in plain.to_dict()


@pytest.mark.parametrize(
    ("entry", "field", "says"),
    [
        ({"frames": []}, "videos[0].frames", "non-empty list"),
        ({"volume": "a.nii", "series": "d"}, "videos[0]", "exactly one of"),
        ({"volume": "a.nii", "axis": "oblique"}, "videos[0].axis", "axial, coronal, sagittal"),
        ({"volume": "a.nii", "sample": {"n": 0}}, "videos[0].sample.n", "positive integer"),
        ({"volume": "a.nii", "sample": {"n": 4, "every_mm": 2}}, "videos[0].sample", "not both"),
        ({"volume": "a.nii", "sample": {"slab": [5, 2]}}, "videos[0].sample.slab", "[first, last]"),
        ({"volume": "a.nii", "window": [40, 0]}, "videos[0].window", "width > 0"),
        ({"frames": ["a.png"], "axis": "axial"}, "videos[0].axis", "'volume' and 'series'"),
        ({"volume": "a.nii", "fps": 2}, "videos[0].fps", "unknown key"),
    ],
)
def test_bad_entries_name_the_key(entry, field, says):
    with pytest.raises(FieldError) as info:
        record([entry])
    assert info.value.field == field and says in info.value.message


def test_placeholders_must_match_the_videos():
    with pytest.raises(FieldError, match=r"1 video\(s\) listed but 2 <video> placeholder"):
        record([{"frames": ["a.png"]}], content="<video><video> What?")
    with pytest.raises(FieldError, match="<video> placeholders belong in user turns"):
        Record.from_dict(
            {
                "id": "v",
                "dataset": "t",
                "split": "test",
                "lang": "en",
                "images": [],
                "videos": [{"frames": ["a.png"]}],
                "messages": [
                    {"role": "user", "content": "What?"},
                    {"role": "assistant", "content": "<video>"},
                ],
            }
        )


def test_rebased_maps_every_path():
    spec = VideoSpec.from_dict({"frames": ["a.png", "b.png"]})
    assert spec.rebased(lambda p: "../" + p).frames == ("../a.png", "../b.png")
    vol = VideoSpec.from_dict({"volume": "v.nii.gz", "sample": {"every_mm": 2.5}})
    assert vol.rebased(str.upper).volume == "V.NII.GZ" and vol.sample == {"every_mm": 2.5}
