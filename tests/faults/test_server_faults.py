"""The server survives real-world input (issue 15, items 1-2): huge images from parallel
clients, a prompt longer than the context, too many images, and a request that runs past its
time, each answered with a one-line 4xx/504 naming the limit and its flag, memory bounded, and
a normal request answered afterwards. The server runs in this process (``BackgroundServer``),
so the RSS sampled here is the server's, measured as growth over the RSS before the requests."""

from __future__ import annotations

import base64
import io
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from PIL import Image

from medvl.infer.engine import GenerationSettings
from medvl.infer.hf_engine import HFEngine
from medvl.infer.media import image_to_data_url
from medvl.infer.protocol import ServerConfig
from medvl.infer.server import BackgroundServer, create_app
from medvl.models.loading import load_model

#: The attack grew the old server by 2.4-9 GB; with the budgets it must grow by well under 1 GiB.
RSS_GROWTH_BOUND = 2**30
GREEDY = GenerationSettings(max_new_tokens=4)


def huge_png(width: int = 9000, height: int = 9000) -> bytes:
    """A complete, valid all-black RGB PNG of ``width`` x ``height`` (about 240 KB), made
    row by row so building it never holds the decoded picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    compressor, row, parts = zlib.compressobj(9), b"\0" * (1 + 3 * width), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def big_jpeg(size: int = 3000) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (40, 90, 160)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def question(urls: list[str], text: str = "What is shown?") -> dict:
    parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]}


class PeakRss:
    """Samples this process's resident memory every 5 ms while in the ``with`` block.

    The server runs inside the test process, whose RSS already holds everything earlier tests
    loaded, so the check is on ``growth``: the peak over the RSS when the block was entered.
    """

    def __init__(self) -> None:
        self.process, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.start = 0

    @property
    def growth(self) -> int:
        """Bytes the peak rose above the RSS at the start of the block."""
        return self.peak - self.start

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.005)

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def engine(tiny_model_dirs):
    return HFEngine(load_model(tiny_model_dirs("qwen2_vl")), batch_size=4, num_workers=1)


def serve(engine, **limits) -> BackgroundServer:
    config = ServerConfig(model_name="tiny", defaults=GREEDY, **limits)
    return BackgroundServer(create_app(engine, config))


def post(server: BackgroundServer, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)


def refused(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert "\n" not in message and all(f in message for f in fragments), message
    return message


def still_serving(server: BackgroundServer, phantom_dir) -> None:
    url = image_to_data_url(phantom_dir / "images" / "phantom-00000.png")
    response = post(server, question([url]))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["role"] == "assistant"


def test_huge_images_from_parallel_clients_and_a_long_prompt(engine, phantom_dir):
    huge = data_url(huge_png())
    attack = question([huge] * 8)  # eight 9000x9000 PNGs in one ~2.5 MB body
    long_prompt = {"messages": [{"role": "user", "content": "lesion " * 60_000}]}
    with serve(engine) as server, PeakRss() as rss:
        with ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(lambda body: post(server, body), [attack] * 8 + [long_prompt]))
        for response in answers[:8]:
            refused(response, 400, "648,000,000 pixels", "--max-request-pixels")
        refused(answers[8], 400, "context of 32,768 tokens", "max_tokens")
        still_serving(server, phantom_dir)
    assert rss.growth < RSS_GROWTH_BOUND, f"server RSS grew by {rss.growth / 2**30:.2f} GiB"


def test_large_images_within_budget_are_decoded_small_and_answered(engine, phantom_dir):
    jpeg, png = data_url(big_jpeg(), "image/jpeg"), data_url(huge_png(3000, 3000))
    body = {**question([jpeg, png]), "max_tokens": 2}  # 18M pixels: inside the budget
    with serve(engine, max_concurrent_decodes=2) as server, PeakRss() as rss:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post(server, body), range(8)))
        for response in answers:
            assert response.status_code == 200, response.text
            # shrunk to the processor's 200,704-pixel budget before the model saw them
            assert response.json()["usage"]["prompt_tokens"] < 700
        still_serving(server, phantom_dir)
    assert rss.growth < RSS_GROWTH_BOUND, f"server RSS grew by {rss.growth / 2**30:.2f} GiB"


def test_bombs_too_many_images_and_prompt_limits_are_4xx(engine, phantom_dir):
    small = image_to_data_url(phantom_dir / "images" / "phantom-00001.png")
    with serve(engine, max_request_pixels=10**10, max_prompt_tokens=200) as server:
        bomb = huge_png(20_000, 20_000)  # past PIL's decompression-bomb limit
        refused(post(server, question([data_url(bomb)])), 400, "decompression-bomb limit")
        refused(post(server, question([small] * 9)), 400, "more than 8 images", "--max-images")
        wordy = {"messages": [{"role": "user", "content": "lesion " * 500}]}
        refused(post(server, wordy), 400, "limit of 200", "--max-prompt-tokens")
        still_serving(server, phantom_dir)


def test_a_request_past_its_time_is_cancelled_with_504(engine, phantom_dir):
    slow = {"messages": [{"role": "user", "content": "Describe."}], "max_tokens": 4000}
    with serve(engine, request_timeout=0.05) as server:
        refused(post(server, slow), 504, "--request-timeout")
        streamed = httpx.post(
            f"{server.url}/v1/chat/completions", json={**slow, "stream": True}, timeout=120
        )
        assert streamed.status_code in (200, 504)
        if streamed.status_code == 200:  # the status line went out first: reported in-band
            assert "--request-timeout" in streamed.text and streamed.text.endswith("[DONE]\n\n")
    with serve(engine, request_timeout=120) as server:
        still_serving(server, phantom_dir)
