"""Pipeline files: named steps in order, each one of medvl's jobs, wired by references.

A pipeline YAML::

    name: demo
    workdir: runs/demo
    steps:
      - {name: data, kind: phantom, with: {n: 600, seed: 0}}
      - {name: base, kind: tiny, with: {family: qwen2_vl}}
      - name: stage1
        kind: sft
        recipe: recipes/tiny/sft_align.yaml
        with: {model: "${base}", data.train: "${data}/train.jsonl"}

Steps that take data (``convert``, ``split``, ``eval``) also take ``where: 'meta.subset ==
"MRI"'``, ``sample: N`` and ``seed: S`` (see :mod:`medvl.data.select`; ``split`` shares its own
``seed``).
``${NAME}`` is the output folder of the earlier step NAME (``${workdir}`` the pipeline's folder).
Every step writes into ``<workdir>/<name>``. Command-line overrides ``STEP.KEY=VALUE`` set a key
of that step's ``with`` (``stage2.learning_rate=1e-4``); ``workdir=...`` moves the whole run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.config import apply_overrides, read_yaml
from medvl.errors import ConfigError

_REF = re.compile(r"\$\{([A-Za-z0-9_\-]+)\}")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


@dataclass
class Step:
    """One step: what to run (``kind``), its settings and where it writes."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    recipe: Path | None = None
    out: Path = Path()
    depends: list[str] = field(default_factory=list)


@dataclass
class Pipeline:
    """A parsed pipeline: its folder and its steps in order."""

    name: str
    workdir: Path
    steps: list[Step]
    source: Path


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Pipeline:
    """Read, override and resolve a pipeline file; every error names the step and key.

    Step kinds are checked by the planner (:func:`medvl.pipeline.runner.plan`), which knows them.
    """
    path = Path(path)
    data = read_yaml(path)
    unknown = sorted(set(data) - {"name", "workdir", "steps"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r}; a pipeline has name, workdir, steps"
        )
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ConfigError(f"{path}: 'steps' must be a non-empty list of steps")
    workdir = Path(data.get("workdir") or f"runs/{path.stem}")
    by_name = {s.get("name"): s for s in raw_steps if isinstance(s, dict)}
    workdir = _apply_overrides(path, by_name, overrides) or workdir
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps):
        steps.append(_step(path, index, raw, workdir, steps))
    return Pipeline(
        name=str(data.get("name") or path.stem), workdir=workdir, steps=steps, source=path
    )


def _apply_overrides(path: Path, by_name: dict, overrides) -> Path | None:
    workdir = None
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like STEP.KEY=VALUE or workdir=DIR")
        if key == "workdir":
            workdir = Path(value)
            continue
        step, _, sub = key.partition(".")
        if step not in by_name or not sub:
            names = ", ".join(str(n) for n in by_name)
            raise ConfigError(f"override {item!r}: no step {step!r} in {path}; steps: {names}")
        target = by_name[step].setdefault("with", {})
        target[sub] = apply_overrides({}, [f"x={value}"])["x"]  # `with` keys are flat
    return workdir


def _step(path: Path, index: int, raw: Any, workdir: Path, earlier: list[Step]) -> Step:
    where = f"{path}: step {index + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with name, kind and with")
    unknown = sorted(set(raw) - {"name", "kind", "with", "recipe"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; a step has name, kind, recipe, with"
        )
    name, kind = raw.get("name"), raw.get("kind")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: 'name' must be a word such as stage1 (got {name!r})")
    if any(s.name == name for s in earlier):
        raise ConfigError(f"{where}: step name {name!r} is used twice")
    if not isinstance(kind, str):
        raise ConfigError(f"{where} ({name}): 'kind' must name a step kind (got {kind!r})")
    known = {s.name: s.out for s in earlier}
    depends: list[str] = []
    params = _resolve(raw.get("with") or {}, known, workdir, depends, f"{where} ({name})")
    recipe = Path(raw["recipe"]) if raw.get("recipe") else None
    return Step(
        name=name,
        kind=kind,
        params=params,
        recipe=recipe,
        out=workdir / name,
        depends=sorted(set(depends)),
    )


def _resolve(value: Any, known: dict[str, Path], workdir: Path, depends: list[str], where: str):
    if isinstance(value, dict):
        return {k: _resolve(v, known, workdir, depends, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, known, workdir, depends, where) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        ref = match.group(1)
        if ref == "workdir":
            return str(workdir)
        if ref not in known:
            raise ConfigError(
                f"{where}: ${{{ref}}} names no earlier step; earlier steps: "
                f"{', '.join(known) or 'none'}"
            )
        depends.append(ref)
        return str(known[ref])

    return _REF.sub(substitute, value)
