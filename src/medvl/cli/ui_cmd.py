"""``medvl ui``: serve the browser workbench (Chat, Results, Compare, Data) on this machine.

Gradio is an optional extra; without it the command says how to install it (exit 2). The page
binds 127.0.0.1 unless ``--host`` says otherwise, is never shared through a public link, and
can ask for ``--auth user:pass``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from medvl.errors import MedvlError

INSTALL_HINT = "the workbench needs Gradio: pip install 'medvl[ui]'"


def register(groups) -> None:
    """Add the ``ui`` command."""
    ui = groups.add_parser(
        "ui",
        help="local web workbench: chat with images, browse results, compare runs, data",
        description="Serve the medvl workbench in the browser (Gradio): Chat (image upload "
        "incl. DICOM/NIfTI, one or two models side by side), Results (filter and export an "
        "eval run), Compare (two runs, paired statistics) and Data (browse, stats, validate).",
    )
    model = ui.add_argument_group("models (loaded on the first question)")
    model.add_argument("--model", default="", metavar="DIR", help="model A: local model folder")
    model.add_argument("--adapter", default="", metavar="DIR", help="model A: LoRA adapter")
    model.add_argument("--url", default="", help="model A: OpenAI-compatible URL (…/v1)")
    model.add_argument("--api-model", default="", metavar="NAME", help="model A: served name")
    model.add_argument("--model-b", default="", metavar="DIR", help="model B: local folder")
    model.add_argument("--adapter-b", default="", metavar="DIR", help="model B: LoRA adapter")
    model.add_argument("--url-b", default="", help="model B: OpenAI-compatible URL")
    model.add_argument("--api-model-b", default="", metavar="NAME", help="model B: served name")
    model.add_argument("--max-new-tokens", type=int, default=256, help="reply length")
    ui.add_argument(
        "--runs", nargs="+", default=[], metavar="DIR", help="eval run folders to offer"
    )
    ui.add_argument("--data", metavar="FILE", help="canonical JSONL file for the Data tab")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    ui.add_argument("--auth", metavar="USER:PASS", help="ask for this user name and password")
    ui.set_defaults(func=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise MedvlError(INSTALL_HINT)
    from medvl.infer.engine import GenerationSettings
    from medvl.ui.app import UIConfig, build_app, launch, parse_auth
    from medvl.ui.chat import ModelChoice

    auth = parse_auth(args.auth)
    config = UIConfig(
        model_a=ModelChoice(args.model, args.adapter, args.url, args.api_model),
        model_b=ModelChoice(args.model_b, args.adapter_b, args.url_b, args.api_model_b),
        runs=list(args.runs),
        data=args.data,
        settings=GenerationSettings(max_new_tokens=args.max_new_tokens),
    )
    for choice in (config.model_a, config.model_b):
        choice.spec()  # a mixed-up slot fails here, not on the first question
    app = build_app(config)
    host = "localhost" if args.host in ("127.0.0.1", "0.0.0.0") else args.host
    print(f"medvl ui: http://{host}:{args.port} (Ctrl-C stops)", file=sys.stderr)
    launch(app, host=args.host, port=args.port, auth=auth, block=True)
    return 0
