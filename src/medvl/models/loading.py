"""Loading a Qwen-VL model for inference: base weights, LoRA adapters, processor, dtype, device.

One function, :func:`load_model`, does what every command that uses a model needs:

* ``model`` is a model folder or hub id; a folder holding only a peft adapter works too (its
  ``adapter_config.json`` names the base model);
* adapters load with peft, in order; all but the last are merged into the weights first, so an
  adapter trained on top of an earlier (merged) stage applies as it was trained;
* the processor comes from the last adapter folder when training saved one there (its chat
  template and pixel budget are the ones the adapter learned with), else from the base;
* weights load from safetensors only (a pickle file can run code), and ``trust_remote_code``
  stays off unless asked for;
* ``dtype="auto"`` is float32 on CPU and bfloat16 on CUDA (float16 where bf16 is missing);
  4-bit and 8-bit loading (bitsandbytes) need CUDA.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvl.errors import ConfigError, MedvlError
from medvl.models.processing import check_pixel_range, set_pixel_budgets
from medvl.models.registry import FamilySpec, detect_family

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DTYPE_NAMES = {
    "fp32": "float32",
    "float32": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
}
QUANTIZATIONS = ("4bit", "8bit")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
_FULL_HASH_LIMIT = 512 * 2**20  # adapter files up to this size are hashed whole


class ModelLoadError(MedvlError):
    """A model, adapter or processor cannot be loaded; the message names the path and the fix."""


@dataclass(frozen=True)
class LoadOptions:
    """How to load: precision, device, attention kernel, pixel budgets, quantization."""

    dtype: str = field(default="auto", metadata={"help": "auto, fp32, bf16 or fp16"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa, eager, flash_attention_2 (default: transformers')"}
    )
    min_pixels: int | None = field(default=None, metadata={"help": "smallest image area, px"})
    max_pixels: int | None = field(default=None, metadata={"help": "largest image area, px"})
    video_min_pixels: int | None = field(default=None, metadata={"help": "smallest frame, px"})
    video_max_pixels: int | None = field(
        default=None, metadata={"help": "largest frame area, px (Qwen3-VL: of all frames)"}
    )
    quantization: str | None = field(default=None, metadata={"help": "4bit or 8bit (CUDA only)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "run code from the folder"})
    merge_adapters: bool = field(
        default=False, metadata={"help": "merge the last adapter too (faster, not exact peft)"}
    )

    def __post_init__(self) -> None:
        if self.dtype != "auto" and self.dtype not in DTYPE_NAMES:
            allowed = ", ".join(["auto", *DTYPE_NAMES])
            raise ConfigError(f"dtype {self.dtype!r} is not known; use one of {allowed}")
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise ConfigError(
                f"quantization {self.quantization!r} is not known; use 4bit, 8bit or leave it unset"
            )
        check_pixel_range(self.min_pixels, self.max_pixels, ("min_pixels", "max_pixels"))
        names = ("video_min_pixels", "video_max_pixels")
        check_pixel_range(self.video_min_pixels, self.video_max_pixels, names)


@dataclass
class LoadedModel:
    """A model ready for ``generate``, its processor, and where they came from."""

    model: Any
    processor: Any
    base: str
    adapters: tuple[str, ...]
    options: LoadOptions
    family: FamilySpec | None
    _fingerprint: dict[str, Any] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (a 4-bit model's packed weights are not floating point)."""
        declared = getattr(self.model, "dtype", None)
        if declared is not None and getattr(declared, "is_floating_point", False):
            return declared
        return next(p.dtype for p in self.model.parameters() if p.is_floating_point())

    def fingerprint(self) -> dict[str, Any]:
        """Model path, adapters, and a hash of their config and weight layout (cached)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.base, self.adapters)
        return self._fingerprint


def is_adapter_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a peft adapter."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(adapter: str | Path) -> str:
    """The base model an adapter folder was trained on (``base_model_name_or_path``)."""
    config = _read_json(Path(adapter) / ADAPTER_CONFIG)
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(
            f"{adapter}: {ADAPTER_CONFIG} does not name its base model; pass --model BASE "
            "--adapter ADAPTER"
        )
    return str(base)


def resolve_model(model: str | Path, adapters: tuple[str | Path, ...] = ()) -> tuple[str, tuple]:
    """Return ``(base, adapters)``, reading the base from an adapter passed as the model."""
    adapters = tuple(str(a) for a in adapters)
    if is_adapter_dir(model) and not (Path(model) / "config.json").is_file():
        return adapter_base(model), (str(model), *adapters)
    return str(model), adapters


def check_adapter_dir(adapter: str | Path) -> Path:
    """Refuse a missing adapter folder or one whose weights are not safetensors."""
    path = Path(adapter)
    if not is_adapter_dir(path):
        raise ModelLoadError(
            f"{path}: not a peft adapter folder (no {ADAPTER_CONFIG}); pass the folder that "
            "training saved the adapter to"
        )
    if not (path / ADAPTER_WEIGHTS).is_file():
        found = "adapter_model.bin" if (path / "adapter_model.bin").is_file() else "no weights"
        raise ModelLoadError(
            f"{path}: {found} instead of {ADAPTER_WEIGHTS}; medvl loads safetensors only "
            "(pickle files can run code); re-save it with save_pretrained(safe_serialization=True)"
        )
    return path


def check_model_dir(model: str) -> None:
    """Refuse a local model folder without config or safetensors weights (hub ids pass)."""
    path = Path(model)
    if not path.exists():
        if path.is_absolute() or model.startswith(".") or model.count("/") != 1:
            raise ModelLoadError(
                f"{model}: no such model folder; pass a folder with config.json and "
                "*.safetensors (or a Hugging Face hub id such as Qwen/Qwen2-VL-2B-Instruct)"
            )
        return
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: no config.json; pass a Hugging Face model folder")
    if not any(path.glob("*.safetensors")):
        found = "pytorch_model*.bin" if any(path.glob("*.bin")) else "no weight files"
        raise ModelLoadError(
            f"{path}: {found} and no *.safetensors; medvl loads safetensors only (pickle files "
            "can run code); convert the checkpoint with save_pretrained(safe_serialization=True)"
        )


def resolve_device(device: str = "auto") -> str:
    """``auto`` is ``cuda`` when a GPU is visible, else ``cpu``; CUDA requests are checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but no CUDA GPU is visible; use cpu")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """The torch dtype for ``dtype`` on ``device`` (``auto``: fp32 on CPU, bf16/fp16 on CUDA)."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, DTYPE_NAMES[dtype])


def training_dtype(precision: str) -> torch.dtype:
    """The mixed-precision dtype of a training ``precision`` (``auto``: bf16 on a GPU with bf16,
    else fp32).

    Unlike :func:`resolve_dtype` for inference (fp16 where bf16 is missing), training never picks
    fp16 on its own: fp16 needs loss scaling and overflows more easily.
    """
    import torch

    if precision == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return resolve_dtype(precision, "cpu")


def dtype_name(dtype: torch.dtype) -> str:
    """``bf16``, ``fp16`` or ``fp32``: the short name :class:`LoadOptions` takes for ``dtype``."""
    import torch

    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def quantization_config(quantization: str | None, device: str, dtype: torch.dtype) -> Any:
    """A ``BitsAndBytesConfig`` for 4/8-bit loading; the vision tower stays unquantized."""
    if quantization is None:
        return None
    if not device.startswith("cuda"):
        raise ModelLoadError(
            f"{quantization} loading needs a CUDA GPU (bitsandbytes), but the device is "
            f"{device}; drop --load-{quantization} on CPU, or use --dtype bf16 to halve memory"
        )
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(
            f"{quantization} loading needs bitsandbytes; install it with "
            "'pip install bitsandbytes' or drop the quantization option"
        )
    from transformers import BitsAndBytesConfig

    skip = ["visual", "lm_head"]  # quantizing the vision tower costs accuracy for little memory
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=skip,
    )


def load_processor(source: str | Path, options: LoadOptions) -> Any:
    """The processor of ``source`` with the image and video pixel budgets overridden (each
    apart: :func:`~medvl.models.processing.set_pixel_budgets`), padding on the left."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(
            str(source), trust_remote_code=options.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{source}: no usable processor ({_first_line(exc)}); the folder needs the "
            "tokenizer and processor files saved with the model"
        ) from None
    if getattr(processor, "tokenizer", None) is None:
        raise ModelLoadError(f"{source}: the processor has no tokenizer; is it a Qwen-VL model?")
    budget = (options.min_pixels, options.max_pixels)
    set_pixel_budgets(processor, *budget, options.video_min_pixels, options.video_max_pixels)
    processor.tokenizer.padding_side = "left"  # batched generation continues from the right end
    return processor


def processor_source(base: str, adapters: tuple[str, ...]) -> str:
    """The last adapter folder that carries processor files, else the base model."""
    for adapter in reversed(adapters):
        if any((Path(adapter) / name).is_file() for name in PROCESSOR_FILES):
            return adapter
    return base


def _load_base(base: str, options: LoadOptions, device: str, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "use_safetensors": True,
        "trust_remote_code": options.trust_remote_code,
    }
    if options.attn_implementation:
        kwargs["attn_implementation"] = options.attn_implementation
    quant = quantization_config(options.quantization, device, dtype)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": device})
    try:
        model = AutoModelForImageTextToText.from_pretrained(base, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(f"{base}: cannot load the model ({_first_line(exc)})") from None
    if quant is None:
        model.to(device)
    return model


def _apply_adapters(model: Any, adapters: tuple[str, ...], options: LoadOptions) -> Any:
    """Wrap ``model`` with each adapter in turn; merge all but the last (or all, if asked)."""
    if not adapters:
        return model
    from peft import PeftModel

    if options.quantization and (len(adapters) > 1 or options.merge_adapters):
        raise ModelLoadError(
            "merging adapters into a 4/8-bit model is not supported; load in bf16 or pass one "
            "adapter without merging"
        )
    for i, adapter in enumerate(adapters):
        path = check_adapter_dir(adapter)
        try:
            with quiet_peft_warnings():
                model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelLoadError(
                f"{path}: the adapter does not fit this base model ({_first_line(exc)}); pass "
                "the base model it was trained on"
            ) from None
        if i < len(adapters) - 1 or options.merge_adapters:
            model = model.merge_and_unload()
    return model


@contextlib.contextmanager
def quiet_peft_warnings() -> Iterator[None]:
    """Hide a deprecation warning peft 0.21 triggers in transformers 5 on every load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def load_model(
    model: str | Path,
    adapters: tuple[str | Path, ...] | list[str | Path] = (),
    options: LoadOptions | None = None,
) -> LoadedModel:
    """Load ``model`` (+ ``adapters``) and its processor for inference, in eval mode."""
    options = options or LoadOptions()
    base, adapter_paths = resolve_model(model, tuple(adapters))
    for adapter in adapter_paths:
        check_adapter_dir(adapter)
    check_model_dir(base)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    processor = load_processor(processor_source(base, adapter_paths), options)
    network = _load_base(base, options, device, dtype)
    network = _apply_adapters(network, adapter_paths, options).eval()
    try:
        family: FamilySpec | None = detect_family(network)
    except MedvlError:
        family = None
        logger.warning("%s is not a Qwen-VL family medvl knows; continuing", base)
    logger.info(
        "loaded %s%s on %s (%s)",
        base,
        f" + {len(adapter_paths)} adapter(s)" if adapter_paths else "",
        device,
        str(dtype).removeprefix("torch."),
    )
    return LoadedModel(network, processor, base, adapter_paths, options, family)


def model_fingerprint(base: str, adapters: tuple[str, ...] = ()) -> dict[str, Any]:
    """Identify the weights: ``id`` hashes config files and safetensors files.

    Files up to 512 MiB (adapters, small models) are hashed whole; for larger ones only the
    header (tensor names, shapes, offsets) and size are, so a 7B base costs no GB reads. The
    paths are informative only: a moved folder keeps its ``id``.
    """
    digest = hashlib.sha256()
    for folder in (base, *adapters):
        path = Path(folder)
        if not path.is_dir():
            digest.update(folder.encode())
            continue
        for name in ("config.json", ADAPTER_CONFIG, "model.safetensors.index.json"):
            if (path / name).is_file():
                digest.update((path / name).read_bytes())
        for weights in sorted(path.glob("*.safetensors")):
            digest.update(_safetensors_identity(weights))
    return {"id": f"sha256:{digest.hexdigest()[:16]}", "path": base, "adapters": list(adapters)}


def _safetensors_identity(path: Path) -> bytes:
    """The whole file when small (adapters), else its JSON header (names, shapes, offsets)."""
    size = path.stat().st_size
    if size <= _FULL_HASH_LIMIT:
        return path.read_bytes()
    with path.open("rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        return handle.read(min(length, 100 * 2**20)) + str(size).encode()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: cannot read ({_first_line(exc)}); re-save it") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return data


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
