"""Who a run is, in words: benchmark, data file, protocol, prompt, generation settings, model.

A report reader needs to know what was asked of which model before reading any number. The facts
live in three places of a run folder, read in this order:

- ``run.json`` (written by ``medvl eval run``): ``bench``, ``data`` (input and SHA-256),
  ``prompt`` (the template's every field, its digest, the system prompt), ``generation`` and
  ``model`` (the fingerprint plus what was asked for: model path or hub id, adapters, server);
- ``metrics.json`` ``settings`` (written by every scoring): data file and hash, predictions file
  and hash, protocol (name, title, upstream source), benchmark;
- the first line of the predictions file when ``medvl predict`` wrote it: ``model`` (fingerprint
  dict), ``settings`` (generation) and ``prompt`` (the text sent for that record).

A field none of them holds is :data:`NOT_RECORDED`, never a Python repr. :func:`model_label`
turns a model description into a readable name: the folder name (with its parent's when the
folder is a generic ``final``/``checkpoint-N``) plus ``+ adapter`` names, or ``model @ host``
for a server.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

NOT_RECORDED = "not recorded"
#: Folder names that say nothing about the model on their own; the parent's name is kept too.
_GENERIC = re.compile(r"^(final|last|best|merged|model|adapter|output|checkpoint[-_]?\d*)$", re.I)
_SHORT = 12


def read_first_prediction(path: str | Path | None) -> dict[str, Any]:
    """The first JSON object of a predictions file, ``{}`` when absent or unreadable (the report
    still renders; the fields it would give read :data:`NOT_RECORDED`)."""
    if not path or not Path(path).is_file():
        return {}
    try:
        with Path(path).open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    return row if isinstance(row, dict) else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {}


def _folder_name(path: str) -> str:
    """``parent/name`` for a generic folder name, else the name; a hub id stays whole."""
    text = path.rstrip("/\\")
    parts = [p for p in re.split(r"[/\\]", text) if p]
    if not parts:
        return path
    if len(parts) >= 2 and (_GENERIC.match(parts[-1]) or not text.startswith(("/", "."))):
        return "/".join(parts[-2:])
    return parts[-1]


def parse_model(value: Any) -> dict[str, Any] | None:
    """A model description as a dict: a dict as is, a dict's Python repr (older
    ``prediction_models`` entries) parsed, a plain name as ``{"model": name}``."""
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.startswith("{"):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return {"model": text}
        return dict(parsed) if isinstance(parsed, dict) else {"model": text}
    return {"model": text}


def model_label(model: Mapping[str, Any] | None) -> str | None:
    """A readable model name (see the module docstring), None when ``model`` names nothing."""
    if not model:
        return None
    fingerprint = model.get("fingerprint") if isinstance(model.get("fingerprint"), Mapping) else {}
    base = model.get("model") or model.get("path") or fingerprint.get("path")
    adapters = model.get("adapters") or fingerprint.get("adapters") or []
    if model.get("base_url") or fingerprint.get("base_url"):
        url = model.get("base_url") or fingerprint.get("base_url")
        return f"{base or 'model'} @ {urlparse(str(url)).netloc or url}"
    if not base:
        ident = model.get("id") or fingerprint.get("id")
        return str(ident) if ident else None
    label = _folder_name(str(base))
    for adapter in adapters:
        label += f" + {_folder_name(str(adapter))}"
    return label


def model_fingerprint(model: Mapping[str, Any] | None) -> str | None:
    """The fingerprint id (``sha256:...`` or ``openai:...``) of a model description."""
    if not model:
        return None
    fingerprint = model.get("fingerprint")
    if isinstance(fingerprint, Mapping) and fingerprint.get("id"):
        return str(fingerprint["id"])
    return str(model["id"]) if model.get("id") else None


def find_model(
    settings: Mapping[str, Any], run_json: Mapping[str, Any], first: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The run's model description: run.json's, the predictions' first line's, or the names
    scoring collected from the predictions file."""
    for candidate in (run_json.get("model"), first.get("model")):
        found = parse_model(candidate)
        if found:
            return found
    names = settings.get("prediction_models") or []
    return parse_model(names[0]) if len(names) == 1 else None


def _generation(settings: Mapping[str, Any] | None) -> str:
    """``greedy, max_new_tokens=256`` or ``sampling: temperature=0.7, top_p=0.9, ...``."""
    if not settings:
        return NOT_RECORDED
    s = dict(settings)
    parts = [f"max_new_tokens={s.get('max_new_tokens', '?')}"]
    if s.get("do_sample"):
        head = "sampling"
        parts += [f"{k}={s[k]}" for k in ("temperature", "top_p", "top_k", "seed") if k in s]
    else:
        head = "greedy"
    if s.get("repetition_penalty") not in (None, 1.0):
        parts.append(f"repetition_penalty={s['repetition_penalty']}")
    return f"{head}, {', '.join(parts)}"


def _template(prompt: Mapping[str, Any] | None) -> str:
    """The prompt template's wording: its name and digest, then each rewritten part."""
    if not prompt:
        return NOT_RECORDED
    head = f"{prompt.get('name', '?')} (digest {prompt.get('hash', '?')})"
    parts = [head]
    if prompt.get("description"):
        parts.append(str(prompt["description"]))
    for key, title in (("mcq", "multiple choice"), ("question", "other questions")):
        if key in prompt:
            text = prompt[key]
            parts.append(f"{title}: {text!s}" if text else f"{title}: the record's own prompt")
    instructions = prompt.get("instructions") or []
    for pair in instructions:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            parts.append(f"instruction [{pair[0]}]: {pair[1]}")
    return "\n".join(parts)


def _system(prompt: Mapping[str, Any] | None) -> str:
    if not prompt:
        return NOT_RECORDED
    return str(prompt["system"]) if prompt.get("system") else "none"


def _short(sha: Any) -> str:
    return str(sha)[:_SHORT] if sha else NOT_RECORDED


def _protocol(settings: Mapping[str, Any], identity: Mapping[str, str]) -> str:
    found = settings.get("protocol")
    name = identity.get("protocol") or NOT_RECORDED
    if isinstance(found, Mapping) and found.get("title"):
        title = str(found["title"]).removeprefix(f"{name}: ")
        return f"{name}: {title} (follows {found.get('follows') or '?'})"
    return name


def identity_block(
    identity: Mapping[str, str],
    metrics: Mapping[str, Any],
    run_json: Mapping[str, Any] | None,
    first: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The facts of one run, every value a string (:data:`NOT_RECORDED` where none says)."""
    settings = metrics.get("settings") or {}
    run_json, first = run_json or {}, first or {}
    model = find_model(settings, run_json, first)
    data = run_json.get("data") or {}
    bench = run_json.get("bench") or {}
    benchmark = identity.get("benchmark") or NOT_RECORDED
    if bench.get("description"):
        benchmark = f"{benchmark}: {bench['description']}"
    prompt = run_json.get("prompt")
    sent = first.get("prompt")
    return {
        "benchmark": benchmark,
        "data file": str(settings.get("data") or data.get("path") or NOT_RECORDED),
        "data source": str(data.get("input") or NOT_RECORDED),
        "data sha256": _short(settings.get("data_sha256") or data.get("sha256")),
        "records scored": str(metrics.get("n_records", NOT_RECORDED)),
        "protocol": _protocol(settings, identity),
        "prompt template": _template(prompt),
        "system prompt": _system(prompt),
        "prompt sent (first record)": sent if isinstance(sent, str) and sent else NOT_RECORDED,
        "generation": _generation(run_json.get("generation") or first.get("settings")),
        "model": model_label(model) or NOT_RECORDED,
        "model fingerprint": model_fingerprint(model) or NOT_RECORDED,
        "engine": str(
            (model or {}).get("engine") or run_json.get("engine") or first.get("engine") or ""
        )
        or NOT_RECORDED,
        "predictions file": str(settings.get("predictions") or NOT_RECORDED),
        "predictions sha256": _short(settings.get("predictions_sha256")),
    }
