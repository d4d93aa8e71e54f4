"""Progress lines for output that is not a terminal, the tqdm bar for one that is, quiet mode,
and the ETA fields of training logs. Time comes from a fake clock: no sleeps, no timing."""

from __future__ import annotations

import io

import pytest

from medvl.errors import ConfigError
from medvl.progress import (
    INTERVAL_ENV,
    Progress,
    describe,
    describe_end,
    estimate,
    format_duration,
    format_rate,
    interval_from_env,
)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0  # any origin: only differences matter

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


# ---------------------------------------------------------------- formatting


def test_the_line_has_count_percentage_rate_elapsed_and_eta():
    # 120 of 500 in 40 s: 3.0 rec/s; 380 left / 3.0 = 126.7 s -> 2:07
    line = describe("predict", 120, 500, 40.0, rate_unit="rec")
    assert line == "predict: 120/500 records (24.0%), 3.0 rec/s, elapsed 0:40, ETA 2:07"


def test_an_unknown_total_has_no_percentage_or_eta():
    line = describe("convert", 50, None, 20.0, unit="records read", rate_unit="rec")
    assert line == "convert: 50 records read, 2.5 rec/s, elapsed 0:20"


def test_nothing_done_yet_has_no_rate_or_eta():
    assert describe("eval", 0, 8, 12.0) == "eval: 0/8 records (0.0%), elapsed 0:12"


def test_the_last_line():
    line = describe_end("predict", 500, 500, 161.0, rate_unit="rec")
    assert line == "predict: finished 500/500 records in 2:41, 3.1 rec/s"  # 500/161 = 3.106


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (59.4, "0:59"), (59.6, "1:00"), (754, "12:34"), (3723, "1:02:03")],
)
def test_durations(seconds, text):
    assert format_duration(seconds) == text


def test_rates_keep_two_digits_when_slow():
    assert (format_rate(0.0512), format_rate(0.5), format_rate(12.345)) == ("0.051", "0.5", "12.3")


def test_a_resumed_run_counts_only_the_work_done_since_the_start():
    # 150 done, 100 of them before the clock started: 50 in 10 s = 5/s; 50 left -> 10 s
    assert estimate(150, 200, 10.0, done_at_start=100) == (5.0, 10.0)
    assert estimate(100, 200, 10.0, done_at_start=100) == (None, None)
    assert estimate(5, None, 0.0) == (None, None)


# ---------------------------------------------------------------- lines mode


def test_a_line_every_interval_and_a_last_line():
    clock, out = Clock(), io.StringIO()
    progress = Progress("predict", stream=out, interval=30, clock=clock, rate_unit="rec")
    assert progress.mode == "lines"
    progress(0, 10)  # the clock starts here; no line yet
    for elapsed, done in [(10, 2), (30, 5), (45, 6), (61, 8)]:
        clock.now = 100 + elapsed
        progress(done, 10)
    clock.now = 170
    progress.close()
    assert lines(out) == [
        # 5 in 30 s = 0.17/s; 5 left -> 30 s
        "predict: 5/10 records (50.0%), 0.17 rec/s, elapsed 0:30, ETA 0:30",
        # 8 in 61 s = 0.13/s; 2 left -> 15.25 s
        "predict: 8/10 records (80.0%), 0.13 rec/s, elapsed 1:01, ETA 0:15",
        "predict: finished 8/10 records in 1:10, 0.11 rec/s",
    ]


def test_interval_zero_writes_every_update():
    clock, out = Clock(), io.StringIO()
    with Progress("validate", unit="images", stream=out, interval=0, clock=clock) as progress:
        progress(0, 3)
        for done in (1, 2, 3):
            clock.now += 2
            progress(done, 3)
    assert [line.split(",")[0] for line in lines(out)] == [
        "validate: 1/3 images (33.3%)",
        "validate: 2/3 images (66.7%)",
        "validate: 3/3 images (100.0%)",
        "validate: finished 3/3 images in 0:06",
    ]


def test_advance_and_an_unknown_total():
    clock, out = Clock(), io.StringIO()
    progress = Progress("convert", unit="records read", stream=out, interval=0, clock=clock)
    progress.advance()
    clock.now += 4
    progress.advance(3)
    progress.close()
    # the first record starts the clock: 3 more in 4 s
    assert lines(out) == [
        "convert: 4 records read, 0.75 records read/s, elapsed 0:04",
        "convert: finished 4 records read in 0:04, 0.75 records read/s",
    ]


def test_a_failed_run_writes_no_last_line():
    out = io.StringIO()
    with pytest.raises(RuntimeError), Progress("eval", stream=out, interval=30) as progress:
        progress(0, 5)
        raise RuntimeError("boom")
    assert out.getvalue() == ""


def test_nothing_to_do_writes_nothing():
    out = io.StringIO()
    with Progress("eval", stream=out, interval=0) as progress:
        progress(0, 0)
    never = io.StringIO()
    Progress("eval", stream=never, interval=0).close()
    assert out.getvalue() == never.getvalue() == ""


def test_quiet_writes_nothing_anywhere():
    for stream in (io.StringIO(), Terminal()):
        with Progress("predict", stream=stream, interval=0, quiet=True) as progress:
            for done in range(4):
                progress(done, 3)
        assert progress.mode == "off" and stream.getvalue() == ""


# ---------------------------------------------------------------- terminal and settings


def test_a_terminal_gets_the_tqdm_bar_and_no_lines():
    out = Terminal()
    with Progress("predict", stream=out, interval=0, rate_unit="rec") as progress:
        assert progress.mode == "bar"
        progress(0, 4)
        progress(4, 4)
    text = out.getvalue()
    assert "predict" in text and "4/4" in text and "\r" in text
    assert "ETA" not in text and "finished" not in text


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert interval_from_env() == 30 and Progress("x", stream=io.StringIO()).interval == 30
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert Progress("x", stream=io.StringIO()).interval == 2.5
    assert Progress("x", stream=io.StringIO(), interval=7).interval == 7  # the parameter wins
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(INTERVAL_ENV, bad)
        with pytest.raises(ConfigError, match=INTERVAL_ENV):
            interval_from_env()


# ---------------------------------------------------------------- training


def test_training_logs_carry_steps_rate_and_eta():
    from transformers import TrainerControl, TrainerState

    from medvl.train.callbacks import EtaCallback, draws_bar

    clock, out = Clock(), io.StringIO()
    lines_progress = Progress("train", unit="steps", rate_unit="step", stream=out, interval=0)
    lines_progress.clock = clock
    callback = EtaCallback(lines_progress, clock=clock)
    state, control = TrainerState(global_step=10, max_steps=50), TrainerControl()
    callback.on_train_begin(None, state, control)  # resumed at step 10
    clock.now += 5
    state.global_step = 20
    callback.on_step_end(None, state, control)
    logs = {"loss": 1.5}
    callback.on_log(None, state, control, logs=logs)
    # 10 steps in 5 s = 2 steps/s; 30 left -> 15 s
    assert logs == {
        "loss": 1.5,
        "progress": "20/50",
        "steps_per_second": 2.0,
        "elapsed": "0:05",
        "eta": "0:15",
    }
    callback.on_train_end(None, state, control)
    assert lines(out) == [
        "train: 20/50 steps (40.0%), 2.0 step/s, elapsed 0:05, ETA 0:15",
        "train: finished 20/50 steps in 0:05, 2.0 step/s",
    ]
    assert draws_bar(None) and draws_bar(Progress("t", stream=Terminal()))
    assert not draws_bar(lines_progress) and not draws_bar(Progress("t", quiet=True))
