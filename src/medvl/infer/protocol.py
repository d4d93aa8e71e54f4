"""The OpenAI chat-completions wire format: parsing requests, building answers and errors.

Kept apart from the web framework so the rules (which fields, which limits, which status code)
are plain functions with plain tests. Requests carry images as ``image_url`` parts holding a
data URL or, when the server has an image root, a file path under it; and videos (a CT/MRI
volume, a DICOM series, ordered slices) as ``video_url`` parts, vLLM's form (a
``data:video/jpeg;base64,<frame>,<frame>,...`` frame list, or a volume/series/slice-folder
path under the image root with optional ``n``, ``axis``, ``window``, ``uid``), or as
``{"type": "video", "video": [image URL, ...]}`` frame lists (:mod:`medvl.infer.video_media`).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medvl.errors import MedvlError
from medvl.infer.engine import ChatRequest, Generation, GenerationSettings
from medvl.infer.media import MAX_REQUEST_PIXELS, ImageInputError, ImageLoader
from medvl.infer.video_media import (
    MAX_REQUEST_FRAMES,
    VideoInputError,
    parse_video_part,
    request_frames,
)

ROLES = ("system", "user", "assistant")


class RequestError(MedvlError):
    """A request the server refuses; carries the HTTP status and the OpenAI error fields."""

    def __init__(
        self, message: str, status: int = 400, *, param: str | None = None, code: str | None = None
    ):
        self.status, self.param, self.code = status, param, code
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
        return error_body(
            str(self), kind.get(self.status, "invalid_request_error"), self.param, self.code
        )


@dataclass(frozen=True)
class ServerConfig:
    """What the server answers to and how much it accepts."""

    model_name: str = "medvl"
    api_key: str | None = field(default=None, repr=False)
    image_root: Path | None = None
    max_body_bytes: int = 20 * 2**20
    max_images: int = 8
    #: Video frames one request may hold, over all its videos (a volume path counts its ``n``).
    max_video_frames: int = MAX_REQUEST_FRAMES
    max_new_tokens_limit: int = 4096
    defaults: GenerationSettings = field(default_factory=lambda: GenerationSettings(512))
    #: Sum of image pixels (from headers) one request may hold.
    max_request_pixels: int = MAX_REQUEST_PIXELS
    #: Size pictures are shrunk to after decoding; None: the engine processor's pixel budget.
    image_target_pixels: int | None = None
    #: Requests decoding images at the same time; the others wait.
    max_concurrent_decodes: int = 2
    #: Prompt tokens one request may hold (None: the model's context less max_tokens).
    max_prompt_tokens: int | None = None
    #: Seconds from arrival to answer, waiting for the model included (None: no limit).
    request_timeout: float | None = 600.0
    #: Milliseconds the server waits after a request for others to batch with (0: no batching).
    batch_window_ms: float = 5.0
    #: Most requests in one batched ``generate`` call (1: no batching).
    max_batch_size: int = 8
    #: Requests that may wait for the model; past it a new one gets 503 with Retry-After.
    max_queued_requests: int = 64

    @property
    def batching(self) -> bool:
        """Whether plain requests are micro-batched (streamed ones never are)."""
        return self.batch_window_ms > 0 and self.max_batch_size > 1

    def image_loader(self) -> ImageLoader:
        """A loader enforcing this config's image limits (one per server: it holds the
        semaphore that caps concurrent decodes)."""
        return ImageLoader(
            image_root=self.image_root,
            max_request_pixels=self.max_request_pixels,
            target_pixels=self.image_target_pixels,
            max_concurrent=self.max_concurrent_decodes,
        )


@dataclass
class ParsedRequest:
    """A validated chat-completion request, images decoded."""

    request: ChatRequest
    settings: GenerationSettings
    stream: bool


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code: Any = None
) -> dict[str, Any]:
    """An OpenAI-style error object, which the ``openai`` client turns into an exception."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def parse_chat_request(
    body: Any, config: ServerConfig, loader: ImageLoader | None = None
) -> ParsedRequest:
    """Validate a ``/v1/chat/completions`` body; raise :class:`RequestError` with a 4xx.

    Everything but the images is checked first; then ``loader`` (the server's, which caps
    concurrent decodes) checks the images' total size from their headers and decodes them.
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != config.model_name:
        raise RequestError(
            f"model {model!r} is not served here; this server serves {config.model_name!r}",
            404,
            param="model",
            code="model_not_found",
        )
    if body.get("n") not in (None, 1):
        raise RequestError("only n=1 is supported", param="n")
    if body.get("stop"):
        raise RequestError("stop sequences are not supported", param="stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("stream must be true or false", param="stream")
    messages, urls, videos = _parse_messages(body.get("messages"), config)
    settings = _parse_settings(body, config)
    try:
        videos = request_frames(videos, config.max_video_frames)
    except VideoInputError as exc:
        raise RequestError(str(exc), param="messages", code="invalid_video") from None
    try:
        images, clips = (loader or config.image_loader()).load_all(urls, videos)
    except ImageInputError as exc:
        raise RequestError(str(exc), exc.status, param="messages", code="invalid_image") from None
    request = ChatRequest(
        messages=messages, images=images, id=f"chatcmpl-{uuid.uuid4().hex}", videos=clips
    )
    return ParsedRequest(request, settings, stream)


def _parse_messages(
    raw: Any, config: ServerConfig
) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """Template messages, the ``(where, url)`` of each image part and the source of each video
    part (nothing decoded yet)."""
    if not isinstance(raw, list) or not raw:
        raise RequestError("messages must be a non-empty list", param="messages")
    messages: list[dict[str, Any]] = []
    images: list[Any] = []
    videos: list[Any] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(
                f"{where} must be an object with role system, user or assistant", param=where
            )
        parts = _parse_content(message.get("content"), where, images, videos, config)
        messages.append({"role": message["role"], "content": parts})
    if not any(m["role"] == "user" for m in messages):
        raise RequestError("messages must hold at least one user message", param="messages")
    return messages, images, videos


def _parse_content(
    content: Any, where: str, images: list, videos: list, config: ServerConfig
) -> list[dict]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content or ""}]
    if not isinstance(content, list):
        raise RequestError(f"{where}.content must be a string or a list of parts", param=where)
    parts = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            if len(images) >= config.max_images:
                raise RequestError(
                    f"more than {config.max_images} images in one request (the server's "
                    "--max-images); send fewer images per request",
                    param=at,
                )
            image_url = part.get("image_url")
            images.append((at, image_url.get("url") if isinstance(image_url, dict) else image_url))
            parts.append({"type": "image"})
        elif kind in ("video_url", "video"):
            try:
                videos.append(parse_video_part(part, at))
            except VideoInputError as exc:
                raise RequestError(str(exc), param=at, code="invalid_video") from None
            parts.append({"type": "video"})
        else:
            raise RequestError(f"{at} must be a text, image_url, video_url or video part", param=at)
    return parts


def _number(body: dict, name: str, low: float, high: float, *, integer: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return None
    valid_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not valid_type or not math.isfinite(value):
        raise RequestError(f"{name} must be a {'whole ' if integer else ''}number", param=name)
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low} and {high}, got {value}", param=name)
    return value


def _parse_settings(body: dict, config: ServerConfig) -> GenerationSettings:
    limit = config.max_new_tokens_limit
    settings = config.defaults
    tokens = _number(body, "max_completion_tokens", 1, limit, integer=True)
    tokens = tokens or _number(body, "max_tokens", 1, limit, integer=True)
    temperature = _number(body, "temperature", 0, 2)
    top_p = _number(body, "top_p", 1e-6, 1)
    top_k = _number(body, "top_k", -1, 10**6, integer=True)
    penalty = _number(body, "repetition_penalty", 1e-3, 10)
    seed = _number(body, "seed", -(2**63), 2**63 - 1, integer=True)
    changes: dict[str, Any] = {"max_new_tokens": min(tokens or settings.max_new_tokens, limit)}
    if temperature is not None:
        changes.update(do_sample=temperature > 0, temperature=temperature or 1.0)
    if top_p is not None:
        changes["top_p"] = float(top_p)
    if top_k is not None:
        changes["top_k"] = top_k if top_k > 0 else None
    if penalty is not None:
        changes["repetition_penalty"] = float(penalty)
    if seed is not None:
        changes["seed"] = seed
    return replace(settings, **changes)


def completion_body(generation: Generation, model: str, request_id: str) -> dict[str, Any]:
    """A ``chat.completion`` object for one finished generation."""
    prompt = generation.prompt_tokens or 0
    completion = generation.completion_tokens or 0
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": generation.text},
                "finish_reason": generation.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def chunk_body(
    request_id: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a streamed answer."""
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
