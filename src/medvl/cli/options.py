"""Command-line options shared by the commands that run a model (``predict``, ``chat``,
``serve``, ``eval run``, ``eval perplexity``), and their translation into library objects:
:class:`medvl.infer.factory.EngineSpec`, :class:`medvl.models.loading.LoadOptions` and
:class:`medvl.infer.engine.GenerationSettings`.

Library imports happen inside the functions, so ``medvl --help`` stays instant.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medvl.infer.engine import GenerationSettings
    from medvl.infer.factory import EngineSpec
    from medvl.models.loading import LoadOptions


def add_model_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--model``, ``--adapter`` and the load options of a local model."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        required=required,
        help="model folder or hub id (an adapter folder works too: its base is read from it)",
    )
    group.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="DIR",
        help="peft adapter folder; repeat to stack (earlier ones are merged first)",
    )
    group.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on CUDA), bf16...")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--attn-implementation", help="sdpa, eager or flash_attention_2")
    group.add_argument("--min-pixels", type=int, help="smallest image area in pixels")
    group.add_argument("--max-pixels", type=int, help="largest image area in pixels")
    add_video_pixel_args(group)
    quant = group.add_mutually_exclusive_group()
    quant.add_argument("--load-4bit", action="store_true", help="4-bit weights (CUDA)")
    quant.add_argument("--load-8bit", action="store_true", help="8-bit weights (CUDA)")
    group.add_argument(
        "--trust-remote-code", action="store_true", help="run Python code shipped with the model"
    )


def add_video_pixel_args(group: argparse._ActionsContainer) -> None:
    """``--video-min-pixels``/``--video-max-pixels``: the video processor's pixel range, apart
    from the image one (recipes: ``data.video_min_pixels``/``data.video_max_pixels``)."""
    group.add_argument(
        "--video-min-pixels",
        type=int,
        help="smallest video frame area in pixels (per frame; Qwen3-VL: of all frames)",
    )
    group.add_argument(
        "--video-max-pixels",
        type=int,
        help="largest video frame area in pixels: per frame for Qwen2-VL and Qwen2.5-VL, for all "
        "frames of a video together for Qwen3-VL (default: the checkpoint's)",
    )


def pixel_budget_args(args: argparse.Namespace) -> dict[str, int | None]:
    """``min_pixels``, ``max_pixels``, ``video_min_pixels``, ``video_max_pixels`` of the
    options (absent ones None), checked: keyword arguments of
    :func:`medvl.models.processing.load_token_counter`."""
    from medvl.models.processing import check_pixel_range

    values = {
        name: getattr(args, name, None)
        for name in ("min_pixels", "max_pixels", "video_min_pixels", "video_max_pixels")
    }
    for prefix in ("", "video_"):
        low, high = values[f"{prefix}min_pixels"], values[f"{prefix}max_pixels"]
        flag = f"--{prefix.replace('_', '-')}"
        check_pixel_range(low, high, (f"{flag}min-pixels", f"{flag}max-pixels"))
    return values


def add_remote_args(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and the options of an OpenAI-compatible server."""
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine", choices=("hf", "openai"), default="hf", help="local model or a server"
    )
    group.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://host:8000/v1")
    group.add_argument("--api-key", help="server API key (default: $OPENAI_API_KEY)")
    group.add_argument("--concurrency", type=int, default=8, help="requests in flight (openai)")


def add_generation_args(parser: argparse.ArgumentParser, max_new_tokens: int = 256) -> None:
    """Reply length and sampling options (greedy by default)."""
    group = parser.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    group.add_argument(
        "--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples"
    )
    group.add_argument("--top-p", type=float, default=1.0)
    group.add_argument("--top-k", type=int)
    group.add_argument("--repetition-penalty", type=float, default=1.0)
    group.add_argument("--seed", type=int, help="sampling seed")


def generation_settings(args: argparse.Namespace) -> GenerationSettings:
    """The :class:`GenerationSettings` of :func:`add_generation_args`' options."""
    from medvl.infer.engine import GenerationSettings

    return GenerationSettings.from_temperature(
        args.temperature,
        max_new_tokens=args.max_new_tokens,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )


def load_options(args: argparse.Namespace) -> LoadOptions:
    """The :class:`LoadOptions` of :func:`add_model_args`' options."""
    from medvl.models.loading import LoadOptions

    quantization = "4bit" if args.load_4bit else "8bit" if args.load_8bit else None
    return LoadOptions(
        dtype=args.dtype,
        device=args.device,
        attn_implementation=args.attn_implementation,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        video_min_pixels=args.video_min_pixels,
        video_max_pixels=args.video_max_pixels,
        quantization=quantization,
        trust_remote_code=args.trust_remote_code,
    )


def engine_spec(
    args: argparse.Namespace, *, batch_size: int = 1, workers: int | None = None
) -> EngineSpec:
    """The :class:`EngineSpec` of the model and engine options: the server of ``--base-url``
    with ``--engine openai`` (``--model`` then names the served model), else the local
    ``--model`` with its adapters and load options."""
    from medvl.errors import ConfigError
    from medvl.infer.factory import EngineSpec

    if getattr(args, "engine", "hf") == "openai":
        if not args.base_url:
            raise ConfigError("--engine openai needs --base-url (e.g. http://localhost:8000/v1)")
        return EngineSpec(
            model=args.model,
            adapters=tuple(args.adapter),
            base_url=args.base_url,
            api_key=args.api_key,
            batch_size=batch_size,
            workers=workers,
            concurrency=args.concurrency,
        )
    if not args.model:
        raise ConfigError("pass --model (a model folder or hub id)")
    return EngineSpec(
        model=args.model,
        adapters=tuple(args.adapter),
        load=load_options(args),
        batch_size=batch_size,
        workers=workers,
        concurrency=getattr(args, "concurrency", 8),
    )
