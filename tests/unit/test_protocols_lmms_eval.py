"""The ``lmms-eval`` protocol against lmms-eval 0.7.3's own SLAKE code.

lmms-eval is not a medvl dependency: the fixture installs the 0.7.3 wheel and loguru with
``pip --no-deps --target`` into ``~/.cache/medvl-test/lmms-eval-0.7.3`` (once), and loads
``lmms_eval/tasks/slake/utils.py`` by file path so the package's heavy ``tasks/__init__`` is not
imported. It skips when pip cannot reach the registry.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from medvl.eval.protocols.lmms_eval import normalize_slake

CACHE = Path.home() / ".cache" / "medvl-test" / "lmms-eval-0.7.3"
UTILS = CACHE / "lmms_eval" / "tasks" / "slake" / "utils.py"

#: (prediction, gold) pairs covering every normalisation step and yes/no entry.
PAIRS = [
    ("Yes", "Yes"),
    ("yes.", "Yes"),
    ("YES!", "yes"),
    ("Yes, it is.", "Yes"),
    ("yeah", "Yes"),
    ("yep", "Yes"),
    ("True", "Yes"),
    ("nope", "No"),
    ("False", "No"),
    ("No", "Yes"),
    ("no.", "No"),
    ("是", "是"),
    ("是的", "是"),
    ("有", "是"),
    ("包含", "是"),
    ("可以", "是"),
    ("能", "是"),
    ("会", "是"),
    ("正常", "是"),
    ("否", "否"),
    ("不是", "否"),
    ("没有", "否"),
    ("无", "否"),
    ("不包含", "否"),
    ("不能", "否"),
    ("不会", "否"),
    ("不可以", "否"),
    ("不正常", "否"),
    ("异常", "否"),
    ("是。", "是"),
    ("答案是：否", "否"),
    ("X-ray", "X-Ray"),
    ("x ray", "Xray"),
    ("X-ray image", "X-Ray"),
    ("Lung (left)", "Lung"),
    ("肺（左）", "肺"),
    ("(A) Lung", "Lung"),
    ("CT.", "CT"),
    ("MRI", "MRI"),
    ("T2-weighted MRI", "T2"),
    ("The liver", "Liver"),
    ("  Brain,  Edema ", "Brain Edema"),
    ("left lung, right lung", "Left Lung, Right Lung"),
    ("The correct answer is (B)", "B"),
    ("", "No"),
    ("心脏；肺", "心脏 肺"),
    ("【肝脏】", "肝脏"),
    ("2", "2"),
    ("Two", "2"),
    ("Coronal Plane", "Coronal"),
    ("abdomen.", "Abdomen"),
]


@pytest.fixture(scope="session")
def upstream_slake():
    """lmms-eval 0.7.3's SLAKE ``utils`` module, installed once into the test cache."""
    if not UTILS.is_file():
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--retries", "0",
            "--timeout", "20", "--target", str(CACHE), "lmms-eval==0.7.3", "loguru",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("pip timed out installing lmms-eval 0.7.3")
        if done.returncode != 0 or not UTILS.is_file():
            pytest.skip(f"cannot install lmms-eval 0.7.3 from the registry: {done.stderr[-300:]}")
    sys.path.insert(0, str(CACHE))  # for loguru; lmms_eval itself is loaded by path
    try:
        spec = importlib.util.spec_from_file_location("lmms_eval_slake_utils_073", UTILS)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as exc:
        pytest.skip(f"lmms-eval's SLAKE utils do not import here: {exc}")
    finally:
        sys.path.remove(str(CACHE))
    return module


def test_normalisation_matches_lmms_eval(upstream_slake):
    for prediction, gold in PAIRS:
        for text in (prediction, gold):
            assert normalize_slake(text) == upstream_slake.normalize_answer(text), text


def test_correctness_matches_slake_process_results(upstream_slake):
    from medvl.eval.protocols import Answer, get_protocol

    protocol = get_protocol("lmms-eval")
    for prediction, gold in PAIRS:
        doc = {"answer": gold, "qid": 1, "q_lang": "en", "answer_type": "CLOSED"}
        record = upstream_slake.slake_process_results(doc, [prediction])["slake_accuracy"]
        answer = Answer(kind="closed", prediction=prediction, gold=gold, benchmark="slake")
        ours = protocol.judge(answer)
        assert ours.correct == float(record["is_correct"]), (prediction, gold)
        assert ours.extracted == record["prediction_normalized"]
