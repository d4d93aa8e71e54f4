"""Dataset statistics (counts, answer lengths, table, plots) and deterministic, stratified,
image-grouped splits."""

from __future__ import annotations

import json
import random
import sys

import pytest

from medvl.data.grouping import group_records
from medvl.data.record import Record
from medvl.data.split import split_records, split_summary, stratum_value
from medvl.data.stats import count_words, dataset_stats, format_stats_table, plot_stats
from medvl.errors import ConfigError


def make(rid: str, images: list[str], answer: str = "yes", **fields) -> Record:
    prefix = "<image>\n" * len(images)
    data = {"dataset": "d", "split": "all", "lang": "en", "answer_type": "closed"}
    data.update(fields)
    return Record(
        id=rid,
        images=images,
        messages=[
            {"role": "user", "content": prefix + "What is it?"},
            {"role": "assistant", "content": answer},
        ],
        answer=answer,
        **data,
    )


def corpus(n_images: int = 200, seed: int = 1) -> list[Record]:
    """Records over ``n_images`` images, 1-6 questions each; ~40% closed; two multi-image."""
    rng = random.Random(seed)
    records = []
    for i in range(n_images):
        for q in range(rng.randint(1, 6)):
            closed = rng.random() < 0.4
            records.append(
                make(
                    f"img{i}-q{q}",
                    [f"imgs/{i}.png"],
                    answer="no" if closed else "left lung",
                    answer_type="closed" if closed else "open",
                    question_type=rng.choice(["location", "modality", "yes_no"]),
                    meta={"modality": rng.choice(["CT", "MRI"])},
                )
            )
    records.append(make("bridge", ["imgs/0.png", "imgs/1.png"]))  # ties images 0 and 1 together
    records.append(make("text-only", []))
    return records


def split_of(splits: dict[str, list[Record]]) -> dict[str, str]:
    return {r.id: name for name, part in splits.items() for r in part}


def test_groups_stay_whole_and_split_field_is_set():
    records = corpus()
    splits = split_records(records)
    where = split_of(splits)
    assert set(splits) == {"train", "val", "test"} and len(where) == len(records)
    by_image: dict[str, set[str]] = {}
    for record in records:
        for image in record.images:
            by_image.setdefault(image, set()).add(where[record.id])
    assert all(len(names) == 1 for names in by_image.values())
    assert where["bridge"] == where["img0-q0"] == where["img1-q0"]
    assert all(r.split == name for name, part in splits.items() for r in part)
    assert records[0].split == "all"  # inputs untouched


def test_fractions_within_tolerance_and_strata_balanced():
    records = corpus(n_images=400)
    fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    splits = split_records(records, fractions=fractions, seed=3)
    summary = split_summary(splits)
    json.dumps(summary)
    for name, wanted in fractions.items():
        assert abs(summary["fractions"][name] - wanted) < 0.02, summary["fractions"]
    overall = sum(r.answer_type == "closed" for r in records) / len(records)
    for name, part in splits.items():
        closed = sum(r.answer_type == "closed" for r in part) / len(part)
        assert abs(closed - overall) < 0.05, (name, closed, overall)


def test_rare_stratum_is_spread_in_proportion():
    """1000 images, 5% of them 'rare': each split gets its share of the rare ones within one."""
    records = [
        make(f"r{i}", [f"{i}.png"], answer_type="closed" if i % 20 == 0 else "open")
        for i in range(1000)
    ]
    for seed in range(3):
        splits = split_records(records, seed=seed)
        for name, wanted in {"train": 0.8, "val": 0.1, "test": 0.1}.items():
            rare = sum(r.answer_type == "closed" for r in splits[name])
            assert abs(rare - wanted * 50) <= 1, (seed, name, rare)
            assert abs(len(splits[name]) - wanted * 1000) <= 2


def test_deterministic_across_runs_and_input_order():
    records = corpus()
    first = split_of(split_records(records, seed=5))
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert split_of(split_records(shuffled, seed=5)) == first
    assert split_of(split_records(records, seed=5)) == first
    assert split_of(split_records(records, seed=6)) != first


def test_output_keeps_input_order_within_splits():
    records = corpus(n_images=50)
    position = {r.id: i for i, r in enumerate(records)}
    for part in split_records(records).values():
        indices = [position[r.id] for r in part]
        assert indices == sorted(indices)


def test_without_grouping_an_image_may_be_split():
    records = corpus()
    where = split_of(split_records(records, group_by="none"))
    spread = {}
    for record in records:
        spread.setdefault(record.images[0] if record.images else "", set()).add(where[record.id])
    assert any(len(names) > 1 for names in spread.values())


def test_group_by_content_joins_copies_under_other_names(tmp_path):
    (tmp_path / "a.png").write_bytes(b"same bytes")
    (tmp_path / "b.png").write_bytes(b"same bytes")
    (tmp_path / "c.png").write_bytes(b"other bytes")
    records = [make("a", ["a.png"]), make("b", ["b.png"]), make("c", ["c.png"])]
    by_path = group_records(records, "path", base_dir=tmp_path).groups
    by_content = group_records(records, "content", base_dir=tmp_path).groups
    assert sorted(map(sorted, by_path)) == [[0], [1], [2]]
    assert sorted(map(sorted, by_content)) == [[0, 1], [2]]


def test_path_keys_normalise_windows_separators():
    records = [make("a", ["images\\x.jpg"]), make("b", ["images/./x.jpg"])]
    assert group_records(records, "path").groups == [[0, 1]]


def test_stratify_by_meta_and_fields():
    record = make("a", [], meta={"modality": "CT"}, question_type="location")
    assert stratum_value(record, "meta.modality") == "CT"
    assert stratum_value(record, "modality") == "CT"
    assert stratum_value(record, "question_type") == "location"
    assert stratum_value(record, "meta.absent") == "unknown"
    records = corpus()
    splits = split_records(records, stratify_by="meta.modality")
    assert split_summary(splits, "meta.modality")["strata"]["test"].keys() <= {
        "CT",
        "MRI",
        "unknown",
    }


@pytest.mark.parametrize(
    "fractions",
    [{"train": 0.8, "test": 0.1}, {"train": 1.2, "test": -0.2}, {}, {"train": "most"}],
)
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ConfigError, match="fractions"):
        split_records(corpus(n_images=3), fractions=fractions)


def test_zero_fraction_split_stays_empty():
    splits = split_records(corpus(n_images=30), fractions={"train": 0.5, "val": 0.0, "test": 0.5})
    assert splits["val"] == [] and splits["train"] and splits["test"]


def test_count_words_counts_chinese_characters():
    assert count_words("left lower lobe") == 3
    assert count_words("右肺, 左侧") == 4
    assert count_words("T2-weighted MRI") == 2


def test_dataset_stats_counts_lengths_and_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    records = [
        make("1", ["a.png"], "yes", meta={"modality": "CT"}),
        make("2", ["a.png", "gone.png"], "left lower lobe", answer_type="open", lang="zh"),
        make("3", [], "B", options={"A": "liver", "B": "right kidney"}, dataset="mcq"),
    ]
    stats = dataset_stats(records, tmp_path, token_counts=[100, 300, 0])
    json.dumps(stats)
    assert stats["n_records"] == 3
    assert stats["counts"]["dataset"] == {"d": 2, "mcq": 1}
    assert stats["counts"]["modality"] == {"unknown": 2, "CT": 1}
    assert stats["counts"]["answer_type"] == {"closed": 2, "open": 1}
    assert stats["counts"]["lang"] == {"en": 2, "zh": 1}
    assert stats["answer_words"]["histogram"]["1"] == 1  # "yes"
    assert stats["answer_words"]["histogram"]["2"] == 1  # "right kidney", the option text
    assert stats["answer_words"]["histogram"]["3-4"] == 1
    assert stats["answer_words"]["summary"]["max"] == 3
    assert stats["answer_chars"]["summary"]["max"] == len("left lower lobe")
    assert stats["images"] == {
        "images_per_record": {"0": 1, "1": 1, "2": 1},
        "distinct_images": 2,
        "missing_images": 1,
    }
    assert stats["tokens"]["histogram"]["256-511"] == 1 and "image_tokens" not in stats
    with pytest.raises(ValueError, match="one count per record"):
        dataset_stats(records, token_counts=[1])


def test_format_stats_table_lists_every_section():
    stats = dataset_stats(corpus(n_images=10))
    table = format_stats_table(stats)
    for title in ("dataset", "answer_type", "answer length (words)", "images per record"):
        assert title in table
    assert f"records: {stats['n_records']}" in table


def test_plot_stats_writes_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    stats = dataset_stats(corpus(n_images=10), token_counts=None)
    paths = plot_stats(stats, tmp_path / "plots")
    assert paths and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    assert {p.stem for p in paths} >= {"counts_answer_type", "answer_words", "images_per_record"}


def test_plot_stats_without_matplotlib_returns_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot_stats(dataset_stats(corpus(n_images=3)), tmp_path) == []
    assert not any(tmp_path.iterdir())
