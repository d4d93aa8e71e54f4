"""The volumes demo pipeline learns the 3-D phantom above chance (slow: about 5 minutes on CPU).

Measured (recipes/pipelines/volumes_demo.yaml as shipped, 16 epochs, 2 CPU cores, 257 s): on the
200 test volumes (split by patient) the tuned tiny Qwen2-VL answered presence 87/87 = 1.000, half
(upper/lower) 63/69 = 0.913, counting 26/44 = 0.591; the random-weight base 0/200 (it writes
noise). Chance: 0.5, 0.5 and 0.33. With 8 epochs "half" stayed at 22/69 (the model answered
"lower" to every English half question): the slice order is carried only by the temporal part
of the 3-D rotary positions, so this test is what catches a video path that loses it. The
thresholds leave room for run-to-run drift on other machines while staying far above chance.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from medvl.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "recipes/pipelines/volumes_demo.yaml"


def accuracy_by_type(run: Path) -> dict[str, float]:
    hits: dict[str, list[bool]] = defaultdict(list)
    for line in (run / "scores.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        hits[row["question_type"]].append(bool(row["correct"]))
    return {qtype: sum(v) / len(v) for qtype, v in hits.items()}


@pytest.mark.slow
def test_volumes_demo_learns_presence_and_half_above_chance(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the steps name recipes/... from the repository root
    assert main(["run", str(PIPELINE), f"workdir={tmp_path / 'run'}", "--quiet"]) == 0
    tuned = accuracy_by_type(tmp_path / "run" / "eval_sft")
    base = accuracy_by_type(tmp_path / "run" / "eval_base")
    assert tuned["presence"] >= 0.85, tuned
    assert tuned["half"] >= 0.70, tuned
    assert tuned["counting"] >= 0.40, tuned
    assert all(tuned[q] - base[q] >= 0.35 for q in ("presence", "half")), (tuned, base)
