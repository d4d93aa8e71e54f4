"""A bounded cache of processed image pixels, shared by every HF engine in the process.

Evaluation runs the same images through several prompts and several models (a base model and
its fine-tuned versions are usually of one family, with one image processor). Decoding a PNG,
DICOM or NIfTI file and resizing, normalising and patching it costs about as much as a short
generation on a small model, and its result depends only on the file and the image processor's
settings. So the HF engine keeps, per image file, what the processor makes of it
(``pixel_values`` and ``image_grid_thw``) and, on a second prompt or second model over the same
images, skips decoding and resizing: it expands the prompt's image placeholders itself and
runs only the tokenizer.

* **Key**: the file's resolved path, modification time (ns) and size, plus a digest of the image
  processor's settings (its ``to_dict()``: class, patch/merge size, min/max pixels, mean, std).
  A rewritten file or a processor with other settings misses; two models of one family with
  default settings share entries. In-memory images (the server's base64 uploads) are not cached.
* **Exact**: a request's inputs equal ``processor(text=[prompt], images=images)``: the Qwen-VL
  processors process images one by one and concatenate them, replace each ``<|image_pad|>`` by
  ``grid_t * grid_h * grid_w / merge_size**2`` copies, tokenize, and mark image tokens in
  ``mm_token_type_ids``, which is what :func:`encode_cached` does. The first request of each
  processor setting is also run through the processor and compared tensor by tensor; on any
  difference (another transformers release) the cache stays off for that setting, with a
  warning. tests/integration/test_image_cache.py compares every tensor on all three families,
  and the predictions with and without the cache.
* **Bounded**: least-recently-used entries are dropped once the stored tensors exceed
  ``MEDVL_IMAGE_CACHE_MB`` MiB (default :data:`DEFAULT_CACHE_MB`; 0 turns the cache off). Pixels
  are kept as the processor returns them (fp32, 1,176 values per 14-px patch): a phantom image
  (~120 patches) takes ~0.6 MiB, a 1,000 x 1,000 radiograph at Qwen2-VL's default pixel budget
  (~5,200 patches) ~23 MiB. A benchmark whose images do not all fit gets no hits on its next
  pass (LRU over a cyclic scan): raise the bound to cover them.
* **Thread-safe**: images are prepared in a thread pool; one lock guards the table. Two threads
  that miss on the same image both compute it (no waiting on each other), and the second store
  wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: Default bound of the process-wide cache, in MiB (env ``MEDVL_IMAGE_CACHE_MB`` overrides).
DEFAULT_CACHE_MB = 2048
#: The per-image tensors the cache keeps.
IMAGE_KEYS = ("pixel_values", "image_grid_thw")

Features = dict[str, torch.Tensor]


class ProcessedImageCache:
    """An LRU table from (file, processor settings) to processed image tensors, bounded in bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._entries: OrderedDict[tuple, Features] = OrderedDict()
        self._sizes: dict[tuple, int] = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._verdicts: dict[str, bool] = {}  # settings digest -> cached inputs match the processor

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> Features | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: tuple, features: Features) -> None:
        size = sum(t.numel() * t.element_size() for t in features.values())
        if size > self.max_bytes:
            return  # larger than the whole cache: keeping it would evict everything else
        with self._lock:
            if key in self._entries:
                self.bytes -= self._sizes.pop(key)
                del self._entries[key]
            self._entries[key] = features
            self._sizes[key] = size
            self.bytes += size
            while self.bytes > self.max_bytes:
                old, _ = self._entries.popitem(last=False)
                self.bytes -= self._sizes.pop(old)

    def checked(self, digest: str) -> bool:
        """Whether requests of these processor settings were already compared with the
        processor (see :func:`encode_cached`)."""
        return digest in self._verdicts

    def usable(self, digest: str) -> bool:
        """False once cached inputs of these settings differed from the processor's."""
        return self._verdicts.get(digest, True)

    def accept(self, digest: str) -> None:
        self._verdicts[digest] = True

    def refuse(self, digest: str) -> None:
        self._verdicts[digest] = False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
            self._verdicts.clear()
            self.bytes = self.hits = self.misses = 0

    def stats(self) -> dict[str, int]:
        return {"entries": len(self), "bytes": self.bytes, "hits": self.hits, "misses": self.misses}


def _default_bytes() -> int:
    raw = os.environ.get("MEDVL_IMAGE_CACHE_MB", "").strip()
    try:
        mib = float(raw) if raw else DEFAULT_CACHE_MB
    except ValueError:
        mib = DEFAULT_CACHE_MB
    return int(mib * 1024 * 1024)


_SHARED: ProcessedImageCache | None = None
_SHARED_LOCK = threading.Lock()


def shared_cache() -> ProcessedImageCache:
    """The process-wide cache (created on first use, sized from ``MEDVL_IMAGE_CACHE_MB``)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = ProcessedImageCache(_default_bytes())
        return _SHARED


def settings_digest(processor: Any) -> str | None:
    """A digest of the image processor's settings; None when the processor cannot be cached
    (no image processor, no ``merge_size``, or no image placeholder token)."""
    image_processor = getattr(processor, "image_processor", None)
    token = getattr(processor, "image_token", None)
    if image_processor is None or not token or not getattr(image_processor, "merge_size", None):
        return None
    try:
        settings = image_processor.to_dict()
    except Exception:  # an image processor that cannot describe itself is not cached
        return None
    body = json.dumps(
        {"class": type(image_processor).__name__, "settings": settings},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def file_key(path: str | Path) -> tuple[str, int, int]:
    """The file's resolved path, modification time (ns) and size: changes when it is rewritten."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return (str(resolved), stat.st_mtime_ns, stat.st_size)


def encode_cached(
    processor: Any,
    prompt: str,
    images: Sequence[Any],
    cache: ProcessedImageCache,
    digest: str,
) -> dict[str, Any]:
    """The model inputs ``processor(text=[prompt], images=images)`` would return, with each
    image file's processed pixels taken from (or added to) ``cache``."""
    from PIL import Image

    from medvl.data.medimage import load_image

    token = processor.image_token
    if prompt.count(token) != len(images) or not cache.usable(digest):  # the processor's way
        loaded = [_as_image(image, load_image, Image) for image in images]
        return dict(processor(text=[prompt], images=loaded or None, return_tensors="pt"))
    parts: list[Features] = []
    for image in images:
        key = None if isinstance(image, Image.Image) else _key(digest, image)
        features = cache.get(key) if key is not None else None
        if features is None:
            pil = _as_image(image, load_image, Image)
            out = processor.image_processor(images=[pil], return_tensors="pt")
            features = {name: out[name] for name in IMAGE_KEYS}
            if key is not None:
                cache.put(key, features)
        parts.append(features)
    merge = int(processor.image_processor.merge_size) ** 2
    pieces = prompt.split(token)
    text = pieces[0]
    for features, rest in zip(parts, pieces[1:], strict=True):
        count = int(features["image_grid_thw"][0].prod()) // merge
        text += token * count + rest
    encoded: dict[str, Any] = dict(processor.tokenizer([text], return_tensors="pt"))
    if getattr(processor, "return_mm_token_type_ids", False):
        ids = encoded["input_ids"]
        types = processor.create_mm_token_type_ids(ids.tolist())
        encoded["mm_token_type_ids"] = torch.tensor(types, dtype=ids.dtype)
    if parts:
        for name in IMAGE_KEYS:
            encoded[name] = torch.cat([p[name] for p in parts], dim=0)
    if not cache.checked(digest):  # first request of these settings: compare with the processor
        loaded = [_as_image(image, load_image, Image) for image in images]
        expected = dict(processor(text=[prompt], images=loaded or None, return_tensors="pt"))
        if not _same(encoded, expected):
            cache.refuse(digest)
            logger.warning(
                "processed-image cache off for %s: its inputs differ from the processor's "
                "(transformers %s); images are processed per request",
                type(processor).__name__,
                _transformers_version(),
            )
        else:
            cache.accept(digest)
        return expected
    return encoded


def _same(got: dict[str, Any], expected: dict[str, Any]) -> bool:
    if set(got) != set(expected):
        return False
    return all(
        torch.is_tensor(got[k]) and torch.is_tensor(v) and torch.equal(got[k], v)
        for k, v in expected.items()
    )


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _key(digest: str, path: Any) -> tuple | None:
    try:
        return (digest, *file_key(path))
    except (OSError, TypeError, ValueError):  # unreadable: load_image raises its own message
        return None


def _as_image(image: Any, load_image: Any, image_module: Any) -> Any:
    if isinstance(image, image_module.Image):
        return image.convert("RGB")
    return load_image(image)
