"""``medvl eval run``: every benchmark read from its real layout, predicted by a tiny Qwen2-VL,
scored with its breakdowns; caches reused, re-keyed and resumed; prompts where they belong."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from medvl.cli.main import main
from medvl.data.formats import convert
from medvl.data.jsonl import read_records, write_records
from medvl.errors import ConfigError, MedvlError
from medvl.eval.benchmarks import BENCHMARKS, get_benchmark
from medvl.eval.breakdown import DEFAULT_KEYS, BootstrapSettings
from medvl.eval.prompts import REASONING_TEMPLATE, TEMPLATES, resolve_prompt
from medvl.eval.runner import RunConfig, run_benchmark
from medvl.infer.engine import GenerationSettings
from medvl.infer.factory import EngineSpec
from medvl.infer.hf_engine import HFEngine
from medvl.models.loading import load_model

FIXTURES = Path(__file__).parents[1] / "fixtures" / "formats"
FAST = GenerationSettings(max_new_tokens=4)
BOOT = BootstrapSettings(resamples=50)
REQUIRED = (
    "slake",
    "slake_zh",
    "vqa_rad",
    "pathvqa",
    "pmc_vqa",
    "omnimedvqa",
    "gmai_mmbench",
    "medvlm_r1",
    "medxpertqa_mm",
    "iu_xray",
    "iu_xray_zh",
    "phantom",
    "custom",
)


def png(path: Path, color: tuple[int, int, int] = (40, 40, 160)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), color).save(path)
    return path


def copy(tmp_path: Path, name: str, images: tuple[str, ...] = ()) -> Path:
    folder = shutil.copytree(FIXTURES / name, tmp_path / name, dirs_exist_ok=True)
    for image in images:
        png(folder / image)
    return folder


def b64_png(color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# ---------------------------------------------------------------- layouts, as published


def slake(tmp_path: Path) -> Path:
    return copy(
        tmp_path, "slake/slake_layout", ("imgs/xmlab1/source.jpg", "imgs/xmlab2/source.jpg")
    )


def vqa_rad(tmp_path: Path) -> Path:
    images = ("VQA_RAD Image Folder/synpic54610.jpg", "VQA_RAD Image Folder/synpic29265.jpg")
    return copy(tmp_path, "vqa_rad", images) / "VQA_RAD Dataset Public.json"


def pathvqa(tmp_path: Path) -> Path:
    folder = tmp_path / "pathvqa"
    png(folder / "images" / "test" / "p0.jpg")
    rows = [
        {"image_path": "images\\test\\p0.jpg", "question": "is this fibrosis?", "answer": "yes"},
        {"image_path": "images/test/p0.jpg", "question": "what is present?", "answer": "fibrin"},
    ]
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return folder / "test.jsonl"


def pmc_vqa(tmp_path: Path) -> Path:
    images = ("images/PMC1064097_F1.jpg", "images/PMC1064097_F2.jpg")
    return copy(tmp_path, "pmc_vqa", images) / "test_2.csv"


def omnimedvqa(tmp_path: Path) -> Path:
    images = (
        "Images/ACRIMA/Im553_g_ACRIMA.png",
        "Images/ACRIMA/Im554_ACRIMA.png",
        "Images/Chest CT Scan/test/adenocarcinoma/000108.png",
    )
    return copy(tmp_path, "omnimedvqa", images)


def gmai_tsv(path: Path, n: int = 3, *, answers: bool = True) -> Path:
    columns = ["index", "question", "A", "B", "C", "D", "E", "answer", "category", "image"]
    columns += ["modality", "clinical VQA task", "department", "perceptual granularity"]
    if not answers:
        columns.remove("answer")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, delimiter="\t", extrasaction="ignore")
        writer.writeheader()
        for i in range(n):
            writer.writerow(
                {
                    "index": i,
                    "question": "Which organ is shown?",
                    "A": "Liver",
                    "B": "Lung",
                    "C": "Brain",
                    "D": "Heart",
                    "E": "None",
                    "answer": "AB"[i % 2],
                    "category": "organ",
                    "image": b64_png((i * 40, 0, 0)),
                    "modality": ["CT", "MR"][i % 2],
                    "clinical VQA task": ["Organ Recognition", "Disease Diagnosis"][i % 2],
                    "department": "Radiology",
                    "perceptual granularity": "Image Level",
                }
            )
    return path


def gmai_mmbench(tmp_path: Path) -> Path:
    return gmai_tsv(tmp_path / "GMAI-MMBench_VAL.tsv")


def medvlm_r1(tmp_path: Path) -> Path:
    folder = copy(tmp_path, "huatuo", ("images/brain002206.png", "images/ct_001.png"))
    return folder / "MRI_CT_XRAY_300each_dataset.json"


def huatuo(tmp_path: Path) -> Path:
    folder = copy(tmp_path, "huatuo", ("images/brain002206.png", "images/pmc_1.jpg"))
    return folder / "medical_multimodel_evaluation_data.json"


def medxpertqa_mm(tmp_path: Path) -> Path:
    root = tmp_path / "MedXpertQA"
    png(root / "images" / "MM-1.jpeg")
    png(root / "images" / "MM-2-a.jpeg")
    png(root / "images" / "MM-2-b.jpeg")
    options = {"A": "Pneumonia", "B": "Edema", "C": "Effusion", "D": "Mass", "E": "Normal"}
    embedded = " ".join(f"({k}) {v}" for k, v in options.items())
    rows = [
        {
            "id": "MM-1",
            "question": f"A man has a cough. What is shown?\nAnswer Choices: {embedded}",
            "options": options,
            "label": "C",
            "images": ["MM-1.jpeg"],
            "medical_task": "Diagnosis",
            "body_system": "Respiratory",
            "question_type": "Reasoning",
        },
        {
            "id": "MM-2",
            "question": f"Compare the images. What is new?\nAnswer Choices: {embedded}",
            "options": options,
            "label": "A",
            "images": ["MM-2-a.jpeg", "MM-2-b.jpeg"],
            "medical_task": "Diagnosis",
            "body_system": "Cardiovascular",
            "question_type": "Understanding",
        },
    ]
    (root / "MM").mkdir()
    path = root / "MM" / "test.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def iu_folder(tmp_path: Path) -> Path:
    images = ("images/CXR2_IM-0652/0.png", "images/162_1.png", "images/163_1.png")
    return copy(tmp_path, "iu_xray", images)


def iu_xray(tmp_path: Path) -> Path:
    return iu_folder(tmp_path) / "annotation.json"


def iu_xray_zh(tmp_path: Path) -> Path:
    return iu_folder(tmp_path) / "openi-zh.json"


def custom(tmp_path: Path) -> Path:
    """A canonical file written by the data layer (any format converted earlier)."""
    out = tmp_path / "canon" / "pmc.jsonl"
    convert("pmc_vqa", pmc_vqa(tmp_path), out)
    return out


LAYOUTS = {
    # bench: (builder of its published layout, records it holds)
    "slake": (slake, 4),
    "slake_zh": (slake, 1),
    "vqa_rad": (vqa_rad, 2),
    "pathvqa": (pathvqa, 2),
    "pmc_vqa": (pmc_vqa, 2),
    "omnimedvqa": (omnimedvqa, 3),
    "gmai_mmbench": (gmai_mmbench, 3),
    "medvlm_r1": (medvlm_r1, 2),
    "huatuo": (huatuo, 2),
    "medxpertqa_mm": (medxpertqa_mm, 2),
    "iu_xray": (iu_xray, 1),
    "iu_xray_zh": (iu_xray_zh, 2),
    "custom": (custom, 2),
}


@pytest.fixture(scope="module")
def model_dir(tiny_model_dirs) -> Path:
    return tiny_model_dirs("qwen2_vl")


@pytest.fixture(scope="module")
def engine(model_dir):
    engine = HFEngine(load_model(model_dir), batch_size=4, num_workers=1)
    yield engine
    engine.close()


def run_api(engine, bench: str, data: Path, out: Path, **kwargs):
    config = RunConfig(bench=bench, data=data, out=out, bootstrap=BOOT, **kwargs)
    return run_benchmark(config, engine)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["eval", "run", *argv, "--resamples", "50"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def prediction_files(out: Path) -> list[Path]:
    return sorted((out / "predictions").glob("*.jsonl"))


# ---------------------------------------------------------------- the table


def test_benches_lists_every_benchmark(capsys):
    assert set(REQUIRED) <= set(BENCHMARKS)
    assert main(["eval", "benches"]) == 0
    out = capsys.readouterr().out
    for name in BENCHMARKS:
        assert f"\n{name} " in out, name
    assert "clinical vqa task" in out and "reasoning" in out


def test_eval_score_bench_still_adds_breakdown_keys(tmp_path, capsys):
    data = custom(tmp_path)
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"id": "pmc_vqa-test-0", "prediction": "B"}\n', encoding="utf-8")
    args = ["eval", "score", "--data", str(data), "--pred", str(pred), "--out", str(tmp_path)]
    assert main([*args, "--bench", "gmai_mmbench", "--resamples", "20"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "department" in metrics["breakdowns"]
    assert main([*args, "--bench", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------- every layout


@pytest.mark.parametrize("bench", sorted(LAYOUTS))
def test_benchmark_runs_from_its_published_layout(bench, engine, tmp_path):
    builder, n = LAYOUTS[bench]
    out = tmp_path / "run"
    result = run_api(engine, bench, builder(tmp_path), out, settings=FAST)
    spec = get_benchmark(bench)
    run = json.loads((out / "run.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    scores = (out / "scores.jsonl").read_text().splitlines()
    assert len(scores) == n == metrics["n_records"] == run["data"]["scored"]
    assert set(metrics["breakdowns"]) == {*DEFAULT_KEYS, *spec.breakdown}
    assert metrics["counts"]["missing"] == 0 and metrics["counts"]["errors"] == 0
    assert run["bench"]["name"] == bench and run["prompt"]["name"] == spec.prompt
    assert run["generation"]["max_new_tokens"] == 4
    assert run["model"]["fingerprint"]["id"] == engine.fingerprint()["id"]
    assert run["cache"]["status"] == "predicted" and run["cache"]["predicted"] == n
    expected = "in_place" if spec.reader.format == "canonical" else "converted"
    assert run["data"]["conversion"] == expected
    kind = json.loads(scores[0])["kind"]
    assert kind in spec.kinds or spec.kinds == "any"
    if spec.metrics:
        assert set(metrics["settings"]["metrics"]) == set(spec.metrics)
    assert result.cached is False


def data_rad(tmp_path: Path) -> Path:
    """VQA-RAD's ``data_RAD/`` as released: trainset.json, testset.json, images/, and
    ``phrase_type`` values without ``test_`` in the test file."""
    folder = tmp_path / "data_RAD"
    png(folder / "images" / "synpic1.jpg")
    keys = ("qid", "image_name", "image_organ", "answer", "answer_type", "question_type")
    rows = {
        "trainset.json": [(1, "synpic1.jpg", "HEAD", "Yes", "CLOSED", "PRES", "Is it?", "para")],
        "testset.json": [
            (1, "synpic1.jpg", "HEAD", "No", "CLOSED", "ABN", "Is this normal?", "freeform"),
            (2, "synpic1.jpg", "HEAD", "Left", "OPEN", "POS", "Which side?", "para"),
        ],
    }
    for name, records in rows.items():
        objects = [dict(zip((*keys, "question", "phrase_type"), r, strict=True)) for r in records]
        (folder / name).write_text(json.dumps(objects), encoding="utf-8")
    return folder


def test_vqa_rad_runs_on_data_rad_testset(engine, model_dir, tmp_path, capsys):
    """Regression: testset.json was read as train and the run found no records."""
    folder = data_rad(tmp_path)
    for data in (folder / "testset.json", folder):
        result = run_api(engine, "vqa_rad", data, tmp_path / data.name, settings=FAST)
        assert result.metrics["n_records"] == 2
    argv = ["--bench", "vqa_rad", "--data", str(folder / "trainset.json")]
    code, _, err = cli(capsys, *argv, "--model", str(model_dir), "--out", str(tmp_path / "t"))
    assert code == 2 and "its one record is split=train; vqa_rad's split=test filter" in err
    assert "--split" not in err and "--lang" not in err


def test_phantom_canonical_jsonl_is_used_in_place(engine, tmp_path, phantom_dir):
    data = phantom_dir / "test.jsonl"
    run_api(engine, "phantom", data, tmp_path, settings=FAST, limit=3)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["data"]["conversion"] == "in_place" and run["data"]["path"] == str(data)
    assert not (tmp_path / "data.jsonl").exists()
    scored = read_records(tmp_path / "data.first-3.jsonl")
    assert [r.id for r in scored] == [r.id for r in read_records(data)[:3]]
    assert all(r.image_paths(tmp_path)[0].is_file() for r in scored)  # rebased onto the run
    assert all(not Path(r.images[0]).is_absolute() for r in scored)  # relative: runs can move
    assert {"modality", "organ"} <= set(
        json.loads((tmp_path / "metrics.json").read_text())["breakdowns"]
    )


def test_medvlm_r1_asks_with_its_reasoning_template(engine, tmp_path):
    run_api(engine, "medvlm_r1", medvlm_r1(tmp_path), tmp_path / "run", settings=FAST)
    first = json.loads(prediction_files(tmp_path / "run")[0].read_text().splitlines()[0])
    problem = (
        "What is apparent in this image?\nA) Hemorrhage\nB) Acute infarct\n"
        "C) Abscess formation\nD) Chronic infarct"
    )
    assert REASONING_TEMPLATE.format(question=problem) in first["prompt"]
    assert "Answer with the option's letter" not in first["prompt"]
    scores = [json.loads(line) for line in (tmp_path / "run" / "scores.jsonl").open()]
    assert {s["meta"]["subset"] for s in scores} == {
        "MR (Mag-netic Resonance Imaging)",
        "CT(Computed Tomography)",
    }


# ---------------------------------------------------------------- caches


def test_second_run_reuses_predictions_and_conversion(model_dir, tmp_path, capsys):
    data, out = slake(tmp_path), tmp_path / "out"
    argv = ["--bench", "slake", "--data", str(data), "--model", str(model_dir)]
    argv += ["--out", str(out), "--max-new-tokens", "4", "--batch-size", "4"]
    code, stdout, err = cli(capsys, *argv)
    assert code == 0, err
    assert "4 predicted" in stdout and "accuracy by answer_type:" in stdout
    assert "by modality:" in stdout and "run.json" in stdout
    [cache] = prediction_files(out)
    before = (cache.read_bytes(), cache.stat().st_mtime_ns)
    data_mtime = (out / "data.jsonl").stat().st_mtime_ns

    code, stdout, err = cli(capsys, *argv)
    assert code == 0, err
    assert "predictions: all 4 cached" in stdout
    assert (cache.read_bytes(), cache.stat().st_mtime_ns) == before
    assert (out / "data.jsonl").stat().st_mtime_ns == data_mtime
    run = json.loads((out / "run.json").read_text())
    assert run["cache"]["status"] == "cached" and run["data"]["conversion"] == "reused"
    assert len((out / "scores.jsonl").read_text().splitlines()) == 4

    (data / "test.json").write_text((data / "test.json").read_text().replace("liver", "lung"))
    code, stdout, err = cli(capsys, *argv)
    assert code == 0, err
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["conversion"] == "converted"  # the input changed
    assert len(prediction_files(out)) == 2  # other data, other cache entry


def test_prompt_and_max_new_tokens_make_new_cache_entries(engine, tmp_path):
    data, out = vqa_rad(tmp_path), tmp_path / "out"
    first = run_api(engine, "vqa_rad", data, out, settings=FAST)
    again = run_api(engine, "vqa_rad", data, out, settings=FAST)
    assert again.cached and again.run["cache"]["key"] == first.run["cache"]["key"]
    longer = run_api(engine, "vqa_rad", data, out, settings=GenerationSettings(max_new_tokens=6))
    short = run_api(engine, "vqa_rad", data, out, settings=FAST, prompt="short_answer")
    keys = {r.run["cache"]["key"] for r in (first, longer, short)}
    assert len(keys) == 3 and not longer.cached and not short.cached
    assert len(prediction_files(out)) == 3
    described = json.loads(Path(short.run["cache"]["path"]).with_suffix(".json").read_text())
    assert described["prompt"] == TEMPLATES["short_answer"].digest()
    assert described["settings"]["max_new_tokens"] == 4


def test_pixel_budgets_and_precision_make_new_cache_entries(model_dir, tmp_path, capsys):
    """Same weights, other input settings: the image (or video) pixel budget changes what the
    model sees, so its predictions are never reused under another budget."""
    data, out = vqa_rad(tmp_path), tmp_path / "out"
    argv = ["--bench", "vqa_rad", "--data", str(data), "--model", str(model_dir)]
    argv += ["--out", str(out), "--max-new-tokens", "2"]
    assert cli(capsys, *argv)[0] == 0
    code, stdout, err = cli(capsys, *argv, "--max-pixels", "3136")
    assert code == 0, err
    assert "predictions: all" not in stdout and len(prediction_files(out)) == 2
    inputs = json.loads((out / "run.json").read_text())["cache"]["parts"]["inputs"]
    assert inputs == {
        "dtype": "fp32",
        "quantization": None,
        "min_pixels": None,
        "max_pixels": 3136,
        "video_min_pixels": None,
        "video_max_pixels": None,
    }
    code, stdout, err = cli(capsys, *argv, "--video-max-pixels", "3136")
    assert code == 0, err
    assert len(prediction_files(out)) == 3


def test_limit_then_full_run_resumes_the_cache(engine, tmp_path):
    data, out = omnimedvqa(tmp_path), tmp_path / "out"
    partial = run_api(engine, "omnimedvqa", data, out, settings=FAST, limit=1)
    assert partial.run["data"]["scored"] == 1 and partial.metrics["n_records"] == 1
    cache = Path(partial.run["cache"]["path"])
    assert len(cache.read_text().splitlines()) == 1
    with cache.open("a") as handle:  # a kill in the middle of writing a batch
        handle.write('{"id": "omnimedvqa-ACRIMA_0001", "predic')
    full = run_api(engine, "omnimedvqa", data, out, settings=FAST)
    assert full.run["cache"]["status"] == "resumed"
    assert (full.run["cache"]["reused"], full.run["cache"]["predicted"]) == (1, 2)
    assert full.run["cache"]["key"] == partial.run["cache"]["key"]
    assert len(cache.read_text().splitlines()) == 3 == full.metrics["n_records"]


def test_model_is_not_loaded_when_everything_is_cached(engine, model_dir, tmp_path, monkeypatch):
    data, out = pmc_vqa(tmp_path), tmp_path / "out"
    run_api(engine, "pmc_vqa", data, out, settings=FAST)

    def no_load(spec):
        raise AssertionError("the model was loaded although every prediction is cached")

    monkeypatch.setattr("medvl.eval.runner.open_engine", no_load)
    config = RunConfig(bench="pmc_vqa", data=data, out=out, settings=FAST, bootstrap=BOOT)
    result = run_benchmark(config, EngineSpec(model=str(model_dir)))
    assert result.cached and result.run["cache"]["reused"] == 2


# ---------------------------------------------------------------- prompts


def test_custom_system_prompt_goes_in_the_system_role(model_dir, tmp_path, capsys):
    system = "You are a careful radiologist."
    code, _, err = cli(
        capsys,
        "--bench",
        "pmc_vqa",
        "--data",
        str(pmc_vqa(tmp_path)),
        "--model",
        str(model_dir),
        "--out",
        str(tmp_path / "out"),
        "--prompt",
        "custom",
        "--system",
        system,
        "--max-new-tokens",
        "4",
    )
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").open()]
    assert len(lines) == 2
    for line in lines:
        prompt = line["prompt"]
        assert prompt.startswith(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n")
        user = prompt.split("<|im_start|>user\n", 1)[1]
        assert system not in user and "You are a helpful assistant." not in prompt
        assert "Answer with the option's letter from the given choices directly." in user
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["prompt"]["name"] == "custom" and run["prompt"]["system"] == system
    assert Path(run["cache"]["path"]).name.startswith("custom-")


def test_templates_rewrite_the_user_turn(tmp_path):
    record = read_records(custom(tmp_path))[0]
    huatuo = TEMPLATES["huatuo"].apply(record)
    assert huatuo.messages == record.messages  # the data layer already writes this prompt
    reasoning = resolve_prompt("default", "reasoning").apply(record)
    assert reasoning.messages[0].content == "<image>\n" + REASONING_TEMPLATE.format(
        question="What is the uptake pattern in the breast?\nA) Diffuse uptake pattern\n"
        "B) Focal uptake pattern\nC) No uptake\nD) Ring uptake"
    )
    assert reasoning.messages[1].content == "B" and reasoning.answer == "B"
    custom_user = resolve_prompt(
        "custom", "as_is", user_template="Q: {question}\n{options}\nLetter:", system="S"
    ).apply(record)
    assert [m.role for m in custom_user.messages] == ["system", "user", "assistant"]
    assert custom_user.messages[1].content.endswith("D. Ring uptake\nLetter:")
    with pytest.raises(ConfigError, match="--prompt custom needs --system"):
        resolve_prompt("custom", "as_is")
    with pytest.raises(ConfigError, match=r"must contain \{question\}"):
        resolve_prompt("custom", "as_is", user_template="{options}")


# ---------------------------------------------------------------- bad input


def test_bad_input_is_one_line_and_exit_2(model_dir, tmp_path, capsys):
    model = ["--model", str(model_dir)]
    folder, out = slake(tmp_path), ["--out", str(tmp_path / "o")]
    no_answers = gmai_tsv(tmp_path / "GMAI_mm_bench_TEST_part_1.tsv", answers=False)
    cases = [
        (["--bench", "slake_en", "--data", str(folder), *model], "unknown benchmark 'slake_en'"),
        (
            ["--bench", "slake", "--data", str(tmp_path / "gone"), *model],
            f"{tmp_path / 'gone'}: no such file or folder; --data for slake is the SLAKE",
        ),
        (["--bench", "gmai_mmbench", "--data", str(no_answers), *model], "no gold answer"),
        (["--bench", "slake", "--data", str(folder)], "pass --model"),
        (
            ["--bench", "slake", "--data", str(folder), "--prompt", "reasoning", *model],
            "is for multiple-choice questions",
        ),
        (["--bench", "slake", "--data", str(folder), "--prompt", "x", *model], "unknown prompt"),
    ]
    for argv, message in cases:
        code, _, err = cli(capsys, *argv, *out)
        assert code == 2 and message in err, (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "allowed values: slake, slake_zh, vqa_rad" in cli(capsys, *cases[0][0], *out)[2]


def test_canonical_benchmarks_refuse_other_formats(tmp_path):
    config = RunConfig(bench="custom", data=pmc_vqa(tmp_path), out=tmp_path / "o")
    with pytest.raises(MedvlError, match="not canonical JSONL"):
        run_benchmark(config, EngineSpec(model="unused"))
    records = read_records(custom(tmp_path))
    zh_only = tmp_path / "zh.jsonl"
    write_records(zh_only, [r.__class__.from_dict({**r.to_dict(), "lang": "zh"}) for r in records])
    with pytest.raises(MedvlError, match="none of its 2 records is in slake"):
        run_benchmark(
            RunConfig(bench="slake", data=zh_only, out=tmp_path / "p"), EngineSpec(model="x")
        )
