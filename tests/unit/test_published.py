"""Published scores: the shipped table loads and every entry is valid, the numbers match their
sources, bad tables fail with one clear message, and results are set only beside numbers
scored under the same protocol (``eval benches --published`` and the end of ``eval run``)."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
import tomllib
from PIL import Image

from medvl.cli.main import main
from medvl.errors import ConfigError, UnknownNameError
from medvl.eval.benchmarks import BENCHMARKS
from medvl.eval.published import (
    DEFAULT_PROTOCOL,
    METRICS,
    PROTOCOLS,
    load_published,
    published_for,
    published_lines,
    read_published,
    run_protocol,
)

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT.parent / "shared" / "notes" / "evaluation_anchors.md"
ISSUE_PROTOCOLS = {
    "medevalkit",
    "vlmevalkit",
    "lmms-eval",
    "llava-med",
    "medvlm-r1",
    "huatuogpt-vision",
    "medvlthinker",
    "model-card",
    "medvl",
}


def value(benchmark: str, model: str, protocol: str) -> float:
    [score] = [s for s in published_for(benchmark, protocol) if s.model == model]
    return score.value


# ---------------------------------------------------------------- the shipped table


def test_every_shipped_entry_is_valid():
    table = read_published()
    scores = load_published()
    assert len(scores) >= 60
    assert set(PROTOCOLS) == ISSUE_PROTOCOLS
    for s in scores:
        assert s.protocol in PROTOCOLS and s.metric in METRICS, s
        assert 0 < s.value <= 100, s
        assert s.model.strip() and s.source.strip() and s.source_notes.strip(), s
        assert "http" not in s.source and "www." not in s.source, s  # citations, not URLs
        assert s.benchmark in table.benchmarks, s
        assert s.medvl_benchmark == table.benchmarks[s.benchmark].medvl_benchmark
        if s.medvl_benchmark is not None:
            assert s.medvl_benchmark == s.benchmark and s.benchmark in BENCHMARKS, s
    assert table.benchmarks["mmmu_med"].medvl_benchmark is None  # medvl has no MMMU reader
    keys = [(s.benchmark, s.split, s.model, s.protocol, s.source) for s in scores]
    assert len(keys) == len(set(keys))


def test_every_scoring_protocol_of_medvl_can_be_matched():
    """A run scored under any of medvl's protocols finds its published numbers by name."""
    protocols = pytest.importorskip("medvl.eval.protocols")
    assert set(protocols.PROTOCOLS) <= set(PROTOCOLS)


def test_the_yaml_ships_in_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["medvl"]
    assert any(fnmatch.fnmatch("eval/published.yaml", p) for p in patterns), patterns


def test_the_numbers_the_issue_names():
    lingshu = {
        "mmmu_med": 54.0,
        "vqa_rad": 67.9,
        "slake": 83.1,
        "pathvqa": 61.9,
        "pmc_vqa": 56.3,
        "omnimedvqa": 82.9,
        "medxpertqa_mm": 26.7,
    }
    qwen = dict(zip(lingshu, (50.6, 64.5, 67.2, 44.1, 51.9, 63.6, 22.3), strict=True))
    for bench in lingshu:
        assert value(bench, "Lingshu-7B", "medevalkit") == lingshu[bench]
        assert value(bench, "Qwen2.5-VL-7B", "medevalkit") == qwen[bench]
    thinker = {"pmc_vqa": 49.30, "mmmu_med": 52.94, "medxpertqa_mm": 18.89, "pathvqa": 65.39}
    thinker |= {"slake": 65.71, "vqa_rad": 68.75}
    for bench, number in thinker.items():
        assert value(bench, "Qwen2.5-VL-7B", "medvlthinker") == number
    # MedGemma-4B on VQA-RAD / SLAKE: three scorers, three numbers
    medgemma = {
        "model-card": (49.9, 62.3),
        "medevalkit": (72.5, 76.4),
        "medvlthinker": (78.55, 83.49),
    }
    for protocol, (rad, slake) in medgemma.items():
        assert value("vqa_rad", "MedGemma-4B-IT", protocol) == rad
        assert value("slake", "MedGemma-4B-IT", protocol) == slake
    [card] = published_for("vqa_rad", "model-card")
    assert card.metric == "token_f1"
    huatuo = {"vqa_rad": 68.1, "slake": 76.9, "pathvqa": 63.5, "pmc_vqa": 58.2}
    huatuo |= {"omnimedvqa": 76.9, "mmmu_med": 54.4}
    for bench, number in huatuo.items():
        assert value(bench, "HuatuoGPT-Vision-34B", "huatuogpt-vision") == number
    assert value("medvlm_r1", "Qwen2-VL-2B-Instruct", "medvlm-r1") == 55.11
    assert value("medvlm_r1", "MedVLM-R1-2B", "medvlm-r1") == 78.22
    assert value("vqa_rad", "MedVLM-R1-2B", "medevalkit") == 48.6
    gmai = {s.model: s for s in published_for("gmai_mmbench", "vlmevalkit")}
    assert (
        gmai["Qwen2-VL-7B-Instruct"].value == 46.46 and gmai["Qwen2-VL-7B-Instruct"].split == "val"
    )
    assert gmai["HuatuoGPT-Vision-34B"].value == 51.21


def test_lingshu_table_matches_the_notes_cell_by_cell():
    """Every cell of the notes' Lingshu/MedEvalKit table is in the shipped table, and back."""
    if not NOTES.is_file():
        pytest.skip(f"no shared notes at {NOTES}")
    text = NOTES.read_text(encoding="utf-8").split("**Lingshu/MedEvalKit table**", 1)[1]
    rows = [line for line in text.split("\n\n", 2)[1].splitlines() if line.startswith("| ")]
    columns = ["mmmu_med", "vqa_rad", "slake", "pathvqa", "pmc_vqa", "omnimedvqa"]
    columns += ["medxpertqa_mm"]
    names = {"Qwen2.5VL-7B": "Qwen2.5-VL-7B", "HuatuoGPT-V-7B": "HuatuoGPT-Vision-7B"}
    expected = {}
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if cells[0] == "Model" or set(cells[0]) <= {"-"}:
            continue
        model = names.get(cells[0], cells[0])
        for bench, cell in zip(columns, cells[1:8], strict=True):
            if re.fullmatch(r"\d+(\.\d+)?", cell):
                expected[(model, bench)] = float(cell)
    shipped = {(s.model, s.benchmark): s.value for s in published_for(protocol="medevalkit")}
    assert len(expected) == 48
    assert shipped == expected


def test_values_keep_their_published_digits():
    [thinker] = [s for s in published_for("pmc_vqa", "medvlthinker")]
    assert thinker.value == 49.3 and thinker.percent == "49.30"
    [r1] = [s for s in published_for("vqa_rad", "medevalkit") if s.model == "Med-R1-2B"]
    assert r1.short() == "Med-R1-2B 39.0%"


# ---------------------------------------------------------------- filters


def test_published_for_filters_by_benchmark_and_protocol():
    assert {s.protocol for s in published_for("vqa_rad")} == {
        "medevalkit",
        "medvlthinker",
        "model-card",
        "huatuogpt-vision",
    }
    assert [(s.model, s.value) for s in published_for("vqa_rad", "model-card")] == [
        ("MedGemma-4B-IT", 49.9)
    ]
    assert all(s.benchmark == "mmmu_med" for s in published_for("mmmu_med"))
    assert published_for("phantom") == []  # a medvl benchmark nobody published on
    assert published_for("vqa_rad", "medvl") == []
    with pytest.raises(UnknownNameError, match="unknown benchmark 'vqarad'"):
        published_for("vqarad")
    with pytest.raises(UnknownNameError, match=r"unknown protocol 'lmms_eval'.*lmms-eval"):
        published_for("slake", "lmms_eval")


def test_run_protocol_reads_metrics_settings():
    assert run_protocol(None) == run_protocol({}) == DEFAULT_PROTOCOL == "medvl"
    assert run_protocol({"protocol": {"name": "vlmevalkit", "version": "x"}}) == "vlmevalkit"
    assert run_protocol({"protocol": "lmms-eval"}) == "lmms-eval"


def test_lines_show_the_same_protocol_and_keep_the_rest_apart():
    lines = published_lines("vqa_rad", "medevalkit")
    split = lines.index("published on vqa_rad under other protocols (not comparable):")
    same, other = lines[:split], lines[split:]
    assert same[0] == "published on vqa_rad under medevalkit (same protocol, comparable):"
    assert "  Lingshu-7B 67.9% accuracy, arXiv 2506.07044 (Lingshu), Table 6" in same[1]
    assert len(same) == 1 + len(published_for("vqa_rad", "medevalkit")) == 8
    assert not any("medevalkit" in line for line in other)
    assert "  model-card token_f1: MedGemma-4B-IT 49.9%" in other
    assert "  medvlthinker accuracy: Qwen2.5-VL-7B 68.75%, MedGemma-4B-IT 78.55%" in other
    assert other[-1] == "  sources: medvl eval benches --published --bench vqa_rad"


def test_a_medvl_run_has_no_comparable_numbers_yet():
    lines = published_lines("slake", "medvl")
    assert lines[:2] == ["published on slake under medvl (same protocol, comparable):", "  none"]
    assert "published on slake under other protocols (not comparable):" in lines
    # a protocol the table does not know is no error: the run was scored, nothing compares
    assert published_lines("slake", "someday")[1] == "  none"
    assert published_lines("slake_zh", "medvl") == []


def test_split_is_shown_with_same_protocol_numbers():
    lines = published_lines("gmai_mmbench", "vlmevalkit")
    assert "  Qwen2-VL-7B-Instruct 46.46% accuracy [val], uni-medical/GMAI-VL GitHub issue #1" in (
        "\n".join(lines)
    )
    assert not any("not comparable" in line for line in lines)  # everything is vlmevalkit


# ---------------------------------------------------------------- bad tables

GOOD = """\
schema: medvl.published/1
benchmarks:
  vqa_rad: {title: VQA-RAD, medvl_benchmark: vqa_rad}
  mmmu_med: {title: MMMU Health & Medicine, medvl_benchmark: null}
tables:
  - source: "arXiv 0000.00000, Table 1"
    protocol: medevalkit
    metric: accuracy
    splits: {mmmu_med: val}
    notes: closed by rule, open by a judge
    rows:
      - model: Model-A
        scores: {vqa_rad: 60.50, mmmu_med: 41.0}
        notes: a row note
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "published.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_hand_written_table_expands_to_one_score_per_cell(tmp_path):
    table = read_published(write(tmp_path, GOOD))
    rad, mmmu = table.scores
    assert (rad.benchmark, rad.model, rad.protocol, rad.metric) == (
        "vqa_rad",
        "Model-A",
        "medevalkit",
        "accuracy",
    )
    assert (rad.value, rad.percent, rad.split, rad.notes) == (60.5, "60.50", None, "a row note")
    assert rad.source_notes == "closed by rule, open by a judge"
    assert (mmmu.medvl_benchmark, mmmu.split) == (None, "val")
    assert [s.model for s in published_for("mmmu_med", table=table)] == ["Model-A"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("protocol: medevalkit", "protocol: medeval", r"row 'Model-A', vqa_rad: unknown protocol"),
        ("metric: accuracy", "metric: acc", r"unknown metric 'acc'; allowed values: accuracy"),
        ("{vqa_rad: 60.50,", "{vqarad: 60.50,", r"unknown benchmark 'vqarad'; add it under"),
        ("60.50", "605.0", r"value 605.0 is not a percentage"),
        ("60.50", "'60.5'", r"value '60.5' must be a number"),
        ("medvl_benchmark: vqa_rad}", "medvl_benchmark: rad}", r"'rad' is not a medvl bench"),
        ("medvl_benchmark: null}", "medvl_benchmark: vqa_rad}", r"name the entry after"),
        ("mmmu_med: 41.0}", "mmmu_med: 41.0, vqa_rad: 1.0}", r"line 13: key 'vqa_rad' given"),
        ("schema: medvl.published/1", "schema: 2", r"'schema: medvl.published/1'"),
        ("    protocol: medevalkit\n", "", r"tables\[0\]: missing protocol"),
        ("splits: {mmmu_med: val}", "splits: {mmmu: val}", r"splits name unknown benchmark"),
    ],
)
def test_bad_tables_fail_with_one_message_naming_the_place(tmp_path, old, new, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError, match=message) as info:
        read_published(path)
    assert str(info.value).startswith(str(path))


def test_a_row_listed_twice_is_refused(tmp_path):
    twice = GOOD + "      - model: Model-A\n        scores: {vqa_rad: 61.0}\n"
    with pytest.raises(ConfigError, match="Model-A on vqa_rad is listed twice"):
        read_published(write(tmp_path, twice))


# ---------------------------------------------------------------- the command line


def benches(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["eval", "benches", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_benches_published_lists_every_benchmark_with_sources(capsys):
    code, out, _ = benches(capsys, "--published")
    assert code == 0
    for name in read_published().benchmarks:
        assert f"\n{name}: " in out, name
    assert "mmmu_med: MMMU Health & Medicine subjects (no medvl reader)" in out
    assert "vqa_rad: VQA-RAD (medvl benchmark vqa_rad)" in out
    assert re.search(r"\n  MedGemma-4B-IT +model-card +token_f1 +- +49\.9  \[\d\]\n", out)
    assert re.search(r"\n  Qwen2-VL-7B-Instruct +vlmevalkit +accuracy +val +46\.46  \[\d\]\n", out)
    assert "sources:\n  [1] arXiv 2506.07044 (Lingshu), Table 6" in out
    assert "MedGemma model card (google/medgemma-4b-it)" in out
    assert "note: average 53.50 over the six" in out


def test_benches_filters_by_bench_and_protocol(capsys):
    code, out, _ = benches(capsys, "--published", "--bench", "vqa_rad", "--protocol", "model-card")
    assert code == 0
    rows = [
        line for line in out.splitlines() if re.match(r"  \S+ +\S+ +\S+ +\S+ +[\d.]+  \[", line)
    ]
    assert len(rows) == 1 and "MedGemma-4B-IT" in rows[0] and "49.9" in rows[0]
    assert "medevalkit" not in out and "slake:" not in out
    assert "  [1] MedGemma model card" in out
    code, out, _ = benches(capsys, "--bench", "slake_zh")  # --bench alone implies --published
    assert code == 0 and "no published scores on slake_zh" in out


@pytest.mark.parametrize(
    ("flag", "name", "message"),
    [
        ("--bench", "vqarad", "medvl: error: unknown benchmark 'vqarad'; allowed values:"),
        ("--protocol", "lmms", "medvl: error: unknown protocol 'lmms'; allowed values: medvl,"),
    ],
)
def test_benches_unknown_name_is_one_line_and_exit_2(capsys, flag, name, message):
    code, out, err = benches(capsys, "--published", flag, name)
    assert code == 2 and out == ""
    assert err.startswith(message) and len(err.strip().splitlines()) == 1


def test_eval_run_prints_published_numbers_beside_its_result(tiny_model_dirs, tmp_path, capsys):
    """A real run on a SLAKE folder as published: medvl protocol, others labelled apart."""
    folder = tmp_path / "Slake1.0"
    record = {
        "img_id": 1,
        "img_name": "xmlab1/source.jpg",
        "question": "Does the picture contain liver?",
        "answer": "No",
        "q_lang": "en",
        "location": "Abdomen",
        "modality": "CT",
        "answer_type": "CLOSED",
        "base_type": "vqa",
        "triple": ["vhead", "_", "_"],
        "qid": 7,
        "content_type": "Organ",
    }
    second = dict(record, qid=8, question="What modality is this?", answer="CT")
    second |= {"answer_type": "OPEN", "content_type": "Modality"}
    (folder / "imgs" / "xmlab1").mkdir(parents=True)
    Image.new("RGB", (32, 32), (90, 20, 20)).save(folder / "imgs" / "xmlab1" / "source.jpg")
    (folder / "test.json").write_text(json.dumps([record, second]), encoding="utf-8")
    argv = ["eval", "run", "--bench", "slake", "--data", str(folder), "--out", str(tmp_path / "o")]
    argv += ["--model", str(tiny_model_dirs("qwen2_vl")), "--max-new-tokens", "2"]
    assert main([*argv, "--resamples", "20"]) == 0
    out = capsys.readouterr().out
    assert "slake: 2 of 2 records" in out
    assert "  published on slake under medvl (same protocol, comparable):\n    none\n" in out
    assert "  published on slake under other protocols (not comparable):\n" in out
    assert "    medevalkit accuracy: Lingshu-7B 83.1%, Qwen2.5-VL-7B 67.2%," in out
    assert out.index("not comparable") < out.index("  run: ")
