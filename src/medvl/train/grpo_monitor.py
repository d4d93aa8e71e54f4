"""What a GRPO run shows while it trains: the reward functions as TRL sees them.

Each pure reward of :mod:`medvl.train.rewards` is wrapped in a :class:`LoggedReward` that calls
it unchanged and hands the values to one shared :class:`RewardLog`. When the last reward of a
generation batch has run, the log knows every score of every completion and:

- logs ``accuracy`` (mean over completions of the accuracy reward that applies to each; TRL's
  own ``rewards/<name>/mean`` average only the completions a reward applies to) through TRL's
  ``log_metric`` hook, so it reaches TensorBoard and ``history.json`` like TRL's metrics;
- keeps the per-batch accuracy, from which the run reports first- vs last-quarter accuracy;
- every ``samples_every`` steps writes ``samples/step-NNNNNN.json``: id, the prompt text the
  model answered, image sizes, gold answer, completion and each reward, for a person to read.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medvl.fileio import atomic_write_json, atomic_write_text
from medvl.train.rewards import REWARDS, completion_text

#: Which reward defines "accuracy" when several apply to a completion (evaluator-equal first).
ACCURACY_ORDER = ("mcq_accuracy", "closed_accuracy", "open_f1", "medvlm_r1_compat")
_TRL_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments")


def prompt_text(prompt: Any) -> str:
    """The text of a conversation's last user turn (image blocks left out)."""
    if isinstance(prompt, str):
        return prompt
    users = [m for m in prompt or [] if m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content or [] if p.get("type") == "text")


def prompt_image_sizes(prompt: Any) -> list[list[int]]:
    """``[width, height]`` of each image placed in a conversation."""
    sizes = []
    for message in prompt if isinstance(prompt, list) else []:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            image = part.get("image") if part.get("type") == "image" else None
            if image is not None and hasattr(image, "size"):
                sizes.append(list(image.size))
    return sizes


class RewardLog:
    """Collects every reward of a generation batch; logs accuracy and writes samples."""

    def __init__(self, names: Sequence[str], out_dir: Path, every: int, per_dump: int):
        self.names = list(names)
        self.accuracy_names = [n for n in ACCURACY_ORDER if n in self.names]
        self.out_dir = Path(out_dir)
        self.every = every
        self.per_dump = per_dump
        self.pending: dict[str, list[float | None]] = {}
        #: ``(step, accuracy, completions scored)`` per generation batch, also appended to
        #: ``accuracy.jsonl`` so a resumed run reports over the whole run.
        self.accuracy: list[tuple[int, float, int]] = []

    def resume_from(self, step: int, *, main: bool = True) -> None:
        """Keep the batches an earlier run scored before ``step`` (0: a fresh run keeps none)."""
        path = self.out_dir / "accuracy.jsonl"
        rows = []
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        kept = [r for r in rows if r["step"] < step]
        self.accuracy = [(r["step"], r["accuracy"], r["completions"]) for r in kept]
        if main:
            self._rewrite()

    def _rewrite(self) -> None:
        lines = [
            json.dumps({"step": s, "accuracy": a, "completions": n}) + "\n"
            for s, a, n in self.accuracy
        ]
        atomic_write_text(self.out_dir / "accuracy.jsonl", "".join(lines))

    def add(self, name: str, values: list[float | None], completions: Sequence[Any], kw) -> None:
        self.pending[name] = values
        if name == self.names[-1]:
            self._finish(completions, kw)
            self.pending = {}

    def _finish(self, completions: Sequence[Any], kw: dict[str, Any]) -> None:
        state = kw.get("trainer_state")
        step = int(getattr(state, "global_step", 0))
        scores = [self._accuracy_of(i) for i in range(len(completions))]
        scored = [s for s in scores if s is not None]
        main = getattr(state, "is_world_process_zero", True)
        if scored:
            value = sum(scored) / len(scored)
            self.accuracy.append((step, value, len(scored)))
            if main:
                row = {"step": step, "accuracy": value, "completions": len(scored)}
                with (self.out_dir / "accuracy.jsonl").open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
            if kw.get("log_metric") is not None:
                kw["log_metric"]("accuracy", value)
        if main and self.every and step % self.every == 0:
            self._write_samples(step, completions, kw)

    def _accuracy_of(self, index: int) -> float | None:
        for name in self.accuracy_names:
            value = self.pending[name][index]
            if value is not None and not math.isnan(value):
                return float(value)
        return None

    def _write_samples(self, step: int, completions: Sequence[Any], kw: dict[str, Any]) -> None:
        path = self.out_dir / "samples" / f"step-{step:06d}.json"
        if path.exists():  # one dump per step (grad accumulation may score several batches)
            return
        prompts = kw.get("prompts") or [None] * len(completions)
        rows = []
        for i, completion in enumerate(completions[: self.per_dump]):
            rows.append(
                {
                    "step": step,
                    "id": _item(kw, "id", i),
                    "prompt": prompt_text(prompts[i]),
                    "image_sizes": prompt_image_sizes(prompts[i]),
                    "answer": _item(kw, "answer", i),
                    "completion": completion_text(completion),
                    "rewards": {n: self.pending[n][i] for n in self.names},
                }
            )
        atomic_write_json(path, rows)

    def quarters(self) -> tuple[float | None, float | None]:
        """Mean accuracy over the first and the last quarter of the generation batches."""
        if not self.accuracy:
            return None, None
        size = max(1, math.ceil(len(self.accuracy) / 4))

        def mean(part: list[tuple[int, float, int]]) -> float:
            return sum(v * n for _, v, n in part) / sum(n for _, _, n in part)

        return mean(self.accuracy[:size]), mean(self.accuracy[-size:])


def _item(kw: dict[str, Any], key: str, index: int) -> Any:
    values = kw.get(key)
    return values[index] if values is not None and index < len(values) else None


class LoggedReward:
    """A pure reward as TRL calls it: named after its table entry, scores handed to the log."""

    def __init__(self, name: str, log: RewardLog, params: dict[str, Any] | None = None):
        self.__name__ = name  # TRL names its metrics rewards/<__name__>/mean
        fn: Callable[..., list[float | None]] = REWARDS[name].fn
        self.fn = functools.partial(fn, **params) if params else fn
        self.log = log

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        columns = {k: v for k, v in kwargs.items() if k not in _TRL_KWARGS and k != "prompts"}
        values = self.fn(completions, **columns)
        self.log.add(self.__name__, values, completions, kwargs)
        return values
