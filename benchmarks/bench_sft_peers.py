"""medvl SFT against ms-swift and LLaMA-Factory, each run through its own CLI, side by side.

    .venv/bin/python benchmarks/bench_sft_peers.py [--rounds 2] [--settings full,lora]
        [--packing on,off] [--samples 64] [--cache ~/.cache/medvl-peers] [--quick]

The first run installs each peer into its own pinned venv under ``--cache`` (see
``peer_envs.py``; slow: torch plus the peer's dependencies); later runs reuse them. A peer whose
install fails is reported in one line and left out; the others still run.

All sides train the same shrunk random Qwen2-VL (the real Qwen2-VL-2B config, tokenizer and
151,936-token vocabulary from ../shared/fixtures) on the same phantom records, written in each
tool's format by medvl's writers (LLaMA-Factory: sharegpt + ``dataset_info.json``; ms-swift: its
``messages``/``images`` JSONL). Matched settings: fp32, batch 8, lr 1e-4, constant schedule, no
warmup, one epoch, seed 42, loss on assistant answers only, vision tower and merger frozen
(the peers' defaults), LoRA r=8 alpha=16 dropout 0 on every language-model linear layer.
Packing: medvl packs into balanced rows; LLaMA-Factory ``neat_packing`` (no attention across
samples); ms-swift ``packing``. Each run is a fresh process; rounds interleave the sides because
the shared 2-core machine's speed drifts. tokens/s counts the same real (unpadded) tokens for
every side: the records' tokens as medvl's processor renders them, image tokens included.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child import sft_side_metrics
from peer_envs import DEFAULT_CACHE, PEERS, executable, install, ready

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/qwen2-vl-2b-instruct"
SEED, LORA_R, LORA_ALPHA = 42, 8, 16
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "USE_HF": "1",
    "DISABLE_VERSION_CHECK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "CUDA_VISIBLE_DEVICES": "",
    "WANDB_DISABLED": "true",
}


def prepare(work: Path, samples: int, size: str) -> dict:
    """Phantom records in all three formats, the shrunk model, and the token count."""
    from transformers import AutoProcessor

    from medvl.data.features import FeatureBuilder
    from medvl.data.formats.writers import to_sharegpt
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.phantom import generate_phantom
    from medvl.models.tiny import build_from_real_config

    data = work / "phantom"
    generate_phantom(data, n=max(60, int(samples * 1.6)), seed=0)
    records = read_records(data / "train.jsonl")[:samples]
    write_records(data / "bench.jsonl", records)
    model = build_from_real_config(FIXTURE, work / "model", size=size, seed=0)
    info = to_sharegpt(records, data / "lf" / "bench.json", data)
    (data / "lf" / "dataset_info.json").write_text(json.dumps(info, indent=1))
    # ms-swift reads the same messages/images rows; absolute image paths need no base folder.
    rows = json.loads((data / "lf" / "bench.json").read_text())
    with (data / "swift.jsonl").open("w") as sink:
        for row in rows:
            images = [str((data / "lf" / p).resolve()) for p in row["images"]]
            sink.write(json.dumps({"messages": row["messages"], "images": images}) + "\n")
    builder = FeatureBuilder(AutoProcessor.from_pretrained(model))
    lengths = [len(builder(r, data)) for r in records]
    # The peers pack whole rows of max_length/cutoff_len tokens (LLaMA-Factory pads each row to
    # it); rows of about four samples match medvl's two rows per batch of eight.
    pack_len = -(-max(max(lengths), 4 * sum(lengths) // len(lengths)) // 64) * 64
    return {
        "model": model,
        "data": data,
        "samples": len(records),
        "tokens": sum(lengths),
        "pack_len": pack_len,
    }


def peer_labels() -> None:
    """Make medvl render like both peers (for the loss comparison only).

    The peers keep the ``\n`` between ``<image>`` and the question that LLaVA-style records
    carry; medvl drops it, so a training prompt is the prompt its model is later asked through
    content parts (an image part, then a text part) by ``medvl predict``, ``serve``, vLLM or any
    OpenAI-style client. Both label the ``\n`` after the answer's ``<|im_end|>``.
    """
    import medvl.data.features as features

    plain = features.chat_messages

    def with_newline(record, with_answer=True):
        messages = plain(record, with_answer=with_answer)
        for message in messages:
            parts = message["content"]
            for i in range(1, len(parts)):
                if parts[i - 1]["type"] == "image" and parts[i]["type"] == "text":
                    parts[i] = {"type": "text", "text": "\n" + parts[i]["text"]}
        return messages

    features.chat_messages = with_newline


def medvl_side(
    model: Path, data: Path, out: Path, setting: str, packing: bool, batch: int, lr: float
) -> dict:
    tuning = (
        ["stage=full", "unfreeze=[language,lm_head]"]
        if setting == "full"
        else ["stage=instruct", f"lora.r={LORA_R}", f"lora.alpha={LORA_ALPHA}", "lora.dropout=0"]
    )
    flag = str(packing).lower()
    extra = (f"seed={SEED}", f"packing={flag}", f"group_by_length={flag}")
    result = sft_side_metrics(
        model, data / "bench.jsonl", out, batch=batch, lr=lr, tuning=tuning, extra=extra
    )
    return {"train_runtime": result["train_runtime"], "train_loss": result["loss"]}


def llamafactory_cmd(
    cache: Path, p: dict, out: Path, setting: str, packing: bool, batch: int, lr: float
) -> list[str]:
    config = {
        "model_name_or_path": str(p["model"]),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": setting,
        "freeze_vision_tower": True,
        "freeze_multi_modal_projector": True,
        "dataset": "bench",
        "dataset_dir": str(p["data"] / "lf"),
        "template": "qwen2_vl",
        "cutoff_len": p["pack_len"] if packing else 4096,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "packing": packing,
        "neat_packing": packing,
        "output_dir": str(out),
        "overwrite_output_dir": True,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "plot_loss": False,
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "learning_rate": lr,
        "num_train_epochs": 1.0,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0,
        "seed": SEED,
        "bf16": False,
        "fp16": False,
        "dataloader_num_workers": 0,
        "use_cpu": True,
    }
    if setting == "lora":
        config.update(lora_rank=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, lora_target="all")
    path = out.parent / f"{out.name}.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return [str(executable(cache, PEERS["llamafactory"], "llamafactory-cli")), "train", str(path)]


def swift_cmd(
    cache: Path, p: dict, out: Path, setting: str, packing: bool, batch: int, lr: float
) -> list[str]:
    args = {
        "model": p["model"],
        "model_type": "qwen2_vl",
        "template": "qwen2_vl",
        "dataset": p["data"] / "swift.jsonl",
        "tuner_type": setting,
        "torch_dtype": "float32",
        "attn_impl": "sdpa",
        "freeze_vit": "true",
        "freeze_aligner": "true",
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "learning_rate": lr,
        "num_train_epochs": 1,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0,
        "seed": SEED,
        "data_seed": SEED,
        "output_dir": out,
        "add_version": "false",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "max_length": p["pack_len"] if packing else 4096,
        "packing": str(packing).lower(),
        "split_dataset_ratio": 0,
        "dataset_num_proc": 1,
        "dataloader_num_workers": 0,
        "gradient_checkpointing": "false",
        "use_hf": "true",
        "load_from_cache_file": "false",
    }
    if setting == "lora":
        args.update(
            lora_rank=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0, target_modules="all-linear"
        )
    cmd = [str(executable(cache, PEERS["swift"], "swift")), "sft"]
    for key, value in args.items():
        cmd += [f"--{key}", str(value)]
    return cmd


METRIC = re.compile(r"['\"](train_runtime|train_loss)['\"]\s*:\s*['\"]?([0-9.eE+-]+)")


def run_side(
    side: str, args: argparse.Namespace, p: dict, setting: str, packing: bool, work: Path
) -> dict:
    """One fresh process; returns runtime, loss and peak RSS (of the process tree, via wait4)."""
    out = Path(tempfile.mkdtemp(prefix=f"{side}-{setting}-", dir=work))
    if side.startswith("medvl"):
        cmd = [
            sys.executable,
            __file__,
            "--side",
            "medvl",
            "--model",
            str(p["model"]),
            "--data",
            str(p["data"]),
            "--out",
            str(out),
            "--setting",
            setting,
            "--packing",
            "on" if packing else "off",
            "--batch",
            str(args.batch),
            "--lr",
            str(args.lr),
        ]
        cmd += ["--peer-labels"] if side == "medvl-peerlab" else []
    else:
        build = swift_cmd if side == "swift" else llamafactory_cmd
        cmd = build(args.cache, p, out, setting, packing, args.batch, args.lr)
    log = out.parent / f"{out.name}.log"
    env = {**os.environ, **OFFLINE}
    if not side.startswith("medvl"):  # keep medvl's venv off the peer's path
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)
        env["PATH"] = f"{executable(args.cache, PEERS[side], '')}:{env['PATH']}"
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=out.parent)
        _, status, usage = os.wait4(proc.pid, 0)
    text = log.read_text(errors="replace")
    found = dict(METRIC.findall(text))
    if os.waitstatus_to_exitcode(status) != 0 or "train_runtime" not in found:
        lines = [x for x in text.splitlines() if x.strip()]
        reason = next((x for x in reversed(lines) if "Error" in x), lines[-1] if lines else "")
        return {"error": reason.strip()[:240], "log": str(log)}
    found.update(precise_metrics(out))
    return {
        "train_runtime": float(found["train_runtime"]),
        "loss": float(found.get("train_loss", "nan")),
        "rss_gib": usage.ru_maxrss / 2**20,
    }


def precise_metrics(out: Path) -> dict[str, str]:
    """Full-precision metrics from the files the tools write (their logs round to 2-4 digits):
    LLaMA-Factory's ``all_results.json``, ms-swift's ``logging.jsonl``."""
    for name in ("all_results.json", "logging.jsonl"):
        for path in out.rglob(name):
            for line in reversed(
                path.read_text().splitlines() if name.endswith("l") else [path.read_text()]
            ):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "train_loss" in row:
                    return {k: str(row[k]) for k in ("train_runtime", "train_loss") if k in row}
    return {}


def start_installs(cache: Path, peers: list[str], no_install: bool) -> dict:
    """Install missing peers in background threads while the data and model are prepared."""
    status: dict[str, str | None] = {}
    threads = []
    for name in peers:
        if ready(cache, PEERS[name]):
            status[name] = None
        elif no_install:
            status[name] = "not installed (--no-install)"
        else:

            def job(name: str = name) -> None:
                status[name] = install(cache, PEERS[name])

            threads.append(threading.Thread(target=job, daemon=True))
            threads[-1].start()
    return {"status": status, "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--peers", default="swift,llamafactory")
    parser.add_argument("--settings", default="full,lora")
    parser.add_argument("--packing", default="on,off")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 samples, 1 round")
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the work folder (logs) here")
    parser.add_argument("--side", choices=["medvl"])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--setting", default="full")
    parser.add_argument(
        "--peer-labels",
        action="store_true",
        help="also run medvl labelled like the peers (side medvl-peerlab), for the loss check",
    )
    args = parser.parse_args()
    if args.side:
        if args.peer_labels:
            peer_labels()
        result = medvl_side(
            args.model, args.data, args.out, args.setting, args.packing == "on", args.batch, args.lr
        )
        print(json.dumps(result))
        return
    if args.quick:
        args.samples, args.rounds = 16, 1
    if not FIXTURE.is_dir():
        raise SystemExit(f"needs the real Qwen2-VL tokenizer/config at {FIXTURE}")
    peers = [x for x in args.peers.split(",") if x]
    installs = start_installs(args.cache, peers, args.no_install)
    work = args.keep or Path(tempfile.mkdtemp(prefix="medvl-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    p = prepare(work, args.samples, args.size)
    for thread in installs["threads"]:
        thread.join()
    usable = [x for x in peers if installs["status"].get(x) is None]
    for name, reason in installs["status"].items():
        if reason:
            print(f"[{name}] left out: {reason}", flush=True)
    results: dict[tuple, list[dict]] = {}
    for round_ in range(args.rounds):
        for setting in args.settings.split(","):
            for packing in [x == "on" for x in args.packing.split(",")]:
                for side in [
                    *usable,
                    "medvl",
                    *(["medvl-peerlab"] * args.peer_labels),
                ]:  # interleaved: drift hits every side alike
                    r = run_side(side, args, p, setting, packing, work)
                    results.setdefault((setting, packing, side), []).append(r)
                    print(
                        f"round {round_ + 1} {setting:<4} packing={'on' if packing else 'off'}"
                        f" {side:<12} {json.dumps(r)}",
                        flush=True,
                    )
    report(results, p, args)


def report(results: dict[tuple, list[dict]], p: dict, args: argparse.Namespace) -> None:
    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2] if values else float("nan")

    print(
        f"\n{p['samples']} samples ({p['tokens']} tokens), batch {args.batch}, "
        f"size {args.size}, rounds {args.rounds}, peer pack length {p['pack_len']}; medians"
    )
    print(
        f"{'setting':<8}{'packing':<9}{'side':<14}{'samples/s':>10}{'tokens/s':>10}"
        f"{'peak RSS GiB':>14}{'loss':>9}"
    )
    rates: dict[tuple, dict[str, float]] = {}
    for (setting, packing, side), runs in results.items():
        good = [r for r in runs if "error" not in r]
        if not good:
            print(
                f"{setting:<8}{'on' if packing else 'off':<9}{side:<14} failed: "
                f"{runs[-1]['error']} ({runs[-1]['log']})"
            )
            continue
        rate = median([p["samples"] / r["train_runtime"] for r in good])
        rates.setdefault((setting, packing), {})[side] = rate
        tok = median([p["tokens"] / r["train_runtime"] for r in good])
        rss = median([r["rss_gib"] for r in good])
        loss = median([r["loss"] for r in good])
        print(
            f"{setting:<8}{'on' if packing else 'off':<9}{side:<14}{rate:>10.2f}{tok:>10.0f}"
            f"{rss:>14.2f}{loss:>9.4f}"
        )
    for setting in args.settings.split(","):
        medvl = max(
            (v.get("medvl", 0.0) for (s, _), v in rates.items() if s == setting), default=0.0
        )
        best = max(
            (
                (r, side, pk)
                for (s, pk), v in rates.items()
                if s == setting
                for side, r in v.items()
                if not side.startswith("medvl")
            ),
            default=None,
        )
        if best and medvl:
            print(
                f"{setting}: medvl (best packing choice) / best peer ({best[1]}, packing="
                f"{'on' if best[2] else 'off'}): {medvl / best[0]:.2f}x"
            )


if __name__ == "__main__":
    main()
