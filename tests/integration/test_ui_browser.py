"""``medvl ui`` in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium).

The app runs in this process on a free port with the session's tiny Qwen2-VL and a real eval run
of it on the phantom test split. The browser uploads an image and asks a question (the streamed
answer must be what the same engine answers outside the page), asks about an image and a NIfTI
volume together (the slice scroller shows the volume's frames; the answer must be the engine's
to the same image and frames), filters the Results tab (the
record count must change to the number of wrong rows in ``scores.jsonl``), and every screenshot
must show a page, not a blank. Skips with the reason when Chromium, Gradio or Playwright is
missing (``make browser`` installs Chromium; ``make test`` runs it first).
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}: run 'make browser' (apt chromium)"
)
gr = pytest.importorskip("gradio", reason="gradio missing: pip install -e '.[dev]'")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright missing")

QUESTION = "What organ is visible in this image?"
MAX_NEW_TOKENS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def distinct_colours(path: Path) -> int:
    """How many distinct RGB colours a screenshot has (a blank page has one or two)."""
    from PIL import Image

    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours) if colours is not None else 1 << 20


def plain(text: str) -> str:
    """Text without Markdown marks and whitespace, to compare a rendered reply with the raw."""
    return re.sub(r"[\s*_`#>\[\]()<\\|~-]+", "", text)


@pytest.fixture(scope="module")
def eval_run(tiny_model_dirs, phantom_dir, tmp_path_factory) -> Path:
    from medvl.cli.main import main

    out = tmp_path_factory.mktemp("ui-run") / "run"
    argv = ["eval", "run", "--bench", "phantom", "--data", str(phantom_dir / "test.jsonl")]
    argv += ["--out", str(out), "--model", str(tiny_model_dirs("qwen2_vl"))]
    assert main([*argv, "--max-new-tokens", "8", "--resamples", "20"]) == 0
    return out


@pytest.fixture(scope="module")
def served(tiny_model_dirs, phantom_dir, eval_run, tmp_path_factory):
    from medvl.infer.engine import GenerationSettings
    from medvl.ui.app import UIConfig, build_app, launch
    from medvl.ui.chat import ModelChoice

    config = UIConfig(
        model_a=ModelChoice(str(tiny_model_dirs("qwen2_vl"))),
        runs=[str(eval_run)],
        data=str(phantom_dir / "test.jsonl"),
        settings=GenerationSettings(max_new_tokens=MAX_NEW_TOKENS),
        scratch=tmp_path_factory.mktemp("ui-scratch"),
    )
    app = build_app(config)
    port = free_port()
    launch(app, port=port, block=False)
    yield app, f"http://127.0.0.1:{port}", config
    app.close()
    app.medvl_pool.close()


@pytest.fixture(scope="module")
def page(served):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(served[1])
        page.wait_for_selector("#chat-send", timeout=60_000)
        yield page
        browser.close()


def test_chat_round_trip_streams_the_engines_answer(served, page, phantom_dir, tmp_path):
    from medvl.infer.engine import ChatRequest, GenerationSettings

    app, _, config = served
    image = phantom_dir / "images" / "phantom-00000.png"
    page.set_input_files("#chat-upload input[type=file]", str(image))
    page.fill("#chat-question textarea", QUESTION)
    page.click("#chat-send")
    page.wait_for_function(
        "() => document.querySelectorAll('#chat-a .bot-row').length >= 1", timeout=120_000
    )
    page.wait_for_function(  # streaming over: the question box is cleared at the end
        "() => document.querySelector('#chat-question textarea').value === ''", timeout=60_000
    )
    bubbles = page.locator("#chat-a .bot-row")
    reply = bubbles.nth(bubbles.count() - 1).inner_text()
    assert plain(reply), "empty answer"
    engine = app.medvl_pool.get(config.model_a.spec())  # the model the page used, loaded once
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS)
    expected = "".join(engine.stream(ChatRequest.from_question(QUESTION, [image]), settings))
    assert plain(reply) == plain(expected)
    assert page.locator("#chat-a img").count() >= 1  # the picture the model got is shown
    shot = tmp_path / "chat.png"
    page.screenshot(path=str(shot))
    assert distinct_colours(shot) > 200


def test_results_filter_changes_the_count(served, page, eval_run, tmp_path):
    rows = [json.loads(line) for line in (eval_run / "scores.jsonl").read_text().splitlines()]
    wrong = sum(row["correct"] == 0.0 for row in rows)
    assert 0 < wrong < len(rows), "the fixture run needs right and wrong rows"
    page.get_by_role("tab", name="Results").click()
    page.click("#results-open")
    count = page.locator("#results-count")
    count.get_by_text(f"{len(rows)} of {len(rows)} records").wait_for(timeout=60_000)
    page.click("#f-outcome input")
    page.get_by_role("option", name="wrong", exact=True).click()
    count.get_by_text(f"{wrong} of {len(rows)} records").wait_for(timeout=60_000)
    assert "— wrong" in page.locator("#results-detail").inner_text()
    shot = tmp_path / "results.png"
    page.screenshot(path=str(shot), full_page=True)
    assert distinct_colours(shot) > 200


def test_volume_chat_sends_the_scrolled_frames(served, page, phantom_dir, tmp_path):
    """A NIfTI volume uploaded in the Volume tab: the scroller shows its slices, and the answer
    is what the engine says to the same image and the same frames outside the page."""
    import nibabel as nib
    import numpy as np

    from medvl.data.volumes import load_frames
    from medvl.infer.engine import ChatRequest, GenerationSettings
    from medvl.infer.video_media import video_spec

    app, _, config = served
    data = np.zeros((24, 24, 6), np.int16)
    for k in range(6):
        data[4 + k : 12 + k, 6:18, k] = 100 * (k + 1)
    volume = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])), str(volume))
    image = phantom_dir / "images" / "phantom-00001.png"  # an image and a volume in one turn
    page.get_by_role("tab", name="Chat").click()
    page.get_by_role("button", name="New conversation").click()
    page.get_by_role("tab", name="Image").click()
    clear = page.locator("#chat-upload button[aria-label='Clear']")
    if clear.count():  # the image of an earlier test
        clear.click()
    page.set_input_files("#chat-upload input[type=file]", str(image))
    page.get_by_role("tab", name="Volume (video)").click()
    page.set_input_files("#chat-volume input[type=file]", str(volume))
    caption = page.locator("#chat-scroller-caption")
    caption.get_by_text("frame 1 of 6").wait_for(timeout=60_000)
    assert page.locator("#chat-scroller input[type=range]").count() == 1
    page.fill("#chat-question textarea", QUESTION)
    page.click("#chat-send")
    page.wait_for_function(
        "() => document.querySelectorAll('#chat-a .bot-row').length >= 1", timeout=120_000
    )
    page.wait_for_function(  # streaming over: the question box is cleared at the end
        "() => document.querySelector('#chat-question textarea').value === ''", timeout=60_000
    )
    bubbles = page.locator("#chat-a .bot-row")
    reply = bubbles.nth(bubbles.count() - 1).inner_text()
    engine = app.medvl_pool.get(config.model_a.spec())
    frames = load_frames(video_spec(volume), volume.parent)  # /volume's defaults: n=16, axial
    request = ChatRequest.from_question(QUESTION, [image], videos=[frames])
    expected = "".join(engine.stream(request, GenerationSettings(max_new_tokens=MAX_NEW_TOKENS)))
    assert plain(reply) and plain(reply) == plain(expected)
    assert page.locator("#chat-a img").count() >= 2  # the image and the volume's strip
    shot = tmp_path / "volume.png"
    page.screenshot(path=str(shot))
    assert distinct_colours(shot) > 200
