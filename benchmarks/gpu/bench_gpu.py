"""Full-size Qwen2-VL-2B on one GPU: medvl SFT (LoRA and full, packing on/off), TRL, predict.

    python benchmarks/gpu/bench_gpu.py --out DIR [--budget 480]     # on the GPU machine
    .venv/bin/python benchmarks/gpu/bench_gpu.py --dry-run --out /tmp/gpu-dry   # toy size, CPU

The model is a random-weight Qwen2-VL with the real Qwen2-VL-2B dimensions (written below as
literals: the checkpoint's config and tokenizer do not travel to the GPU machine), built with
medvl's tiny builder and medvl's offline medical tokenizer; the vocabulary (embedding and
output layer) is the real 151,936 wide even though the tokenizer uses only its first ~3k ids,
so every matrix has its real shape and cost. Data: medvl's phantom records (images included).

Each measurement runs in its own process (an out-of-memory or a crash loses only that one),
under a time cap, and is appended to ``DIR/results.json`` as it finishes. Training tokens/s is
the steady state: the first steps (allocator, kernel selection) are left out, and each timed
step ends at a CUDA synchronisation. MFU counts 6 x N x T FLOPs for full fine-tuning (N = all
parameters, the tied embedding once, T = tokens through the language model, image tokens
included) and 4 x frozen + 6 x trainable parameters per token for LoRA (no weight gradients for
frozen weights); both ignore attention's quadratic term and that the vision tower sees 4 patches
per image token, so they are conventions for comparing runs, not exact counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would flood bench.log

from measure import PEAK_TFLOPS, RUNNERS, Settings, build

#: name -> (kind, settings); the parent runs them in this order while the budget lasts.
#: ``long``: images at 448 x 448 (256 image tokens each, the size of a real VQA-RAD/SLAKE image
#: under Qwen2-VL's default budget) instead of the phantom's small ones; ``gc``: gradient
#: checkpointing (TRL's default, medvl's opt-in); ``liger``: False runs with MEDVL_LIGER=0.
PLAN: list[tuple[str, str, dict[str, Any]]] = [
    ("medvl_full_padded_gc", "medvl", {"stage": "full", "packing": False, "gc": True}),
    ("medvl_full_long_gc", "medvl", {"stage": "full", "packing": False, "gc": True, "long": True}),
    (
        "medvl_full_long_gc_noliger",
        "medvl",
        {"stage": "full", "packing": False, "gc": True, "long": True, "liger": False},
    ),
    ("trl_full_long", "trl", {"lora": False, "long": True}),
    ("medvl_full_long", "medvl", {"stage": "full", "packing": False, "long": True}),
    ("medvl_full_packed_long", "medvl", {"stage": "full", "packing": True, "long": True}),
    ("medvl_lora_long", "medvl", {"stage": "instruct", "packing": False, "long": True}),
    ("trl_lora_long", "trl", {"lora": True, "long": True}),
    (
        "medvl_full_long_gc_b32",
        "medvl",
        {"stage": "full", "packing": False, "gc": True, "long": True, "batch": 32},
    ),
    ("medvl_full_packed", "medvl", {"stage": "full", "packing": True}),
    ("trl_full", "trl", {"lora": False}),
    ("medvl_full_padded", "medvl", {"stage": "full", "packing": False}),
    ("predict", "predict", {}),
]


def log(t0: float, message: str) -> None:
    print(f"[{time.perf_counter() - t0:7.1f}s] {message}", flush=True)


# ---------------------------------------------------------------- parent
def child(args: argparse.Namespace) -> None:
    """Run one measurement (or the build) in this process; the result goes to --result."""
    result_file = Path(args.result)
    if args.child == "build":
        result_file.write_text(json.dumps(build(Path(args.work), args.dry_run)))
        return
    settings = Settings(args.dry_run)
    built = json.loads((Path(args.work) / "built.json").read_text())
    kind, options = next((k, o) for n, k, o in PLAN if n == args.child)
    if options.get("liger") is False:
        os.environ["MEDVL_LIGER"] = "0"
    out = Path(args.work) / f"run_{args.child}"
    runner = RUNNERS[kind]
    runner(built, options, settings, out, result_file)


def spawn(args: argparse.Namespace, name: str, timeout: float, log_file: Path) -> dict[str, Any]:
    """One child process; returns its result or {"error": ...} (never raises)."""
    result = Path(args.work) / f"result_{name}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", name, "--work", args.work, "--result", str(result)]
    cmd += ["--dry-run"] if args.dry_run else []
    started = time.perf_counter()
    with log_file.open("a") as sink:
        sink.write(f"\n===== {name}\n")
        sink.flush()
        try:
            done = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout)
            code: int | str = done.returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout:.0f} s"
    wall = round(time.perf_counter() - started, 1)
    shutil.rmtree(Path(args.work) / f"run_{name}", ignore_errors=True)
    if result.is_file():  # written at train end, so a slow final save still counts
        return {"name": name, "wall_s": wall, **json.loads(result.read_text())}
    tail = log_file.read_text(errors="replace").splitlines()[-6:]
    return {"name": name, "wall_s": wall, "error": f"exit {code}", "log_tail": tail}


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    versions = {}
    for name in ("torch", "transformers", "peft", "accelerate", "trl", "datasets"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"versions": versions, "gpu": gpu, "peak_tflops": PEAK_TFLOPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-results", help="results.json and bench.log here")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for everything")
    parser.add_argument("--dry-run", action="store_true", help="toy size on CPU")
    parser.add_argument("--only", default="", help="comma-separated measurement names")
    parser.add_argument("--work", default="", help=argparse.SUPPRESS)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    t0 = time.perf_counter()
    if not args.dry_run and not Settings(False).cuda:
        raise SystemExit("no CUDA GPU here: the full-size run needs one (use --dry-run on a CPU)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.work = args.work or str(Path(os.environ.get("TMPDIR", "/tmp")) / "medvl-gpu-bench")
    shutil.rmtree(args.work, ignore_errors=True)
    Path(args.work).mkdir(parents=True)
    log_file = out / "bench.log"
    report: dict[str, Any] = {"dry_run": args.dry_run, **environment(), "results": []}

    def save() -> None:
        (out / "results.json").write_text(json.dumps(report, indent=1))

    settings = Settings(args.dry_run)
    log(t0, f"building the model ({'toy' if args.dry_run else 'Qwen2-VL-2B dims'}) and data")
    built = spawn(args, "build", 240, log_file)
    if "error" in built:
        report["results"].append(built)
        save()
        raise SystemExit(f"build failed: {built['log_tail']}")
    (Path(args.work) / "built.json").write_text(json.dumps(built))
    report["model_parameters"] = built["parameters"]
    log(t0, f"built: {built['parameters']:,} parameters in {built['wall_s']} s")
    wanted = [n for n in args.only.split(",") if n]
    for name, _, _ in PLAN:
        if wanted and name not in wanted:
            continue
        left = args.budget - (time.perf_counter() - t0)
        if left < 0.6 * settings.child_timeout:
            report["results"].append({"name": name, "skipped": f"budget: {left:.0f} s left"})
            log(t0, f"{name}: skipped, {left:.0f} s left")
            save()
            continue
        log(t0, f"{name}: running (cap {min(settings.child_timeout, left):.0f} s)")
        entry = spawn(args, name, min(settings.child_timeout, left), log_file)
        report["results"].append(entry)
        save()
        log(t0, f"{name}: {summary(entry)}")
    shutil.rmtree(args.work, ignore_errors=True)
    print(table(report["results"]), flush=True)
    log(t0, f"done; results in {out / 'results.json'}")


def table(results: list[dict[str, Any]]) -> str:
    """The results as the markdown table of benchmarks/README.md's GPU section."""
    rows = [
        "| run | tokens/s | samples/s | MFU | peak GiB | loss | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "new_tokens_per_s" in r:
            note = f"{r['records_per_s']} records/s, batch {r['batch']}"
            rows.append(
                f"| {r['name']} | {r['new_tokens_per_s']} (new) | | | "
                f"{r['peak_memory_gib']} | | {note} |"
            )
        elif "tokens_per_s" in r:
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else ""
            rows.append(
                f"| {r['name']} | {r['tokens_per_s']} | {r['samples_per_s']} | {mfu} | "
                f"{r['peak_memory_gib']} | {r.get('train_loss')} | {r['timed_steps']} steps |"
            )
        else:
            rows.append(f"| {r['name']} | | | | | | {r.get('error') or r.get('skipped')} |")
    return "\n".join(rows)


def summary(entry: dict[str, Any]) -> str:
    if "error" in entry:
        return f"FAILED ({entry['error']}): {' | '.join(entry.get('log_tail', []))[-400:]}"
    if "new_tokens_per_s" in entry:
        return f"{entry['new_tokens_per_s']} new tokens/s, {entry['records_per_s']} records/s"
    mfu = f", MFU {entry['mfu']:.1%}" if entry.get("mfu") is not None else ""
    return (
        f"{entry['tokens_per_s']} tokens/s ({entry['samples_per_s']} samples/s){mfu}, "
        f"peak {entry['peak_memory_gib']} GiB, {entry['timed_steps']} timed steps, "
        f"loss {entry.get('train_loss')}"
    )


if __name__ == "__main__":
    main()
