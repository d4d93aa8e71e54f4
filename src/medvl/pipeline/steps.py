"""What each pipeline step kind does: a thin call into the library, writing into ``step.out``.

Each function takes the step and returns a small JSON-ready summary for the run manifest.
``inputs(step)`` lists the files outside the pipeline a step reads, so their content is part of
its fingerprint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvl.errors import ConfigError, MedvlError
from medvl.pipeline.spec import Step

if TYPE_CHECKING:
    from medvl.data.select import Selection
    from medvl.infer.factory import EngineSpec
    from medvl.progress import Progress

#: ``(label, unit=..., rate_unit=...) -> Progress``: how a step shows its progress (the CLI's
#: ``progress_for`` with its ``--quiet``); ``None`` (the library default) shows none.
ProgressMaker = Callable[..., "Progress"]


def _progress(maker: ProgressMaker | None, step: Step, what: str, **kinds: str) -> Any:
    """A context giving the step's :class:`~medvl.progress.Progress` for ``what`` (closed on
    leaving: the last line only when the work finished), or ``None`` without a maker."""
    return maker(f"{step.name} ({what})", **kinds) if maker else contextlib.nullcontext()


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


def run_phantom(step: Step, progress: ProgressMaker | None = None) -> dict[str, Any]:
    from medvl.data.phantom import generate_phantom

    if _get(step, "volumes", False, bool):
        return _run_phantom_volumes(step)
    _check_keys(step, {"n", "seed", "volumes"})
    summary = generate_phantom(
        step.out, n=_get(step, "n", 600, int), seed=_get(step, "seed", 0, int)
    )
    return {"counts": summary.counts}


def _run_phantom_volumes(step: Step) -> dict[str, Any]:
    """``with: {volumes: true, n, seed, slices, size, volume_format}``: the 3-D phantom."""
    from medvl.data.phantom_volumes import generate_phantom_volumes

    _check_keys(step, {"volumes", "n", "seed", "slices", "size", "volume_format"})
    summary = generate_phantom_volumes(
        step.out,
        n=_get(step, "n", 200, int),
        seed=_get(step, "seed", 0, int),
        slices=_get(step, "slices", 16, int),
        size=_get(step, "size", 64, int),
        volume_format=_get(step, "volume_format", "nifti", str),
    )
    return {"volumes": summary.n, "patients": summary.patients, "answers": summary.answers}


def run_tiny(step: Step, progress: ProgressMaker | None = None) -> dict[str, Any]:
    from medvl.models.tiny import build_tiny_model

    _check_keys(step, {"family", "size", "seed"})
    build_tiny_model(
        _get(step, "family", kinds=str),
        step.out,
        seed=_get(step, "seed", 0, int),
        size=_get(step, "size", "tiny", str),
    )
    return {"family": step.params["family"]}


def run_convert(step: Step, progress: ProgressMaker | None = None) -> dict[str, Any]:
    from medvl.data.formats import convert

    params = dict(step.params)
    fmt, source = params.pop("format", None), params.pop("input", None)
    if not fmt or not source:
        raise ConfigError(f"step {step.name!r} (convert) needs 'format' and 'input'")
    with _progress(progress, step, "convert", unit="records read", rate_unit="rec") as shown:
        report = convert(fmt, Path(source), step.out / "data.jsonl", progress=shown, **params)
    failure = report.failure()  # nothing kept, or the input was cut short
    if failure:
        raise MedvlError(f"step {step.name!r} (convert): {failure}")
    return {"read": report.read, "written": report.written, "skipped": report.skipped}


def run_split(step: Step, progress: ProgressMaker | None = None) -> dict[str, Any]:
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.leakage import ImageHasher
    from medvl.data.paths import rebase_images
    from medvl.data.split import (
        DEFAULT_GROUP_BY,
        check_split_leakage,
        raise_on_leaks,
        split_dataset,
    )

    _check_keys(step, {"file", "fractions", "seed", "stratify_by", "group_by", *SELECT_KEYS})
    source = Path(_get(step, "file", kinds=str))
    hasher = ImageHasher()
    result = split_dataset(
        _selection(step).apply(read_records(source)).check(source, STEP_STYLE),
        fractions=_get(step, "fractions", None),
        seed=_get(step, "seed", 0, int),
        stratify_by=_get(step, "stratify_by", "answer_type"),
        group_by=_get(step, "group_by", DEFAULT_GROUP_BY, (str, list)),
        base_dir=source.parent,
        hasher=hasher,
    )
    raise_on_leaks(check_split_leakage(result.splits, source.parent, hasher=hasher))
    for name, records in result.splits.items():
        write_records(step.out / f"{name}.jsonl", rebase_images(records, source.parent, None))
    return {name: len(records) for name, records in result.splits.items()}


#: The record-selection keys of the steps that take data (see :mod:`medvl.data.select`).
SELECT_KEYS = frozenset(["where", "sample", "seed"])
STEP_STYLE = "{name}: {value}"  # how a step's own keys are named in messages


def _selection(step: Step) -> Selection:
    """The ``where``/``sample``/``seed`` keys of a step (``seed`` is shared with the step's own
    seed where it has one, as ``data split``'s)."""
    from medvl.data.select import Selection

    return Selection(
        where=_get(step, "where", None, (str, type(None))),
        sample=_get(step, "sample", None, (int, type(None))),
        seed=_get(step, "seed", 0, int),
        label=f"step {step.name!r}: where:",
    )


def _training_overrides(step: Step) -> list[str]:
    import yaml

    overrides = [
        f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...')}".strip()
        for k, v in step.params.items()
    ]
    return [*overrides, f"output_dir={step.out}"]


TRAIN_UNITS = {"unit": "steps", "rate_unit": "step"}


def run_sft(step: Step, progress: ProgressMaker | None = None) -> dict[str, Any]:
    from medvl.config import load_config
    from medvl.train.sft import run_sft as train
    from medvl.train.sft_config import SFTConfig

    config = load_config(SFTConfig, step.recipe, _training_overrides(step))
    with _progress(progress, step, "train", **TRAIN_UNITS) as shown:
        result = train(config, progress=shown)
    return {
        "train_loss": result.metrics.get("train_loss"),
        "validation": result.validation,
        "dropped": len(result.dropped),
        "seconds": round(result.seconds, 1),
    }


def run_grpo(step: Step, progress: ProgressMaker | None = None) -> dict[str, Any]:
    from medvl.config import load_config
    from medvl.train.grpo import run_grpo as train
    from medvl.train.grpo_config import GRPOConfig

    config = load_config(GRPOConfig, step.recipe, _training_overrides(step))
    with _progress(progress, step, "train", **TRAIN_UNITS) as shown:
        result = train(config, progress=shown)
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
        "video_min_pixels",
        "video_max_pixels",
        *SELECT_KEYS,
    ]
)


def run_eval(step: Step, progress: ProgressMaker | None = None) -> dict[str, Any]:
    """Predict (greedy, batched) and score a canonical JSONL file through
    :func:`medvl.eval.runner.run_benchmark`: the step folder is a run folder (prediction cache,
    ``run.json``, ``scores.jsonl``, ``metrics.json``), so a killed step resumes its predictions.
    The records are asked with the step's ``prompt`` template (default ``as_is``: their own
    prompt) and scored against their own answers; ``bench`` (default ``custom``: any canonical
    JSONL) names the benchmark the data is."""
    from medvl.eval.runner import RunConfig, run_benchmark
    from medvl.infer.engine import GenerationSettings

    _check_keys(step, EVAL_KEYS)
    config = RunConfig(
        bench=_get(step, "bench", "custom", str),
        data=Path(_get(step, "data", kinds=str)),
        out=step.out,
        prompt=_get(step, "prompt", "as_is", str),
        system=_get(step, "system", None, str),
        settings=GenerationSettings(max_new_tokens=_get(step, "max_new_tokens", 64, int)),
        metrics=_names(step, "metrics") or None,
        breakdown=_names(step, "breakdown"),
        protocol=_get(step, "protocol", "medvl", str),
        where=_get(step, "where", None, (str, type(None))),
        sample=_get(step, "sample", None, (int, type(None))),
        seed=_get(step, "seed", 0, int),
    )
    with _progress(progress, step, "eval", rate_unit="rec") as shown:
        result = run_benchmark(config, _engine_spec(step), progress=shown)
    summary = result.metrics.get("summary", {})
    return {
        name: summary[name]["mean"]
        for name in ("accuracy", "closed_accuracy", "token_f1")
        if name in summary
    }


def _names(step: Step, key: str) -> tuple[str, ...]:
    """A list of names under ``key`` (one name alone is a list of one)."""
    value = _get(step, key, None, (str, list, tuple, type(None)))
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value or ())


def _engine_spec(step: Step) -> EngineSpec:
    """The model an eval step runs: ``model`` (+ one ``adapter``), ``batch_size`` (16), and
    the video pixel budget ``video_min_pixels``/``video_max_pixels`` (default: the processor's,
    which training saved with the adapter)."""
    from medvl.infer.factory import EngineSpec
    from medvl.models.loading import LoadOptions

    adapter = _get(step, "adapter", None, (str, type(None)))
    video = {
        k: _get(step, k, None, (int, type(None))) for k in ("video_min_pixels", "video_max_pixels")
    }
    return EngineSpec(
        model=_get(step, "model", kinds=str),
        adapters=(adapter,) if adapter else (),
        load=LoadOptions(**video) if any(v is not None for v in video.values()) else None,
        batch_size=_get(step, "batch_size", 16, int),
    )


def run_report(step: Step, progress: ProgressMaker | None = None) -> dict[str, Any]:
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


KINDS: dict[str, Callable[..., dict[str, Any]]] = {
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
