"""The server's time and size budgets that need the model: prompt length and request time.

Kept out of :mod:`medvl.infer.server` so the rules are plain functions: how many tokens a
request's prompt holds (counted with the engine's own processor), what the model's context
is, and a gate that gives one request at a time the model, for at most its remaining time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from medvl.infer.engine import ChatRequest, Engine, Generation, GenerationSettings, TokenStream
from medvl.infer.protocol import RequestError


def processor_pixels(engine: Engine) -> int | None:
    """The largest picture (in pixels) the engine's image processor keeps, or None."""
    image_processor = getattr(getattr(engine, "processor", None), "image_processor", None)
    return processor_pixels_of(image_processor)


def context_length(engine: Engine) -> int | None:
    """The model's context window in tokens (``max_position_embeddings``), or None."""
    config = getattr(getattr(getattr(engine, "loaded", None), "model", None), "config", None)
    for section in (getattr(config, "text_config", None), config):
        value = getattr(section, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def prompt_tokens(engine: Engine, request: ChatRequest) -> int | None:
    """Tokens the request's prompt takes: its templated text plus each image's tokens."""
    processor = getattr(engine, "processor", None)
    if processor is None:
        return None
    prompt = processor.apply_chat_template(
        request.messages, tokenize=False, add_generation_prompt=True
    )
    tokens = len(processor.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    image_processor = getattr(processor, "image_processor", None)
    for image in request.images:
        tokens += _image_tokens(image_processor, image.width, image.height)
    return tokens


def check_prompt(
    tokens: int | None, settings: GenerationSettings, context: int | None, limit: int | None
) -> None:
    """Refuse (400) a prompt over ``limit`` or one whose reply cannot fit the context."""
    if tokens is None:
        return
    if limit is not None and tokens > limit:
        raise RequestError(
            f"the prompt is {tokens:,} tokens, above this server's limit of {limit:,} "
            "(medvl serve --max-prompt-tokens); shorten the prompt",
            param="messages",
            code="context_length_exceeded",
        )
    wanted = tokens + settings.max_new_tokens
    if context is not None and wanted > context:
        raise RequestError(
            f"the prompt is {tokens:,} tokens and max_tokens is {settings.max_new_tokens:,}: "
            f"{wanted:,} in all, above the model's context of {context:,} tokens; shorten the "
            "prompt or lower max_tokens",
            param="messages",
            code="context_length_exceeded",
        )


class ModelGate:
    """One request at a time gets the model, each for at most the rest of its time budget.

    A request waiting longer than its budget is answered 504 (the model is busy); one whose
    generation runs past it is stopped (the stream is cancelled, freeing the model within a
    token) and answered 504 too.
    """

    def __init__(self, engine: Engine, timeout: float | None, max_waiting: int | None = None):
        self.engine, self.timeout, self.max_waiting = engine, timeout, max_waiting
        self._lock = threading.Lock()
        self._waiting = 0
        self._count = threading.Lock()

    def deadline(self, started: float) -> float | None:
        return None if self.timeout is None else started + self.timeout

    def acquire(self, deadline: float | None) -> None:
        """Wait for the model until ``deadline`` (``time.monotonic()``); 504 past it, and 503
        at once when ``max_waiting`` requests are waiting already (a bounded queue)."""
        with self._count:
            if self.max_waiting is not None and self._waiting >= self.max_waiting:
                raise RequestError(
                    f"the server is busy: {self.max_waiting} requests are already waiting for "
                    "the model (medvl serve --max-queued-requests); retry shortly",
                    503,
                    code="server_busy",
                )
            self._waiting += 1
        try:
            wait = -1 if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._lock.acquire(timeout=wait):
                raise self.timed_out("waiting for the model")
        finally:
            with self._count:
                self._waiting -= 1

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the model with no deadline (the micro-batch worker, which enforces each
        request's deadline itself)."""
        with self._lock:
            yield

    def release(self) -> None:
        if self._lock.locked():
            self._lock.release()

    def timed_out(self, doing: str) -> RequestError:
        return RequestError(
            f"the request ran past the server's {self.timeout:g} s limit while {doing} "
            "(medvl serve --request-timeout); lower max_tokens, shorten the prompt or retry "
            "when the server is less busy",
            504,
            code="timeout",
        )

    def generate(
        self,
        request: ChatRequest,
        settings: GenerationSettings,
        deadline: float | None,
        prepared: Any = None,
    ) -> Generation:
        """Generate one reply under the gate, cancelling it at ``deadline``; ``prepared``: the
        request's inputs already built (:func:`open_stream`)."""
        self.acquire(deadline)
        try:
            stream = open_stream(self.engine, request, settings, prepared)
            fired = threading.Event()
            timer = self.cancel_at(deadline, lambda: (fired.set(), stream.close()))
            try:
                for _ in stream:
                    pass
            finally:
                if timer is not None:
                    timer.cancel()
                stream.close()
            if fired.is_set():
                raise self.timed_out("generating")
            assert stream.result is not None
            return stream.result
        finally:
            self.release()

    @staticmethod
    def cancel_at(deadline: float | None, action: Any) -> threading.Timer | None:
        """Run ``action`` at ``deadline`` in a timer thread (None: never)."""
        if deadline is None:
            return None
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), action)
        timer.daemon = True
        timer.start()
        return timer


def open_stream(
    engine: Engine, request: ChatRequest, settings: GenerationSettings, prepared: Any = None
) -> TokenStream:
    """``engine.stream``, handing it ``prepared`` inputs when there are some (the local HF
    engine takes them: a video request's processor run is not repeated)."""
    if prepared is None:
        return engine.stream(request, settings)
    return engine.stream(request, settings, prepared=prepared)  # type: ignore[call-arg]


def _get(size: Any, key: str) -> Any:
    return size.get(key) if hasattr(size, "get") else getattr(size, key, None)


def _image_tokens(image_processor: Any, width: int, height: int) -> int:
    """Qwen-VL tokens for one picture: its resized grid of merged patches (0 if unknown)."""
    patch = getattr(image_processor, "patch_size", None)
    merge = getattr(image_processor, "merge_size", None)
    if not patch or not merge:
        return 0
    try:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        size = getattr(image_processor, "size", None) or {}
        low = _get(size, "shortest_edge") or getattr(image_processor, "min_pixels", 56 * 56)
        high = processor_pixels_of(image_processor) or 28 * 28 * 1280
        h, w = smart_resize(height, width, factor=patch * merge, min_pixels=low, max_pixels=high)
    except Exception:  # an unfamiliar processor: count the text only
        return 0
    return (h // (patch * merge)) * (w // (patch * merge))


def processor_pixels_of(image_processor: Any) -> int | None:
    """``max_pixels`` of a Qwen-VL image processor (``size["longest_edge"]``), or None."""
    size = getattr(image_processor, "size", None) or {}
    value = _get(size, "longest_edge") or getattr(image_processor, "max_pixels", None)
    return int(value) if value else None
