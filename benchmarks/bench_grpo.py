"""GRPO completions/s: medvl's log-prob path against TRL 1.16's on the CPU and full logits.

    .venv/bin/python benchmarks/bench_grpo.py [--steps 6] [--vocab tiny|real] [--rounds 2]

All three sides run ``medvl train grpo recipes/tiny/grpo.yaml`` (:func:`medvl.train.grpo.run_grpo`,
full fine-tuning of language + lm_head, 32 completions per step: 4 prompts x 8 generations,
8 new tokens, fp32) for ``--steps`` steps on the same phantom closed/MCQ questions, from the
same random Qwen2-VL (``--vocab tiny``: medvl's tiny model, 1k-token vocabulary; ``--vocab
real``: the real Qwen2-VL-2B config and 151,936-token vocabulary from ../shared/fixtures, shrunk
in depth and width, as in bench_sft.py), same seed. They differ only in how the policy's and the
reference's per-token log-probabilities are computed:

* ``trl_cpu``: TRL 1.16 as it is. ``GRPOTrainer`` patches the model with
  ``trl.trainer.utils.add_fused_lm_head`` and calls ``model(..., labels, fused_lm_head=True)``
  from ``_get_per_token_logps_and_entropies``: the output layer runs on the backbone's hidden
  states in tiles, never materialising [tokens x vocab] logits, with prompt labels masked; on
  CUDA only completion positions are projected, on the CPU every position is.
* ``medvl``: as shipped: TRL's path plus :func:`medvl.train.grpo.score_completions_only`, so
  on the CPU too only completion positions go through the output layer.
* ``full_logits``: the path before TRL 1.x (``logits_to_keep = completion length + 1``, the
  model's own logits, ``log_softmax`` and a gather), put in place of ``add_fused_lm_head`` in
  this benchmark's process only.

Each side runs in a fresh process with ``--threads`` torch threads (default 1: with 2 threads on
a shared 2-core machine rates swung 10x between rounds), sides interleaved. Prints the median
completions/s (steps x 32 / train_runtime) with each round's, the final loss of each side (the
same: the three are the same computation) and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared/fixtures/qwen2-vl-2b-instruct"
SIDES = ("medvl", "trl_cpu", "full_logits")


def prepare(work: Path, vocab: str) -> tuple[Path, Path]:
    """The start model and the phantom train split (open questions are dropped by run_grpo)."""
    from medvl.data.phantom import generate_phantom
    from medvl.models.tiny import build_from_real_config, build_tiny_model

    summary = generate_phantom(work / "phantom", n=80, seed=0)
    if vocab == "real":
        model = build_from_real_config(FIXTURE, work / "model", size="tiny", seed=0)
    else:
        model = build_tiny_model("qwen2_vl", work / "model", seed=0)
    return model, summary.split_paths["train"]


def full_logits_head(model, temperature: float = 1.0, **_: object) -> None:
    """Stand-in for ``add_fused_lm_head``: ``fused_lm_head=True`` returns log-probs computed
    from the model's own logits at the last ``completion + 1`` positions (TRL < 1.0's way)."""
    import functools
    import types

    import torch

    original = model.forward

    @functools.wraps(type(model).forward)  # generate checks its kwargs against this signature
    def forward(self, *args, fused_lm_head=False, labels=None, **kwargs):
        if not fused_lm_head:
            if labels is not None:
                kwargs["labels"] = labels
            return original(*args, **kwargs)
        kwargs.pop("num_items_in_batch", None)
        first = int((labels != -100).any(dim=0).nonzero().min())  # first scored position
        keep = labels.shape[1] - first + 1
        out = original(*args, use_cache=False, logits_to_keep=keep, **kwargs)
        logits = out.logits[:, :-1].float() / temperature
        target = labels[:, -(keep - 1) :]
        logps = torch.log_softmax(logits, dim=-1)
        picked = logps.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        mask = target != -100
        picked = picked.masked_fill(~mask, 0)
        entropy = -(logps.exp() * logps).sum(-1).masked_fill(~mask, 0)
        return types.SimpleNamespace(log_probs=picked, entropy=entropy, aux_loss=None)

    model.forward = types.MethodType(forward, model)


def child(args: argparse.Namespace) -> None:
    """One side, in this (fresh) process; prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from medvl.config import load_config
    from medvl.train.grpo import run_grpo
    from medvl.train.grpo_config import GRPOConfig

    if args.side != "medvl":  # TRL's own row selection (every position on the CPU)
        import medvl.train.grpo as grpo

        grpo.score_completions_only = lambda: None
    if args.side == "full_logits":
        import trl.trainer.grpo_trainer as grpo_trainer

        grpo_trainer.add_fused_lm_head = full_logits_head
    config = load_config(
        GRPOConfig,
        ROOT / "recipes/tiny/grpo.yaml",
        [
            f"model={args.model}",
            f"data.train={args.data}",
            f"output_dir={args.out}",
            f"max_steps={args.steps}",
            "save_steps=100000",
            "logging_steps=1",
            "monitor.samples_every=100000",
        ],
    )
    result = run_grpo(config)
    print(
        "RESULT "
        + json.dumps(
            {
                "runtime": result.metrics["train_runtime"],
                "loss": result.metrics["train_loss"],
                "completions": args.steps * config.batch_size,
            }
        )
    )


def run_side(side: str, model: Path, data: Path, out: Path, steps: int, threads: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        f"--side={side}",
        f"--model={model}",
        f"--data={data}",
        f"--out={out}",
        f"--steps={steps}",
        f"--threads={threads}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"{side} failed (exit {done.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--vocab", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per side (1: steady on a busy CPU)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="medvl-bench-grpo-") as tmp:
        work = Path(tmp)
        model, data = prepare(work, args.vocab)
        results: dict[str, list[dict]] = {side: [] for side in SIDES}
        for round_ in range(args.rounds):
            order = SIDES if round_ % 2 == 0 else SIDES[::-1]
            for side in order:
                out = work / f"{side}-{round_}"
                results[side].append(run_side(side, model, data, out, args.steps, args.threads))
    print(
        f"steps {args.steps}, 32 completions/step, vocab {args.vocab}, rounds {args.rounds}, "
        f"torch threads {args.threads}"
    )
    rates = {}
    for side, runs in results.items():
        rates[side] = statistics.median(r["completions"] / r["runtime"] for r in runs)
        loss = runs[-1]["loss"]
        each = ", ".join(f"{r['completions'] / r['runtime']:.2f}" for r in runs)
        print(
            f"  {side:<12} {rates[side]:7.2f} completions/s (rounds: {each})   "
            f"final train loss {loss:.6f}"
        )
    print(
        f"  ratios medvl/trl_cpu: {rates['medvl'] / rates['trl_cpu']:.2f}x, "
        f"medvl/full_logits: {rates['medvl'] / rates['full_logits']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
