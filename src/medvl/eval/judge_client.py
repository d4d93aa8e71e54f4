"""The LLM judge's plumbing: its settings, the OpenAI-compatible client and the verdict cache.

:mod:`medvl.eval.judge` holds the prompt and the step itself. Every failure to use the server
(unreachable, HTTP error, unknown model, missing key) becomes one :class:`JudgeError` line that
names the URL and the fix. The cache is a JSONL file appended and fsynced verdict by verdict.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.errors import ConfigError, MedvlError

logger = logging.getLogger(__name__)

CORRECT, INCORRECT, UNPARSED, ERROR = "correct", "incorrect", "unparsed", "error"
#: Verdicts kept in the cache (a refused request, ``error``, is asked again next time).
CACHED_VERDICTS = (CORRECT, INCORRECT, UNPARSED)
DEFAULT_KINDS = ("open",)
KINDS = ("open", "closed", "mcq", "report")


class JudgeError(MedvlError):
    """The judge server cannot be used (unreachable, HTTP error, unknown model)."""


@dataclass(frozen=True)
class JudgeConfig:
    """Where the judge is served and how to ask it."""

    url: str = field(metadata={"help": "OpenAI-compatible base URL, e.g. http://host:8000/v1"})
    model: str | None = field(default=None, metadata={"help": "None: the server's first model"})
    api_key_env: str | None = field(
        default=None, metadata={"help": "name of the environment variable holding the API key"}
    )
    kinds: tuple[str, ...] = field(default=DEFAULT_KINDS, metadata={"help": "record kinds"})
    sample: int = field(default=50, metadata={"help": "rows of judge_review.csv"})
    seed: int = field(default=0, metadata={"help": "seed of the review sample"})
    cache: Path | None = field(default=None, metadata={"help": "None: OUT/judge_cache.jsonl"})
    workers: int = field(default=4, metadata={"help": "requests in flight"})
    timeout: float = field(default=120.0, metadata={"help": "seconds per request"})
    max_tokens: int = field(default=64, metadata={"help": "reply length limit"})
    max_retries: int = field(default=2, metadata={"help": "client retries (backoff)"})

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"--judge-url {self.url!r} is not an http(s) URL; pass the server's base URL, "
                "e.g. http://localhost:8000/v1"
            )
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ConfigError(
                f"--judge-kinds {','.join(self.kinds)!r}: choose among {', '.join(KINDS)}"
            )
        for name in ("sample", "workers", "max_tokens"):
            if getattr(self, name) < (0 if name == "sample" else 1):
                raise ConfigError(f"judge {name} must be positive, got {getattr(self, name)}")
        if self.timeout <= 0:
            raise ConfigError(f"--judge-timeout must be positive, got {self.timeout}")

    def api_key(self) -> str:
        """The key from ``api_key_env`` (refused when that variable is unset), else 'EMPTY'."""
        if not self.api_key_env:
            return "EMPTY"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(
                f"--judge-key-env {self.api_key_env}: that environment variable is not set; "
                f"export {self.api_key_env}=<the judge server's key>"
            )
        return key


# ---------------------------------------------------------------- cache


class VerdictCache:
    """Verdicts by cache key, read from and appended to a JSONL file (fsynced per line).

    A torn last line (a run killed mid-write) is ignored; its record is judged again.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            with self.path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    entry = _cache_line(line)
                    if entry is not None:
                        self.entries.setdefault(entry["key"], entry)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def add(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append ``entries`` durably (a new line each; an unterminated old line is closed)."""
        entries = [e for e in entries if e["key"] not in self.entries]
        if not entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", encoding="utf-8") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(handle.tell() - 1)
                if handle.read(1) != "\n":
                    handle.write("\n")
            for entry in entries:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self.entries[entry["key"]] = entry
            handle.flush()
            os.fsync(handle.fileno())


def _cache_line(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    ok = isinstance(entry, dict) and isinstance(entry.get("key"), str)
    return entry if ok and entry.get("verdict") in CACHED_VERDICTS else None


# ---------------------------------------------------------------- server


class JudgeClient:
    """Chat completions from the judge server, with every failure turned into one line."""

    def __init__(self, config: JudgeConfig):
        from openai import OpenAI

        self.url = config.url.rstrip("/")
        self.config = config
        self.client = OpenAI(
            base_url=self.url,
            api_key=config.api_key(),
            max_retries=config.max_retries,
            timeout=config.timeout,
        )

    def resolve_model(self, wanted: str | None) -> str:
        """``wanted`` checked against the models the server lists, or the first one listed."""
        import openai

        try:
            served = [m.id for m in self.client.models.list().data]
        except openai.APIStatusError as exc:
            if exc.status_code == 404 and wanted:
                logger.warning("%s/models not found; cannot check model %r", self.url, wanted)
                return wanted
            raise self._error(exc) from None
        except openai.APIError as exc:
            raise self._error(exc) from None
        if wanted is None:
            if not served:
                raise JudgeError(
                    f"judge {self.url}: the server lists no models; pass --judge-model"
                )
            return served[0]
        if served and wanted not in served:
            raise JudgeError(
                f"judge {self.url}: model {wanted!r} is not served there (it serves: "
                f"{', '.join(served)}); pass --judge-model with one of those names"
            )
        return wanted

    def ask(self, model: str, messages: list[dict[str, str]]) -> tuple[str | None, str | None]:
        """``(reply, None)``, or ``(None, message)`` when the server refuses this one request;
        raises :class:`JudgeError` when the server cannot be used at all."""
        import openai

        try:
            reply = self.client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                temperature=0.0,
                max_tokens=self.config.max_tokens,
            )
        except openai.APIStatusError as exc:
            if exc.status_code in (400, 413, 422):
                return None, f"{self.url} answered {exc.status_code}: {_message(exc)}"
            raise self._error(exc) from None
        except openai.APIError as exc:
            raise self._error(exc) from None
        return (reply.choices[0].message.content or "") if reply.choices else "", None

    def _error(self, exc: Any) -> JudgeError:
        status = getattr(exc, "status_code", None)
        if status is None:
            what = f"cannot reach the judge server ({' '.join(str(exc).split())})"
            fix = "start the judge server or fix --judge-url; rerun to resume (verdicts are cached)"
        elif status in (401, 403):
            what, fix = f"answered {status}", "pass its API key with --judge-key-env VARIABLE"
        elif status == 404:
            what = f"answered 404 ({_message(exc)})"
            fix = "check --judge-url (it usually ends in /v1) and --judge-model"
        else:
            what = f"answered {status} ({_message(exc)})"
            fix = "check the judge server's log; rerun to resume (verdicts are cached)"
        return JudgeError(f"judge {self.url}: {what}; {fix}")

    def close(self) -> None:
        self.client.close()


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    return " ".join(str(text or exc).split())[:300]
