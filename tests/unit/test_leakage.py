"""Leakage: exact and near-duplicate images (resized, re-encoded) and duplicate question-answer
pairs are found, different phantom images are not, and the search is vectorised."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import medvl.data.media_hashes as media_hashes
from medvl.data.leakage import PHASH_DISTANCE, filter_test, find_leakage
from medvl.data.media_hashes import ImageHasher
from medvl.data.phantom_images import Lesion, Scene, render
from medvl.data.phash import hamming, match_hashes, near_pairs, phashes
from medvl.data.record import Record

REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"

# (modality, organ, lesions as (x, y, r) in a 224x224 image); neighbours differ only in lesions
SCENES = [
    ("CT", "lung", [(70, 110, 18)]),
    ("CT", "lung", [(150, 100, 18)]),
    ("CT", "liver", [(60, 90, 12)]),
    ("CT", "liver", [(170, 90, 12)]),
    ("CT", "kidney", [(170, 120, 16)]),
    ("CT", "brain", [(170, 120, 16)]),
    ("MRI", "brain", [(70, 100, 14)]),
    ("MRI", "brain", [(70, 150, 14)]),
    ("X-ray", "lung", [(60, 110, 20)]),
    ("X-ray", "lung", []),
    ("CT", "liver", [(90, 150, 14)]),
]


@functools.cache
def phantom(index: int, seed: int = 0) -> Image.Image:
    modality, organ, lesions = SCENES[index]
    scene = Scene(modality, organ, 224, 224, tuple(Lesion(x, y, r, "left") for x, y, r in lesions))
    return Image.fromarray(render(scene, np.random.default_rng(seed)))


def reencode(image: Image.Image, scale: float = 1.0, quality: int | None = 70) -> Image.Image:
    if scale != 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.BILINEAR)
    if quality is None:
        return image
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer)


def record(rid: str, image: str | None, question: str = "What is shown?", answer: str = "x"):
    images = [image] if image else []
    prefix = "<image>\n" if image else ""
    return Record(
        id=rid,
        dataset="t",
        split="x",
        lang="en",
        images=images,
        messages=[
            {"role": "user", "content": prefix + question},
            {"role": "assistant", "content": answer},
        ],
        answer=answer,
    )


def test_copies_are_near_and_different_phantoms_are_not():
    """The measured distances behind PHASH_DISTANCE (256-bit pHash; printed with -s)."""
    originals = [phashes(phantom(i)) for i in range(len(SCENES))]
    copies = {
        "half": lambda im: reencode(im, 0.5, None),
        "double": lambda im: reencode(im, 2.0, None),
        "jpeg70": lambda im: reencode(im),
        "half+jpeg70": lambda im: reencode(im, 0.5),
    }
    copy_distances = {
        name: max(hamming(originals[i][1], phashes(make(phantom(i)))[1]) for i in range(6))
        for name, make in copies.items()
    }
    different = [hamming(a[1], b[1]) for i, a in enumerate(originals) for b in originals[i + 1 :]]
    print(f"copies (max of 256 bits): {copy_distances}; different phantoms: min {min(different)}")
    assert max(copy_distances.values()) <= PHASH_DISTANCE < min(different)


@pytest.fixture(scope="module")
def leak_data(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("leak")
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    (train_dir / "img").mkdir(parents=True)
    (test_dir / "img").mkdir(parents=True)
    train = []
    for i in range(8):
        phantom(i).save(train_dir / "img" / f"t{i}.png")
        train.append(record(f"train-{i}", f"img/t{i}.png", answer=f"a{i}"))
    train.append(record("train-text", None, "Define edema.", "swelling"))
    shutil.copy(train_dir / "img" / "t0.png", test_dir / "img" / "renamed.png")
    reencode(phantom(1), 0.5).save(test_dir / "img" / "small.jpg")
    reencode(phantom(2), 2.0, None).save(test_dir / "img" / "big.png")
    phantom(8).save(test_dir / "img" / "new8.png")
    phantom(9).save(test_dir / "img" / "new9.png")
    phantom(3, seed=7).save(test_dir / "img" / "noise.png")  # train-3 with other texture noise
    phantom(10).save(test_dir / "img" / "liver.png")  # like train-2/3, lesion elsewhere
    test = [
        record("exact", "img/renamed.png", answer="other"),
        record("exact-qa", "img/renamed.png", answer="A0."),  # same QA as train-0, same image
        record("near-small", "img/small.jpg"),
        record("near-big", "img/big.png"),
        record("fresh-8", "img/new8.png", answer="a0"),  # train-0's QA on another image
        record("fresh-9", "img/new9.png"),
        record("renoised", "img/noise.png"),
        record("fresh-liver", "img/liver.png"),
        record("text-dup", None, "define  Edema?", "Swelling"),
        record("missing", "img/nope.png"),
    ]
    return train, train_dir, test, test_dir


def test_find_leakage_kinds_and_counts(leak_data):
    train, train_dir, test, test_dir = leak_data
    report = find_leakage(train, train_dir, test, test_dir)
    kinds = {(p.test_id, p.kind): p for p in report.pairs}
    assert set(kinds) == {
        ("exact", "exact_image"),
        ("exact-qa", "exact_image"),
        ("exact-qa", "qa_duplicate"),
        ("near-small", "near_image"),
        ("near-big", "near_image"),
        ("renoised", "near_image"),
        ("text-dup", "qa_duplicate"),
    }
    assert kinds[("exact", "exact_image")].train_id == "train-0"
    assert kinds[("near-small", "near_image")].train_id == "train-1"
    assert kinds[("near-big", "near_image")].train_id == "train-2"
    near = {p.test_id: p.distance for p in report.pairs if p.kind == "near_image"}
    print(f"near-duplicate distances (of 256 bits): {near}")
    assert all(d <= PHASH_DISTANCE for d in near.values())
    counts = report.counts
    assert counts["exact_image"] == 2 and counts["near_image"] == 3
    assert counts["qa_duplicate"] == 2 and counts["leaked_test_records"] == 6
    assert counts["missing_test_images"] == 1 and counts["missing_train_images"] == 0
    assert counts["train_images"] == 8 and counts["test_images"] == 8


def test_filter_test_accepts_report_or_its_json(leak_data):
    train, train_dir, test, test_dir = leak_data
    report = find_leakage(train, train_dir, test, test_dir)
    kept = [r.id for r in filter_test(test, report)]
    assert kept == ["fresh-8", "fresh-9", "fresh-liver", "missing"]
    as_json = json.loads(json.dumps(report.to_dict()))
    assert [r.id for r in filter_test(test, as_json)] == kept
    only_exact = [r.id for r in filter_test(test, report, kinds=["exact_image"])]
    assert "near-small" in only_exact and "exact" not in only_exact
    with pytest.raises(ValueError, match="unknown leak kind"):
        filter_test(test, report, kinds=["fuzzy"])


def test_threshold_zero_keeps_only_identical_hashes(leak_data):
    train, train_dir, test, test_dir = leak_data
    report = find_leakage(train, train_dir, test, test_dir, phash_distance=0)
    assert all(p.distance == 0 for p in report.pairs if p.kind == "near_image")
    assert report.counts["exact_image"] == 2


def test_hasher_reads_each_image_once(leak_data, monkeypatch):
    train, train_dir, test, test_dir = leak_data
    calls: list[Path] = []
    original = media_hashes.file_sha256
    monkeypatch.setattr(media_hashes, "file_sha256", lambda p: calls.append(p) or original(p))
    hasher = ImageHasher()
    find_leakage(train, train_dir, test, test_dir, hasher=hasher)
    find_leakage(train, train_dir, test, test_dir, hasher=hasher)
    assert len(calls) == len(set(calls)) == 8 + 8


def test_match_hashes_is_vectorised_and_exact():
    rng = np.random.default_rng(0)

    def random_hashes(n: int) -> list[tuple[int, int]]:
        low = rng.integers(0, 2**63, size=(n, 5), dtype=np.uint64).tolist()
        return [(a, (b << 192) | (c << 128) | (d << 64) | e) for a, b, c, d, e in low]

    pool = random_hashes(20_000)
    h64, h256 = pool[5]
    queries = [(h64 ^ 0b111, h256 ^ (0b1111 << 200)), pool[17], *random_hashes(2_000)]
    start = time.perf_counter()
    found = match_hashes(queries, pool, phash_distance=18, candidate_distance=12)
    elapsed = time.perf_counter() - start
    assert found == [(0, 5, 4), (1, 17, 0)]
    assert elapsed < 5, f"2k x 20k hashes took {elapsed:.2f}s"
    assert match_hashes(queries[:1], pool, phash_distance=3) == []


def test_near_pairs_lists_every_pair_like_a_brute_force_loop():
    """Every pair within both thresholds, not only each hash's closest: a chain A~B~C with A far
    from C, and a hash with two near neighbours, keep all their edges."""
    rng = np.random.default_rng(1)
    base = [int(x) for x in rng.integers(0, 2**63, size=(6, 5), dtype=np.uint64).ravel()]
    hashes = []
    for i in range(6):  # six unrelated roots, each followed by three perturbed copies
        h64, h256 = (
            base[5 * i],
            int.from_bytes(
                b"".join(int(w).to_bytes(8, "big") for w in base[5 * i + 1 : 5 * i + 5]), "big"
            ),
        )
        hashes.append((h64, h256))
        hashes.append((h64 ^ 0b1, h256 ^ (0xFF << 10)))  # 8 of 256 bits from the root
        hashes.append((h64 ^ 0b11, h256 ^ (0xFF << 18)))  # 8 from the root, 16 from copy 1
        hashes.append((h64 ^ (0xFFFF << 20), h256 ^ 0b1))  # 256-bit near, 64-bit too far
    expected = [
        (i, j, hamming(a[1], b[1]))
        for i, a in enumerate(hashes)
        for j, b in enumerate(hashes)
        if i < j and hamming(a[0], b[0]) <= 12 and hamming(a[1], b[1]) <= 18
    ]
    found = near_pairs(hashes, phash_distance=18, candidate_distance=12)
    assert sorted(found) == sorted(expected)
    assert len(found) == 6 * 3  # per root: root-copy1, root-copy2, copy1-copy2
    assert near_pairs(hashes[:1]) == [] and near_pairs([]) == []


def test_real_vqa_rad_duplicates_are_exact_only():
    """VQA-RAD export: 50 files, 33 contents. Train = first 25 files, test = last 25."""
    folder = REAL / "vqa_rad_hf_export" / "data" / "vqa_rad"
    if not (folder / "test.json").is_file():
        pytest.skip("real VQA-RAD sample not available")
    rows = json.loads((folder / "test.json").read_text(encoding="utf-8"))
    paths = [row["image_path"].replace("\\", "/") for row in rows]
    records = [
        record(f"r{i}", p, row["question"], row["answer"])
        for i, (p, row) in enumerate(zip(paths, rows, strict=True))
    ]
    sha = [hashlib.sha256((folder / p).read_bytes()).hexdigest() for p in paths]
    expected = sum(s in set(sha[:25]) for s in sha[25:])
    report = find_leakage(records[:25], folder, records[25:], folder)
    print(f"VQA-RAD: {expected} of 25 test images are byte copies of train images")
    assert report.counts["exact_image"] == expected > 0
    assert report.counts["near_image"] == 0
