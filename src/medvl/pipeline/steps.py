"""What each pipeline step kind does: a thin call into the library, writing into ``step.out``.

Each function takes the step and returns a small JSON-ready summary for the run manifest.
``inputs(step)`` lists the files outside the pipeline a step reads, so their content is part of
its fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medvl.errors import ConfigError, MedvlError
from medvl.pipeline.spec import Step


def _get(step: Step, key: str, default: Any = ..., kinds: type | tuple = object) -> Any:
    if key not in step.params:
        if default is ...:
            raise ConfigError(f"step {step.name!r} ({step.kind}) needs 'with: {{{key}: ...}}'")
        return default
    value = step.params[key]
    if not isinstance(value, kinds):
        raise ConfigError(f"step {step.name!r}: '{key}' has the wrong type ({value!r})")
    return value


def _check_keys(step: Step, allowed: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(step.params) - allowed)
    if unknown:
        raise ConfigError(
            f"step {step.name!r} ({step.kind}): unknown key {unknown[0]!r}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def run_phantom(step: Step) -> dict[str, Any]:
    from medvl.data.phantom import generate_phantom

    _check_keys(step, {"n", "seed"})
    summary = generate_phantom(
        step.out, n=_get(step, "n", 600, int), seed=_get(step, "seed", 0, int)
    )
    return {"counts": summary.counts}


def run_tiny(step: Step) -> dict[str, Any]:
    from medvl.models.tiny import build_tiny_model

    _check_keys(step, {"family", "size", "seed"})
    build_tiny_model(
        _get(step, "family", kinds=str),
        step.out,
        seed=_get(step, "seed", 0, int),
        size=_get(step, "size", "tiny", str),
    )
    return {"family": step.params["family"]}


def run_convert(step: Step) -> dict[str, Any]:
    from medvl.data.formats import convert

    params = dict(step.params)
    fmt, source = params.pop("format", None), params.pop("input", None)
    if not fmt or not source:
        raise ConfigError(f"step {step.name!r} (convert) needs 'format' and 'input'")
    report = convert(fmt, Path(source), step.out / "data.jsonl", **params)
    failure = report.failure()  # nothing kept, or the input was cut short
    if failure:
        raise MedvlError(f"step {step.name!r} (convert): {failure}")
    return {"read": report.read, "written": report.written, "skipped": report.skipped}


def run_split(step: Step) -> dict[str, Any]:
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.leakage import ImageHasher
    from medvl.data.split import (
        DEFAULT_GROUP_BY,
        check_split_leakage,
        raise_on_leaks,
        split_dataset,
    )

    _check_keys(step, {"file", "fractions", "seed", "stratify_by", "group_by"})
    source = Path(_get(step, "file", kinds=str))
    hasher = ImageHasher()
    result = split_dataset(
        read_records(source),
        fractions=_get(step, "fractions", None),
        seed=_get(step, "seed", 0, int),
        stratify_by=_get(step, "stratify_by", "answer_type"),
        group_by=_get(step, "group_by", DEFAULT_GROUP_BY, (str, list)),
        base_dir=source.parent,
        hasher=hasher,
    )
    raise_on_leaks(check_split_leakage(result.splits, source.parent, hasher=hasher))
    for name, records in result.splits.items():
        write_records(step.out / f"{name}.jsonl", _absolute_images(records, source.parent))
    return {name: len(records) for name, records in result.splits.items()}


def _absolute_images(records, base: Path):
    from dataclasses import replace

    return [replace(r, images=[str(p.resolve()) for p in r.image_paths(base)]) for r in records]


def _training_overrides(step: Step) -> list[str]:
    import yaml

    overrides = [
        f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...')}".strip()
        for k, v in step.params.items()
    ]
    return [*overrides, f"output_dir={step.out}"]


def run_sft(step: Step) -> dict[str, Any]:
    from medvl.config import load_config
    from medvl.train.sft import run_sft as train
    from medvl.train.sft_config import SFTConfig

    config = load_config(SFTConfig, step.recipe, _training_overrides(step))
    result = train(config)
    return {
        "train_loss": result.metrics.get("train_loss"),
        "validation": result.validation,
        "dropped": len(result.dropped),
        "seconds": round(result.seconds, 1),
    }


def run_grpo(step: Step) -> dict[str, Any]:
    from medvl.config import load_config
    from medvl.train.grpo import run_grpo as train
    from medvl.train.grpo_config import GRPOConfig

    result = train(load_config(GRPOConfig, step.recipe, _training_overrides(step)))
    return {
        "train_records": result.train_records,
        "accuracy_reward_first_quarter": result.accuracy_first_quarter,
        "accuracy_reward_last_quarter": result.accuracy_last_quarter,
        "seconds": round(result.seconds, 1),
    }


#: What an ``eval`` step accepts under ``with:``.
EVAL_KEYS = frozenset(
    [
        "model",
        "adapter",
        "data",
        "prompt",
        "system",
        "batch_size",
        "max_new_tokens",
        "metrics",
        "breakdown",
        "protocol",
        "bench",
    ]
)


def run_eval(step: Step) -> dict[str, Any]:
    """Predict (greedy, batched) and score a canonical JSONL file."""
    from medvl.eval.scoring import resolve_protocol, score_files
    from medvl.infer.engine import GenerationSettings
    from medvl.infer.hf_engine import HFEngine
    from medvl.infer.predict import predict_file
    from medvl.models.loading import load_model

    _check_keys(step, EVAL_KEYS)
    protocol, bench = _get(step, "protocol", "medvl", str), _get(step, "bench", None, str)
    resolve_protocol(protocol, bench, _get(step, "metrics", None))  # refuse before predicting
    data = Path(_get(step, "data", kinds=str))
    prompted = _prompted(step, data)
    adapters = (step.params["adapter"],) if step.params.get("adapter") else ()
    loaded = load_model(_get(step, "model", kinds=str), adapters)
    engine = HFEngine(loaded, batch_size=_get(step, "batch_size", 16, int))
    settings = GenerationSettings(max_new_tokens=_get(step, "max_new_tokens", 64, int))
    predictions = step.out / "predictions.jsonl"
    predict_file(engine, prompted, predictions, settings)
    run = score_files(
        data,
        predictions,
        step.out,
        metrics=_get(step, "metrics", None),
        breakdown_keys=tuple(_get(step, "breakdown", ())),
        protocol=protocol,
        benchmark=bench,
    )
    summary = run.metrics.get("summary", {})
    return {
        name: summary[name]["mean"]
        for name in ("accuracy", "closed_accuracy", "token_f1")
        if name in summary
    }


def _prompted(step: Step, data: Path) -> Path:
    """``data`` itself, or its records rewritten by the step's ``prompt`` template (e.g.
    ``reasoning`` for a GRPO model) in the step folder; answers are scored against ``data``."""
    from medvl.data.jsonl import read_records, write_records
    from medvl.eval.prompts import resolve_prompt

    name, system = _get(step, "prompt", None, str), _get(step, "system", None, str)
    if name is None and system is None:
        return data
    template = resolve_prompt(name or "as_is", "as_is", system=system)
    records = [template.apply(r) for r in _absolute_images(read_records(data), data.parent)]
    prompted = step.out / f"prompted-{template.name}.jsonl"
    write_records(prompted, records)
    return prompted


def run_report(step: Step) -> dict[str, Any]:
    from medvl.eval.report import build_report, write_report

    _check_keys(step, {"runs", "names", "baseline"})
    runs = [Path(p) for p in _get(step, "runs", kinds=list)]
    report = build_report(
        runs, names=_get(step, "names", None), baseline=_get(step, "baseline", None)
    )
    paths = write_report(report, step.out)
    return {"html": str(paths["report.html"]), "table": headline_table(report)}


def headline_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per run: overall accuracy, closed accuracy, multiple-choice accuracy, open token F1.

    Closed accuracy is the scorer's (closed questions without options; the field reports it apart
    from multiple choice, whose chance level is 0.25 rather than about 0.5).
    """
    by_type = report.get("breakdowns", {}).get("answer_type", {})
    overall = report["overall"]

    def mean(estimate: Any) -> float | None:
        return estimate.get("mean") if isinstance(estimate, dict) else None

    return [
        {
            "run": run["name"],
            "accuracy": mean(overall.get("accuracy", {}).get(run["name"])),
            "closed_accuracy": mean(overall.get("closed_accuracy", {}).get(run["name"])),
            "mcq_accuracy": mean(overall.get("mcq_accuracy", {}).get(run["name"])),
            "open_token_f1": mean(by_type.get("open", {}).get("token_f1", {}).get(run["name"])),
        }
        for run in report["runs"]
    ]


KINDS: dict[str, Callable[[Step], dict[str, Any]]] = {
    "phantom": run_phantom,
    "tiny": run_tiny,
    "convert": run_convert,
    "split": run_split,
    "sft": run_sft,
    "grpo": run_grpo,
    "eval": run_eval,
    "report": run_report,
}


def external_inputs(step: Step) -> list[Path]:
    """Files a step reads from outside the pipeline folder (their content joins the hash)."""
    found = [step.recipe] if step.recipe else []
    for key in ("input", "file", "data", "data.train", "data.val", "model"):
        value = step.params.get(key)
        if isinstance(value, str) and Path(value).exists():
            found.append(Path(value))
    return found
