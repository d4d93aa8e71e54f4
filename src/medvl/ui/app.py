"""The workbench app: one ``gr.Blocks`` with the Chat, Results, Compare and Data tabs.

:func:`build_app` only builds the page (tests drive it in a browser); :func:`launch` serves it
on 127.0.0.1 by default, never through Gradio's public share links, with optional basic
``user:pass`` authentication. Gradio's usage analytics are switched off (the app must work
offline and send nothing anywhere). Models load on the first question, not at start-up.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.errors import ConfigError
from medvl.infer.engine import GenerationSettings
from medvl.ui.chat import EnginePool, ModelChoice, build_chat_tab
from medvl.ui.compare import build_compare_tab
from medvl.ui.data_tab import build_data_tab
from medvl.ui.results import build_results_tab

TITLE = "medvl workbench"
LOCALHOST = "127.0.0.1"
_CSS = "footer {display: none !important}"


@dataclass
class UIConfig:
    """What the app opens with: up to two models, run folders, a data file, generation settings
    (all can be changed in the page)."""

    model_a: ModelChoice = field(default_factory=ModelChoice)
    model_b: ModelChoice = field(default_factory=ModelChoice)
    runs: list[str] = field(default_factory=list)
    data: str | None = None
    settings: GenerationSettings = field(
        default_factory=lambda: GenerationSettings(max_new_tokens=256)
    )
    scratch: Path | None = None  # where uploads and exports go (default: a new temp folder)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """``user:pass`` as a tuple; None for no authentication. Raises ``ConfigError`` if malformed."""
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth must be USER:PASSWORD (both non-empty)")
    return user, password


def build_app(config: UIConfig, pool: EnginePool | None = None) -> Any:
    """The ``gr.Blocks`` page; ``pool`` holds the opened models (a new one when None)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    scratch = config.scratch or Path(tempfile.mkdtemp(prefix="medvl-ui-"))
    pool = pool or EnginePool()
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"## {TITLE}")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                build_chat_tab(
                    (config.model_a, config.model_b), config.settings, pool, scratch / "uploads"
                )
            with gr.Tab("Results", id="results"):
                build_results_tab(config.runs, scratch / "exports")
            with gr.Tab("Compare", id="compare"):
                build_compare_tab(config.runs)
            with gr.Tab("Data", id="data"):
                build_data_tab(config.data)
    app.medvl_pool = pool  # closed by launch() when the server stops
    return app


def launch(
    app: Any,
    *,
    host: str = LOCALHOST,
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    block: bool = True,
) -> Any:
    """Serve ``app``; with ``block`` False, return at once (tests close it with ``app.close()``).

    ``share`` is always off: the page is reachable only from ``host``."""
    app.queue(default_concurrency_limit=4)
    result = app.launch(
        server_name=host,
        server_port=port,
        share=False,
        auth=auth,
        prevent_thread_lock=not block,
        quiet=True,
        show_error=True,
        ssr_mode=False,
        css=_CSS,
        footer_links=[],
    )
    if block:
        app.medvl_pool.close()
    return result
