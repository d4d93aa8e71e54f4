"""Micro-batching in the real server (issue 15): concurrent plain requests share one
``generate`` call and get exactly the texts they get one at a time; requests with other
settings are not mixed in; a request whose time runs out while queued gets 504 without running;
a full queue answers 503 with Retry-After. The test holds the server's own model gate
(``app.state.gate``) to make requests queue up, so batching is certain, not timing-dependent."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from medvl.infer.engine import GenerationSettings
from medvl.infer.hf_engine import HFEngine
from medvl.infer.media import image_to_data_url
from medvl.infer.protocol import ServerConfig
from medvl.infer.server import BackgroundServer, create_app
from medvl.models.loading import load_model

GREEDY = GenerationSettings(max_new_tokens=6)
QUESTIONS = ["What is shown?", "Which side?", "Is there a lesion?", "Describe the scan."]


@pytest.fixture(scope="module")
def engine(tiny_model_dirs):
    return HFEngine(load_model(tiny_model_dirs("qwen2_vl")), batch_size=4, num_workers=1)


def serve(engine, **limits):
    app = create_app(engine, ServerConfig(model_name="tiny", defaults=GREEDY, **limits))
    return app, BackgroundServer(app)


def post(server: BackgroundServer, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)


def bodies(phantom_dir, n: int) -> list[dict]:
    """``n`` requests with different images, questions and (so) prompt lengths."""
    out = []
    for i in range(n):
        url = image_to_data_url(phantom_dir / "images" / f"phantom-{i % 6:05d}.png")
        parts = [{"type": "image_url", "image_url": {"url": url}}] if i % 3 else []
        text = QUESTIONS[i % len(QUESTIONS)] + " " + "please " * (i % 5)
        out.append(
            {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]}
        )
    return out


def queued(app, n: int) -> None:
    """Wait until ``n`` requests are queued (they arrive from other threads)."""
    deadline = time.monotonic() + 60
    while app.state.batcher.pending < n:
        assert time.monotonic() < deadline, "requests did not reach the queue"
        time.sleep(0.01)


def text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_concurrent_requests_share_one_generate_with_identical_outputs(engine, phantom_dir):
    requests = bodies(phantom_dir, 8)
    other = {**requests[0], "max_tokens": 3}  # other settings: never in the same call
    off_app, off = serve(engine, batch_window_ms=0)  # batching off: the one-at-a-time path
    assert off_app.state.batcher is None
    with off:
        one_by_one = [text(post(off, body)) for body in [*requests, other]]
    app, server = serve(engine)
    with server:
        with ThreadPoolExecutor(9) as pool, app.state.gate.hold():
            futures = [pool.submit(post, server, body) for body in [*requests, other]]
            queued(app, 9)
        together = [text(f.result()) for f in futures]
        stats = app.state.batcher.stats
    assert together == one_by_one
    assert stats["largest"] == 8 and stats["batches"] == 2  # the 8 alike, then the other
    assert futures[8].result().json()["usage"]["completion_tokens"] <= 3


def test_sampled_requests_run_alone_and_streams_still_work(engine, phantom_dir):
    sampled = [{**b, "temperature": 0.8, "seed": 7} for b in bodies(phantom_dir, 3)]
    app, server = serve(engine)
    with server:
        with ThreadPoolExecutor(3) as pool, app.state.gate.hold():
            futures = [pool.submit(post, server, body) for body in sampled]
            queued(app, 3)
        replies = [text(f.result()) for f in futures]
        assert app.state.batcher.stats == {"batches": 3, "requests": 3, "expired": 0, "largest": 1}
        assert replies[0] == text(post(server, sampled[0]))  # a seed reproduces the reply
        streamed = httpx.post(
            f"{server.url}/v1/chat/completions", json={**sampled[0], "stream": True}, timeout=120
        )
        assert streamed.status_code == 200 and streamed.text.endswith("[DONE]\n\n")


def test_queued_past_its_time_is_504_without_running(engine, phantom_dir):
    app, server = serve(engine, request_timeout=0.3)
    [body] = bodies(phantom_dir, 1)
    with server:
        with app.state.gate.hold():
            response = post(server, body)
        assert response.status_code == 504, response.text
        message = response.json()["error"]["message"]
        assert "waiting for the model" in message and "--request-timeout" in message
        assert "\n" not in message
        text(post(server, body))  # the model is free again: answered
        deadline = time.monotonic() + 30
        while app.state.batcher.stats["expired"] < 1:  # the worker skips it once it gets there
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert app.state.batcher.stats["requests"] == 1  # only the second one ran


def test_a_full_queue_is_503_with_retry_after(engine, phantom_dir):
    app, server = serve(engine, max_queued_requests=2)
    requests = bodies(phantom_dir, 3)
    with server:
        with ThreadPoolExecutor(2) as pool, app.state.gate.hold():
            waiting = [pool.submit(post, server, body) for body in requests[:2]]
            queued(app, 2)
            busy = post(server, requests[2])
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        message = busy.json()["error"]["message"]
        assert "--max-queued-requests" in message and "\n" not in message
        assert all(f.result().status_code == 200 for f in waiting)
        text(post(server, requests[2]))  # answered once there is room
