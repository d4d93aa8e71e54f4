"""An OpenAI-compatible server: ``/v1/chat/completions`` (plain and streamed) and ``/v1/models``.

Any OpenAI client (the ``openai`` package, LangChain, medvl's own OpenAI engine) can use a
medvl model through it. Every refusal is a JSON error with a 4xx status in the OpenAI shape,
and no bad request stops the server: image errors, oversize bodies, paths outside the image
root and missing keys are answered and the next request is served as usual. Generation runs in
a worker thread; the engine serialises requests to one model. Plain requests arriving within
``--batch-window-ms`` of each other share one ``generate`` call (:mod:`medvl.infer.server_batch`,
greedy outputs unchanged); streamed requests run one at a time.

Budgets keep one request from taking the server down (README, "Reliability limits"): body
size (413), images per request, video frames per request (``--max-video-frames``; a volume
path counts its ``n``) and pixels per request read from image headers before anything is
decoded (400), concurrent decodes (a semaphore), prompt tokens against ``--max-prompt-tokens``
and the model's context (400), and a request timeout that also cancels generation (504).
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from medvl.errors import MedvlError
from medvl.infer.engine import Engine, InferenceError, TokenStream
from medvl.infer.protocol import (
    RequestError,
    ServerConfig,
    chunk_body,
    completion_body,
    error_body,
    parse_chat_request,
)
from medvl.infer.server_batch import MicroBatcher, batchable
from medvl.infer.server_limits import (
    ModelGate,
    check_prompt,
    context_length,
    open_stream,
    processor_pixels,
    prompt_tokens,
)

logger = logging.getLogger(__name__)


def create_app(engine: Engine, config: ServerConfig) -> FastAPI:
    """The FastAPI application serving ``engine`` under ``config``'s name, key and limits."""
    if config.image_target_pixels is None:
        config = replace(config, image_target_pixels=processor_pixels(engine))
    app = FastAPI(title="medvl", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.config = engine, config
    loader = config.image_loader()
    gate = ModelGate(engine, config.request_timeout, config.max_queued_requests)
    context = context_length(engine)
    batcher = None
    if config.batching and batchable(engine):
        batcher = MicroBatcher(
            engine,
            gate,
            window=config.batch_window_ms / 1000,
            max_batch=config.max_batch_size,
            max_queued=config.max_queued_requests,
        )
    app.state.gate, app.state.batcher = gate, batcher

    def parse(body: Any) -> Any:
        parsed = parse_chat_request(body, config, loader)
        item = None
        if parsed.request.videos and callable(getattr(engine, "prepare", None)):
            item = _prepare(engine, parsed.request)  # exact video tokens: the processor's own
            tokens = item.length
        else:
            tokens = prompt_tokens(engine, parsed.request)
        check_prompt(tokens, parsed.settings, context, config.max_prompt_tokens)
        if batcher is not None and not parsed.stream:  # build model inputs in this thread
            return parsed, item or _prepare(engine, parsed.request)
        return parsed, item  # a video's inputs, built once: generation reuses them

    _add_error_handlers(app)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models(request: Request) -> dict[str, Any]:
        _authorize(request, config)
        card = {"id": config.model_name, "object": "model", "created": 0, "owned_by": "medvl"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        deadline = gate.deadline(time.monotonic())
        _authorize(request, config)
        body = await _read_json(request, config.max_body_bytes)
        parsed, item = await run_in_threadpool(parse, body)
        if parsed.stream:
            return await run_in_threadpool(_start_stream, gate, parsed, config, deadline, item)
        try:
            if batcher is not None:
                future = batcher.submit(item, parsed.settings, deadline)
                generation = await batcher.wait(future, deadline)
            else:
                generation = await run_in_threadpool(
                    gate.generate, parsed.request, parsed.settings, deadline, item
                )
        except InferenceError as exc:
            raise RequestError(f"the request could not be answered: {exc}") from None
        if generation.error is not None:
            raise RequestError(f"the request could not be answered: {generation.error}")
        return completion_body(generation, config.model_name, parsed.request.id)

    return app


def _prepare(engine: Engine, request: Any) -> Any:
    """The request's model inputs (``engine.prepare``), or 400 naming why they cannot be made."""
    item = engine.prepare(0, request)
    if item.error is not None:
        raise RequestError(f"the request could not be answered: {item.error}")
    return item


def _start_stream(
    gate: ModelGate,
    parsed: Any,
    config: ServerConfig,
    deadline: float | None,
    prepared: Any = None,
) -> StreamingResponse:
    """A streamed reply holding the model gate until it ends, is dropped, or times out;
    ``prepared``: the request's inputs when :func:`create_app`'s parse built them already."""
    gate.acquire(deadline)
    released = threading.Lock()

    def release() -> None:  # once: from the stream's end, or the deadline if never iterated
        if released.acquire(blocking=False):
            gate.release()

    try:
        stream = open_stream(gate.engine, parsed.request, parsed.settings, prepared)
    except InferenceError as exc:
        release()
        raise RequestError(f"the request could not be answered: {exc}") from None
    except BaseException:
        release()
        raise
    timer = gate.cancel_at(deadline, lambda: (stream.close(), release()))
    events = _sse_events(stream, config.model_name, parsed.request.id, release, timer)
    return StreamingResponse(events, media_type="text/event-stream")


def _authorize(request: Request, config: ServerConfig) -> None:
    if config.api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), config.api_key):
        raise RequestError(
            "missing or wrong API key; send 'Authorization: Bearer <key>'",
            401,
            code="invalid_api_key",
        )


async def _read_json(request: Request, limit: int) -> Any:
    """The JSON body, refused with 413 as soon as it grows past ``limit`` bytes."""
    too_large = RequestError(
        f"request body is larger than {limit} bytes; send smaller images or raise the "
        "server's --max-body-mb",
        413,
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise too_large
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON ({exc})") from None


def _sse_events(
    stream: TokenStream,
    model: str,
    request_id: str,
    release: Callable[[], None] = lambda: None,
    timer: threading.Timer | None = None,
) -> Iterator[str]:
    """Server-sent events: a role chunk, content chunks, a finish chunk, then ``[DONE]``.

    A stream cut short by the request timeout ends with an in-band error event."""
    created = int(time.time())

    def event(payload: dict[str, Any]) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    try:
        yield event(chunk_body(request_id, model, created, {"role": "assistant", "content": ""}))
        for piece in stream:
            yield event(chunk_body(request_id, model, created, {"content": piece}))
        if timer is not None and timer.finished.is_set():
            yield event(
                error_body(
                    "the request ran past the server's time limit (medvl serve --request-timeout)",
                    "timeout",
                )
            )
        else:
            finish = stream.result.finish_reason if stream.result else "stop"
            yield event(chunk_body(request_id, model, created, {}, finish))
    except Exception as exc:  # the status line is sent already: report in-band
        logger.warning("stream %s failed: %s", request_id, exc)
        yield event(error_body(f"generation failed: {exc}", "server_error"))
    finally:
        if timer is not None:
            timer.cancel()
        stream.close()
        release()
    yield "data: [DONE]\n\n"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        headers = {401: {"WWW-Authenticate": "Bearer"}, 503: {"Retry-After": "1"}}
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers.get(exc.status))

    @app.exception_handler(MedvlError)
    async def input_error(request: Request, exc: MedvlError) -> JSONResponse:
        return JSONResponse(error_body(str(exc)), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(f"invalid request: {exc.errors()}"), status_code=422)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("request to %s failed", request.url.path)
        message = f"internal error: {type(exc).__name__}: {exc}"
        return JSONResponse(error_body(message, "server_error"), status_code=500)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    return host in ("localhost", "::1") or host.startswith("127.")


def run_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` until interrupted (the ``medvl serve`` command)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True)


class BackgroundServer:
    """Runs an app with uvicorn in a background thread on a free loopback port.

    For tests, notebooks and in-process evaluation: ``with BackgroundServer(app) as server:``
    then point an OpenAI client at ``server.url + "/v1"``.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
