"""Checkpoints that resume exactly and are never picked up half-written.

The transformers Trainer writes ``checkpoint-N`` in place, so a kill during a save leaves a
folder that looks like a checkpoint. medvl marks a checkpoint complete only after the Trainer
has written everything (``on_save`` runs after the save), and resume picks the newest folder
carrying the marker; incomplete folders are moved aside, never used.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from medvl.fileio import atomic_write_json

logger = logging.getLogger(__name__)
COMPLETE_MARKER = "medvl_checkpoint_complete.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class CompleteCheckpointCallback(TrainerCallback):
    """Writes the completion marker into each checkpoint once the Trainer has saved it."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                files = sorted(p.name for p in folder.iterdir())
                atomic_write_json(
                    folder / COMPLETE_MARKER, {"step": state.global_step, "files": files}
                )
        return control


def checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint folder under ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_complete_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint; incomplete newer ones are renamed ``*.incomplete``."""
    latest = None
    for step, path in checkpoints(folder):
        if (path / COMPLETE_MARKER).is_file():
            latest = path
        else:
            aside = path.with_name(path.name + ".incomplete")
            shutil.rmtree(aside, ignore_errors=True)
            path.rename(aside)
            logger.warning(
                "checkpoint %s (step %d) was not completely written; set aside as %s",
                path,
                step,
                aside.name,
            )
    return latest


def resume_checkpoint(output_dir: str | Path, resume: bool) -> Path | None:
    """The checkpoint a run continues from: the newest complete one under
    ``output_dir/checkpoints`` when ``resume`` is set (a warning, and None, when there is none)."""
    if not resume:
        return None
    found = latest_complete_checkpoint(Path(output_dir) / "checkpoints")
    if found is None:
        logger.warning(
            "resume=true but no complete checkpoint under %s; starting fresh", output_dir
        )
    return found


def checkpoint_step(checkpoint: Path | None) -> int:
    """The global step a checkpoint folder was saved at (0 for none)."""
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0
