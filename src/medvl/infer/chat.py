"""A multi-turn chat with images: the conversation state behind ``medvl chat``.

The terminal loop lives in the CLI; this module keeps the turns, attaches images to the next
user turn, streams replies through any :class:`~medvl.infer.engine.Engine`, and saves the
conversation as a canonical record (so a good chat can become training or test data).

Commands typed at the prompt: ``/image PATH`` (attach to the next message), ``/volume PATH
[n=16] [axis=axial] [window=lung]`` (a NIfTI volume, DICOM series folder or folder of slices,
attached as a video: :mod:`medvl.infer.video_media`), ``/reset``, ``/save FILE``, ``/help``,
``/exit``. A reply that fails or is interrupted leaves the
conversation as it was before the message.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.data.jsonl import write_records
from medvl.data.record import IMAGE_PLACEHOLDER, Message, Record
from medvl.data.video import VIDEO_PLACEHOLDER, VideoSpec
from medvl.errors import MedvlError
from medvl.infer.engine import ChatRequest, Engine, GenerationSettings

COMMANDS = {
    "/image": "/image PATH   attach an image to your next message",
    "/volume": "/volume PATH [n=16] [axis=axial] [window=lung] [uid=UID]   attach a NIfTI "
    "volume, DICOM series folder or folder of slices as a video",
    "/reset": "/reset        forget the conversation and pending images",
    "/save": "/save FILE    save the conversation as a canonical JSONL record",
    "/help": "/help         show these commands",
    "/exit": "/exit         leave (also /quit, or end of input)",
}
_ALIASES = {"/quit": "/exit", "/q": "/exit", "/img": "/image", "/vol": "/volume"}


class ChatCommandError(MedvlError):
    """A chat command is malformed or unknown."""


@dataclass(frozen=True)
class ChatInput:
    """One parsed line: a command with its argument, or a message (``command`` None)."""

    command: str | None
    text: str


def parse_line(line: str) -> ChatInput:
    """Split a typed line into a command or a message; ``//text`` sends ``/text`` literally."""
    text = line.strip()
    if text.startswith("//"):
        return ChatInput(None, text[1:])
    if not text.startswith("/"):
        return ChatInput(None, text)
    name, _, argument = text.partition(" ")
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in COMMANDS:
        raise ChatCommandError(f"unknown command {name}; commands: {', '.join(COMMANDS)}")
    argument = argument.strip()
    if name == "/volume":
        if not argument:
            raise ChatCommandError(f"/volume needs a path: {COMMANDS[name].split('   ')[0]}")
        return ChatInput(name, argument)
    if name in ("/image", "/save"):
        if not argument:
            raise ChatCommandError(f"{name} needs a path: {COMMANDS[name].split('  ')[0]}")
        parts = shlex.split(argument)  # allows quoted paths with spaces
        argument = parts[0] if len(parts) == 1 else argument
    return ChatInput(name, argument)


class ChatSession:
    """The turns of one conversation and the images attached to them."""

    def __init__(
        self,
        engine: Engine,
        settings: GenerationSettings | None = None,
        *,
        system: str | None = None,
    ):
        self.engine = engine
        self.settings = settings or GenerationSettings()
        self.system = system
        self.reset()

    def reset(self) -> None:
        """Forget every turn and pending image or video (the system prompt stays)."""
        self.turns: list[dict[str, Any]] = []  # {"role", "text", "images", "videos"}
        self.pending: list[Path] = []
        self.pending_videos: list[tuple[VideoSpec, list[Any]]] = []

    def add_image(self, path: str | Path) -> Path:
        """Attach an image to the next message; it is read now so a bad path fails at once."""
        from medvl.data.medimage import load_image

        resolved = Path(path).expanduser().resolve()
        load_image(resolved)  # raises ImageError naming the path and the fix
        self.pending.append(resolved)
        return resolved

    def add_volume(self, argument: str) -> VideoSpec:
        """Attach a volume, series or slice folder as a video to the next message, from a
        ``/volume`` argument (``PATH [n=16] [axis=axial] [window=lung] [uid=UID]``). The frames
        are read now (a bad path fails at once) and kept for the rest of the conversation."""
        from medvl.data.volumes import load_frames
        from medvl.infer.engine import load_video
        from medvl.infer.video_media import parse_options, video_spec

        try:
            words = shlex.split(argument)
        except ValueError as exc:
            raise ChatCommandError(f"/volume {argument}: {exc}") from None
        path = Path(words[0]).expanduser().resolve()
        spec = video_spec(path, parse_options(words[1:]))
        frames = load_video(load_frames(spec, path.parent))
        self.pending_videos.append((spec, frames))
        return spec

    def request(self) -> ChatRequest:
        """The conversation so far as a request (images, then videos, before the text of their
        turn)."""
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        images: list[Path] = []
        videos: list[list[Any]] = []
        for turn in self.turns:
            parts: list[dict[str, Any]] = [{"type": "image"} for _ in turn["images"]]
            parts += [{"type": "video"} for _ in turn.get("videos", ())]
            parts.append({"type": "text", "text": turn["text"]})
            messages.append({"role": turn["role"], "content": parts})
            images.extend(turn["images"])
            videos.extend(frames for _, frames in turn.get("videos", ()))
        return ChatRequest(messages=messages, images=images, id="chat", videos=videos)

    def send(self, text: str) -> Iterator[str]:
        """Add a user message and stream the reply; the turn is kept only if the reply ends."""
        self.turns.append(
            {
                "role": "user",
                "text": text,
                "images": list(self.pending),
                "videos": list(self.pending_videos),
            }
        )
        stream = None
        try:
            stream = self.engine.stream(self.request(), self.settings)
            yield from stream
        except BaseException:
            self.turns.pop()
            if stream is not None:
                stream.close()
            raise
        self.pending, self.pending_videos = [], []
        self.turns.append({"role": "assistant", "text": stream.text, "images": [], "videos": []})

    def ask(self, text: str) -> str:
        """Send a message and return the whole reply."""
        return "".join(self.send(text))

    def to_record(self, record_id: str = "chat") -> Record:
        """The conversation as a canonical record (absolute image and video paths)."""
        messages = [Message("system", self.system)] if self.system else []
        images: list[str] = []
        videos: list[VideoSpec] = []
        for turn in self.turns:
            prefix = "".join(f"{IMAGE_PLACEHOLDER}\n" for _ in turn["images"])
            prefix += "".join(f"{VIDEO_PLACEHOLDER}\n" for _ in turn.get("videos", ()))
            messages.append(Message(turn["role"], prefix + turn["text"]))
            images.extend(str(p) for p in turn["images"])
            videos.extend(spec for spec, _ in turn.get("videos", ()))
        if not any(m.role == "user" for m in messages):
            raise ChatCommandError("nothing to save yet: send a message first")
        replies = [m.content for m in messages if m.role == "assistant"]
        return Record(
            id=record_id,
            dataset="chat",
            split="chat",
            lang="und",
            images=images,
            messages=messages,
            answer=replies[-1] if replies else None,
            videos=videos,
        )

    def save(self, path: str | Path) -> Path:
        """Write the conversation as a one-record canonical JSONL file (atomically)."""
        path = Path(path).expanduser()
        write_records(path, [self.to_record()])
        return path
