"""Micro-batching for the server: requests that arrive close together share one ``generate``.

Why: one model answering one request at a time leaves most of its throughput unused, and a
batched greedy ``generate`` (left padding, see :mod:`medvl.infer.hf_engine`) gives every row the
same text it would get alone. So plain (non-streamed) requests are prepared in their own handler
threads, queued, and a single worker thread takes the model (the server's :class:`ModelGate`,
shared with streamed replies), waits up to ``window`` seconds after the oldest queued request for
others, and runs up to ``max_batch`` of them in one call.

Rules kept from the one-at-a-time server:

* Only requests with equal generation settings share a call (``max_tokens``, temperature, ...).
  Sampled requests (temperature > 0) always run alone, so a seed reproduces a reply exactly.
* The queue is bounded: past ``max_queued`` waiting requests a new one is answered 503 with
  ``Retry-After`` at once instead of piling up.
* The request timeout holds: a request whose time runs out while queued is answered 504 and
  never runs; a batch still generating when the last of its requests' time runs out is stopped
  within a token, freeing the model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from medvl.infer.engine import Generation, GenerationSettings
from medvl.infer.protocol import RequestError
from medvl.infer.server_limits import ModelGate

logger = logging.getLogger(__name__)

#: Seconds the worker thread waits for work before it exits (a new request restarts it).
IDLE_EXIT_S = 10.0


@dataclass
class _Job:
    item: Any  # a Prepared request (medvl.infer.hf_inputs), inputs built
    settings: GenerationSettings
    deadline: float | None
    arrived: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


def batchable(engine: Any) -> bool:
    """Whether ``engine`` can run prepared requests together (the local HF engine can; an
    OpenAI-client engine cannot and keeps the one-at-a-time path)."""
    return callable(getattr(engine, "generate_prepared", None)) and callable(
        getattr(engine, "prepare", None)
    )


class MicroBatcher:
    """A bounded queue of prepared requests and the worker thread that batches them."""

    def __init__(
        self, engine: Any, gate: ModelGate, *, window: float, max_batch: int, max_queued: int
    ):
        self.engine, self.gate = engine, gate
        self.window, self.max_batch, self.max_queued = window, max_batch, max_queued
        self.stats = {"batches": 0, "requests": 0, "expired": 0, "largest": 0}
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Requests queued and not yet taken into a batch."""
        with self._cond:
            return len(self._queue)

    def submit(self, item: Any, settings: GenerationSettings, deadline: float | None) -> Future:
        """Queue a prepared request; 503 at once when the queue is full."""
        job = _Job(item, settings, deadline)
        with self._cond:
            if len(self._queue) >= self.max_queued:
                raise RequestError(
                    f"the server is busy: {self.max_queued} requests are already waiting for "
                    "the model (medvl serve --max-queued-requests); retry shortly",
                    503,
                    code="server_busy",
                )
            self._queue.append(job)
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="medvl-batcher", daemon=True
                )
                self._thread.start()
        return job.future

    async def wait(self, future: Future, deadline: float | None) -> Generation:
        """The request's generation, or 504 once its deadline passes (queued: never run)."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            never_ran = future.cancel() or future.cancelled()
            raise self.gate.timed_out(
                "waiting for the model" if never_ran else "generating"
            ) from None

    # ------------------------------------------------------------------ worker thread

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait(IDLE_EXIT_S)
                if not self._queue:
                    self._thread = None
                    return
            try:
                with self.gate.hold():
                    jobs = self._take()
                    if jobs:
                        self._run(jobs)
            except Exception:  # never lose the worker: the next batch is served as usual
                logger.exception("micro-batch failed")

    def _take(self) -> list[_Job]:
        """The oldest request and up to ``max_batch - 1`` compatible ones, after the window."""
        with self._cond:
            key = self._queue[0].settings
            limit = 1 if key.do_sample else self.max_batch
            closes = self._queue[0].arrived + self.window
            while sum(j.settings == key for j in self._queue) < limit:
                left = closes - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            taken: list[_Job] = []
            kept: deque[_Job] = deque()
            for job in self._queue:
                (taken if len(taken) < limit and job.settings == key else kept).append(job)
            self._queue = kept
        now, live = time.monotonic(), []
        for job in taken:
            if not job.future.set_running_or_notify_cancel():
                self.stats["expired"] += 1  # its handler answered 504 already
            elif job.deadline is not None and now >= job.deadline:
                self.stats["expired"] += 1
                job.future.set_exception(self.gate.timed_out("waiting for the model"))
            else:
                live.append(job)
        return live

    def _run(self, jobs: list[_Job]) -> None:
        """One ``generate`` for ``jobs``, stopped when the last of their deadlines passes."""
        cancel = threading.Event()
        deadlines = [j.deadline for j in jobs]
        last = None if None in deadlines else max(d for d in deadlines if d is not None)
        timer = self.gate.cancel_at(last, cancel.set)
        try:
            results = self.engine.generate_prepared(
                [j.item for j in jobs], jobs[0].settings, cancel
            )
        except Exception as exc:
            for job in jobs:
                job.future.set_exception(exc)
            return
        finally:
            if timer is not None:
                timer.cancel()
        self.stats["batches"] += 1
        self.stats["requests"] += len(jobs)
        self.stats["largest"] = max(self.stats["largest"], len(jobs))
        for job, generation in zip(jobs, results, strict=True):
            if cancel.is_set():
                job.future.set_exception(self.gate.timed_out("generating"))
            else:
                job.future.set_result(generation)
