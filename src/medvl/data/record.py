"""The canonical record: the one data shape every medvl reader, trainer and evaluator speaks.

One record is one JSON object on one line of a JSONL file::

    {"id": "slake-0001", "dataset": "slake", "split": "test", "lang": "en",
     "images": ["imgs/xmlab1/source.jpg"],
     "messages": [{"role": "user", "content": "<image>\\nWhich organ is abnormal?"},
                  {"role": "assistant", "content": "Lung"}],
     "answer": "Lung", "options": null, "answer_type": "open", "question_type": "abnormality",
     "meta": {"modality": "CT", "location": "Lung"}}

Image paths are relative to the JSONL file's folder (or absolute). Each image is one ``<image>``
placeholder in a user turn, in order. Optional ``videos`` (a CT/MRI series or volume, or any
ordered frame sequence; see :mod:`medvl.data.video`) work the same way with ``<video>``
placeholders; the key is written only when a record has videos. ``answer`` is the gold answer
used for scoring; for multiple choice it is the option letter and ``options`` maps letters to
option texts.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.data.video import VIDEO_PLACEHOLDER, VideoFieldError, VideoSpec

IMAGE_PLACEHOLDER = "<image>"
ROLES = ("system", "user", "assistant")
ANSWER_TYPES = ("closed", "open")
RECORD_FIELDS = (
    "id",
    "dataset",
    "split",
    "lang",
    "images",
    "messages",
    "answer",
    "options",
    "answer_type",
    "question_type",
    "meta",
    "videos",
)
_LANG_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")
_OPTION_KEY_RE = re.compile(r"^[A-Z]$")


class FieldError(ValueError):
    """One field of one record is invalid; ``field`` is a dotted path like ``messages[1].role``."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"field '{field}': {message}")


@dataclass
class Message:
    """One chat turn. ``content`` is plain text; images appear as ``<image>`` placeholders."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass
class Record:
    """A canonical medvl record; construct it with keyword arguments or :meth:`from_dict`."""

    id: str
    dataset: str
    split: str
    lang: str
    images: list[str]
    messages: list[Message]
    answer: str | None = None
    options: dict[str, str] | None = None
    answer_type: str | None = None
    question_type: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    videos: list[VideoSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.messages = [
            m if isinstance(m, Message) else _message(m, i) for i, m in enumerate(self.messages)
        ]
        self.videos = _videos(self.videos)
        validate_record(self)

    @classmethod
    def from_dict(cls, data: Any) -> Record:
        """Build a record from a parsed JSON object; raises :class:`FieldError` naming the field."""
        if not isinstance(data, dict):
            raise FieldError("<record>", f"expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(RECORD_FIELDS))
        if unknown:
            raise FieldError(
                unknown[0], "is not a canonical field; put benchmark-specific fields under 'meta'"
            )
        for name in ("id", "dataset", "split", "lang", "images", "messages"):
            if name not in data:
                raise FieldError(name, "is required")
        if not isinstance(data["messages"], list):
            raise FieldError("messages", "must be a list of {role, content} objects")
        kwargs = {name: data[name] for name in RECORD_FIELDS if name in data}
        if kwargs.get("meta") is None:
            kwargs["meta"] = {}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, with every field present and in canonical order."""
        return {
            "id": self.id,
            "dataset": self.dataset,
            "split": self.split,
            "lang": self.lang,
            "images": list(self.images),
            "messages": [m.to_dict() for m in self.messages],
            "answer": self.answer,
            "options": dict(self.options) if self.options is not None else None,
            "answer_type": self.answer_type,
            "question_type": self.question_type,
            "meta": copy.deepcopy(self.meta),
            **({"videos": [v.to_dict() for v in self.videos]} if self.videos else {}),
        }

    @property
    def question(self) -> str:
        """The last user turn's text with image and video placeholders removed (what is being
        asked)."""
        users = [m.content for m in self.messages if m.role == "user"]
        if not users:
            return ""
        return users[-1].replace(IMAGE_PLACEHOLDER, "").replace(VIDEO_PLACEHOLDER, "").strip()

    @property
    def reference(self) -> str | None:
        """The last assistant turn's text: the training target and the open-answer reference."""
        replies = [m.content for m in self.messages if m.role == "assistant"]
        return replies[-1] if replies else None

    def image_paths(self, base_dir: str | Path) -> list[Path]:
        """Image paths resolved against ``base_dir`` (the JSONL file's folder)."""
        return [Path(p) if Path(p).is_absolute() else Path(base_dir) / p for p in self.images]

    def video_paths(self, base_dir: str | Path) -> list[Path]:
        """Every file or folder the videos read (frames, volumes, series folders), resolved."""
        return [path for video in self.videos for path in video.paths(base_dir)]


def _videos(videos: Any) -> list[VideoSpec]:
    if videos is None:
        return []
    if not isinstance(videos, list):
        raise FieldError("videos", "must be a list of video entries (omit it when there are none)")
    parsed = []
    for i, entry in enumerate(videos):
        if isinstance(entry, VideoSpec):
            parsed.append(entry)
            continue
        try:
            parsed.append(VideoSpec.from_dict(entry))
        except VideoFieldError as exc:
            where = f"videos[{i}]" if exc.field == "<entry>" else f"videos[{i}].{exc.field}"
            raise FieldError(where, exc.message) from None
    return parsed


def _message(data: Any, index: int) -> Message:
    where = f"messages[{index}]"
    if not isinstance(data, dict):
        raise FieldError(where, "must be an object with 'role' and 'content'")
    extra = sorted(set(data) - {"role", "content"})
    if extra:
        raise FieldError(
            f"{where}.{extra[0]}", "unexpected key; a message has 'role' and 'content'"
        )
    if "role" not in data or "content" not in data:
        missing = "role" if "role" not in data else "content"
        raise FieldError(f"{where}.{missing}", "is required")
    return Message(role=data["role"], content=data["content"])


def _require_str(value: Any, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str) or (not allow_none and not value.strip()):
        expected = "a string or null" if allow_none else "a non-empty string"
        raise FieldError(name, f"must be {expected}, got {value!r}")


def validate_record(record: Record) -> None:
    """Check every field of ``record``; raise :class:`FieldError` for the first problem found."""
    for name in ("id", "dataset", "split", "lang"):
        _require_str(getattr(record, name), name)
    if not _LANG_RE.match(record.lang):
        raise FieldError(
            "lang", f"must be a language code such as 'en' or 'zh', got {record.lang!r}"
        )
    _validate_images(record.images)
    _validate_messages(record.messages, len(record.images), len(record.videos))
    _require_str(record.answer, "answer", allow_none=True)
    _require_str(record.question_type, "question_type", allow_none=True)
    if record.answer_type is not None and record.answer_type not in ANSWER_TYPES:
        raise FieldError(
            "answer_type",
            f"must be one of {', '.join(ANSWER_TYPES)} or null, got {record.answer_type!r}",
        )
    _validate_options(record.options, record.answer)
    if not isinstance(record.meta, dict):
        raise FieldError("meta", f"must be an object, got {type(record.meta).__name__}")


def _validate_images(images: Any) -> None:
    if not isinstance(images, list):
        raise FieldError("images", "must be a list of image paths (use [] for text-only records)")
    for i, path in enumerate(images):
        _require_str(path, f"images[{i}]")


def _validate_messages(messages: list[Message], n_images: int, n_videos: int = 0) -> None:
    if not messages:
        raise FieldError("messages", "must hold at least one user turn")
    placeholders = videos = 0
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise FieldError(
                f"messages[{i}].role", f"must be one of {', '.join(ROLES)}, got {message.role!r}"
            )
        if not isinstance(message.content, str):
            raise FieldError(f"messages[{i}].content", "must be a string")
        if message.role == "system" and i != 0:
            raise FieldError(f"messages[{i}].role", "a system turn may only be the first turn")
        count = message.content.count(IMAGE_PLACEHOLDER)
        if count and message.role != "user":
            raise FieldError(f"messages[{i}].content", "<image> placeholders belong in user turns")
        placeholders += count
        in_turn = message.content.count(VIDEO_PLACEHOLDER)
        if in_turn and message.role != "user":
            raise FieldError(f"messages[{i}].content", "<video> placeholders belong in user turns")
        videos += in_turn
    if not any(m.role == "user" for m in messages):
        raise FieldError("messages", "must hold at least one user turn")
    if placeholders != n_images:
        raise FieldError(
            "images",
            f"{n_images} image(s) listed but {placeholders} <image> placeholder(s) in the user "
            "turns; add or remove placeholders so each image has exactly one",
        )
    if videos != n_videos:
        raise FieldError(
            "videos",
            f"{n_videos} video(s) listed but {videos} <video> placeholder(s) in the user turns; "
            "add or remove placeholders so each video has exactly one",
        )


def _validate_options(options: Any, answer: str | None) -> None:
    if options is None:
        return
    if not isinstance(options, dict) or not options:
        raise FieldError("options", "must be a non-empty object such as {'A': '...', 'B': '...'}")
    for key, text in options.items():
        if not _OPTION_KEY_RE.match(str(key)):
            raise FieldError(f"options.{key}", "option keys must be single capital letters A-Z")
        _require_str(text, f"options.{key}", allow_none=True)
    if answer is not None and answer not in options:
        raise FieldError(
            "answer",
            f"for multiple choice the answer must be an option letter "
            f"({', '.join(options)}), got {answer!r}",
        )
