"""Training callbacks: throughput, progress and ETA, readable history and plots, and a
non-finite loss guard."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medvl.fileio import atomic_write_json
from medvl.progress import Progress, estimate, format_duration

logger = logging.getLogger(__name__)


class ThroughputCallback(TrainerCallback):
    """Adds samples/s and tokens/s (labelled and total) to every log line."""

    def __init__(self) -> None:
        self.samples = 0
        self.tokens = 0
        self.started = time.perf_counter()

    def count(self, samples: int, tokens: int) -> None:
        self.samples += samples
        self.tokens += tokens

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            logs["samples_per_second"] = round(self.samples / elapsed, 3)
            logs["tokens_per_second"] = round(self.tokens / elapsed, 1)
        return control


class EtaCallback(TrainerCallback):
    """Adds ``progress`` (steps done/total), ``steps_per_second``, ``elapsed`` and ``eta`` to
    every log entry, so ``history.json`` and the console's log lines show how long is left.

    The rate counts the steps of this call only (a resumed run's earlier steps took no time
    here), timed from the start of training, so it includes the time spent saving and
    validating. With a :class:`~medvl.progress.Progress` in ``lines`` mode (output is not a
    terminal), the main process also writes a plain progress line every few seconds; on a
    terminal the Trainer's own tqdm bar shows the steps.
    """

    def __init__(self, progress: Progress | None = None, clock=time.monotonic) -> None:
        self.progress = progress if progress is not None and progress.mode == "lines" else None
        self.clock = clock
        self.started: float | None = None
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.start_step = self.clock(), state.global_step
        self._report(state)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        self._report(state)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.started is not None and state.max_steps:
            logs.update(self.fields(state.global_step, state.max_steps))
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None and state.is_world_process_zero:
            self.progress.close()
        return control

    def fields(self, step: int, max_steps: int) -> dict[str, Any]:
        """The log fields at ``step`` of ``max_steps``, timed by the callback's clock."""
        elapsed = self.clock() - self.started if self.started is not None else 0.0
        rate, left = estimate(step, max_steps, elapsed, self.start_step)
        fields: dict[str, Any] = {"progress": f"{step}/{max_steps}"}
        if rate is not None:
            fields["steps_per_second"] = round(rate, 4)
        fields["elapsed"] = format_duration(elapsed)
        if left is not None:
            fields["eta"] = format_duration(left)
        return fields

    def _report(self, state) -> None:
        if self.progress is not None and state.is_world_process_zero:
            self.progress.update(state.global_step, state.max_steps or None)


def draws_bar(progress: Progress | None) -> bool:
    """Whether the Trainer should draw its tqdm bar: yes without a :class:`Progress` (library
    use, as before) or with one drawing bars (a terminal); no when quiet or when the output is
    a file or job log (the bar's carriage returns would fill it; plain lines replace it)."""
    return progress is None or progress.mode == "bar"


class HistoryCallback(TrainerCallback):
    """Keeps every log entry in ``history.json`` and draws ``training.png`` at the end.

    A resumed run continues the file: entries after the checkpoint it resumes from (logged by
    the interrupted run for steps now trained again) are dropped when training begins, so every
    step appears once. :meth:`finish` turns the Trainer's ``train_loss`` (the mean over the steps
    of this call only) into the mean over the whole run.
    """

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / "history.json"
        self.entries: list[dict[str, Any]] = []
        self.start_step = 0
        if self.path.is_file():  # a resumed run continues its history
            self.entries = json.loads(self.path.read_text(encoding="utf-8"))

    def record(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        atomic_write_json(self.path, self.entries)

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step  # the resumed checkpoint's step (0: a fresh run)
        kept = [e for e in self.entries if e.get("step", 0) <= self.start_step]
        if self.start_step == 0:
            kept = []  # a fresh run in a used folder starts a fresh history
        if kept != self.entries and state.is_world_process_zero:
            self.entries = kept
            atomic_write_json(self.path, self.entries)
        self.entries = kept
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            self.record({"step": state.global_step, **logs})
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            plot_history(self.entries, self.path.with_name("training.png"))
        return control

    def finish(self, metrics: dict[str, Any], global_step: int) -> None:
        """Replace ``metrics["train_loss"]`` (and the final history entry's) with the whole
        run's mean step loss when this call resumed; the call's own mean stays as
        ``train_loss_since_resume``."""
        if not self.start_step or metrics.get("train_loss") is None:
            return
        this_call = float(metrics["train_loss"])
        whole = whole_run_loss(self.entries, self.start_step, this_call, global_step)
        metrics["train_loss_since_resume"] = this_call
        metrics["train_loss"] = whole
        for entry in reversed(self.entries):
            if "train_loss" in entry:
                entry.update(train_loss=whole, train_loss_since_resume=this_call)
                atomic_write_json(self.path, self.entries)
                break


def whole_run_loss(
    entries: list[dict[str, Any]], start_step: int, this_call_loss: float, global_step: int
) -> float:
    """Mean loss per optimizer step over the whole run.

    Steps up to ``start_step`` come from the logged losses of the interrupted run (each a mean
    over its logging interval, so weighted by the interval); steps after it from this call's
    mean. Steps between the last log and the checkpoint were trained but never logged: they
    are left out of the mean rather than guessed.
    """
    total, previous = 0.0, 0
    for entry in sorted((e for e in entries if "loss" in e), key=lambda e: e["step"]):
        if entry["step"] > start_step:
            break
        total += float(entry["loss"]) * (entry["step"] - previous)
        previous = entry["step"]
    resumed_steps = global_step - start_step
    steps = previous + resumed_steps
    return (total + this_call_loss * resumed_steps) / steps if steps else this_call_loss


def plot_history(entries: list[dict[str, Any]], out: Path) -> Path | None:
    """Loss (and validation metrics, if any) against steps, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    losses = [(e["step"], e["loss"]) for e in entries if "loss" in e]
    metrics = sorted({k for e in entries for k in e if k.startswith("val_")})
    fig, axes = plt.subplots(1, 1 + bool(metrics), figsize=(6 + 5 * bool(metrics), 4))
    axes = axes if metrics else [axes]
    if losses:
        axes[0].plot(*zip(*losses, strict=True), label="train loss")
    axes[0].set_xlabel("step")
    axes[0].set_title("training loss")
    for name in metrics:
        points = [(e["step"], e[name]) for e in entries if name in e]
        axes[1].plot(*zip(*points, strict=True), marker="o", label=name)
    if metrics:
        axes[1].set_xlabel("step")
        axes[1].set_title("validation (generation)")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def check_finite(loss: float, step: int, ids: list[str], last_checkpoint: str | None) -> None:
    """Stop with a readable message when the loss stops being a number."""
    if math.isfinite(loss):
        return
    from medvl.errors import MedvlError

    keep = f"; the last good checkpoint is {last_checkpoint}" if last_checkpoint else ""
    raise MedvlError(
        f"loss became {loss} at step {step} on batch ids {', '.join(ids[:16])}{keep}; "
        "lower the learning rate, check those records, or use fp32/bf16 instead of fp16"
    )
