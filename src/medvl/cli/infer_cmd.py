"""``medvl predict|chat|serve|export``: use a trained model.

Heavy imports (torch, transformers, peft, fastapi) happen inside the command functions, so
``medvl --help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from medvl.cli.options import (
    add_generation_args,
    add_model_args,
    add_remote_args,
    engine_spec,
    generation_settings,
)
from medvl.cli.select_args import add_selection_args, select_records, selection_of


def register(groups) -> None:
    """Add the inference commands."""
    _register_predict(groups)
    _register_chat(groups)
    _register_serve(groups)
    _register_export(groups)


def _engine(args: argparse.Namespace, *, batch_size: int = 1, workers: int | None = None) -> Any:
    """The engine of the command's model options, opened (the command closes it)."""
    from medvl.infer.factory import open_engine

    return open_engine(engine_spec(args, batch_size=batch_size, workers=workers))


# ---------------------------------------------------------------- predict


def _register_predict(groups) -> None:
    parser = groups.add_parser(
        "predict",
        help="batched prediction over a JSONL file (resumable)",
        description="Write one prediction per record to --out; a rerun skips ids already there.",
    )
    parser.add_argument("--data", type=Path, required=True, help="canonical records (.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="predictions file (.jsonl)")
    parser.add_argument("--batch-size", type=int, default=8, help="records per generate call")
    parser.add_argument("--workers", type=int, help="image-loading threads (default: cores-1)")
    parser.add_argument("--limit", type=int, help="predict at most N more records")
    parser.add_argument("--overwrite", action="store_true", help="start over, discarding --out")
    parser.add_argument(
        "--keep-errors", action="store_true", help="do not retry records that failed before"
    )
    add_model_args(parser, required=False)
    add_remote_args(parser)
    add_generation_args(parser)
    add_selection_args(parser)  # --sample shares the generation --seed
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from medvl.fileio import check_writable_file
    from medvl.infer.predict import predict_file
    from medvl.progress import progress_for

    settings = generation_settings(args)
    check_writable_file(args.out)  # before the model loads
    records = _selected_records(args)  # before the model loads: an empty selection exits 2
    progress = progress_for("predict", args, rate_unit="rec")  # a bad MEDVL_PROGRESS_SECONDS: now
    engine = _engine(args, batch_size=args.batch_size, workers=args.workers)
    try:
        with progress:
            summary = predict_file(
                engine,
                args.data,
                args.out,
                settings,
                records=records,
                overwrite=args.overwrite,
                retry_errors=not args.keep_errors,
                limit=args.limit,
                progress=progress,
            )
    finally:
        engine.close()
    print(
        f"{summary.out}: {summary.written} predicted ({summary.errors} errors), "
        f"{summary.skipped} already there, {summary.total} records; "
        f"{summary.records_per_second:.2f} records/s"
    )
    return 0


def _selected_records(args: argparse.Namespace) -> list[Any] | None:
    """The records ``--where``/``--sample`` keep, or None (no selection: all of --data)."""
    if selection_of(args) is None:
        return None
    from medvl.data.jsonl import read_records

    return select_records(args, read_records(args.data), args.data)


# ---------------------------------------------------------------- chat


def _register_chat(groups) -> None:
    parser = groups.add_parser(
        "chat",
        help="interactive multi-turn chat with images in the terminal",
        description="Chat in the terminal. Commands: /image PATH, /volume PATH [n=16] "
        "[axis=axial] [window=lung], /reset, /save FILE, /help, /exit. Reads turns line by "
        "line when stdin is not a terminal, so it can be scripted.",
    )
    parser.add_argument("--image", action="append", default=[], help="image for the first turn")
    parser.add_argument("--system", help="system prompt")
    add_model_args(parser, required=False)
    add_remote_args(parser)
    add_generation_args(parser, max_new_tokens=512)
    parser.set_defaults(func=run_chat)


def _lines(interactive: bool):
    if not interactive:
        yield from sys.stdin
        return
    while True:
        try:
            yield input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return


def run_chat(args: argparse.Namespace) -> int:
    from medvl.errors import MedvlError
    from medvl.infer.chat import COMMANDS, ChatSession, parse_line

    session = ChatSession(_engine(args), generation_settings(args), system=args.system)
    for image in args.image:
        session.add_image(image)
    interactive = sys.stdin.isatty()
    if interactive:
        print("medvl chat: type a message; /help lists commands", file=sys.stderr)
    for line in _lines(interactive):
        try:
            parsed = parse_line(line)
            if parsed.command == "/exit":
                break
            if parsed.command is None:
                if parsed.text:
                    _reply(session, parsed.text, interactive)
            elif parsed.command == "/image":
                print(f"[image attached: {session.add_image(parsed.text)}]", file=sys.stderr)
            elif parsed.command == "/volume":
                spec = session.add_volume(parsed.text)
                frames = len(session.pending_videos[-1][1])
                where = spec.paths("/")[0] if spec.frames is None else spec.paths("/")[0].parent
                print(f"[volume attached: {where}, {frames} frames]", file=sys.stderr)
            elif parsed.command == "/reset":
                session.reset()
                print("[conversation reset]", file=sys.stderr)
            elif parsed.command == "/save":
                print(f"[saved to {session.save(parsed.text)}]", file=sys.stderr)
            else:
                print("\n".join(COMMANDS.values()), file=sys.stderr)
        except MedvlError as exc:
            print(f"medvl: error: {exc}", file=sys.stderr)
    session.engine.close()
    return 0


def _reply(session: Any, text: str, interactive: bool) -> None:
    if interactive:
        print("assistant> ", end="", flush=True)
    try:
        for piece in session.send(text):
            print(piece, end="", flush=True)
    except KeyboardInterrupt:
        print("\n[interrupted; the message was dropped]", file=sys.stderr)
        return
    print(flush=True)


# ---------------------------------------------------------------- serve


def _register_serve(groups) -> None:
    parser = groups.add_parser(
        "serve",
        help="OpenAI-compatible /v1/chat/completions server",
        description="Serve a model over the OpenAI chat API (plain and streamed) on FastAPI.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: localhost)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--api-key", help="require 'Authorization: Bearer KEY' (default: $MEDVL_API_KEY)"
    )
    parser.add_argument("--served-model-name", help="model name clients send (default: folder)")
    parser.add_argument("--image-root", type=Path, help="allow image file paths under this dir")
    parser.add_argument("--max-body-mb", type=float, default=20.0, help="largest request body")
    parser.add_argument("--max-images", type=int, default=8, help="most images per request")
    parser.add_argument(
        "--max-video-frames",
        type=int,
        default=64,
        help="most video frames per request, over all its videos; a volume path counts its n "
        "(default: 64)",
    )
    parser.add_argument(
        "--max-request-pixels",
        type=int,
        default=40_000_000,
        help="most image pixels per request, summed over its images and read from the headers "
        "before decoding (default: 40000000)",
    )
    parser.add_argument(
        "--max-concurrent-decodes", type=int, default=2, help="requests decoding images at once"
    )
    parser.add_argument(
        "--max-prompt-tokens",
        type=int,
        help="most prompt tokens per request (default: the model's context less max_tokens)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=600.0,
        help="seconds a request may take, waiting for the model included; 0: no limit",
    )
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=5.0,
        help="wait this long after a request for others to share one generate call with; "
        "0: no batching (default: 5)",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=8,
        help="most requests in one batched generate call; 1: no batching (default: 8)",
    )
    parser.add_argument(
        "--max-queued-requests",
        type=int,
        default=64,
        help="requests that may wait for the model; more get 503 + Retry-After (default: 64)",
    )
    add_model_args(parser)
    add_generation_args(parser, max_new_tokens=512)
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from medvl.errors import ConfigError
    from medvl.infer.protocol import ServerConfig
    from medvl.infer.server import create_app, is_loopback, run_server

    for flag in (
        "max_images",
        "max_video_frames",
        "max_request_pixels",
        "max_concurrent_decodes",
        "max_prompt_tokens",
        "max_batch_size",
        "max_queued_requests",
    ):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.batch_window_ms < 0:
        raise ConfigError(
            f"--batch-window-ms must be >= 0 (0: no batching), got {args.batch_window_ms}"
        )
    if args.request_timeout < 0:
        raise ConfigError(
            f"--request-timeout must be >= 0 (0: no limit), got {args.request_timeout}"
        )
    api_key = args.api_key or os.environ.get("MEDVL_API_KEY") or None
    if not is_loopback(args.host) and api_key is None:
        print(
            f"medvl: warning: serving on {args.host} without an API key; anyone who can reach "
            "this port can use the model (set --api-key or MEDVL_API_KEY)",
            file=sys.stderr,
        )
    engine = _engine(args)
    name = args.served_model_name or Path(str(args.model).rstrip("/")).name
    config = ServerConfig(
        model_name=name,
        api_key=api_key,
        image_root=args.image_root,
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_images=args.max_images,
        max_video_frames=args.max_video_frames,
        max_request_pixels=args.max_request_pixels,
        max_concurrent_decodes=args.max_concurrent_decodes,
        max_prompt_tokens=args.max_prompt_tokens,
        request_timeout=args.request_timeout or None,
        batch_window_ms=args.batch_window_ms,
        max_batch_size=args.max_batch_size,
        max_queued_requests=args.max_queued_requests,
        defaults=generation_settings(args),
    )
    print(f"serving {name!r} at http://{args.host}:{args.port}/v1 (Ctrl-C stops)", file=sys.stderr)
    run_server(create_app(engine, config), args.host, args.port)
    return 0


# ---------------------------------------------------------------- export


def _register_export(groups) -> None:
    export = groups.add_parser("export", help="merge a LoRA adapter into a standalone model")
    subs = export.add_subparsers(dest="export_command", metavar="ACTION", title="actions")
    subs.required = True
    merge = subs.add_parser(
        "merge",
        help="merge LoRA into the base; write safetensors, processor files and a model card",
    )
    merge.add_argument("--base", help="base model folder or hub id (default: from the adapter)")
    merge.add_argument("--adapter", required=True, help="peft adapter folder")
    merge.add_argument("--out", type=Path, required=True, help="output model folder")
    merge.add_argument("--dtype", default="auto", help="auto (the base's), bf16, fp16 or fp32")
    merge.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    merge.add_argument("--trust-remote-code", action="store_true")
    merge.set_defaults(func=run_export_merge)


def run_export_merge(args: argparse.Namespace) -> int:
    from medvl.models.loading import adapter_base, check_adapter_dir
    from medvl.models.merge import merge_adapter

    check_adapter_dir(args.adapter)
    base = args.base or adapter_base(args.adapter)
    report = merge_adapter(
        base,
        args.adapter,
        args.out,
        dtype=args.dtype,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
    )
    kept = ", ".join(report.full_modules) or "none"
    print(
        f"merged {report.lora_modules} LoRA modules into {report.base} -> {report.out_dir} "
        f"({report.dtype}, {report.tensors} tensors; fully trained modules kept: {kept})"
    )
    return 0
