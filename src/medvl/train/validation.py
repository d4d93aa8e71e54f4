"""Validation during training by *generation*: greedy answers scored with the eval metrics.

The seeds validated by decoding teacher-forced logits (and one token off); a model can have a
low loss and still answer nothing useful. Here the model generates its answers to held-out
questions exactly as at inference time (the same engine), and the evaluation scorer grades
them. Results go to the history, TensorBoard and ``validation.jsonl``; the best model by the
chosen metric is kept in ``best/``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medvl.data.record import Record
from medvl.fileio import atomic_write_json

logger = logging.getLogger(__name__)
VALIDATION_METRICS = ("closed_accuracy", "mcq_accuracy", "exact_match", "token_f1")


def generate_answers(
    model: Any,
    processor: Any,
    records: list[Record],
    base_dir: Path,
    *,
    batch_size: int,
    max_new_tokens: int,
) -> list[str]:
    """Greedy answers of ``model`` to each record's question (batched, left-padded)."""
    from medvl.infer.engine import ChatRequest, GenerationSettings
    from medvl.infer.hf_engine import HFEngine

    engine = HFEngine.from_model(model, processor, batch_size=batch_size, num_workers=0)
    requests = [ChatRequest.from_record(r, base_dir) for r in records]
    generations = engine.generate(requests, GenerationSettings(max_new_tokens=max_new_tokens))
    return [g.text if g.error is None else "" for g in generations]


def score_answers(records: list[Record], answers: list[str]) -> dict[str, float]:
    """Aggregate validation metrics, named as the evaluation scorer names them: closed accuracy
    (closed questions without options), multiple-choice accuracy, open token F1, overall."""
    from medvl.eval.scoring import Scorer, default_extractor, metric_table, select_metrics

    table = metric_table()
    names = [n for n in VALIDATION_METRICS if n in table]
    scorer = Scorer(metrics=select_metrics(table, names), table=table, extract=default_extractor())
    rows = [scorer.score(r, a, "ok") for r, a in zip(records, answers, strict=True)]
    overall = [r["correct"] or 0.0 for r in rows]
    result = {"overall": sum(overall) / len(overall)} if overall else {}
    for metric, key in (
        ("closed_accuracy", "closed_accuracy"),
        ("mcq_accuracy", "mcq_accuracy"),
        ("token_f1", "open_token_f1"),
    ):
        values = [r["metrics"][metric] for r in rows if r["metrics"].get(metric) is not None]
        if values:
            result[key] = sum(values) / len(values)
    return result


class GenerationValidationCallback(TrainerCallback):
    """Every ``every_steps`` steps and at the end: generate, score, log, keep the best model."""

    def __init__(
        self,
        records: list[Record],
        base_dir: Path,
        processor: Any,
        settings: Any,
        output_dir: Path,
        history: Any,
    ):
        self.records = records
        self.base_dir = base_dir
        self.processor = processor
        self.settings = settings
        self.output_dir = Path(output_dir)
        self.history = history
        self.best: float | None = None
        self.last: dict[str, float] = {}
        self.warned_no_metric = False

    def on_step_end(self, args, state, control, model=None, **kwargs):
        every = self.settings.every_steps
        if every and state.global_step % every == 0 and state.global_step < state.max_steps:
            self.validate(state, model)
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.validate(state, model)
        return control

    def validate(self, state: Any, model: Any) -> dict[str, float]:
        if not state.is_world_process_zero or model is None or not self.records:
            return {}
        was_training = model.training
        model.eval()
        answers = generate_answers(
            model,
            self.processor,
            self.records,
            self.base_dir,
            batch_size=self.settings.batch_size,
            max_new_tokens=self.settings.max_new_tokens,
        )
        if was_training:
            model.train()
        self.last = score_answers(self.records, answers)
        entry = {"step": state.global_step, **{f"val_{k}": v for k, v in self.last.items()}}
        self.history.record(entry)
        logger.info(
            "validation at step %d: %s",
            state.global_step,
            ", ".join(f"{k} {v:.4f}" for k, v in self.last.items()),
        )
        self._write_samples(state.global_step, answers)
        self._keep_best(model, state.global_step)
        return self.last

    def _write_samples(self, step: int, answers: list[str]) -> None:
        rows = [
            {"id": r.id, "question": r.question, "gold": r.answer, "prediction": a}
            for r, a in zip(self.records, answers, strict=True)
        ]
        atomic_write_json(self.output_dir / "validation" / f"step-{step}.json", rows)

    def _keep_best(self, model: Any, step: int) -> None:
        value = self.last.get(self.settings.metric)
        if value is None and not self.warned_no_metric:
            self.warned_no_metric = True
            logger.warning(
                "validation.metric %r is not computed on these records (there is: %s); no best/ "
                "is kept: set validation.metric to one of those",
                self.settings.metric,
                ", ".join(sorted(self.last)) or "nothing",
            )
        if value is None or (self.best is not None and value <= self.best):
            return
        self.best = value
        target, tmp = self.output_dir / "best", self.output_dir / ".best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        atomic_write_json(tmp / "best.json", {"step": step, self.settings.metric: value})
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
