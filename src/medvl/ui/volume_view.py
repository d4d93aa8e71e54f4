"""Volumes in the workbench: a CT/MRI volume, DICOM series or slice folder as the frames a model
gets as video input, and a slice scroller to look at them.

The Chat tab takes a volume three ways (:func:`volume_source`): one uploaded NIfTI file (or one
multi-frame DICOM file), several uploaded files of one DICOM series or slice images (gathered
into one scratch folder), a zip of a series or slice folder (unpacked into a scratch folder),
or a path typed in (a file or folder on the machine running the app). :func:`prepare_video`
turns it into the record entry ``medvl chat``'s ``/volume`` builds
(:func:`medvl.infer.video_media.video_spec`: ``n`` frames along ``axis`` with ``window``) and
reads the frames through the one reader every command uses
(:func:`medvl.data.volumes.read_video`), so the scroller shows exactly the frames the engine is
sent. The Results and Data tabs show a record's images and video frames the same way
(:func:`record_media`).

Everything but :func:`build_scroller` is plain Python, tested without a browser.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from medvl.data.record import Record
from medvl.data.video import VideoSpec
from medvl.data.volumes import AXIS_ORDER, VideoFrames, read_video, sample_indices
from medvl.errors import MedvlError
from medvl.infer.engine import load_video
from medvl.infer.video_media import DEFAULT_FRAMES, VideoInputError, options_from, video_spec
from medvl.ui.pictures import PREVIEW_SIDE, picture, window_arg

#: Most frames the Chat tab's ``n`` control offers (each two frames cost one temporal patch).
MAX_FRAMES = 64
STRIP_HEIGHT = 96
STRIP_FRAMES = 8
#: An uploaded volume (a zip's unpacked members, or several files) is refused above these: a
#: zip bomb, or not one series. A bigger volume is read in place from a typed path.
_MAX_BYTES = 2 << 30
_MAX_FILES = 20_000


@dataclass
class PreparedVideo:
    """A volume ready to send: its record entry, the frames the model gets (full size) and one
    caption per frame; ``key`` names the inputs it was made from."""

    key: tuple[Any, ...]
    spec: VideoSpec
    frames: list[Image.Image]
    captions: list[str]
    summary: str


def video_key(
    files: list[str] | None, path_text: str | None, n: int, axis: str, window: str, uid: str
) -> tuple[Any, ...] | None:
    """What identifies the Chat tab's volume inputs; None when no volume is given."""
    files = [str(f) for f in files or []]
    text = (path_text or "").strip()
    if not files and not text:
        return None
    return (tuple(files), text, int(n), axis, window or "", (uid or "").strip())


def volume_source(files: list[str] | None, path_text: str | None, scratch: Path) -> Path | None:
    """The volume file or series/slice folder behind the inputs (None when none is given).

    Uploads win over a typed path. One file is used as is, unless it is a zip (unpacked into
    ``scratch``); several files are linked (or copied) into one ``scratch`` folder (their
    upload names kept), so a series uploaded file by file reads as one folder. Either is done
    once per upload and refused above :data:`_MAX_FILES` files or :data:`_MAX_BYTES`."""
    files = [Path(f) for f in files or []]
    if not files:
        text = (path_text or "").strip()
        if not text:
            return None
        path = Path(text).expanduser()
        if not path.exists():
            raise VideoInputError(f"{path}: no such file or folder on this machine")
        return path
    folder = Path(scratch) / f"volume-{_digest(files)}"
    if len(files) == 1 and zipfile.is_zipfile(files[0]):
        return _unzip(files[0], folder)
    if len(files) == 1:
        return files[0]
    return _gather(files, folder)


def _digest(files: list[Path]) -> str:
    text = "\n".join(str(f) for f in files)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _unzip(archive: Path, folder: Path) -> Path:
    """Unpack ``archive`` into ``folder`` (members that would land outside it are refused) and
    return the volume: the only file, or the innermost folder holding more than one folder."""
    if folder.is_dir():  # unpacked by an earlier call (the panel re-reads on every change)
        return _volume_root(folder)
    with zipfile.ZipFile(archive) as zipped:
        members = [m for m in zipped.infolist() if not m.is_dir()]
        if not members:
            raise VideoInputError(f"{archive.name}: the zip is empty; zip the series folder")
        _check_size(archive.name, len(members), sum(m.file_size for m in members))
        root = folder.resolve()
        for member in members:
            target = (folder / member.filename).resolve()
            if not target.is_relative_to(root):
                raise VideoInputError(f"{archive.name}: member {member.filename!r} leaves the zip")
        _fill_atomically(folder, archive.name, lambda part: zipped.extractall(part, members))
    return _volume_root(folder)


def _gather(files: list[Path], folder: Path) -> Path:
    """``files`` (one upload each) linked, or copied, into ``folder`` under their own names."""
    if folder.is_dir():  # gathered by an earlier call (the panel re-reads on every change)
        return folder
    _check_size(f"{len(files)} uploaded files", len(files), sum(f.stat().st_size for f in files))
    seen: set[str] = set()
    for file in files:
        if file.name in seen:
            raise VideoInputError(
                f"two uploaded files are named {file.name}; upload the series as a zip instead"
            )
        seen.add(file.name)

    def fill(part: Path) -> None:
        for file in files:
            try:
                os.link(file, part / file.name)  # no second copy of a large series
            except OSError:
                shutil.copyfile(file, part / file.name)

    _fill_atomically(folder, "the uploaded files", fill)
    return folder


def _check_size(what: str, count: int, size: int) -> None:
    """Refuse a volume upload of more than :data:`_MAX_FILES` files or :data:`_MAX_BYTES`."""
    if count > _MAX_FILES:
        raise VideoInputError(
            f"{what}: {count} files, more than {_MAX_FILES} (one series is fewer); "
            "give the series folder as a path instead"
        )
    if size > _MAX_BYTES:
        raise VideoInputError(
            f"{what}: {size / 2**30:.1f} GiB, more than {_MAX_BYTES >> 30} GiB; "
            "give the volume as a path instead"
        )


def _fill_atomically(folder: Path, what: str, fill: Any) -> None:
    """Run ``fill(part)`` on a fresh sibling folder, then rename it to ``folder``: a failed or
    interrupted fill (a full disk) never leaves a half-filled ``folder`` a later call would
    take for the whole volume."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", suffix=".part", dir=folder.parent))
    try:
        fill(part)
        part.rename(folder)
    except OSError as exc:
        shutil.rmtree(part, ignore_errors=True)
        if folder.is_dir():  # a concurrent call filled it first
            return
        raise VideoInputError(
            f"{what}: could not be unpacked into {folder.parent} ({exc}); "
            "free disk space or give a path"
        ) from None


def _volume_root(folder: Path) -> Path:
    """Descend through folders holding one entry only (``scan.zip`` -> ``scan/`` -> files)."""
    entries = [e for e in folder.iterdir() if not e.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1:
        return _volume_root(entries[0]) if entries[0].is_dir() else entries[0]
    return folder


def prepare_video(
    source: Path, n: int, axis: str, window: str | None, uid: str | None, key: tuple[Any, ...]
) -> PreparedVideo:
    """Read ``n`` frames of ``source`` along ``axis`` with ``window`` (a choice of
    :data:`medvl.ui.pictures.WINDOWS`), as ``/volume`` in ``medvl chat`` does. Raises
    :class:`MedvlError` naming the path and the fix."""
    values: dict[str, Any] = {"n": n, "axis": axis}
    if window_arg(window):
        values["window"] = window_arg(window)
    if uid and uid.strip():
        values["uid"] = uid.strip()
    spec = video_spec(source, options_from(values))
    base = source.parent if source.is_file() else source
    read = read_video(spec, base)
    frames = load_video(read.frames)  # one size for all frames, as the engines require
    captions = frame_captions(spec, read)
    return PreparedVideo(key, spec, frames, captions, video_summary(source, spec, read))


def frame_captions(spec: VideoSpec, read: VideoFrames) -> list[str]:
    """One line per frame: its place in the video and where it lies in the volume."""
    total = len(read.indices)
    lines = []
    for position, index in enumerate(read.indices):
        line = f"frame {position + 1} of {total}"
        if spec.frames is not None:
            line += f" · {Path(spec.frames[position]).name}"
        else:
            line += f" · {spec.axis} slice {index} of 0..{read.count - 1}"
            if read.spacing_mm:
                line += f" · {index * read.spacing_mm:.1f} mm from the first"
        lines.append(line)
    return lines


def video_summary(source: Path, spec: VideoSpec, read: VideoFrames) -> str:
    """A Markdown line: what was read, how many frames of how many slices, and any warning."""
    first = read.frames[0] if read.frames else None
    size = f", {first.width}x{first.height} px" if first else ""
    if spec.frames is not None:
        text = f"`{source.name}`: {len(read.indices)} slice images{size}"
    else:
        order = f"{spec.axis}, {AXIS_ORDER[spec.axis]}"
        text = f"`{source.name}`: {len(read.indices)} of {read.count} slices ({order}){size}"
        if read.spacing_mm:
            text += f", {read.spacing_mm:.2f} mm apart"
    if read.order_rule:
        text += f", ordered by {read.order_rule}"
    return "\n\n".join([text, *(f"⚠ {w}" for w in read.warnings)])


def save_strip(frames: list[Image.Image], folder: Path, stem: str) -> Path:
    """A PNG contact strip of up to :data:`STRIP_FRAMES` evenly spaced frames, for the chat
    history (the conversation shows which volume a question was about)."""
    picked = evenly(frames, STRIP_FRAMES)
    tiles = []
    for frame in picked:
        tile = frame.convert("RGB")
        width = max(1, round(tile.width * STRIP_HEIGHT / tile.height))
        tiles.append(tile.resize((width, STRIP_HEIGHT), Image.Resampling.BILINEAR))
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 2 * (len(tiles) - 1), STRIP_HEIGHT))
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + 2
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.png"
    strip.save(path, format="PNG")
    return path


def evenly(items: list[Any], count: int) -> list[Any]:
    """``count`` items evenly spaced over ``items``, first and last included (all if fewer):
    the rule of a volume's ``sample.n`` (:func:`medvl.data.volumes.sample_indices`)."""
    if not items:
        return []
    return [items[i] for i in sample_indices(len(items), None, {"n": count})]


def record_media(
    record: Record, base_dir: Path, side: int = PREVIEW_SIDE, with_images: bool = True
) -> list[Any]:
    """``(picture, caption)`` for each image of ``record`` that can be read (unless
    ``with_images`` is False), then each frame of each video; a video that cannot be read
    gives ``(None, why)``."""
    items: list[Any] = []
    images = record.image_paths(base_dir) if with_images else []
    for i, path in enumerate(images):
        shown = picture(path, side) if path.is_file() else None
        if shown is not None:
            items.append((shown, f"image {i + 1} of {len(images)} · {path.name}"))
    for v, spec in enumerate(record.videos):
        label = f"video {v + 1} of {len(record.videos)}"
        try:
            read = read_video(spec, base_dir)
        except (MedvlError, OSError, ValueError) as exc:
            items.append((None, f"{label}: ⚠ {' '.join(str(exc).split())}"))
            continue
        for frame, caption in zip(read.frames, frame_captions(spec, read), strict=True):
            frame.thumbnail((side, side))
            items.append((frame, f"{label} · {caption}"))
    return items


def scroll(items: list[Any], index: int | float | None) -> tuple[Any, str]:
    """The picture and caption of item ``index`` (clamped); ``(None, "")`` without items."""
    if not items:
        return None, ""
    item = items[max(0, min(int(index or 0), len(items) - 1))]
    return item[0], item[1]


def scroller_updates(items: list[Any], hide_empty: bool = False) -> tuple[Any, ...]:
    """The outputs of a scroller (:func:`build_scroller`) showing ``items`` from the first:
    state, slider, picture, caption. The slider shows only for more than one item; the
    picture is hidden without items when ``hide_empty``."""
    import gradio as gr

    image, caption = scroll(items, 0)
    slider = gr.update(minimum=0, maximum=max(1, len(items) - 1), value=0, visible=len(items) > 1)
    picture_update = gr.update(value=image, visible=bool(items) or not hide_empty)
    return items, slider, picture_update, caption


def build_scroller(label: str, elem_id: str, height: int = 300, visible: bool = True) -> list[Any]:
    """A picture with a slider under it that steps through a list of ``(picture, caption)``
    (call inside a ``gr.Blocks``); returns ``[state, slider, picture, caption]``, the outputs
    :func:`scroller_updates` fills."""
    import gradio as gr

    state = gr.State([])
    image = gr.Image(label=label, type="pil", interactive=False, height=height, visible=visible)
    slider = gr.Slider(0, 1, value=0, step=1, label="Slice / frame", visible=False, elem_id=elem_id)
    caption = gr.Markdown(elem_id=f"{elem_id}-caption")
    slider.change(scroll, [state, slider], [image, caption], show_progress="hidden")
    return [state, slider, image, caption]


def preview_items(video: PreparedVideo, side: int = PREVIEW_SIDE) -> list[Any]:
    """``(picture, caption)`` per frame of ``video``, shrunk to ``side`` for the scroller."""
    items = []
    for frame, caption in zip(video.frames, video.captions, strict=True):
        shown = frame.copy()
        shown.thumbnail((side, side))
        items.append((shown, caption))
    return items


@dataclass
class VolumePanel:
    """The Chat tab's volume inputs (``files, path, n, axis, window, uid``) and the state
    holding the :class:`PreparedVideo` they make (None when there is none)."""

    inputs: list[Any]
    prepared: Any


def build_volume_panel(scratch: Path) -> VolumePanel:
    """The Chat tab's volume inputs with their slice scroller (call inside a ``gr.Blocks``)."""
    import gradio as gr

    from medvl.data.video import AXES
    from medvl.ui.pictures import WINDOWS

    files = gr.File(
        label="Volume: NIfTI, DICOM series files, or a zip",
        file_count="multiple",
        type="filepath",
        height=110,
        elem_id="chat-volume",
    )
    scroller = build_scroller("Frames the model gets", "chat-scroller", height=220)
    summary = gr.Markdown(elem_id="chat-volume-info")
    path = gr.Textbox(
        label="… or a volume file / series folder on this machine (Enter)",
        elem_id="chat-volume-path",
    )
    with gr.Row():
        n = gr.Slider(1, MAX_FRAMES, value=DEFAULT_FRAMES, step=1, label="Frames (n)")
        window = gr.Dropdown(list(WINDOWS), value=WINDOWS[0], label="Window")
    with gr.Row():
        axis = gr.Radio(list(AXES), value=AXES[0], label="Axis")
        uid = gr.Textbox(label="Series UID (if several)")
    prepared = gr.State(None)

    def refresh(files, path_text, n, axis, window, uid):
        key = video_key(files, path_text, n, axis, window, uid)
        if key is None:
            return None, *scroller_updates([]), ""
        try:
            source = volume_source(files, path_text, scratch)
            video = prepare_video(source, int(n), axis, window, uid, key)
        except MedvlError as exc:
            return None, *scroller_updates([]), f"⚠ {' '.join(str(exc).split())}"
        return video, *scroller_updates(preview_items(video)), video.summary

    inputs = [files, path, n, axis, window, uid]
    outputs = [prepared, *scroller, summary]
    for event in (files.change, path.submit, path.blur, n.release, axis.change, window.change):
        event(refresh, inputs, outputs)
    uid.submit(refresh, inputs, outputs)
    return VolumePanel(inputs, prepared)


def video_for_turn(
    prepared: PreparedVideo | None, values: list[Any], scratch: Path
) -> PreparedVideo | None:
    """The video to attach for the volume inputs ``values`` (``files, path, n, axis, window,
    uid``): the prepared one when it was made from them, else read now; None without inputs."""
    key = video_key(*values)
    if key is None:
        return None
    if prepared is not None and prepared.key == key:
        return prepared
    files, path_text, n, axis, window, uid = values
    return prepare_video(volume_source(files, path_text, scratch), int(n), axis, window, uid, key)
