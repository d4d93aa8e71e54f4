"""Images over HTTP: encoding them as data URLs, and decoding what a client sent, safely.

The OpenAI-client engine sends every image as a lossless PNG data URL made from
:func:`medvl.data.medimage.load_image`, so DICOM and NIfTI files reach any server as the same
RGB picture the local engine sees. The server accepts data URLs, and file paths only under an
allowed root folder; it fetches nothing from the network.

Memory is bounded before any pixel is decoded, because a 97 KB PNG can claim 9000x9000 pixels
(243 MB decoded): :class:`ImageLoader` reads every image's size from its header, refuses a
request whose images together exceed the per-request pixel budget, lets only a few requests
decode at once (a semaphore), decodes JPEGs at reduced size (``Image.draft``) and shrinks each
picture to the processor's pixel budget right after decoding, so what waits for the model is
never larger than what the model would see. Video frames sent as image URLs share the same
checks and budget; a volume path's sampled frames count against it once read
(:meth:`ImageLoader.load_all`).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from medvl.errors import MedvlError

_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+/-]*)(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,"
)
#: File suffixes for the MIME types a data URL may carry (anything else is tried as a raster).
_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "image/gif": ".gif",
    "application/dicom": ".dcm",
}


class ImageInputError(MedvlError):
    """An image in a request cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


def image_to_data_url(image: Any) -> str:
    """A ``data:image/png;base64,...`` URL of a path (any medical format) or a PIL image."""
    from PIL import Image

    from medvl.data.medimage import load_image

    picture = image.convert("RGB") if isinstance(image, Image.Image) else load_image(image)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


#: Default per-request pixel budget (sum over images, read from headers before decoding).
MAX_REQUEST_PIXELS = 40_000_000


@dataclass(frozen=True)
class ImageSource:
    """One request image before decoding: the file its bytes are in and its header size."""

    where: str
    label: str
    path: Path
    width: int
    height: int
    format: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


class ImageLoader:
    """Decodes a request's images within the server's memory limits.

    ``max_request_pixels`` bounds the sum of header sizes per request (checked before decoding);
    ``target_pixels`` is the processor's pixel budget, the size every picture is shrunk to;
    ``max_concurrent`` requests decode at once, the others wait.
    """

    def __init__(
        self,
        *,
        image_root: Path | None = None,
        max_request_pixels: int = MAX_REQUEST_PIXELS,
        target_pixels: int | None = None,
        max_concurrent: int = 2,
    ):
        self.image_root = image_root
        self.max_request_pixels = max_request_pixels
        self.target_pixels = target_pixels
        self._slots = threading.BoundedSemaphore(max(1, max_concurrent))

    def load(self, images: Sequence[tuple[str, Any]]) -> list[Any]:
        """RGB pictures for ``(where, url)`` pairs; :class:`ImageInputError` names ``where``."""
        return self.load_all(images, [])[0]

    def load_all(
        self, images: Sequence[tuple[str, Any]], videos: Sequence[Any]
    ) -> tuple[list[Any], list[list[Any]]]:
        """The request's pictures and, per video (a
        :class:`~medvl.infer.video_media.VideoSource`), its frames.

        Images and frame-list frames share one pixel budget, checked from headers before any
        decoding; a volume path (under the image root) is read with its own sampling, and its
        decoded frames count against the same budget before they are kept."""
        frames = [
            (f"{video.where}.frames[{i}]", url)
            for video in videos
            if video.path is None
            for i, url in enumerate(video.frames)
        ]
        if not images and not frames and not videos:
            return [], []
        with tempfile.TemporaryDirectory(prefix="medvl-img-") as folder:
            sources = [
                self._source(where, url, Path(folder) / str(i))
                for i, (where, url) in enumerate([*images, *frames])
            ]
            self._check_pixels(sum(s.pixels for s in sources), sources)
            volumes = {id(v): self._volume_spec(v) for v in videos if v.path}
            with self._slots:  # volumes first: their pixels are known only once read
                read = {id(v): self._read_volume(v, volumes[id(v)]) for v in videos if v.path}
                total = sum(s.pixels for s in sources)
                total += sum(f.width * f.height for fs in read.values() for f in fs)
                self._check_pixels(total, sources)
                decoded = [self._decode(source) for source in sources]
        pictures, rest = decoded[: len(images)], iter(decoded[len(images) :])
        clips = [
            [self._shrink(f) for f in read[id(v)]] if v.path else [next(rest) for _ in v.frames]
            for v in videos
        ]
        return pictures, clips

    def _check_pixels(self, total: int, sources: Sequence[ImageSource]) -> None:
        if total <= self.max_request_pixels:
            return
        sizes = ", ".join(f"{s.width}x{s.height}" for s in sources[:4])
        more = ", ..." if len(sources) > 4 else ""
        raise ImageInputError(
            f"the request's images and video frames ({sizes}{more}) hold {total:,} "
            f"pixels, above this server's limit of {self.max_request_pixels:,} pixels per "
            "request (medvl serve --max-request-pixels); downscale the images or send "
            "fewer per request"
        )

    def _volume_spec(self, video: Any) -> Any:
        """The record entry for a video part's local path (under the image root only)."""
        from medvl.infer.video_media import VideoInputError, video_spec

        try:
            path, _ = _locate(video.path, self.image_root, Path("/nonexistent"))
            return video_spec(path, video.options)
        except ImageInputError as exc:
            raise ImageInputError(f"{video.where}: {exc}", exc.status) from None
        except VideoInputError as exc:
            raise ImageInputError(f"{video.where}: {exc}") from None

    def _read_volume(self, video: Any, spec: Any) -> list[Any]:
        from medvl.data.volumes import load_frames

        try:
            return load_frames(spec, "/")
        except MedvlError as exc:
            raise ImageInputError(f"{video.where}: {exc}") from None

    def _source(self, where: str, url: Any, spill: Path) -> ImageSource:
        from medvl.data.images import image_header
        from medvl.data.medimage import ImageError

        try:
            path, label = _locate(url, self.image_root, spill)
        except ImageInputError as exc:
            raise ImageInputError(f"{where}: {exc}", exc.status) from None
        try:
            header = image_header(path)
        except ImageError as exc:
            raise ImageInputError(f"{where}: {label} cannot be used: {exc.detail}") from None
        return ImageSource(where, label, path, header.width, header.height, header.format)

    def _decode(self, source: ImageSource) -> Any:
        from medvl.data.medimage import ImageError, load_image

        try:
            if source.format == "JPEG" and self._scale(source.pixels) < 1:
                picture = _draft_jpeg(source.path, self._scale(source.pixels))
            else:
                picture = load_image(source.path)
        except ImageError as exc:
            raise ImageInputError(
                f"{source.where}: {source.label} cannot be decoded: {exc.detail}"
            ) from None
        return self._shrink(picture)

    def _scale(self, pixels: int) -> float:
        if not self.target_pixels or pixels <= self.target_pixels:
            return 1.0
        return math.sqrt(self.target_pixels / pixels)

    def _shrink(self, picture: Any) -> Any:
        """The picture scaled down to the processor's pixel budget (aspect ratio kept)."""
        from PIL import Image

        scale = self._scale(picture.width * picture.height)
        if scale >= 1:
            return picture
        size = (max(1, int(picture.width * scale)), max(1, int(picture.height * scale)))
        return picture.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _draft_jpeg(path: Path, scale: float) -> Any:
    """A JPEG decoded at 1/2, 1/4 or 1/8 size (DCT scaling), never below ``scale``."""
    from PIL import Image, ImageOps

    from medvl.data.medimage import pil_error

    try:
        with Image.open(path) as image:
            wanted = (math.ceil(image.width * scale), math.ceil(image.height * scale))
            image.draft("RGB", wanted)
            image.load()
            return ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:
        raise pil_error(path, exc) from exc


def _locate(url: Any, image_root: Path | None, spill: Path) -> tuple[Path, str]:
    """The file an ``image_url`` names (a data URL is written to ``spill``) and its label."""
    if not isinstance(url, str) or not url:
        raise ImageInputError("image_url.url must be a non-empty string")
    if url.startswith("data:"):
        return _spill_data_url(url, spill), "image data URL"
    scheme = urlparse(url).scheme.lower()
    if scheme in ("http", "https", "ftp"):
        raise ImageInputError(
            "remote image URLs are not fetched (the server has no network access); send the "
            "image as a data URL (data:image/png;base64,...)"
        )
    if scheme not in ("", "file") and not re.match(r"^[A-Za-z]:[\\/]", url):
        raise ImageInputError(f"unsupported image URL scheme {scheme!r}; send a data URL")
    path_text = unquote(urlparse(url).path) if scheme == "file" else url
    return _under_root(path_text, image_root), f"image {path_text!r}"


def _spill_data_url(url: str, spill: Path) -> Path:
    match = _DATA_URL.match(url)
    if not match or not match.group("b64"):
        raise ImageInputError("image data URL must look like data:image/png;base64,<data>")
    try:
        data = base64.b64decode(url[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError("image data URL is not valid base64") from None
    spill.mkdir()
    path = spill / f"image{_SUFFIXES.get(match.group('mime').lower(), '.img')}"
    path.write_bytes(data)
    return path


def _under_root(path_text: str, image_root: Path | None) -> Path:
    if image_root is None:
        raise ImageInputError(
            "image file paths are refused: the server was started without an image root "
            "(medvl serve --image-root DIR); send a data URL instead",
            status=403,
        )
    root = Path(image_root).resolve()
    candidate = Path(path_text)
    path = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not path.is_relative_to(root):
        raise ImageInputError(f"image path {path_text!r} is outside the allowed root", status=403)
    return path


def decode_image_url(url: str, *, image_root: Path | None = None) -> Any:
    """The RGB picture one ``image_url`` names (data URL, or a path under ``image_root``)."""
    [picture] = ImageLoader(image_root=image_root).load([("image_url", url)])
    return picture
