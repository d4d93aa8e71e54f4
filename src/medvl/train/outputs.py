"""What a finished training run leaves in its folder, written the same way for SFT and GRPO.

The model (or adapter) and processor, ``medvl_config.yaml`` (the resolved recipe, to rerun it),
the trainer's own JSON files, and last ``manifest.json`` (versions, data hashes, command, git
commit): a run folder with a manifest is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from medvl.config import config_to_dict
from medvl.fileio import atomic_write_json, atomic_write_text
from medvl.provenance import build_manifest
from medvl.train.training_config import TrainingSection


def save_outputs(
    config: TrainingSection,
    trainer: Any,
    processor: Any,
    *,
    data_files: dict[str, Path | None],
    extra: dict[str, Any],
    json_files: dict[str, Any] | None = None,
    save_model: Callable[[Path], None] | None = None,
) -> bool:
    """Write the run folder on the main process; False (and nothing written) on the others.

    ``save_model(folder)`` writes the weights (default: ``trainer.save_model``); ``json_files``
    are written before the manifest; ``extra`` is merged into the manifest.
    """
    if not trainer.is_world_process_zero():
        return False
    out = Path(config.output_dir)
    if save_model is None:
        trainer.save_model(str(out))
    else:
        save_model(out)
    processor.save_pretrained(out)
    resolved = config_to_dict(config)
    atomic_write_text(out / "medvl_config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    for name, content in (json_files or {}).items():
        atomic_write_json(out / name, content)
    atomic_write_json(out / "manifest.json", build_manifest(resolved, data_files, extra))
    return True
