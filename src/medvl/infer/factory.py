"""One way to build an inference engine: an :class:`EngineSpec`, then :func:`open_engine`.

The CLI (``predict``, ``chat``, ``serve``, ``eval run``), the Python API (:func:`medvl.load`),
the benchmark runner and the pipeline all describe the model they want as an ``EngineSpec`` and
open it here, so the rules (a local model or a server, never both; adapters and load options
belong to a local model) live in one place. A spec is cheap: nothing loads until
:func:`open_engine`, which is what lets the runner skip loading when every prediction is cached.

A model that is already in memory (training validation) is wrapped with
:meth:`medvl.infer.hf_engine.HFEngine.from_model` instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from medvl.errors import ConfigError
from medvl.models.input_settings import input_settings
from medvl.models.loading import LoadOptions

if TYPE_CHECKING:
    from medvl.infer.engine import Engine
    from medvl.models.loading import LoadedModel


@dataclass(frozen=True)
class EngineSpec:
    """The model to run: a local model folder or hub id (+ peft adapters, load options), or the
    ``model`` served at an OpenAI-compatible ``base_url``; and how to batch requests."""

    model: str | None = field(
        default=None,
        metadata={
            "help": "model folder or hub id (an adapter folder works too: its base is read "
            "from it); with base_url, the served model name (default: the server's first)"
        },
    )
    adapters: tuple[str, ...] = field(
        default=(), metadata={"help": "peft adapter folders, stacked in order (local only)"}
    )
    load: LoadOptions | None = field(
        default=None, metadata={"help": "dtype, device, pixels... (local only; None: defaults)"}
    )
    base_url: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible server, e.g. http://host:8000/v1"}
    )
    api_key: str | None = field(
        default=None, repr=False, metadata={"help": "server API key (default: $OPENAI_API_KEY)"}
    )
    batch_size: int = field(default=8, metadata={"help": "records per generate call (local)"})
    workers: int | None = field(
        default=None, metadata={"help": "image-loading threads (local; None: cores-1, at most 4)"}
    )
    concurrency: int = field(default=8, metadata={"help": "requests in flight (server)"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapters", tuple(str(a) for a in self.adapters))
        if not self.model and not self.base_url:
            raise ConfigError("pass --model (a model folder or hub id) or --base-url of a server")
        if self.base_url and self.adapters:
            raise ConfigError("--adapter is for the local engine; the server loads adapters")
        if self.base_url and self.load is not None:
            raise ConfigError(
                "load options (dtype, device, pixels, quantization) are for the local engine; "
                "the server sets its own"
            )
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be positive, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be 0 or more, got {self.workers}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be positive, got {self.concurrency}")

    @property
    def engine(self) -> str:
        """The engine's name: ``openai`` for a server, ``hf`` for a local model."""
        return "openai" if self.base_url else "hf"

    def input_settings(self) -> dict[str, Any] | None:
        """What :meth:`Engine.input_settings` will say, without loading (None: a server)."""
        return None if self.base_url else input_settings(self.load)

    def fingerprint(self) -> dict[str, Any] | None:
        """What :meth:`Engine.fingerprint` will say, without loading (None: must connect)."""
        if self.base_url:
            if not self.model:
                return None
            url = self.base_url.rstrip("/")
            return {"id": f"openai:{self.model}", "base_url": url, "model": self.model}
        from medvl.models.loading import model_fingerprint, resolve_model

        base, adapters = resolve_model(self.model, self.adapters)
        return model_fingerprint(base, adapters)

    def describe(self) -> dict[str, Any]:
        """For run.json (no API key)."""
        return {
            "model": self.model,
            "adapters": list(self.adapters),
            "engine": self.engine,
            "base_url": self.base_url,
            "load_options": asdict(self.load) if self.load is not None else None,
            "batch_size": self.batch_size,
        }


def load_local(spec: EngineSpec) -> LoadedModel:
    """The local model (+ adapters) of ``spec``, loaded; for callers that need the weights
    themselves (perplexity) rather than an engine. Refuses a server spec."""
    if spec.base_url:
        raise ConfigError(
            f"this needs a local model (its weights), not the server at {spec.base_url}; "
            "pass --model (a model folder or hub id)"
        )
    from medvl.models.loading import load_model

    return load_model(spec.model, spec.adapters, spec.load)


def open_engine(spec: EngineSpec) -> Engine:
    """Load the local model of ``spec`` into an :class:`HFEngine`, or connect an
    :class:`OpenAIEngine` to its server. The caller closes the engine."""
    if spec.base_url:
        from medvl.infer.openai_engine import OpenAIEngine

        return OpenAIEngine(
            spec.base_url, model=spec.model, api_key=spec.api_key, concurrency=spec.concurrency
        )
    from medvl.infer.hf_engine import HFEngine

    return HFEngine(load_local(spec), batch_size=spec.batch_size, num_workers=spec.workers)
