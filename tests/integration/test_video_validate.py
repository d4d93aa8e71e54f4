"""Validation of records with videos: frame files, volumes, series, and lengths that never cut a
video; plus ``data stats`` counts of videos, frames and video tokens, and re-based video paths."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from medvl.data.jsonl import read_records
from medvl.data.paths import rebase_images
from medvl.data.stats import dataset_stats, format_stats_table
from medvl.data.tokens import TokenCounter
from medvl.data.validate import validate_jsonl
from medvl.models.processing import video_call_kwargs


def slices(folder: Path, n: int, size: tuple[int, int] = (96, 80)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(n):
        Image.new("RGB", size, (20 * k, 90, 140)).save(folder / f"{k:03d}.png")
        names.append(f"{folder.name}/{k:03d}.png")
    return names


def row(id_: str, videos: list[dict], text: str = "<video>\nIs there a lesion?", **extra) -> dict:
    return {
        "id": id_,
        "dataset": "t",
        "split": "train",
        "lang": "en",
        "images": extra.pop("images", []),
        "videos": videos,
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": "yes"},
        ],
        "answer": "yes",
        **extra,
    }


def write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_video_files_are_checked_like_images(tmp_path):
    good = slices(tmp_path / "ct", 5)
    odd = slices(tmp_path / "odd", 3)
    Image.new("RGB", (64, 80)).save(tmp_path / "odd" / "001.png")  # one slice of another size
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.png").write_bytes(b"not a png at all")
    (tmp_path / "scan.nii.gz").write_bytes(b"not a nifti volume")
    rows = [
        row("ok", [{"frames": good}]),
        row("gap", [{"frames": [*good[:2], "ct/999.png", *good[2:]]}]),
        row("corrupt", [{"frames": [good[0], "bad/0.png"]}]),
        row("sizes", [{"frames": odd}]),
        row("escape", [{"frames": ["../elsewhere/0.png"]}]),
        row("novol", [{"volume": "gone.nii.gz", "sample": {"n": 8}}]),
        row("noseries", [{"series": "dicom/none/"}]),
        row("vol", [{"volume": "scan.nii.gz", "sample": {"n": 8}}]),
    ]
    path = write(tmp_path, rows)
    result = validate_jsonl(path, root=tmp_path)
    problems = {(p.record_id, p.code, p.field) for p in result.problems}
    assert problems == {
        ("gap", "missing", "videos[0].frames[2]"),
        ("corrupt", "undecodable", "videos[0].frames[1]"),
        ("sizes", "frame_size", "videos[0].frames[1]"),
        ("escape", "outside_root", "videos[0].frames[0]"),
        ("novol", "missing", "videos[0].volume"),
        ("noseries", "missing", "videos[0].series"),
    }  # "vol" exists and is not read: neither decoding nor counting was asked
    assert [r.id for r in result.valid] == ["ok", "vol"]
    assert result.video_shapes["ok"] == [(5, 96, 80)]
    message = next(p.message for p in result.problems if p.code == "frame_size")
    assert "64x80" in message and "96x80" in message and "one size" in message
    # decoding reads volumes with load_frames; its error becomes the record's problem
    decoded = validate_jsonl(path, root=tmp_path, decode_images=True)
    unreadable = [p for p in decoded.problems if p.code == "video_unreadable"]
    assert [(p.record_id, p.field) for p in unreadable] == [("vol", "videos[0].volume")]
    assert "\n" not in unreadable[0].message and unreadable[0].line == 8
    assert [r.id for r in decoded.valid] == ["ok"]


def test_max_length_never_cuts_a_video(tmp_path, tiny_model_dirs):
    rows = [
        row("short", [{"frames": slices(tmp_path / "a", 2)}]),
        row("long", [{"frames": slices(tmp_path / "b", 16, (200, 160))}]),
        row(
            "both",
            [{"frames": slices(tmp_path / "c", 3, (57, 41))}],
            text="<image>\nPrior <video> now?",
            images=["a/000.png"],
        ),
    ]
    path = write(tmp_path, rows)
    counter = TokenCounter.from_pretrained(tiny_model_dirs("qwen3_vl"))
    # 16 frames: 8 temporal patches, each with its timestamp text and markers (133 tokens)
    result = validate_jsonl(path, counter=counter, max_length=100)
    records = {r.id: r for r in read_records(path)}
    for record_id, dirs, image in (("short", "a", None), ("long", "b", None), ("both", "c", 1)):
        record = records[record_id]
        videos = [[Image.open(p).convert("RGB") for p in record.video_paths(tmp_path)]]
        images = [Image.open(tmp_path / "a/000.png").convert("RGB")] if image else None
        encoded = counter.processor(
            text=[counter.text(record)],
            images=images,
            **video_call_kwargs(counter.processor, videos),
        )
        assert result.token_lengths[record_id] == len(encoded["input_ids"][0]), dirs
    long = [p for p in result.problems if p.record_id == "long"]
    assert [p.code for p in long] == ["too_long"]
    assert result.token_lengths["long"] > 100 > result.token_lengths["both"]
    message = long[0].message
    assert f"{result.token_lengths['long']} tokens" in message and "16 frame(s)" in message
    assert "sample.n" in message and "video pixel budget" in message and "never cut" in message
    assert [r.id for r in result.valid] == ["short", "both"]
    assert result.video_tokens["long"] == counter.video_tokens((16, 200, 160))
    assert result.image_tokens["both"] == counter.budget.image_tokens(96, 80)


def test_stats_count_videos_frames_and_video_tokens(tmp_path, tiny_model_dirs):
    rows = [
        row("a", [{"frames": slices(tmp_path / "a", 3)}]),
        row(
            "b",
            [{"frames": slices(tmp_path / "b", 4)}, {"frames": slices(tmp_path / "c", 2)}],
            text="<video><video>Same?",
        ),
        row("c", [{"volume": "v.nii.gz", "sample": {"n": 6}}]),
        row("d", [{"volume": "v.nii.gz", "sample": {"every_mm": 5}}]),
        row("e", [], text="No image here?"),
    ]
    path = write(tmp_path, rows)
    records = read_records(path)
    stats = dataset_stats(records)
    videos = stats["videos"]
    assert videos["videos_per_record"] == {"0": 1, "1": 3, "2": 1}
    assert videos["kinds"] == {"frames": 3, "volume": 2} and videos["videos"] == 5
    assert videos["frames_unknown"] == 1  # every_mm: the spacing decides
    # frames per record with videos: a 3, b 4 + 2, c sample.n 6
    assert videos["frames_per_record"]["summary"] == {
        "min": 3,
        "max": 6,
        "mean": 5.0,
        "median": 6,
    }
    table = format_stats_table(stats)
    assert "videos per record" in table and "unknown (pass --model)" in table
    # with counts from validation: the text tokens are the total less image and video tokens
    counter = TokenCounter.from_pretrained(tiny_model_dirs("qwen2_vl"))
    result = validate_jsonl(path, counter=counter)
    kept = [r for r in records if r.id in result.token_lengths]
    assert [r.id for r in kept] == ["a", "b", "e"]  # c, d: v.nii.gz is missing
    stats = dataset_stats(
        kept,
        token_counts=[result.token_lengths[r.id] for r in kept],
        image_token_counts=[result.image_tokens[r.id] for r in kept],
        video_token_counts=[result.video_tokens[r.id] for r in kept],
        video_frame_counts=[sum(s[0] for s in result.video_shapes.get(r.id, [])) for r in kept],
    )
    pads = [result.video_tokens[r.id] for r in kept]
    assert pads[0] == counter.video_tokens((3, 96, 80)) and pads[2] == 0
    assert stats["video_tokens"]["summary"]["max"] == max(pads)
    assert stats["text_tokens"]["summary"]["max"] == max(
        result.token_lengths[r.id] - p for r, p in zip(kept, pads, strict=True)
    )


def test_rebase_moves_video_paths(tmp_path):
    record = read_records(
        write(
            tmp_path,
            [row("a", [{"frames": ["ct/0.png"]}, {"series": "dcm/s1"}], text="<video><video>?")],
        )
    )[0]
    (moved,) = rebase_images([record], tmp_path, tmp_path / "out")
    assert moved.videos[0].frames == ("../ct/0.png",) and moved.videos[1].series == "../dcm/s1"
    (absolute,) = rebase_images([record], tmp_path, None)
    assert absolute.videos[0].frames == (str((tmp_path / "ct/0.png").resolve()),)
