"""The Python API, mirroring the CLI: ``model = medvl.load(...)`` then ``model.ask(image, q)``.

Example::

    import medvl

    model = medvl.load("Qwen/Qwen2-VL-2B-Instruct", adapter="runs/sft/adapter")
    print(model.ask("scan.dcm", "Is there a nodule in this image?"))
    model.predict("test.jsonl", "pred.jsonl")          # resumable, batched
    chat = model.chat()                                 # multi-turn, with chat.add_image(...)

    remote = medvl.load(base_url="http://gpu-box:8000/v1")   # a vLLM or medvl server
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from medvl.errors import ConfigError
from medvl.infer.chat import ChatSession
from medvl.infer.engine import ChatRequest, Engine, Generation, GenerationSettings, InferenceError
from medvl.infer.predict import PredictSummary, predict_file


class MedvlModel:
    """A model behind an engine, with the everyday calls."""

    def __init__(self, engine: Engine, settings: GenerationSettings | None = None):
        self.engine = engine
        self.settings = settings or GenerationSettings()

    def _settings(self, overrides: dict[str, Any]) -> GenerationSettings:
        if "temperature" in overrides and "do_sample" not in overrides:
            temperature = overrides.pop("temperature")
            overrides["do_sample"] = temperature > 0
            overrides["temperature"] = temperature if temperature > 0 else 1.0
        return replace(self.settings, **overrides) if overrides else self.settings

    def ask(self, image: Any, question: str, *, system: str | None = None, **settings: Any) -> str:
        """Answer one question about an image (a path, a PIL image, a list of them, or None)."""
        if image is None:
            images: list[Any] = []
        elif isinstance(image, (list, tuple)):
            images = list(image)
        else:
            images = [image]
        request = ChatRequest.from_question(question, images, system=system, id="ask")
        [generation] = self.engine.generate([request], self._settings(settings))
        if generation.error is not None:
            raise InferenceError(generation.error)
        return generation.text

    def generate(self, requests: Sequence[ChatRequest], **settings: Any) -> list[Generation]:
        """Generations for many requests, in order (batched by the engine)."""
        return self.engine.generate(requests, self._settings(settings))

    def predict(self, data: str | Path, out: str | Path, **kwargs: Any) -> PredictSummary:
        """Resumable prediction over a canonical JSONL file (see ``medvl predict``)."""
        settings = self._settings(kwargs.pop("settings", {}))
        return predict_file(self.engine, data, out, settings, **kwargs)

    def chat(self, *, system: str | None = None, **settings: Any) -> ChatSession:
        """A multi-turn conversation; ``session.add_image(path)`` then ``session.ask(text)``."""
        return ChatSession(self.engine, self._settings(settings), system=system)

    def close(self) -> None:
        self.engine.close()


def load(
    model: str | Path | None = None,
    adapter: str | Path | Sequence[str | Path] | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    batch_size: int = 8,
    settings: GenerationSettings | None = None,
    **load_options: Any,
) -> MedvlModel:
    """Load a local model (+ adapters) or connect to an OpenAI-compatible server.

    ``load_options`` are :class:`medvl.models.loading.LoadOptions` fields (``dtype``,
    ``device``, ``attn_implementation``, ``min_pixels``, ``max_pixels``, ``video_min_pixels``,
    ``video_max_pixels``, ``quantization``, ``trust_remote_code``). With ``base_url``,
    ``model`` is the served model name.
    """
    from medvl.infer.factory import EngineSpec, open_engine
    from medvl.models.loading import LoadOptions

    if base_url is not None and (load_options or adapter):
        raise ConfigError("with base_url, adapters and load options belong to the server")
    if model is None and base_url is None:
        raise ConfigError("pass a model folder or hub id, or base_url= for a server")
    allowed = set(LoadOptions.__dataclass_fields__)
    unknown = sorted(set(load_options) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown load option {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    adapters = [adapter] if isinstance(adapter, (str, Path)) else list(adapter or [])
    spec = EngineSpec(
        model=model and str(model),
        adapters=tuple(str(a) for a in adapters),
        load=None if base_url is not None else LoadOptions(**load_options),
        base_url=base_url,
        api_key=api_key,
        batch_size=batch_size,
    )
    return MedvlModel(open_engine(spec), settings)
