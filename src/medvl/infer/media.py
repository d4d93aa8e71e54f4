"""Images over HTTP: encoding them as data URLs, and decoding what a client sent, safely.

The OpenAI-client engine sends every image as a lossless PNG data URL made from
:func:`medvl.data.medimage.load_image`, so DICOM and NIfTI files reach any server as the same
RGB picture the local engine sees. The server accepts data URLs, and file paths only under an
allowed root folder; it fetches nothing from the network.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import tempfile
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


def decode_image_url(url: str, *, image_root: Path | None = None) -> Any:
    """The RGB picture a request's ``image_url`` names: a data URL, or a path under the root."""
    if not isinstance(url, str) or not url:
        raise ImageInputError("image_url.url must be a non-empty string")
    if url.startswith("data:"):
        return _decode_data_url(url)
    scheme = urlparse(url).scheme.lower()
    if scheme in ("http", "https", "ftp"):
        raise ImageInputError(
            "remote image URLs are not fetched (the server has no network access); send the "
            "image as a data URL (data:image/png;base64,...)"
        )
    if scheme not in ("", "file") and not re.match(r"^[A-Za-z]:[\\/]", url):
        raise ImageInputError(f"unsupported image URL scheme {scheme!r}; send a data URL")
    return _load_local(unquote(urlparse(url).path) if scheme == "file" else url, image_root)


def _decode_data_url(url: str) -> Any:
    from medvl.data.medimage import load_image

    match = _DATA_URL.match(url)
    if not match or not match.group("b64"):
        raise ImageInputError("image data URL must look like data:image/png;base64,<data>")
    try:
        data = base64.b64decode(url[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError("image data URL is not valid base64") from None
    suffix = _SUFFIXES.get(match.group("mime").lower(), ".img")
    with tempfile.TemporaryDirectory(prefix="medvl-img-") as folder:
        path = Path(folder) / f"image{suffix}"
        path.write_bytes(data)
        try:
            return load_image(path)
        except MedvlError as exc:
            detail = getattr(exc, "detail", str(exc))
            raise ImageInputError(f"image data URL cannot be decoded: {detail}") from None


def _load_local(path_text: str, image_root: Path | None) -> Any:
    from medvl.data.medimage import load_image

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
    try:
        return load_image(path)
    except MedvlError as exc:
        detail = getattr(exc, "detail", str(exc))
        raise ImageInputError(f"image {path_text!r} cannot be read: {detail}") from None
