"""Progress for long commands, readable on a terminal and in a batch-job log alike.

tqdm hides its bar when the output is not a terminal (``disable=None``), so a ``predict`` or
``eval run`` writing to a file or a job log printed nothing for minutes. :class:`Progress`
draws the tqdm bar on a terminal as before; on anything else it writes one plain line every
``interval`` seconds (default 30, or ``MEDVL_PROGRESS_SECONDS``) and a last line at the end::

    predict: 120/500 records (24.0%), 3.1 rec/s, elapsed 0:38, ETA 2:02
    predict: finished 500/500 records in 2:41, 3.1 rec/s

A :class:`Progress` is itself a ``progress(done, total)`` callback, the form the library's long
functions take (the library never prints; the CLI builds the object). ``quiet=True`` turns all
of it off. Rates and times come from a monotonic clock, injectable for tests.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

from medvl.errors import ConfigError

#: ``progress(done, total)``: ``total`` is None when it is not known in advance.
ProgressFn = Callable[[int, "int | None"], None]
#: The environment variable holding the seconds between two plain progress lines.
INTERVAL_ENV = "MEDVL_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0
Mode = Literal["bar", "lines", "off"]


def interval_from_env(default: float = DEFAULT_INTERVAL) -> float:
    """Seconds between plain progress lines: ``MEDVL_PROGRESS_SECONDS`` or ``default``."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses nan
        raise ConfigError(
            f"{INTERVAL_ENV}={raw!r} is not a number of seconds >= 0; set it to e.g. 30 "
            "(0 writes a line at every update) or unset it"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """``0:38``, ``12:05`` or ``1:02:03`` (hours only when there are some)."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_rate(rate: float) -> str:
    """A rate with two significant digits below 1 (``0.05``) and one decimal above."""
    return f"{rate:.1f}" if rate >= 1 else f"{rate:.2g}"


def estimate(
    done: int, total: int | None, elapsed: float, done_at_start: int = 0
) -> tuple[float | None, float | None]:
    """``(rate per second, seconds left)`` from the work done since the clock started.

    ``done_at_start`` is what was already done then (a resumed run), so it does not count
    towards the rate. Either value is None while it cannot be known yet."""
    counted = done - done_at_start
    if elapsed <= 0 or counted <= 0:
        return None, None
    rate = counted / elapsed
    left = None if total is None else max(total - done, 0) / rate
    return rate, left


def describe(
    label: str,
    done: int,
    total: int | None,
    elapsed: float,
    *,
    done_at_start: int = 0,
    unit: str = "records",
    rate_unit: str | None = None,
) -> str:
    """One progress line: ``predict: 120/500 records (24.0%), 3.1 rec/s, elapsed 0:38, ETA 2:02``.

    Without a total the count stands alone and there is no percentage or ETA."""
    rate, left = estimate(done, total, elapsed, done_at_start)
    parts = [f"{label}: {_count(done, total)} {unit}"]
    if total:
        parts[0] += f" ({100 * done / total:.1f}%)"
    if rate is not None:
        parts.append(_rate(rate, rate_unit or unit))
    parts.append(f"elapsed {format_duration(elapsed)}")
    if left is not None:
        parts.append(f"ETA {format_duration(left)}")
    return ", ".join(parts)


def describe_end(
    label: str,
    done: int,
    total: int | None,
    elapsed: float,
    *,
    done_at_start: int = 0,
    unit: str = "records",
    rate_unit: str | None = None,
) -> str:
    """The last line: ``predict: finished 500/500 records in 2:41, 3.1 rec/s``."""
    parts = [f"{label}: finished {_count(done, total)} {unit} in {format_duration(elapsed)}"]
    rate, _ = estimate(done, total, elapsed, done_at_start)
    if rate is not None:
        parts.append(_rate(rate, rate_unit or unit))
    return ", ".join(parts)


def _count(done: int, total: int | None) -> str:
    """``120/500``, or ``120`` when the total is not known."""
    return f"{done}/{total}" if total is not None else str(done)


def _rate(rate: float, unit: str) -> str:
    """``3.1 rec/s``."""
    return f"{format_rate(rate)} {unit}/s"


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Progress of one long command: a tqdm bar on a terminal, plain lines elsewhere.

    Call it as ``progress(done, total)`` (absolute counts) or use :meth:`advance`; close it (or
    use it as a context manager) to draw the last line. The clock starts at the first update,
    so the time spent loading a model before the work begins does not lower the rate; what is
    done at that first update (a resumed run) is left out of the rate too. A run that stops on
    an exception writes no last line, so the error stays the last thing printed.
    """

    def __init__(
        self,
        label: str,
        *,
        unit: str = "records",
        rate_unit: str | None = None,
        stream: TextIO | None = None,
        interval: float | None = None,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.unit, self.rate_unit = label, unit, rate_unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval_from_env() if interval is None else interval
        self.clock = clock
        self.mode: Mode = "off" if quiet else "bar" if _is_terminal(self.stream) else "lines"
        self.done, self.total = 0, None
        self._started: float | None = None
        self._done_at_start = 0
        self._last_line = 0.0
        self._bar: Any = None

    def __call__(self, done: int, total: int | None = None) -> None:
        self.update(done, total)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(finished=exc_type is None)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done (the total stays what it was)."""
        self.update(self.done + n, self.total)

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` units of ``total`` (None: unknown, or as before) are done now."""
        if self.mode == "off":
            return
        self.done = done
        self.total = total if total is not None else self.total
        if self._started is None:
            self._started = self._last_line = self.clock()
            self._done_at_start = done
            if self.mode == "lines":
                return  # nothing to say yet: the first line comes after ``interval`` seconds
        if self.mode == "bar":
            self._draw_bar()
            return
        now = self.clock()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._write(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The progress line for the current counts (as written in ``lines`` mode)."""
        return describe(
            self.label,
            self.done,
            self.total,
            self._elapsed(now),
            done_at_start=self._done_at_start,
            unit=self.unit,
            rate_unit=self.rate_unit,
        )

    def close(self, *, finished: bool = True) -> None:
        """Close the bar, or write the last line when the run finished and did something."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.mode != "lines" or self._started is None or not finished:
            return
        if self.total == 0 and self.done == 0:
            return  # nothing was there to do (everything cached): no line
        self._write(
            describe_end(
                self.label,
                self.done,
                self.total,
                self._elapsed(None),
                done_at_start=self._done_at_start,
                unit=self.unit,
                rate_unit=self.rate_unit,
            )
        )
        self._started = None

    def _elapsed(self, now: float | None) -> float:
        if self._started is None:
            return 0.0
        return (self.clock() if now is None else now) - self._started

    def _draw_bar(self) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                desc=self.label,
                unit=self.rate_unit or self.unit,
                file=self.stream,
                dynamic_ncols=True,
                initial=self._done_at_start,
            )
        if self._bar.total != self.total:
            self._bar.total = self.total
            self._bar.refresh()
        if self.done >= self._bar.n:
            self._bar.update(self.done - self._bar.n)  # redraws at most every 0.1 s
        else:
            self._bar.n = self.done
            self._bar.refresh()

    def _write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def progress_for(
    label: str, args: Any, *, unit: str = "records", rate_unit: str | None = None
) -> Progress:
    """The :class:`Progress` of a CLI command: ``args.quiet`` (the global ``--quiet``) off."""
    return Progress(
        label, unit=unit, rate_unit=rate_unit, quiet=bool(getattr(args, "quiet", False))
    )
