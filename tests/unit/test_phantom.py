"""Tests of the phantom dataset generator: determinism, validity, balance and learnability."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medvl.data.jsonl import check_jsonl, read_records
from medvl.data.phantom import PhantomSummary, generate_phantom
from medvl.data.phantom_images import (
    BACKGROUND_MAX,
    IMAGE_HALF_OF_SIDE,
    LESION_LEVEL,
    MIN_SIDE,
)
from medvl.data.phantom_plan import QUESTION_TYPES
from medvl.data.phantom_text import MCQ_INSTRUCTION
from medvl.data.record import Record
from medvl.errors import ConfigError
from medvl.models.registry import FAMILIES, get_family

N = 160
SPLITS = ("train", "val", "test")
# Halfway between the brightest background pixel and a lesion: only lesions are brighter.
BRIGHT = int(255 * (BACKGROUND_MAX + LESION_LEVEL) / 2)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomSummary:
    return generate_phantom(tmp_path_factory.mktemp("a"), n=N, seed=0)


@pytest.fixture(scope="module")
def records(phantom: PhantomSummary) -> list[Record]:
    return [r for split in SPLITS for r in read_records(phantom.split_paths[split])]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _gray(summary: PhantomSummary, record: Record) -> np.ndarray:
    path = record.image_paths(summary.out_dir)[0]
    return np.asarray(Image.open(path).convert("L"), dtype=np.int16)


def test_same_arguments_give_byte_identical_files(phantom: PhantomSummary, tmp_path: Path) -> None:
    again = generate_phantom(tmp_path / "b", n=N, seed=0)
    first, second = _files(phantom.out_dir), _files(again.out_dir)
    assert sorted(first) == sorted(second)
    assert len([name for name in first if name.endswith(".png")]) == N
    for name, data in first.items():
        assert second[name] == data, name


def test_different_seed_gives_different_data(phantom: PhantomSummary, tmp_path: Path) -> None:
    other = generate_phantom(tmp_path / "c", n=N, seed=1)
    for split in SPLITS:
        assert other.split_paths[split].read_bytes() != phantom.split_paths[split].read_bytes()
    first, second = _files(phantom.images_dir), _files(other.images_dir)
    assert sum(first[name] != second[name] for name in first) > N // 2


def test_splits_are_valid_and_match_summary(phantom: PhantomSummary) -> None:
    info = json.loads(phantom.info_path.read_text(encoding="utf-8"))
    ids = []
    for split in SPLITS:
        check = check_jsonl(phantom.split_paths[split])
        assert check.problems == []
        assert len(check.records) == phantom.counts[split] == info["splits"][split]["count"]
        assert {r.split for r in check.records} == {split}
        assert {r.dataset for r in check.records} == {"phantom"}
        assert phantom.question_types[split] == dict(
            sorted(Counter(r.question_type for r in check.records).items())
        )
        ids += [r.id for r in check.records]
    assert len(ids) == len(set(ids)) == N
    assert info["seed"] == 0 and info["n"] == N
    assert phantom.readme_path.is_file()
    assert abs(phantom.counts["test"] - 0.2 * N) <= len(QUESTION_TYPES)
    assert abs(phantom.counts["val"] - 0.1 * N) <= len(QUESTION_TYPES)


def test_images_exist_open_and_have_recorded_size(
    phantom: PhantomSummary, records: list[Record]
) -> None:
    sizes = set()
    for record in records:
        assert record.images == [f"images/{record.id}.png"]
        with Image.open(record.image_paths(phantom.out_dir)[0]) as image:
            assert list(image.size) == record.meta["image_size"]
            assert image.mode == "RGB"
            sizes.add(image.size)
    assert min(min(size) for size in sizes) >= MIN_SIDE
    assert any(w % 28 or h % 28 for w, h in sizes), "some sizes must exercise resizing"
    assert any(not (w % 28 or h % 28) for w, h in sizes)


def test_messages_and_answers_agree_with_facts(records: list[Record]) -> None:
    for record in records:
        user, assistant = record.messages
        assert user.role == "user" and user.content.startswith("<image>\n")
        assert assistant.role == "assistant" and assistant.content == record.answer
        meta = record.meta
        assert record.question_type in QUESTION_TYPES
        if record.options is not None:
            continue
        if record.question_type == "counting":
            assert record.answer == str(meta["lesion_count"])
        if record.question_type == "laterality":
            assert meta["lesion_side"] in ("left", "right")
            expected = {"left": "左侧", "right": "右侧"} if record.lang == "zh" else {}
            assert record.answer == expected.get(meta["lesion_side"], meta["lesion_side"])
        if record.question_type == "report" and record.lang == "en":
            assert 3 <= record.answer.count(". ") + 1 <= 5
            assert record.answer.startswith("Findings:") and "Impression:" in record.answer


def test_presence_is_balanced_and_closed_questions_dominate(records: list[Record]) -> None:
    presence = [r for r in records if r.question_type == "presence"]
    yes = sum(r.answer in ("yes", "是") for r in presence)
    assert {r.answer for r in presence} <= {"yes", "no", "是", "否"}
    assert 0.35 <= yes / len(presence) <= 0.65
    test_presence = [r for r in presence if r.split == "test"]
    test_yes = sum(r.answer in ("yes", "是") for r in test_presence)
    assert abs(2 * test_yes - len(test_presence)) <= 1
    closed = sum(r.answer_type == "closed" for r in records)
    assert closed / len(records) > 0.5


def test_multiple_choice_records(records: list[Record]) -> None:
    mcq = [r for r in records if r.options is not None]
    assert 0.15 <= len(mcq) / len(records) <= 0.25
    for record in mcq:
        assert list(record.options) == ["A", "B", "C", "D"]
        assert len(set(record.options.values())) == 4
        assert record.answer in record.options and record.answer_type == "closed"
        assert record.messages[0].content.endswith(MCQ_INSTRUCTION[record.lang])
        for letter, text in record.options.items():
            assert f"\n{letter}. {text}\n" in record.messages[0].content
    assert {r.answer for r in mcq} == set("ABCD")
    for split in SPLITS:  # the correct letter is balanced within every split
        letters = Counter(r.answer for r in mcq if r.split == split)
        assert max(letters.values()) - min(letters.values()) <= 1, split


def test_chinese_share_and_vocabulary(records: list[Record]) -> None:
    for split in SPLITS:
        in_split = [r for r in records if r.split == split]
        zh_share = sum(r.lang == "zh" for r in in_split) / len(in_split)
        assert abs(zh_share - 0.2) <= 0.5 / len(in_split), split
    zh = [r for r in records if r.lang == "zh"]
    assert {r.lang for r in records} == {"en", "zh"}
    modality = {r.answer for r in zh if r.question_type == "modality" and r.options is None}
    assert modality <= {"CT", "MRI", "X线"}
    organs = {r.answer for r in zh if r.question_type == "organ" and r.options is None}
    assert organs <= {"肺", "肝", "脑", "肾"}


def test_test_split_holds_every_question_type(phantom: PhantomSummary) -> None:
    assert set(phantom.question_types["test"]) == set(QUESTION_TYPES)
    tiny = generate_phantom(phantom.out_dir.parent / "tiny", n=40, seed=5)
    assert set(tiny.question_types["test"]) == set(QUESTION_TYPES)


def test_presence_and_side_are_readable_from_pixels(
    phantom: PhantomSummary, records: list[Record]
) -> None:
    """Only lesions pass the brightness threshold, so presence and image half are in the image."""
    checked = 0
    for record in records:
        meta = record.meta
        bright = _gray(phantom, record) >= BRIGHT
        assert bool(bright.any()) == (meta["lesion_count"] > 0), record.id
        if meta["lesion_side"] in ("left", "right"):
            half = "left" if np.nonzero(bright)[1].mean() < bright.shape[1] / 2 else "right"
            assert half == IMAGE_HALF_OF_SIDE[meta["lesion_side"]], record.id
            checked += 1
    assert checked > N // 4


@pytest.mark.parametrize("family", FAMILIES)
def test_only_lesions_normalise_positive_in_every_channel(
    phantom: PhantomSummary, records: list[Record], family: str
) -> None:
    """Lesion pixels normalise positive in every channel; every other pixel lies below the largest
    channel mean. A random-weight vision tower cannot tell a flat bright patch from a flat
    light-gray one (a bias-free linear patch embedding, then layer norms); this sign pattern is
    what keeps presence learnable (see medvl.data.phantom_images)."""
    spec = get_family(family)
    mean, std = np.array(spec.image_mean), np.array(spec.image_std)
    assert (((LESION_LEVEL - 0.03) - mean) / std > 0).all()
    for record in records[:40]:
        gray = _gray(phantom, record) / 255
        lesion = np.zeros(gray.shape, dtype=bool)
        yy, xx = np.mgrid[0 : gray.shape[0], 0 : gray.shape[1]] + 0.5
        for x, y, r in record.meta["lesions"]:
            lesion |= np.hypot(xx - x, yy - y) <= r + 1.0
        assert gray[~lesion].max() < mean.max(), record.id
        assert gray.max() >= LESION_LEVEL - 0.03 or not record.meta["lesions"], record.id


def _count_blobs(mask: np.ndarray) -> int:
    """Connected components (4-neighbour) of a boolean mask, by flood fill."""
    seen = np.zeros_like(mask)
    blobs = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        blobs += 1
        stack = [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                inside = 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1]
                if inside and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
    return blobs


def test_lesion_count_and_size_are_readable_from_pixels(
    phantom: PhantomSummary, records: list[Record]
) -> None:
    areas: dict[str, list[float]] = {"small": [], "large": []}
    for record in records:
        bright = _gray(phantom, record) >= BRIGHT
        assert _count_blobs(bright) == record.meta["lesion_count"], record.id
        if record.meta["lesion_count"]:
            per_lesion = bright.sum() / record.meta["lesion_count"]
            areas[record.meta["lesion_size"]].append(per_lesion)
    assert max(areas["small"]) < min(areas["large"])


def test_modality_is_readable_from_a_thumbnail(
    phantom: PhantomSummary, records: list[Record]
) -> None:
    """A nearest-centroid classifier on 8x8 thumbnails of the anatomy (lesions clipped to the
    background's top) tells the modalities apart."""

    def thumb(record: Record) -> np.ndarray:
        anatomy = np.minimum(_gray(phantom, record), int(255 * BACKGROUND_MAX + 0.5))
        image = Image.fromarray(anatomy.astype(np.uint8)).resize((8, 8), Image.Resampling.BOX)
        return np.asarray(image, dtype=np.float64).ravel() / 255

    train = [r for r in records if r.split == "train"]
    held_out = [r for r in records if r.split != "train"]
    labels = sorted({r.meta["modality"] for r in train})
    features = np.stack([thumb(r) for r in train])
    centroids = np.stack(
        [features[[r.meta["modality"] == label for r in train]].mean(axis=0) for label in labels]
    )
    right = 0
    for record in held_out:
        distances = ((centroids - thumb(record)) ** 2).sum(axis=1)
        right += labels[int(distances.argmin())] == record.meta["modality"]
    assert right / len(held_out) >= 0.75


def test_stale_images_are_removed(tmp_path: Path) -> None:
    generate_phantom(tmp_path, n=30, seed=2)
    summary = generate_phantom(tmp_path, n=12, seed=2)
    assert len(list(summary.images_dir.glob("*.png"))) == 12


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 0}, {"seed": -1}, {"zh_fraction": 1.5}, {"val_fraction": 0.5, "test_fraction": 0.5}],
)
def test_bad_arguments_raise_config_error(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        generate_phantom(tmp_path, **kwargs)
