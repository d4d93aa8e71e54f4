"""The Chat tab: one image (PNG/JPEG/DICOM/NIfTI slice) and/or one volume (NIfTI, DICOM series,
slice folder: sent as video input), a question, and the answers of one or two models streamed
side by side.

A model is a local folder (+ a LoRA adapter), run by the HF engine, or a model served at an
OpenAI-compatible URL; both are opened through :func:`medvl.infer.factory.open_engine`, once,
and kept in an :class:`EnginePool` for the life of the app. The conversation of each model is
kept by :class:`medvl.infer.chat.ChatSession` (as ``medvl chat`` does), so follow-up questions
see the earlier turns and the image. A DICOM or NIfTI upload is rendered with the chosen window
and slice (:mod:`medvl.ui.pictures`) and sent to the model as that PNG, so the model sees exactly
the preview. A volume is read into the frames ``medvl chat``'s ``/volume`` would send
(:mod:`medvl.ui.volume_view`), shown in a slice scroller, and given to both models.

Everything below :func:`build_chat_tab` is plain Python, tested without a browser.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.data.medimage import image_kind
from medvl.errors import MedvlError
from medvl.infer.chat import ChatSession
from medvl.infer.engine import Engine, GenerationSettings
from medvl.infer.factory import EngineSpec, open_engine
from medvl.ui.pictures import WINDOWS, render, save_png, slice_count
from medvl.ui.volume_view import build_volume_panel, save_strip, video_for_turn


@dataclass(frozen=True)
class ModelChoice:
    """What a user typed for one model slot: a local folder (+ adapter) or a URL (+ name)."""

    model: str = ""
    adapter: str = ""
    url: str = ""
    api_model: str = ""

    def spec(self) -> EngineSpec | None:
        """The engine spec, or None when the slot is empty; raises ``ConfigError`` when mixed."""
        model, adapter = self.model.strip(), self.adapter.strip()
        url, api_model = self.url.strip(), self.api_model.strip()
        if url:
            return EngineSpec(
                model=api_model or model or None, base_url=url, adapters=(adapter,) * bool(adapter)
            )
        if not model:
            return None
        return EngineSpec(model=model, adapters=(adapter,) * bool(adapter), batch_size=1, workers=0)

    def label(self) -> str:
        """A short name for the slot's column header."""
        if self.url.strip():
            return f"{self.api_model.strip() or 'served model'} @ {self.url.strip()}"
        name = Path(self.model.strip()).name or self.model.strip()
        return f"{name} + {Path(self.adapter.strip()).name}" if self.adapter.strip() else name


class EnginePool:
    """Opened engines by spec, shared by every browser session; opened on first use."""

    def __init__(self, opener: Callable[[EngineSpec], Engine] = open_engine):
        self._opener = opener
        self._engines: dict[EngineSpec, Engine] = {}
        self._lock = threading.Lock()

    def get(self, spec: EngineSpec) -> Engine:
        """The engine of ``spec``, opening it (loading the model) the first time."""
        with self._lock:
            if spec not in self._engines:
                self._engines[spec] = self._opener(spec)
            return self._engines[spec]

    def close(self) -> None:
        """Close every engine (the app is shutting down)."""
        with self._lock:
            for engine in self._engines.values():
                engine.close()
            self._engines.clear()


_DONE = object()


def stream_together(jobs: list[Iterator[str] | None]) -> Iterator[list[str]]:
    """Run the streams side by side (one thread each) and yield every text so far after each
    piece. A stream that fails ends with ``⚠ <error>`` in its text; None slots stay empty."""
    texts = ["" for _ in jobs]
    pieces: queue.Queue = queue.Queue()

    def pump(index: int, job: Iterator[str]) -> None:
        try:
            for piece in job:
                pieces.put((index, piece))
        except Exception as exc:  # shown in that model's column; the other keeps going
            pieces.put((index, f"\n⚠ {' '.join(str(exc).split())}"))
        finally:
            pieces.put((index, _DONE))

    running = 0
    for index, job in enumerate(jobs):
        if job is not None:
            threading.Thread(target=pump, args=(index, job), daemon=True).start()
            running += 1
    while running:
        index, piece = pieces.get()
        if piece is _DONE:
            running -= 1
            continue
        texts[index] += piece
        yield list(texts)
    yield list(texts)


@dataclass
class Turns:
    """The turns of one model's conversation, as :class:`ChatSession` keeps them (plain data,
    so a browser session can hold it)."""

    turns: list[dict[str, Any]]

    def reply(
        self,
        engine: Engine,
        text: str,
        images: list[Path],
        settings: GenerationSettings,
        system: str | None = None,
        videos: list[tuple[Any, list[Any]]] | None = None,
        strips: list[Path] | None = None,
    ) -> Iterator[str]:
        """Stream the reply to ``text`` (with ``images`` and ``videos``, ``(VideoSpec,
        frames)`` pairs, attached; ``strips`` are the videos' pictures for the history); the
        turns grow only when the reply completes."""
        session = ChatSession(engine, settings, system=system or None)
        session.turns = [dict(turn) for turn in self.turns]
        session.pending = list(images)
        session.pending_videos = list(videos or [])
        yield from session.send(text)
        session.turns[-2]["strips"] = list(strips or [])  # the user turn just answered
        self.turns[:] = session.turns


def history(turns: list[dict[str, Any]], pending: str = "") -> list[dict[str, Any]]:
    """The Chatbot messages of ``turns`` (an image turn shows the picture the model got, a
    video turn a strip of its frames), plus a streaming assistant message ``pending``."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        for image in [*turn["images"], *turn.get("strips", ())]:
            messages.append({"role": turn["role"], "content": {"path": str(image)}})
        messages.append({"role": turn["role"], "content": turn["text"]})
    if pending:
        messages.append({"role": "assistant", "content": pending})
    return messages


def attach_image(
    upload: str | None, window: str, slice_index: int, axis: int, scratch: Path, counter: int
) -> Path | None:
    """The PNG to send for the uploaded file (rendered with ``window``/``slice_index``/``axis``),
    written into ``scratch``; None when nothing is uploaded. Raises ``ImageError``."""
    if not upload:
        return None
    image = render(upload, window, slice_index, axis)
    return save_png(image, scratch, f"upload-{counter:04d}")


def preview(upload: str | None, window: str, slice_index: int, axis: int) -> tuple[Any, str]:
    """(picture, one-line description) of the upload as the model will see it."""
    if not upload:
        return None, ""
    try:
        count = slice_count(upload, axis)
        index = min(int(slice_index), count - 1) if count > 1 else None
        image = render(upload, window, index, axis)
    except MedvlError as exc:
        return None, f"⚠ {exc}"
    kind = image_kind(upload)
    where = f" · slice {index} of 0..{count - 1}" if count > 1 else ""
    return image, f"{Path(upload).name}: {kind}, {image.width}x{image.height} px{where}"


def build_chat_tab(
    choices: tuple[ModelChoice, ModelChoice],
    settings: GenerationSettings,
    pool: EnginePool,
    scratch: Path,
) -> None:
    """The tab's components and events (call inside a ``gr.Tab`` of the app's ``gr.Blocks``)."""
    import gradio as gr

    turns_state = gr.State(None)  # ([turns A], [turns B], last image key, last video key)
    with gr.Row():
        with gr.Column(scale=1, min_width=280), gr.Tabs():
            with gr.Tab("Image", id="chat-image-tab"):
                upload = gr.File(
                    label="Image (PNG, JPEG, DICOM, NIfTI)", type="filepath", elem_id="chat-upload"
                )
                shown = gr.Image(
                    label="What the model sees", type="pil", interactive=False, height=260
                )
                info = gr.Markdown()
                window = gr.Dropdown(list(WINDOWS), value=WINDOWS[0], label="Window (DICOM/NIfTI)")
                with gr.Row():
                    slice_box = gr.Number(0, label="Slice / frame", precision=0, minimum=0)
                    axis = gr.Radio(
                        [("axial", 2), ("coronal", 1), ("sagittal", 0)],
                        value=2,
                        label="NIfTI plane",
                    )
            with gr.Tab("Volume (video)", id="chat-volume-tab"):
                volume = build_volume_panel(scratch)
        with gr.Column(scale=3):
            with gr.Row():
                bots = [
                    gr.Chatbot(
                        label=f"A: {choices[0].label() or '(no model)'}",
                        height=380,
                        elem_id="chat-a",
                    ),
                    gr.Chatbot(
                        label=f"B: {choices[1].label() or '(none: set one below)'}",
                        height=380,
                        elem_id="chat-b",
                    ),
                ]
            question = gr.Textbox(
                label="Question", placeholder="Ask about the image…", elem_id="chat-question"
            )
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="chat-send")
                clear = gr.Button("New conversation")
            with gr.Accordion("Models and generation", open=False):
                fields = []
                for slot, choice in zip("AB", choices, strict=True):
                    with gr.Row():
                        fields += [
                            gr.Textbox(choice.model, label=f"{slot}: model folder"),
                            gr.Textbox(choice.adapter, label=f"{slot}: adapter folder"),
                            gr.Textbox(choice.url, label=f"{slot}: OpenAI-compatible URL"),
                            gr.Textbox(choice.api_model, label=f"{slot}: served model name"),
                        ]
                with gr.Row():
                    max_new = gr.Slider(
                        1, 2048, value=settings.max_new_tokens, step=1, label="Max new tokens"
                    )
                    temperature = gr.Slider(
                        0.0,
                        1.5,
                        value=settings.temperature if settings.do_sample else 0.0,
                        step=0.05,
                        label="Temperature (0 = greedy)",
                    )
                    system = gr.Textbox(label="System prompt")
    image_inputs = [upload, window, slice_box, axis]
    for box in image_inputs:
        box.change(preview, image_inputs, [shown, info])

    def ask(state, prepared, text, upload, window, slice_index, axis, *rest):
        volume_values, (max_new, temperature, system), slots = rest[:6], rest[6:9], rest[9:]
        turns_a, turns_b, last_image, last_video = state or ([], [], None, None)
        if not (text or "").strip():
            raise gr.Error("type a question")
        picks = [ModelChoice(*slots[i : i + 4]) for i in (0, 4)]
        try:
            specs = [pick.spec() for pick in picks]
            if specs[0] is None and specs[1] is None:
                raise MedvlError("give model A a model folder or a URL (Models and generation)")
            engines = [pool.get(spec) if spec else None for spec in specs]
            key = (upload, window, int(slice_index or 0), int(axis)) if upload else None
            image = None
            if key is not None and key != last_image:
                count = slice_count(upload, int(axis))
                index = min(int(slice_index or 0), count - 1) if count > 1 else None
                image = attach_image(upload, window, index, int(axis), scratch, len(turns_a))
            video = video_for_turn(prepared, list(volume_values), scratch)
            if video is not None and video.key == last_video:
                video = None  # already in the conversation
            stem = f"volume-{len(turns_a):04d}"
            strips = [save_strip(video.frames, scratch, stem)] if video else []
        except MedvlError as exc:
            raise gr.Error(" ".join(str(exc).split())) from None
        gen = GenerationSettings.from_temperature(
            float(temperature), max_new_tokens=int(max_new), seed=settings.seed
        )
        images = [image] if image else []
        videos = [(video.spec, video.frames)] if video else []
        convs = [Turns(turns_a), Turns(turns_b)]
        jobs = [
            conv.reply(engine, text, images, gen, system, videos, strips) if engine else None
            for conv, engine in zip(convs, engines, strict=True)
        ]
        asked = {"role": "user", "text": text, "images": images, "strips": strips}
        before = [len(conv.turns) for conv in convs]
        texts = ["", ""]
        for texts in stream_together(jobs):
            shown = [
                history([*conv.turns[:n], asked], reply) if engine else []
                for conv, n, engine, reply in zip(convs, before, engines, texts, strict=True)
            ]
            yield (turns_a, turns_b, last_image, last_video), *shown, gr.update()
        done = [  # a failed reply stays on screen (with its error) but not in the turns
            history(conv.turns)
            if len(conv.turns) > n or not engine
            else history([*conv.turns, asked], reply)
            for conv, n, engine, reply in zip(convs, before, engines, texts, strict=True)
        ]
        if any(len(conv.turns) > n for conv, n in zip(convs, before, strict=True)):
            last_image = key or last_image  # sent: not attached again to the next question
            last_video = video.key if video else last_video
        yield (turns_a, turns_b, last_image, last_video), *done, ""  # cleared: the reply is done

    send_inputs = [turns_state, volume.prepared, question, *image_inputs, *volume.inputs]
    send_inputs += [max_new, temperature, system, *fields]
    outputs = [turns_state, *bots, question]
    send.click(ask, send_inputs, outputs)
    question.submit(ask, send_inputs, outputs)
    clear.click(lambda: (None, [], [], ""), None, outputs)
