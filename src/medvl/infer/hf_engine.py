"""Batched generation with a local Hugging Face model.

Why each step is the way it is (building each request's inputs and the left-padded batch is
:mod:`medvl.infer.hf_inputs`):

* **Parallel preparation.** Reading images (PNG, DICOM, NIfTI) and running the image processor
  happen in a thread pool ahead of the model, so the model never waits for disk or decoding.
  Threads rather than processes: no fork of a process that holds a model and server threads,
  nothing to pickle, no start-up cost; image decoding and torch ops release the GIL.
* **Processed pixels cached per image file** (:mod:`medvl.infer.image_cache`): a second prompt
  or a second model of the same family over the same images skips decoding and resizing; the
  inputs are exactly the processor's. Bounded LRU, ``MEDVL_IMAGE_CACHE_MB`` (default 2048).
  Requests with videos (volumes, series, frame lists) go through the processor whole: their
  frames are read, sampled and windowed per request, and not cached.
* **Length-sorted batches.** Prepared requests are buffered in windows of ``lookahead``
  batches and sorted by token length, so a batch pads little.
* **Left padding.** Every prompt ends where generation starts; the attention mask and Qwen-VL's
  ``mm_token_type_ids`` (which its 3-D rope positions are computed from) are padded alongside,
  which makes greedy batched outputs equal batch-size-1 outputs.
* **One bad request is one error entry.** A request whose image cannot be read fails alone; a
  batch whose forward pass fails is retried one request at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from transformers import StoppingCriteria

from medvl.infer.engine import (
    ChatRequest,
    Engine,
    Generation,
    GenerationSettings,
    InferenceError,
    TokenStream,
)
from medvl.infer.hf_inputs import (
    Prepared,
    collate_left,
    default_workers,
    failure_reason,
    prepare_request,
)
from medvl.infer.image_cache import ProcessedImageCache, shared_cache
from medvl.models.input_settings import input_settings
from medvl.models.loading import LoadedModel, LoadOptions

logger = logging.getLogger(__name__)


class _Cancelled(StoppingCriteria):
    """A stopping criterion that ends generation when its event is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.event.is_set(), device=input_ids.device)


class HFEngine(Engine):
    """Generation with a model loaded by :func:`medvl.models.loading.load_model`."""

    name = "hf"

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        batch_size: int = 8,
        num_workers: int | None = None,
        lookahead: int = 8,
        image_cache: ProcessedImageCache | None = None,
    ):
        """``image_cache``: where processed pixels are kept; None is the process-wide
        :func:`~medvl.infer.image_cache.shared_cache`, ``ProcessedImageCache(0)`` turns it off."""
        if batch_size < 1 or lookahead < 1:
            raise InferenceError(f"batch_size and lookahead must be >= 1, got {batch_size}")
        self.loaded = loaded
        self.batch_size = batch_size
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.lookahead = lookahead
        self.processor = loaded.processor
        self.tokenizer = loaded.processor.tokenizer
        self._lock = threading.Lock()  # one generate at a time: chat, server and predict share
        self._eos = _eos_ids(loaded.model)
        self.image_cache = shared_cache() if image_cache is None else image_cache

    @classmethod
    def from_model(
        cls,
        model: Any,
        processor: Any,
        *,
        batch_size: int = 8,
        num_workers: int | None = None,
    ) -> HFEngine:
        """An engine over a model already in memory (e.g. the one being trained), so it
        answers exactly as the same weights would at inference time. Its fingerprint names the
        model's ``name_or_path`` and says it is in memory: no files identify these weights."""
        name = str(getattr(model, "name_or_path", "") or "<in-memory>")
        loaded = LoadedModel(
            model=model,
            processor=processor,
            base=name,
            adapters=(),
            options=LoadOptions(),
            family=None,
            _fingerprint={"id": f"in-memory:{name}", "path": name, "adapters": []},
        )
        return cls(loaded, batch_size=batch_size, num_workers=num_workers)

    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self._eos[0]

    def fingerprint(self) -> dict[str, Any]:
        return self.loaded.fingerprint()

    def input_settings(self) -> dict[str, Any]:
        return input_settings(self.loaded.options, self.loaded.dtype)

    def prepare(self, index: int, request: ChatRequest) -> Prepared:
        return prepare_request(self.processor, index, request, self.image_cache)

    def _prepared(self, requests: Iterable[ChatRequest]) -> Iterator[Prepared]:
        """Prepared requests in order, built by a thread pool running ahead of the model."""
        if self.num_workers == 0:
            for index, request in enumerate(requests):
                yield self.prepare(index, request)
            return
        ahead = self.batch_size * (self.lookahead + 2)
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="medvl-prepare") as pool:
            pending: deque = deque()
            try:
                for index, request in enumerate(requests):
                    pending.append(pool.submit(self.prepare, index, request))
                    if len(pending) >= ahead:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:  # the consumer stopped early (Ctrl-C, an error): drop queued work
                for future in pending:
                    future.cancel()

    def _windows(self, prepared: Iterator[Prepared]) -> Iterator[list[Prepared]]:
        window: list[Prepared] = []
        for item in prepared:
            window.append(item)
            if len(window) >= self.batch_size * self.lookahead:
                yield window
                window = []
        if window:
            yield window

    def generate_batches(
        self, requests: Iterable[ChatRequest], settings: GenerationSettings
    ) -> Iterator[list[Generation]]:
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        for window in self._windows(self._prepared(requests)):
            failed = [p for p in window if p.error is not None]
            if failed:
                yield [Generation.failed(p.request, p.index, p.error) for p in failed]
            ready = sorted((p for p in window if p.error is None), key=lambda p: -p.length)
            for start in range(0, len(ready), self.batch_size):
                yield self._run_batch(ready[start : start + self.batch_size], settings)

    def generate_prepared(
        self,
        batch: list[Prepared],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> list[Generation]:
        """One ``generate`` call for already prepared requests, results in ``batch`` order.

        The server's micro-batches come through here: requests are prepared in their own
        handler threads, and setting ``cancel`` stops the whole call within a token (the
        request timeout). Left padding keeps greedy outputs equal to one-at-a-time ones."""
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        return self._run_batch(batch, settings, cancel)

    def _run_batch(
        self,
        batch: list[Prepared],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> list[Generation]:
        """Generate one batch; if it fails, retry its requests one by one."""
        try:
            return self._generate(batch, settings, cancel)
        except Exception as exc:
            if len(batch) == 1:
                logger.warning("request %r failed: %s", batch[0].request.id, failure_reason(exc))
                return [Generation.failed(batch[0].request, batch[0].index, failure_reason(exc))]
            logger.warning("batch of %d failed (%s); retrying one by one", len(batch), exc)
            return [g for item in batch for g in self._run_batch([item], settings, cancel)]

    def _generate(
        self,
        batch: list[Prepared],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> list[Generation]:
        from transformers import StoppingCriteriaList

        inputs = self._to_device(collate_left(batch, self.pad_token_id))
        width = inputs["input_ids"].shape[1]
        extra: dict[str, Any] = {}
        if cancel is not None:
            extra["stopping_criteria"] = StoppingCriteriaList([_Cancelled(cancel)])
        start = time.perf_counter()
        with self._lock, torch.inference_mode():
            output = self.loaded.model.generate(
                **inputs, **settings.hf_kwargs(), pad_token_id=self.pad_token_id, **extra
            )
        seconds = (time.perf_counter() - start) / len(batch)
        results = []
        for row, item in enumerate(batch):
            generation = self._decode(output[row, width:].tolist(), item)
            generation.seconds = round(seconds, 4)
            results.append(generation)
        return results

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        device, dtype = self.loaded.device, self.loaded.dtype
        moved = {}
        for key, value in batch.items():
            value = value.to(device)
            if value.is_floating_point():
                value = value.to(dtype)
            moved[key] = value
        return moved

    def _decode(self, tokens: list[int], item: Prepared) -> Generation:
        """Text up to the first end-of-sequence token; ``length`` if none was produced."""
        stop = next((i for i, t in enumerate(tokens) if t in self._eos), None)
        kept = tokens if stop is None else tokens[:stop]
        return Generation(
            id=item.request.id,
            text=self.tokenizer.decode(kept, skip_special_tokens=True),
            finish_reason="length" if stop is None else "stop",
            prompt_tokens=item.length,
            completion_tokens=len(tokens) if stop is None else stop + 1,
            prompt=item.prompt,
            index=item.index,
        )

    def stream(
        self,
        request: ChatRequest,
        settings: GenerationSettings,
        *,
        prepared: Prepared | None = None,
    ) -> TokenStream:
        """Stream one reply; generation runs in a thread that holds the engine's lock.

        ``prepared``: ``request``'s inputs already built by :meth:`prepare` (the server builds
        a video request's inputs once, to count its tokens), so the processor is not run again."""
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        item = self.prepare(0, request) if prepared is None else prepared
        if item.error is not None:
            raise InferenceError(item.error)
        inputs = self._to_device(collate_left([item], self.pad_token_id))
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel, outcome = threading.Event(), {}

        def run() -> None:
            try:
                if settings.seed is not None:
                    torch.manual_seed(settings.seed)
                with torch.inference_mode():
                    outcome["output"] = self.loaded.model.generate(
                        **inputs,
                        **settings.hf_kwargs(),
                        pad_token_id=self.pad_token_id,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
                    )
            except BaseException as exc:
                outcome["error"] = exc
                streamer.end()
            finally:
                self._lock.release()

        self._lock.acquire()
        thread = threading.Thread(target=run, name="medvl-generate", daemon=True)
        thread.start()
        start = time.perf_counter()

        def pieces() -> Iterator[str]:
            for piece in streamer:
                if piece:
                    yield piece
            thread.join()
            if "error" in outcome:
                raise InferenceError(f"generation failed: {failure_reason(outcome['error'])}")

        def finish(text: str) -> Generation:
            width = inputs["input_ids"].shape[1]
            generation = self._decode(outcome["output"][0, width:].tolist(), item)
            generation.seconds = round(time.perf_counter() - start, 4)
            return generation

        return TokenStream(pieces(), finish, cancel.set)


def _eos_ids(model: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]
