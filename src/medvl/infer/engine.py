"""The one interface every inference engine offers: chat requests in, generations out.

Prediction, chat, the server and evaluation talk to an :class:`Engine` and never to a model
directly, so the same code runs on a local Hugging Face model (:mod:`medvl.infer.hf_engine`) or
on any OpenAI-compatible server such as vLLM (:mod:`medvl.infer.openai_engine`).

A :class:`ChatRequest` holds chat-template messages whose image parts are ``{"type": "image"}``
and video parts ``{"type": "video"}`` (the form :func:`medvl.data.tokens.chat_messages`
produces) plus the images and the videos, each in message order. A video is a CT/MRI volume,
a DICOM series or any ordered list of frames; a record's videos stay unread
(:class:`VideoRef`) until the engine prepares the request, so a long prediction run never holds
more than the batches in flight.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvl.errors import ConfigError, MedvlError

if TYPE_CHECKING:
    from medvl.data.record import Record
    from medvl.data.video import VideoSpec

FINISH_REASONS = ("stop", "length", "error")


class InferenceError(MedvlError):
    """A request cannot be answered (unreadable image, unreachable server...)."""


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode. ``do_sample=False`` is greedy search and ignores the sampling fields."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(
                f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}"
            )
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ConfigError(
                f"temperature must be > 0, got {self.temperature!r}; for greedy decoding set "
                "do_sample=False (on the CLI: --temperature 0)"
            )
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be a positive integer or unset, got {self.top_k!r}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")

    @classmethod
    def from_temperature(cls, temperature: float = 0.0, **kwargs: Any) -> GenerationSettings:
        """Settings the OpenAI way: temperature 0 means greedy, above 0 means sampling."""
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature!r}")
        if temperature == 0:
            return cls(do_sample=False, **kwargs)
        return cls(do_sample=True, temperature=float(temperature), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, written into every prediction line."""
        return asdict(self)

    def hf_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.generate``."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k or 0)
        else:  # unset the sampling fields a checkpoint's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


@dataclass(frozen=True)
class VideoRef:
    """A video entry of a record, read (sampled, windowed) only when :func:`load_video` asks."""

    spec: VideoSpec
    base_dir: Path

    def describe(self) -> str:
        """A short label for messages: the first path of the entry."""
        paths = self.spec.paths(self.base_dir)
        more = f" (+{len(paths) - 1} frames)" if len(paths) > 1 else ""
        return f"{paths[0]}{more}" if paths else self.spec.kind


def load_video(video: Any) -> list[Any]:
    """The frames of one request video as RGB ``PIL`` images of one size, in order.

    ``video`` is a :class:`VideoRef` (read with :func:`medvl.data.volumes.load_frames`) or a
    sequence of frames, each a ``PIL.Image`` or an image file path."""
    from PIL import Image

    from medvl.data.medimage import load_image

    if isinstance(video, VideoRef):
        from medvl.data.volumes import load_frames

        frames = load_frames(video.spec, video.base_dir)
        label = video.describe()
    elif isinstance(video, list | tuple):
        frames = [f.convert("RGB") if isinstance(f, Image.Image) else load_image(f) for f in video]
        label = "the video"
    else:
        raise InferenceError(f"a video must be a list of frames or a record entry, got {video!r}")
    if not frames:
        raise InferenceError(f"{label}: the video has no frames")
    sizes = sorted({frame.size for frame in frames})
    if len(sizes) > 1:
        raise InferenceError(
            f"{label}: the frames of one video must share one size, got "
            f"{', '.join(f'{w}x{h}' for w, h in sizes[:4])}; resize the slices to one size"
        )
    return frames


@dataclass
class ChatRequest:
    """One conversation to continue: template messages plus their images and videos, in order.

    ``images`` holds file paths (read with :func:`medvl.data.medimage.load_image`, so DICOM and
    NIfTI work) or decoded ``PIL.Image`` pictures. ``videos`` holds :class:`VideoRef` entries
    or lists of frames (paths or pictures); see :func:`load_video`.
    """

    messages: list[dict[str, Any]]
    images: list[Any] = field(default_factory=list)
    id: str = ""
    videos: list[Any] = field(default_factory=list)

    @classmethod
    def from_record(cls, record: Record, base_dir: str | Path) -> ChatRequest:
        """The generation prompt of a canonical record (its last assistant turn dropped)."""
        from medvl.data.tokens import chat_messages

        return cls(
            messages=chat_messages(record, with_answer=False),
            images=list(record.image_paths(base_dir)),
            id=record.id,
            videos=[VideoRef(spec, Path(base_dir)) for spec in record.videos],
        )

    @classmethod
    def from_question(
        cls,
        question: str,
        images: Sequence[Any] = (),
        *,
        system: str | None = None,
        id: str = "",
        videos: Sequence[Any] = (),
    ) -> ChatRequest:
        """A single-turn request: the images, then the videos, then the question (as Qwen-VL
        is trained: media before text)."""
        parts: list[dict[str, Any]] = [{"type": "image"} for _ in images]
        parts += [{"type": "video"} for _ in videos]
        parts.append({"type": "text", "text": question})
        messages = [{"role": "user", "content": parts}]
        if system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
        return cls(messages=messages, images=list(images), id=id, videos=list(videos))

    def part_count(self, kind: str) -> int:
        """How many ``{"type": kind}`` parts the messages hold."""
        return sum(
            1
            for message in self.messages
            if isinstance(message.get("content"), list)
            for part in message["content"]
            if part.get("type") == kind
        )

    def image_part_count(self) -> int:
        """How many ``{"type": "image"}`` parts the messages hold (must equal ``len(images)``)."""
        return self.part_count("image")

    def check(self) -> str | None:
        """A one-line reason this request cannot run, or None."""
        if not self.messages:
            return "the request has no messages"
        parts = self.image_part_count()
        if parts != len(self.images):
            return f"{parts} image part(s) in the messages but {len(self.images)} image(s) given"
        videos = self.part_count("video")
        if videos != len(self.videos):
            return f"{videos} video part(s) in the messages but {len(self.videos)} video(s) given"
        return None


@dataclass
class Generation:
    """The outcome of one request: text, or an error that left the other requests unharmed."""

    id: str
    text: str = ""
    error: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    prompt: Any = None
    index: int = -1

    @classmethod
    def failed(cls, request: ChatRequest, index: int, error: str) -> Generation:
        return cls(id=request.id, error=" ".join(error.split()), finish_reason="error", index=index)


class TokenStream:
    """An iterator of text pieces; once exhausted, :attr:`result` holds the full Generation."""

    def __init__(self, pieces: Iterator[str], finish: Any, cancel: Any = None):
        self._pieces = pieces
        self._finish = finish
        self._cancel = cancel
        self._parts: list[str] = []
        self.result: Generation | None = None

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> str:
        try:
            piece = next(self._pieces)
        except StopIteration:
            if self.result is None:
                self.result = self._finish("".join(self._parts))
            raise
        self._parts.append(piece)
        return piece

    @property
    def text(self) -> str:
        """The text streamed so far."""
        return "".join(self._parts)

    def close(self) -> None:
        """Stop generating (a client went away, or the user pressed Ctrl-C)."""
        if self._cancel is not None:
            self._cancel()


class Engine(ABC):
    """Generates replies for chat requests; subclasses decide where the model runs."""

    name: str = "engine"

    @abstractmethod
    def generate_batches(
        self, requests: Iterable[ChatRequest], settings: GenerationSettings
    ) -> Iterator[list[Generation]]:
        """Yield generations batch by batch, in any order; ``Generation.index`` gives the
        request's position. Callers persist each batch as it comes (resumable prediction)."""

    @abstractmethod
    def stream(self, request: ChatRequest, settings: GenerationSettings) -> TokenStream:
        """Generate the reply to one request piece by piece."""

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """What produced the outputs; ``id`` is compared when a prediction run resumes."""

    def input_settings(self) -> dict[str, Any] | None:
        """Settings besides the weights that change what a local model says (precision,
        quantization, pixel budgets; :func:`medvl.infer.factory.input_settings`); ``None``
        where the engine does not control them (a server)."""
        return None

    def generate(
        self, requests: Sequence[ChatRequest], settings: GenerationSettings
    ) -> list[Generation]:
        """Generations for ``requests``, in request order."""
        out: list[Generation | None] = [None] * len(requests)
        for batch in self.generate_batches(requests, settings):
            for generation in batch:
                out[generation.index] = generation
        missing = [i for i, g in enumerate(out) if g is None]
        if missing:
            raise RuntimeError(f"{self.name} engine returned no result for requests {missing[:5]}")
        return out  # type: ignore[return-value]

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release resources (threads, connections); the engine is unusable afterwards."""
