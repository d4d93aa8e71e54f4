"""An engine that sends requests to any OpenAI-compatible server (medvl serve, vLLM, SGLang...).

This is how prediction and evaluation scale past one machine: point it at a vLLM deployment
and it keeps ``concurrency`` requests in flight. The ``openai`` client retries connection
errors, 408/409/429 and 5xx answers with backoff (``max_retries``). A 4xx answer for one
request (a bad image, a prompt too long) becomes that request's error entry; a server that
stays unreachable stops the run, and resumable prediction picks up where it stopped.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from medvl.infer.engine import (
    ChatRequest,
    Engine,
    Generation,
    GenerationSettings,
    InferenceError,
    TokenStream,
    load_video,
)
from medvl.infer.media import image_to_data_url

logger = logging.getLogger(__name__)


def video_to_data_url(video: Any) -> str:
    """vLLM's frame-list video URL, ``data:video/jpeg;base64,<frame>,<frame>,...``, of a request
    video (:func:`~medvl.infer.engine.load_video`), which medvl serve also accepts. JPEG at
    quality 95: the only frame format vLLM reads from a data URL."""
    frames = []
    for frame in load_video(video):
        buffer = io.BytesIO()
        frame.save(buffer, format="JPEG", quality=95)
        frames.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return "data:video/jpeg;base64," + ",".join(frames)


def openai_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The request in OpenAI chat form: image parts become PNG data URLs and video parts
    ``video_url`` frame lists (:func:`video_to_data_url`), in order."""
    images = iter(request.images)
    videos = iter(request.videos)
    messages = []
    for message in request.messages:
        content = message["content"]
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                url = image_to_data_url(next(images))
                parts.append({"type": "image_url", "image_url": {"url": url}})
            elif part.get("type") == "video":
                url = video_to_data_url(next(videos))
                parts.append({"type": "video_url", "video_url": {"url": url}})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
        if message["role"] != "user" and all(p["type"] == "text" for p in parts):
            messages.append({"role": message["role"], "content": "".join(p["text"] for p in parts)})
        else:
            messages.append({"role": message["role"], "content": parts})
    return messages


def request_options(settings: GenerationSettings) -> dict[str, Any]:
    """``chat.completions.create`` arguments for ``settings`` (temperature 0 means greedy)."""
    options: dict[str, Any] = {
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature if settings.do_sample else 0.0,
    }
    if settings.do_sample and settings.top_p < 1:
        options["top_p"] = settings.top_p
    if settings.seed is not None:
        options["seed"] = settings.seed
    extra: dict[str, Any] = {}  # vLLM/SGLang/medvl extensions, sent only when set
    if settings.do_sample and settings.top_k:
        extra["top_k"] = settings.top_k
    if settings.repetition_penalty != 1.0:
        extra["repetition_penalty"] = settings.repetition_penalty
    if extra:
        options["extra_body"] = extra
    return options


class OpenAIEngine(Engine):
    """Chat completions from a server at ``base_url`` (e.g. ``http://host:8000/v1``)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        max_retries: int = 3,
        timeout: float = 600.0,
    ):
        from openai import OpenAI

        if concurrency < 1:
            raise InferenceError(f"concurrency must be >= 1, got {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.client = OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            max_retries=max_retries,
            timeout=timeout,
        )
        self.model = model or self._served_model()

    def _served_model(self) -> str:
        """The first model the server lists (vLLM and medvl serve one)."""
        import openai

        try:
            models = self.client.models.list().data
        except openai.APIError as exc:
            raise _server_error(self.base_url, exc) from None
        if not models:
            raise InferenceError(f"{self.base_url}: the server lists no models; pass --model")
        return models[0].id

    def fingerprint(self) -> dict[str, Any]:
        return {"id": f"openai:{self.model}", "base_url": self.base_url, "model": self.model}

    def complete(
        self, index: int, request: ChatRequest, settings: GenerationSettings
    ) -> Generation:
        """One request, blocking; a 4xx answer or a bad image becomes an error entry."""
        import openai

        problem = request.check()
        if problem:
            return Generation.failed(request, index, problem)
        start = time.perf_counter()
        try:
            messages = openai_messages(request)
            reply = self.client.chat.completions.create(
                model=self.model, messages=messages, **request_options(settings)
            )
        except openai.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (401, 403, 404):
                raise _server_error(self.base_url, exc) from None
            return Generation.failed(request, index, _api_message(exc))
        except openai.APIError as exc:  # connection refused, timeout: after all retries
            raise _server_error(self.base_url, exc) from None
        except Exception as exc:  # an unreadable image fails this request only
            return Generation.failed(request, index, str(exc))
        choice = reply.choices[0]
        usage = reply.usage
        return Generation(
            id=request.id,
            text=choice.message.content or "",
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            seconds=round(time.perf_counter() - start, 4),
            prompt=request.messages,
            index=index,
        )

    def generate_batches(
        self, requests: Iterable[ChatRequest], settings: GenerationSettings
    ) -> Iterator[list[Generation]]:
        """Keep ``concurrency`` requests in flight; yield results as they finish."""
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="medvl-openai") as pool:
            pending: set[Future] = set()
            try:
                for index, request in enumerate(requests):
                    pending.add(pool.submit(self.complete, index, request, settings))
                    if len(pending) >= self.concurrency:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        yield [future.result() for future in finished]  # re-raises server errors
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield [future.result() for future in finished]
            finally:
                for future in pending:
                    future.cancel()

    def stream(self, request: ChatRequest, settings: GenerationSettings) -> TokenStream:
        import openai

        problem = request.check()
        if problem:
            raise InferenceError(problem)
        try:
            chunks = self.client.chat.completions.create(
                model=self.model,
                messages=openai_messages(request),
                stream=True,
                **request_options(settings),
            )
        except openai.APIError as exc:
            raise _server_error(self.base_url, exc) from None
        finish: dict[str, Any] = {}
        start = time.perf_counter()

        def pieces() -> Iterator[str]:
            for chunk in chunks:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    finish["reason"] = choice.finish_reason
                if choice.delta and choice.delta.content:
                    yield choice.delta.content

        def result(text: str) -> Generation:
            return Generation(
                id=request.id,
                text=text,
                finish_reason=finish.get("reason", "stop"),
                seconds=round(time.perf_counter() - start, 4),
                prompt=request.messages,
            )

        return TokenStream(pieces(), result, chunks.close)

    def close(self) -> None:
        self.client.close()


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return f"server answered {exc.status_code}: {error['message']}"
    return f"server answered {getattr(exc, 'status_code', '?')}: {exc}"


def _server_error(base_url: str, exc: Any) -> InferenceError:
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        fix = "pass the server's API key (--api-key or OPENAI_API_KEY)"
    elif status == 404:
        fix = "check --base-url (it usually ends in /v1) and the served model name (--model)"
    else:
        fix = "check that the server is running and --base-url is right; rerun to resume"
    what = _api_message(exc) if status else " ".join(str(exc).split())
    return InferenceError(f"{base_url}: {what}; {fix}")
