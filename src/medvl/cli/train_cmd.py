"""``medvl train sft|grpo RECIPE.yaml [key=value ...]``: fine-tuning from YAML recipes."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(groups) -> None:
    """Add the ``train`` group."""
    train = groups.add_parser("train", help="fine-tune: two-stage SFT and GRPO")
    subs = train.add_subparsers(dest="train_command", metavar="STEP", title="training steps")
    subs.required = True
    sft = subs.add_parser("sft", help="supervised fine-tuning (stage align|instruct|full)")
    sft.add_argument("recipe", type=Path, help="recipe YAML (see recipes/*/sft_*.yaml)")
    sft.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override recipe keys, e.g. learning_rate=1e-4 lora.r=16 resume=true",
    )
    sft.set_defaults(func=run_sft_command)
    _register_grpo(subs)


def run_sft_command(args: argparse.Namespace) -> int:
    from medvl.config import load_config
    from medvl.progress import progress_for
    from medvl.train.sft import run_sft
    from medvl.train.sft_config import SFTConfig

    config = load_config(SFTConfig, args.recipe, args.overrides)
    result = run_sft(config, progress=progress_for("train", args, unit="steps", rate_unit="step"))
    print(result.plan.describe())
    if result.dropped:
        print(f"dropped {len(result.dropped)} over-long record(s) (see the run log)")
    loss = result.metrics.get("train_loss")
    print(
        f"trained on {result.train_records} records in {result.seconds:.0f} s"
        + (f", final train loss {loss:.4f}" if loss is not None else "")
    )
    for name, value in result.validation.items():
        print(f"validation {name}: {value:.4f}")
    print(f"output: {result.output_dir}")
    return 0


def _register_grpo(subs) -> None:
    grpo = subs.add_parser(
        "grpo", help="GRPO reinforcement learning with verifiable rewards (TRL GRPOTrainer)"
    )
    grpo.add_argument("recipe", type=Path, help="recipe YAML (see recipes/*/grpo*.yaml)")
    grpo.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override recipe keys, e.g. grpo.beta=0.04 rewards=[format,mcq_accuracy] "
        "reward_weights=[0.5,1.0] resume=true",
    )
    grpo.set_defaults(func=run_grpo_command)


def run_grpo_command(args: argparse.Namespace) -> int:
    from medvl.config import load_config
    from medvl.progress import progress_for
    from medvl.train.grpo_config import GRPOConfig

    config = load_config(GRPOConfig, args.recipe, args.overrides)  # checked before heavy imports
    from medvl.train.grpo import run_grpo

    result = run_grpo(config, progress=progress_for("train", args, unit="steps", rate_unit="step"))
    dropped = ", ".join(f"{n} {why}" for why, n in result.rejected.items())
    print(
        f"trained on {result.train_records} records in {result.seconds:.0f} s"
        + (f" (dropped: {dropped})" if dropped else "")
    )
    first, last = result.accuracy_first_quarter, result.accuracy_last_quarter
    if first is not None and last is not None:
        print(f"mean accuracy reward: first quarter of steps {first:.4f}, last quarter {last:.4f}")
    print(f"output: {result.output_dir}")
    return 0
