"""Take the README's screenshots of ``medvl ui``: one PNG per tab, from a real running app.

Builds two tiny random-weight Qwen2-VLs (seeds 0 and 1, side by side in Chat) and a phantom
dataset in a scratch folder, scores two eval runs of the first (the record's own prompt, and the
short-answer prompt), serves the workbench, drives each tab in headless Chromium (Debian's
/usr/bin/chromium through Playwright) and writes docs/ui_chat.png (an image and a phantom CT
volume asked about together, the volume's slice scroller open), ui_results.png,
ui_compare.png and ui_data.png (palette PNGs, < 400 KB each). The Data tab opens the test split
plus one record whose image is missing, to show a problem. The tiny models' answers are random
words: the screenshots show the page, not a model.

    .venv/bin/python scripts/ui_screenshots.py [--out docs] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

from PIL import Image

VIEWPORT = {"width": 1360, "height": 900}
MAX_BYTES = 400_000


def build_inputs(work: Path) -> dict[str, Path]:
    """Tiny model, phantom data and two scored runs under ``work``."""
    from medvl.cli.main import main
    from medvl.data.phantom import generate_phantom
    from medvl.models.tiny import build_tiny_model

    model = build_tiny_model("qwen2_vl", work / "tiny-qwen2-vl", seed=0)
    other = build_tiny_model("qwen2_vl", work / "tiny-qwen2-vl-seed1", seed=1)
    generate_phantom(work / "phantom", n=120, seed=3)
    from medvl.data.phantom_volumes import generate_phantom_volumes

    generate_phantom_volumes(work / "volumes", n=2, seed=0)
    data = work / "phantom" / "test.jsonl"
    runs = {}
    for name, prompt in (("as_is", "as_is"), ("short_answer", "short_answer")):
        runs[name] = work / "runs" / name
        argv = ["eval", "run", "--bench", "phantom", "--data", str(data), "--out"]
        argv += [str(runs[name]), "--model", str(model), "--prompt", prompt]
        if main([*argv, "--max-new-tokens", "12", "--resamples", "200"]) != 0:
            raise SystemExit(f"eval run {name} failed")
    volume = work / "volumes" / "volumes" / "phv-00000.nii.gz"
    browse = _with_a_problem(data)
    return {
        "model": model,
        "other": other,
        "data": data,
        "browse": browse,
        "volume": volume,
        **runs,
    }


def _with_a_problem(data: Path) -> Path:
    """A copy of ``data`` plus one record whose image is missing, for the Data tab to flag."""
    lines = data.read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[0])
    broken["id"], broken["images"] = "broken-image", ["images/not-there.png"]
    path = data.with_name("test_with_a_problem.jsonl")
    path.write_text("\n".join([*lines, json.dumps(broken)]) + "\n", encoding="utf-8")
    return path


def save(page, path: Path, full_page: bool = False) -> None:
    """Screenshot, then store as an optimised palette PNG (screenshots are mostly flat UI)."""
    raw = path.with_suffix(".raw.png")
    page.screenshot(path=str(raw), full_page=full_page)
    with Image.open(raw) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)
    raw.unlink()
    size = path.stat().st_size
    print(f"{path}: {size // 1024} KB", file=sys.stderr)
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is {size} bytes (> {MAX_BYTES}); lower the viewport")


def drive(url: str, inputs: dict[str, Path], out: Path, chromium: str) -> None:
    """Use each tab as a person would, and screenshot it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        page.wait_for_selector("#chat-send", timeout=60_000)
        image = inputs["data"].parent / "images" / "phantom-00000.png"
        page.set_input_files("#chat-upload input[type=file]", str(image))
        page.get_by_role("tab", name="Volume (video)").click()
        page.set_input_files("#chat-volume input[type=file]", str(inputs["volume"]))
        page.locator("#chat-scroller-caption").get_by_text("frame 1 of").wait_for(timeout=60_000)
        page.fill("#chat-question textarea", "What organ is visible in this image?")
        page.click("#chat-send")
        page.wait_for_selector("#chat-b .bot-row", timeout=120_000)
        page.wait_for_function("() => !document.querySelector('#chat-question textarea').value")
        save(page, out / "ui_chat.png")

        page.get_by_role("tab", name="Results").click()
        page.click("#results-open")
        page.locator("#results-count").get_by_text(" of ").wait_for()
        page.click("#f-outcome input")
        page.get_by_role("option", name="wrong", exact=True).click()
        page.locator("#results-count").get_by_text(" of ").wait_for()
        page.wait_for_timeout(1500)
        save(page, out / "ui_results.png", full_page=True)

        page.get_by_role("tab", name="Compare").click()
        page.click("#compare-go")
        page.get_by_text("records in common").wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        save(page, out / "ui_compare.png", full_page=True)

        page.get_by_role("tab", name="Data").click()
        page.click("#data-open")
        page.get_by_text("with problems").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2500)
        save(page, out / "ui_data.png", full_page=True)
        browser.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "docs")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    from medvl.infer.engine import GenerationSettings
    from medvl.ui.app import UIConfig, build_app, launch
    from medvl.ui.chat import ModelChoice

    with tempfile.TemporaryDirectory(prefix="medvl-ui-shots-") as tmp:
        work = Path(tmp)
        inputs = build_inputs(work)
        model = str(inputs["model"])
        config = UIConfig(
            model_a=ModelChoice(model),
            model_b=ModelChoice(str(inputs["other"])),
            runs=[str(inputs["as_is"]), str(inputs["short_answer"])],
            data=str(inputs["browse"]),
            settings=GenerationSettings(max_new_tokens=24),
            scratch=work / "scratch",
        )
        app = build_app(config)
        port = free_port()
        launch(app, port=port, block=False)
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            drive(f"http://127.0.0.1:{port}", inputs, args.out, args.chromium)
        finally:
            app.close()
            app.medvl_pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
