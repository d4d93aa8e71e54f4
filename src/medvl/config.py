"""Typed configs: YAML recipes plus ``key=value`` overrides, checked against dataclasses.

A recipe is a YAML mapping whose keys are the fields of a config dataclass (nested dataclasses are
nested mappings). Overrides use dotted keys (``lora.r=16``) and YAML values (``lr=1e-4``,
``stages=[a,b]``). Every mistake becomes a :class:`~medvl.errors.ConfigError` that names the key,
where it came from and what is allowed, e.g. ``unknown key 'lora.rank' (from recipe.yaml); allowed
keys under 'lora': alpha, dropout, r, targets``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from medvl.errors import ConfigError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file and the line of a syntax error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping of key: value")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``dotted.key=value`` override applied."""
    result = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (e.g. lr=1e-4)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` from a YAML file (optional) and overrides, validating every key and type."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    source = str(path) if path is not None else "command line"
    return from_dict(cls, data, source=source)


def from_dict(cls: type[T], data: Any, *, source: str = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, converting nested mappings and checking types."""
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix or '<root>'}' (from {source}) must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        scope = f" under '{prefix.rstrip('.')}'" if prefix else ""
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}' (from {source}); allowed keys{scope}: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {
        name: _convert(hints[name], value, f"{prefix}{name}", source)
        for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{prefix or cls.__name__} (from {source}): {exc}") from None


def _convert(hint: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{errors[0]} (or another allowed type)"
        )
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"'{key}' (from {source}) is {value!r}; allowed values: {allowed}")
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, source=source, prefix=f"{key}.")
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"'{key}' (from {source}) must be a list, got {value!r}")
        item = args[0] if args else Any
        converted = [_convert(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple or hint is tuple else converted
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' (from {source}) must be a mapping, got {value!r}")
        return value
    return _convert_scalar(hint, value, key, source)


def _convert_scalar(hint: Any, value: Any, key: str, source: str) -> Any:
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    if hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if (
        isinstance(hint, type)
        and isinstance(value, hint)
        and not (hint is int and isinstance(value, bool))
    ):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"'{key}' (from {source}) must be {name}, got {value!r}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The plain-data form of a config dataclass, for saving with a run (paths become strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))
