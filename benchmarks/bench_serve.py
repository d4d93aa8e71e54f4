"""``medvl serve`` throughput: micro-batching on vs off, 32 requests sequential vs concurrent.

The real server (``create_app`` + uvicorn in a background thread of this process) on a random
"small" Qwen2-VL built offline, answering the same 32 phantom requests (one image each, greedy,
``max_tokens`` 32) four ways: batching off (``--batch-window-ms 0``, one request at a time under
the model lock) sequentially and from 32 client threads at once, then batching on (the defaults:
5 ms window, batches of up to 8) the same two ways. Prints requests/s for each, the ratio of
concurrent-with-batching against the serial baseline (batching off, sequential), and checks that
all four runs return identical texts.

    .venv/bin/python benchmarks/bench_serve.py [--n 32] [--max-tokens 32] [--max-batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build(workdir: Path, family: str, n: int) -> tuple[Path, Path, list[dict]]:
    """A small random model, ``n`` phantom records, and their chat bodies (image by path)."""
    from medvl.data.jsonl import read_records
    from medvl.data.phantom import generate_phantom
    from medvl.data.tokens import chat_messages
    from medvl.models.tiny import build_tiny_model

    model = build_tiny_model(family, workdir / "model", seed=0, size="small")
    summary = generate_phantom(workdir / "phantom", n=max(n, 10), seed=0)
    records = [
        r for split in ("train", "val", "test") for r in read_records(summary.split_paths[split])
    ][:n]
    root = workdir / "phantom"
    bodies = []
    for record in records:
        paths = iter(record.images)
        messages = []
        for message in chat_messages(record, with_answer=False):
            parts = [
                {"type": "image_url", "image_url": {"url": str(next(paths))}}
                if part["type"] == "image"
                else part
                for part in message["content"]
            ]
            messages.append({"role": message["role"], "content": parts})
        bodies.append({"messages": messages})
    return model, root, bodies


def run(url: str, bodies: list[dict], max_tokens: int, workers: int) -> tuple[list[str], float]:
    """Send every body (``workers`` at a time); the reply texts in order and the seconds."""
    import httpx

    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=workers)) as client:

        def ask(body: dict) -> str:
            reply = client.post(
                f"{url}/v1/chat/completions", json={**body, "max_tokens": max_tokens}
            )
            reply.raise_for_status()
            return reply.json()["choices"][0]["message"]["content"]

        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            texts = list(pool.map(ask, bodies))
        return texts, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="requests per run")
    parser.add_argument("--family", default="qwen2_vl")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-window-ms", type=float, default=5.0)
    args = parser.parse_args(argv)

    import torch

    from medvl.infer.engine import GenerationSettings
    from medvl.infer.hf_engine import HFEngine
    from medvl.infer.protocol import ServerConfig
    from medvl.infer.server import BackgroundServer, create_app
    from medvl.models.loading import load_model

    with tempfile.TemporaryDirectory(prefix="medvl-bench-") as tmp:
        model_dir, root, bodies = build(Path(tmp), args.family, args.n)
        engine = HFEngine(load_model(model_dir), num_workers=1)
        params = sum(p.numel() for p in engine.loaded.model.parameters())
        rows, texts = [], {}
        sides = [("off", 0.0, 1), ("on", args.batch_window_ms, args.max_batch_size)]
        for side, window, size in sides:
            config = ServerConfig(
                model_name="bench",
                image_root=root,
                defaults=GenerationSettings(args.max_tokens),
                batch_window_ms=window,
                max_batch_size=size,
                request_timeout=None,
            )
            app = create_app(engine, config)
            with BackgroundServer(app) as server:
                run(server.url, bodies[:2], 2, 1)  # warm-up (kernels, allocator, connections)
                for mode, workers in (("sequential", 1), ("concurrent", len(bodies))):
                    out, seconds = run(server.url, bodies, args.max_tokens, workers)
                    texts[(side, mode)] = out
                    rows.append((f"batching {side}, {mode}", len(bodies) / seconds, seconds))
                if app.state.batcher is not None:
                    stats = app.state.batcher.stats
    base = rows[0][1]
    print(
        f"model: {args.family} 'small' random, {params:,} parameters; {len(bodies)} requests, "
        f"max_tokens={args.max_tokens}, window {args.batch_window_ms:g} ms, batches <= "
        f"{args.max_batch_size}, torch threads={torch.get_num_threads()}"
    )
    for label, rate, seconds in rows:
        print(f"{label:<28} {rate:7.2f} requests/s  ({seconds:.1f} s)  {rate / base:5.2f}x")
    reference = texts[("off", "sequential")]
    same = min(sum(a == b for a, b in zip(reference, t, strict=True)) for t in texts.values())
    print(f"batches with batching on (warm-up included): {stats['batches']}, ", end="")
    print(f"largest {stats['largest']}")
    print(
        f"ratio concurrent+batching / serial: {rows[3][1] / base:.2f}x "
        f"(vs concurrent without batching: {rows[3][1] / rows[1][1]:.2f}x); "
        f"identical greedy outputs in all runs: {same}/{len(bodies)}"
    )
    return 0 if same == len(bodies) else 1


if __name__ == "__main__":
    sys.exit(main())
