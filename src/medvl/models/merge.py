"""Merging a LoRA adapter into its base model: a standalone folder transformers and vLLM load.

The failures this guards against, each checked before the folder is published:

* **Lost fully trained modules.** An adapter also carries whole modules trained without LoRA
  (peft ``modules_to_save``: typically the vision-language merger). After the merge, every such
  tensor in the adapter file must equal the merged model's tensor, or the merge fails.
* **Renamed weight keys.** The merged model is written with ``save_pretrained`` of the stock
  class, which writes the checkpoint key layout of the released models (transformers 5 maps
  its internal ``model.language_model.*`` names back for Qwen2-VL and Qwen2.5-VL); the written
  key set must equal the base checkpoint's, which is what vLLM and ``from_pretrained`` read.
* **fp16 merges of bf16 models.** bf16 weights and activations overflow fp16's range; that
  conversion is refused (use bf16, or fp32 for GPUs without bf16).
* **Missing processor files.** The processor (tokenizer, chat template, image processor) is
  saved from the adapter folder when training saved one there, else from the base; the
  generation config goes along.

The folder is written next to ``out`` and renamed into place, so ``out`` is complete or absent.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.errors import MedvlError
from medvl.models.loading import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    DTYPE_NAMES,
    LoadOptions,
    check_adapter_dir,
    check_model_dir,
    load_processor,
    processor_source,
    quiet_peft_warnings,
)
from medvl.provenance import __version__

logger = logging.getLogger(__name__)

_LORA_MARKERS = (".lora_", ".lora_magnitude_vector")
_PEFT_PREFIX = "base_model.model."


class MergeError(MedvlError):
    """The adapter cannot be merged safely; the message says what and how to fix it."""


@dataclass
class MergeReport:
    """What a merge wrote and checked."""

    out_dir: Path
    base: str
    adapter: str
    dtype: str
    lora_modules: int
    full_modules: list[str] = field(default_factory=list)
    tensors: int = 0
    seconds: float = 0.0


def base_dtype(base: str) -> str | None:
    """The dtype name a base checkpoint's config declares (``bfloat16``...), if readable."""
    config = Path(base) / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text(encoding="utf-8"))
    text = data.get("dtype") or data.get("torch_dtype") or data.get("text_config", {}).get("dtype")
    return str(text) if text else None


def choose_dtype(requested: str, base: str) -> str:
    """The dtype to write: the base's own for ``auto``; fp16 from a bf16 base is refused."""
    declared = base_dtype(base)
    if requested == "auto":
        return declared if declared in ("float32", "bfloat16", "float16") else "float32"
    if requested not in DTYPE_NAMES:
        raise MergeError(f"dtype {requested!r} is not known; use auto, bf16, fp16 or fp32")
    target = DTYPE_NAMES[requested]
    if target == "float16" and declared == "bfloat16":
        raise MergeError(
            f"{base} is a bfloat16 model; a float16 merge overflows its weights and activations "
            "(inf/NaN outputs). Use --dtype bf16, or --dtype fp32 for GPUs without bf16"
        )
    return target


def full_module_tensors(adapter: str | Path) -> dict[str, Any]:
    """The adapter's non-LoRA tensors (fully trained modules), keyed by base-model name."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(adapter) / ADAPTER_WEIGHTS))
    full = {}
    for name, tensor in tensors.items():
        if any(marker in name for marker in _LORA_MARKERS):
            continue
        key = name.removeprefix(_PEFT_PREFIX).replace(".modules_to_save.default.", ".")
        full[key] = tensor
    return full


def check_full_modules(model: Any, full: dict[str, Any], adapter: str) -> list[str]:
    """Every fully trained tensor of the adapter must be in the merged model, unchanged."""
    import torch

    state = model.state_dict()
    lost = []
    for key, tensor in full.items():
        merged = state.get(key)
        if merged is None or not torch.equal(merged.to(tensor.dtype).cpu(), tensor):
            lost.append(key)
    if lost:
        raise MergeError(
            f"{adapter}: {len(lost)} fully trained tensor(s) did not survive the merge "
            f"(first: {lost[0]}); nothing was written. Check that the adapter was saved by "
            "peft for this base model"
        )
    return kept_modules(full, adapter_summary(adapter).get("modules_to_save") or [])


def kept_modules(full: dict[str, Any], names: list[str]) -> list[str]:
    """The fully trained modules behind ``full``'s tensors, e.g. ``model.visual.merger``."""
    modules = set()
    for key in full:
        owner = key.rsplit(".", 1)[0]
        for name in sorted(names, key=len, reverse=True):
            at = f".{key}.".find(f".{name}.")
            if at >= 0:
                owner = key[: at + len(name)]
                break
        modules.add(owner)
    return sorted(modules)


def checkpoint_keys(folder: str | Path) -> set[str] | None:
    """The tensor names of a local safetensors checkpoint (single file or sharded)."""
    from safetensors import safe_open

    folder = Path(folder)
    if not folder.is_dir():
        return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    keys: set[str] = set()
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            keys.update(handle.keys())
    return keys or None


def _check_keys(written: Path, base: str) -> None:
    """The merged checkpoint must use exactly the base checkpoint's tensor names."""
    expected, found = checkpoint_keys(base), checkpoint_keys(written)
    if expected is None:
        logger.info("base %s is not a local folder; key names not compared", base)
        return
    if found != expected:
        extra, missing = sorted(found - expected), sorted(expected - found)
        raise MergeError(
            f"the merged checkpoint's tensor names differ from {base}'s ({len(extra)} new, e.g. "
            f"{extra[:2]}; {len(missing)} missing, e.g. {missing[:2]}); vLLM and from_pretrained "
            "would not load it. Upgrade transformers or report this"
        )


def merge_adapter(
    base: str | Path,
    adapter: str | Path,
    out_dir: str | Path,
    *,
    dtype: str = "auto",
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> MergeReport:
    """Merge ``adapter`` into ``base`` and write a standalone model folder to ``out_dir``."""
    from peft import PeftModel

    start = time.perf_counter()
    base, adapter, out_dir = _absolute(base), _absolute(adapter), Path(out_dir)
    check_adapter_dir(adapter)
    check_model_dir(base)
    _check_out(out_dir, overwrite)
    target = choose_dtype(dtype, base)
    model = _load_base_cpu(base, target, trust_remote_code)
    full = full_module_tensors(adapter)
    try:
        with quiet_peft_warnings():
            peft_model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise MergeError(
            f"{adapter}: the adapter does not fit {base} ({str(exc).splitlines()[0][:300]}); "
            "pass the base model it was trained on with --base"
        ) from None
    lora_modules = sum(1 for name, _ in peft_model.named_modules() if name.endswith(".lora_A"))
    merged = peft_model.merge_and_unload()
    kept = check_full_modules(merged, full, adapter)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        merged.save_pretrained(staging, max_shard_size="5GB")
        options = LoadOptions(trust_remote_code=trust_remote_code)
        load_processor(processor_source(base, (adapter,)), options).save_pretrained(staging)
        _copy_generation_config(adapter, staging)
        _check_keys(staging, base)
        report = MergeReport(out_dir, base, adapter, target, lora_modules, kept)
        report.tensors = len(checkpoint_keys(staging) or ())
        report.seconds = round(time.perf_counter() - start, 2)
        write_model_card(staging, report)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("merged %s into %s -> %s (%s)", adapter, base, out_dir, target)
    return report


def _absolute(path: str | Path) -> str:
    """Local folders as absolute paths (for the model card); hub ids unchanged."""
    return str(Path(path).resolve()) if Path(path).exists() else str(path)


def _load_base_cpu(base: str, dtype: str, trust_remote_code: bool) -> Any:
    import torch
    from transformers import AutoModelForImageTextToText

    try:
        return AutoModelForImageTextToText.from_pretrained(
            base,
            dtype=getattr(torch, dtype),
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        raise MergeError(
            f"{base}: cannot load the base model ({str(exc).splitlines()[0]})"
        ) from None


def _check_out(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise MergeError(f"{out_dir} exists and is not empty; pick another --out or --overwrite")


def _copy_generation_config(adapter: str, staging: Path) -> None:
    """Prefer the generation config training saved next to the adapter, if any."""
    source = Path(adapter) / "generation_config.json"
    if source.is_file():
        shutil.copy2(source, staging / "generation_config.json")


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished folder into place; an old ``out_dir`` is replaced only at the end."""
    if out_dir.exists():
        trash = out_dir.with_name(f".{out_dir.name}.old-{int(time.time())}")
        out_dir.rename(trash)
        staging.rename(out_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(out_dir)
    out_dir.chmod(0o755)  # mkdtemp made it private


def adapter_summary(adapter: str | Path) -> dict[str, Any]:
    """The adapter's LoRA settings for the model card."""
    config = json.loads((Path(adapter) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    keys = ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save")
    return {key: config.get(key) for key in keys}


def training_summary(folder: str | Path) -> dict[str, Any] | None:
    """What medvl training left in ``folder``: its manifest and the last logged metrics."""
    folder = Path(folder)
    summary: dict[str, Any] = {}
    manifest = _read_optional_json(folder / "manifest.json")
    if isinstance(manifest, dict):
        keys = ("kind", "stage", "data", "train_records", "global_step", "created", "versions")
        summary.update({key: manifest[key] for key in keys if key in manifest})
    history = _read_optional_json(folder / "history.json")
    if isinstance(history, list):
        metrics: dict[str, Any] = {}
        for entry in history:
            if isinstance(entry, dict):
                metrics.update({k: v for k, v in entry.items() if "loss" in k or "val_" in k})
        if metrics:
            summary["last_metrics"] = metrics
    metrics_file = _read_optional_json(folder / "metrics.json")
    if metrics_file is not None:
        summary["metrics"] = metrics_file
    return summary or None


def _read_optional_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        logger.warning("%s: unreadable, left out of the model card", path)
        return None


def card_details(report: MergeReport) -> dict[str, Any]:
    """The machine-readable provenance block of the model card."""
    stages = []
    for role, folder in (("base", report.base), ("adapter", report.adapter)):
        summary = training_summary(folder) if Path(folder).is_dir() else None
        if summary:
            stages.append({"folder": str(folder), "role": role, **summary})
    return {
        "base_model": report.base,
        "adapter": report.adapter,
        "lora": adapter_summary(report.adapter),
        "dtype": report.dtype,
        "fully_trained_modules_kept": report.full_modules,
        "lora_modules_merged": report.lora_modules,
        "tensors": report.tensors,
        "training_stages": stages,
        "merged_by": f"medvl {__version__}",
        "merged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_model_card(folder: Path, report: MergeReport) -> Path:
    """README.md: what was merged, how it was trained (when known) and how to load it."""
    details = card_details(report)
    stages = details["training_stages"]
    lines = [
        f"# {report.out_dir.name}",
        "",
        f"LoRA adapter `{report.adapter}` merged into `{report.base}` by medvl. The folder is a",
        "standalone model: it loads without peft.",
        "",
        f"- base model: `{report.base}`",
        f"- dtype: {report.dtype}",
        f"- LoRA modules merged: {report.lora_modules}",
        f"- fully trained modules kept: {', '.join(report.full_modules) or 'none'}",
        f"- training stages recorded: {len(stages) or 'none found'}",
    ]
    for stage in stages:
        data = stage.get("data") or {}
        paths = ", ".join(f"{k}={v['path']}" for k, v in data.items() if isinstance(v, dict))
        metrics = stage.get("metrics") or stage.get("last_metrics") or {}
        lines.append(
            f"  - {stage.get('kind', '?')} stage {stage.get('stage', '?')}: data {paths or '?'}; "
            f"steps {stage.get('global_step', '?')}; metrics {json.dumps(metrics) or 'none'}"
        )
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        f'model = AutoModelForImageTextToText.from_pretrained("{report.out_dir}")',
        f'processor = AutoProcessor.from_pretrained("{report.out_dir}")',
        "```",
        "",
        f"vLLM: `vllm serve {report.out_dir}`; medvl: `medvl serve --model {report.out_dir}`.",
        "",
        "## Provenance",
        "",
        "```json",
        json.dumps(details, indent=2, sort_keys=True, ensure_ascii=False, default=str),
        "```",
        "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
